//! Create: system metadata, generateName, defaults, validation, namespace
//! lifecycle, then a store create that fails on an existing name.

use rand::Rng;
use serde_json::{Map, Value, json};

use super::{Objects, WriteOptions, now, store_error};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::resources::{ResourceType, defaults, lifecycle, validation};
use crate::store::Object;

/// The alphabet Kubernetes uses for generated name suffixes (no vowels, no
/// look-alikes).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn random_suffix(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect()
}

impl Objects {
    /// Creates an object of `rt` in `namespace` (ignored for cluster-scoped kinds).
    pub async fn create(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        object: Value,
        opts: WriteOptions,
    ) -> ApiResult<Object> {
        crate::limits::check(&object)?;
        let mut object = prepare(rt, namespace, object)?;
        let name = super::name_of(&object).to_string();
        let namespace = super::namespace_of(&object).to_string();
        if rt.namespaced {
            self.check_namespace_accepts_content(&namespace).await?;
        }
        lifecycle::prepare_create(rt, &mut object);
        defaults::apply(rt, &mut object);
        crate::admission::admit_create(self, rt, &mut object).await?;
        let services = self.services.clone();
        let _allocating = if super::services::is_service(rt) {
            Some(services.lock.lock().await)
        } else {
            None
        };
        let mut errors = Vec::new();
        if _allocating.is_some() {
            errors.extend(self.allocate_service(rt, &mut object, None).await?);
        }
        errors.extend(validation::validate(rt, &object, None));
        if !errors.is_empty() {
            return Err(ApiError::invalid(rt, &name, &errors));
        }
        let key = rt.key(rt.namespaced.then_some(namespace.as_str()), &name);
        if opts.dry_run {
            if self.store.get(&key).await.ok().flatten().is_some() {
                return Err(ApiError::already_exists(rt, &name));
            }
            return Ok(object.into());
        }
        self.store
            .create(&key, object)
            .await
            .map_err(|e| store_error(rt, &name, e))
    }

    /// Namespaced objects may only be created in a namespace that exists and
    /// is not being deleted.
    async fn check_namespace_accepts_content(&self, namespace: &str) -> ApiResult<()> {
        let Some(ns_type) = self.catalog.lookup("", "v1", "namespaces") else {
            return Ok(());
        };
        let ns = self
            .store
            .get(&ns_type.key(None, namespace))
            .await
            .map_err(|e| store_error(ns_type, namespace, e))?
            .ok_or_else(|| ApiError::not_found(ns_type, namespace))?;
        if ns.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok(())
    }
}

/// Normalizes the body and fills in what the server owns in `metadata`.
fn prepare(rt: &ResourceType, namespace: Option<&str>, object: Value) -> ApiResult<Value> {
    let mut object = super::update::normalize(rt, object)?;
    let meta = metadata_mut(&mut object);
    if rt.namespaced {
        let url_ns = namespace.unwrap_or("default");
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(url_ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        let generate = meta
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if generate.is_empty() {
            return Err(ApiError::invalid(
                rt,
                "",
                &[FieldError::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        // Kubernetes keeps the result within 63 characters.
        let base: String = generate.chars().take(58).collect();
        meta.insert("name".into(), json!(format!("{base}{}", random_suffix(5))));
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now()));
    for owned in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "generation",
    ] {
        meta.remove(owned);
    }
    Ok(object)
}

/// `metadata` as a map, created when missing or not an object.
pub(crate) fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}
