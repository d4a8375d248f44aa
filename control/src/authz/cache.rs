//! The RBAC objects as the authorizer reads them: listed from the store
//! once, then followed by one watch on the whole `rbac.authorization.k8s.io`
//! key range, the index rebuilt after each batch of changes. (The server's
//! own state, so it is read from the store as the watch cache is, not
//! through the API it guards.)

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use serde_json::Value;

use super::index::{Index, Objects};
use crate::store::{EventType, Store, StoreError};

const PREFIX: &str = "rbac.authorization.k8s.io/";

pub struct Cache {
    current: RwLock<Arc<Index>>,
}

impl Cache {
    /// An index of nothing: only `system:masters` gets through.
    pub fn empty() -> Arc<Cache> {
        Arc::new(Cache {
            current: RwLock::new(Arc::new(Index::default())),
        })
    }

    /// Lists the RBAC objects (so the first request is answered from
    /// them), then follows their changes in the background.
    pub async fn start(store: Arc<dyn Store>) -> Result<Arc<Cache>, StoreError> {
        let cache = Cache::empty();
        let (objects, revision) = list(&store).await?;
        cache.replace(&objects);
        tokio::spawn(follow(store, cache.clone(), objects, revision));
        Ok(cache)
    }

    pub fn index(&self) -> Arc<Index> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn replace(&self, objects: &BTreeMap<String, Arc<Value>>) {
        let index = Arc::new(Index::build(&split(objects)));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = index;
    }
}

async fn list(store: &Arc<dyn Store>) -> Result<(BTreeMap<String, Arc<Value>>, u64), StoreError> {
    let (items, revision) = store.list(PREFIX).await?;
    let mut objects = BTreeMap::new();
    for o in items {
        let key = key_of(&o);
        objects.insert(key, o);
    }
    Ok((objects, revision))
}

/// The store key of a listed object (lists do not carry keys).
fn key_of(o: &Value) -> String {
    let plural = match o.get("kind").and_then(Value::as_str).unwrap_or_default() {
        "Role" => "roles",
        "ClusterRole" => "clusterroles",
        "RoleBinding" => "rolebindings",
        _ => "clusterrolebindings",
    };
    let ns = crate::objects::namespace_of(o);
    let name = crate::objects::name_of(o);
    if ns.is_empty() {
        format!("{PREFIX}{plural}/{name}")
    } else {
        format!("{PREFIX}{plural}/{ns}/{name}")
    }
}

fn split(objects: &BTreeMap<String, Arc<Value>>) -> Objects {
    let mut out = Objects::default();
    for (key, o) in objects {
        let plural = key[PREFIX.len()..].split('/').next().unwrap_or_default();
        let list = match plural {
            "roles" => &mut out.roles,
            "clusterroles" => &mut out.cluster_roles,
            "rolebindings" => &mut out.role_bindings,
            "clusterrolebindings" => &mut out.cluster_role_bindings,
            _ => continue,
        };
        list.push(o.clone());
    }
    out
}

/// Follows changes for ever; a watch that ends (fell behind the history)
/// is replaced by a fresh list.
async fn follow(
    store: Arc<dyn Store>,
    cache: Arc<Cache>,
    mut objects: BTreeMap<String, Arc<Value>>,
    mut revision: u64,
) {
    loop {
        if let Ok(mut events) = store.watch(PREFIX, revision) {
            while let Some(Ok(first)) = events.next().await {
                let mut batch = vec![first];
                // Take what is already waiting, so a burst (the bootstrap
                // roles, an `apply -f` of many) rebuilds the index once.
                while let Some(Some(Ok(e))) = events.next().now_or_never() {
                    batch.push(e);
                }
                for e in batch {
                    revision = e.revision;
                    match e.kind {
                        EventType::Deleted => objects.remove(&*e.key),
                        _ => objects.insert(e.key.to_string(), e.object.clone()),
                    };
                }
                cache.replace(&objects);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        match list(&store).await {
            Ok((fresh, r)) => {
                objects = fresh;
                revision = r;
                cache.replace(&objects);
            }
            Err(e) => tracing::warn!("listing RBAC objects: {e}"),
        }
    }
}
