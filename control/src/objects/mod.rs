//! Generic object semantics over the store: what create, update, delete,
//! list and watch mean for any kind (system metadata, generation, status
//! split, finalizers, graceful deletion, selectors, pagination), with the
//! per-kind rules from `resources`. The HTTP edge (`api`) and in-process
//! callers both come through here.

mod create;
mod delete;
mod list;
pub mod services;
mod update;

pub use create::random_suffix;
pub use delete::{DeleteOptions, Deleted, FOREGROUND_FINALIZER, ORPHAN_FINALIZER, Propagation};
pub use list::{ListOptions, ListResult, filter_watch};

use std::sync::Arc;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::resources::{Catalog, ResourceType};
use crate::store::{Object, Store, StoreError};

/// Where an object lives: its resource, namespace (for namespaced kinds) and name.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub rt: &'a ResourceType,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

impl Target<'_> {
    pub fn key(&self) -> String {
        self.rt.key(self.namespace, self.name)
    }
}

/// Options every write takes.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions {
    /// Run every check but store nothing (`?dryRun=All`).
    pub dry_run: bool,
}

#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn Store>,
    catalog: &'static Catalog,
    services: Arc<services::ServiceAllocator>,
}

impl Objects {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Objects::with_service_network(store, services::ServiceNetwork::default())
    }

    pub fn with_service_network(store: Arc<dyn Store>, network: services::ServiceNetwork) -> Self {
        Objects {
            store,
            catalog: Catalog::global(),
            services: Arc::new(services::ServiceAllocator::new(network)),
        }
    }

    pub fn service_network(&self) -> &services::ServiceNetwork {
        &self.services.network
    }

    pub fn catalog(&self) -> &'static Catalog {
        self.catalog
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn get(&self, t: Target<'_>) -> ApiResult<Object> {
        self.store
            .get(&t.key())
            .await
            .map_err(|e| store_error(t.rt, t.name, e))?
            .ok_or_else(|| ApiError::not_found(t.rt, t.name))
    }

    /// Reads, changes and writes back, retrying when another writer got
    /// there first (the store's compare-and-swap fails). `change` sees the
    /// current object and returns the desired one.
    pub async fn update_with<F>(
        &self,
        t: Target<'_>,
        subresource: Option<crate::resources::Subresource>,
        opts: WriteOptions,
        mut change: F,
    ) -> ApiResult<Object>
    where
        F: FnMut(&Value) -> ApiResult<Value>,
    {
        for _ in 0..16 {
            let current = self.get(t).await?;
            let mut desired = change(&current)?;
            // The change is relative to what was read: pin the write to it.
            if let Some(meta) = desired.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert(
                    "resourceVersion".into(),
                    current["metadata"]["resourceVersion"].clone(),
                );
            }
            match self.update(t, desired, subresource, opts).await {
                Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
                other => return other,
            }
        }
        Err(ApiError::modified(t.rt, t.name))
    }
}

/// Maps a store failure onto the API error a client should see.
pub(crate) fn store_error(rt: &ResourceType, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(_) => ApiError::not_found(rt, name),
        StoreError::AlreadyExists(_) => ApiError::already_exists(rt, name),
        StoreError::Conflict { .. } => ApiError::modified(rt, name),
        StoreError::Gone { requested, oldest } => {
            ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
        }
        StoreError::Backend(msg) => ApiError::internal(msg),
    }
}

/// Now, as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `metadata.name`, or `""`.
pub fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `metadata.namespace`, or `""`.
pub fn namespace_of(object: &Value) -> &str {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
