//! Update (PUT, and the last step of every patch): optimistic concurrency,
//! the spec/status split of the status subresource, generation, and the
//! delete that happens when the last finalizer of a deleting object goes.

use serde_json::{Value, json};

use super::{Objects, Target, WriteOptions, store_error};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::resources::{ResourceType, Subresource, defaults, lifecycle, validation};
use crate::store::{Object, revision_of};

/// Metadata only the server sets; an update keeps the stored values.
const SYSTEM_METADATA: &[&str] = &[
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "namespace",
    "selfLink",
];

/// Decodes a body as the kind: sets `apiVersion`/`kind`, checks types and
/// drops unknown fields.
pub(crate) fn normalize(rt: &ResourceType, mut object: Value) -> ApiResult<Value> {
    let Some(map) = object.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: the body must be a JSON object",
            rt.kind, rt.version, rt.kind
        )));
    };
    for (field, want) in [
        ("apiVersion", rt.api_version()),
        ("kind", rt.kind.to_string()),
    ] {
        match map.get(field).and_then(Value::as_str) {
            Some(got) if !got.is_empty() && got != want => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({}) does not match the expected API version ({}) or kind ({}) of {}",
                    map.get("apiVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    rt.api_version(),
                    map.get("kind").and_then(Value::as_str).unwrap_or_default(),
                    rt.kind,
                )));
            }
            _ => {
                map.insert(field.into(), json!(want));
            }
        }
    }
    if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    (rt.normalize)(object).map_err(|e| {
        let name = String::new();
        if let Some(field) = e
            .message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            let path = if e.path.is_empty() {
                field.to_string()
            } else {
                format!("{}.{field}", e.path)
            };
            return ApiError::invalid(rt, &name, &[FieldError::required(path, "")]);
        }
        ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {e}",
            rt.kind, rt.version, rt.kind
        ))
    })
}

impl Objects {
    /// Replaces an object (or, with a subresource, part of it).
    pub async fn update(
        &self,
        t: Target<'_>,
        object: Value,
        subresource: Option<Subresource>,
        opts: WriteOptions,
    ) -> ApiResult<Object> {
        let rt = t.rt;
        let current = self.get(t).await?;
        // A binding is built by the server from the stored object.
        let mut new = if subresource == Some(Subresource::Binding) {
            object
        } else {
            normalize(rt, object)?
        };
        check_identity(t, &new, &current)?;

        let new_meta = super::create::metadata_mut(&mut new);
        for key in SYSTEM_METADATA {
            match current["metadata"].get(*key) {
                Some(v) => new_meta.insert((*key).into(), v.clone()),
                None => new_meta.remove(*key),
            };
        }
        new_meta.insert("name".into(), json!(t.name));

        let mut new = match subresource {
            None => {
                lifecycle::preserve_on_main_update(rt, &mut new, &current);
                new
            }
            Some(Subresource::Status) => {
                let mut merged = (*current).clone();
                lifecycle::copy_field(&new, &mut merged, "status");
                rt.rules.on_status_write(&new, &mut merged);
                merged
            }
            // A binding sets the node and the PodScheduled condition together.
            Some(Subresource::Binding) => new,
            Some(Subresource::Finalize) => {
                let mut merged = (*current).clone();
                merged["spec"]["finalizers"] = new
                    .pointer("/spec/finalizers")
                    .cloned()
                    .unwrap_or(json!([]));
                merged
            }
            Some(other) => {
                return Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource ({})",
                    other.name()
                )));
            }
        };

        lifecycle::prepare_update(
            rt,
            &mut new,
            &current,
            subresource == Some(Subresource::Status),
        );
        defaults::apply(rt, &mut new);
        // Checked on the result: a patch or a status merge can grow it.
        crate::limits::check(&new)?;
        let services = self.services.clone();
        let allocating = if super::services::is_service(rt) && subresource.is_none() {
            Some(services.lock.lock().await)
        } else {
            None
        };
        let mut errors = Vec::new();
        if allocating.is_some() {
            errors.extend(self.allocate_service(rt, &mut new, Some(&current)).await?);
        }
        errors.extend(validation::validate(rt, &new, Some(&current)));
        if !errors.is_empty() {
            return Err(ApiError::invalid(rt, t.name, &errors));
        }

        let expected = revision_of(&current);
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        if new == *current {
            return Ok(current);
        }
        if opts.dry_run {
            return Ok(new.into());
        }
        if lifecycle::deletion_complete(&new) {
            return self
                .store
                .delete(&t.key(), Some(expected))
                .await
                .map_err(|e| store_error(rt, t.name, e));
        }
        self.store
            .update(&t.key(), new, Some(expected))
            .await
            .map_err(|e| store_error(rt, t.name, e))
    }
}

/// The body must name the object the URL names, at the revision it was read.
fn check_identity(t: Target<'_>, new: &Value, current: &Value) -> ApiResult<()> {
    let name = super::name_of(new);
    if !name.is_empty() && name != t.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            t.name
        )));
    }
    if t.rt.namespaced {
        let ns = super::namespace_of(new);
        if !ns.is_empty() && Some(ns) != t.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let uid = new
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let current_uid = current
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !uid.is_empty() && uid != current_uid {
        return Err(ApiError::conflict(
            t.rt,
            t.name,
            format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {current_uid}"
            ),
        ));
    }
    match new
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        None | Some("") => Ok(()),
        Some(rv) => match rv.parse::<u64>() {
            Ok(rv) if rv == revision_of(current) => Ok(()),
            Ok(_) => Err(ApiError::modified(t.rt, t.name)),
            Err(_) => Err(ApiError::bad_request(format!(
                "invalid resourceVersion {rv:?}: must be an integer"
            ))),
        },
    }
}
