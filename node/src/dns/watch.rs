//! Keeps the records snapshot current: watches Services and Endpoints and
//! rebuilds the snapshot after each batch of changes, once both have been
//! listed.

use std::collections::BTreeMap;
use std::sync::PoisonError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use peapod_control::controllers::pace::Pacer;

use super::SharedRecords;
use super::records::Records;

/// The least time between two rebuilds (see `Pacer`).
const BATCH: Duration = Duration::from_millis(30);

type Key = (String, String);

enum Change {
    Services(Box<watcher::Result<Event<Service>>>),
    Endpoints(Box<watcher::Result<Event<Endpoints>>>),
}

/// The objects of one kind, as the watch last listed and updated them.
struct Cache<K> {
    objects: BTreeMap<Key, K>,
    /// Objects of a relist in progress, which replace `objects` when done.
    relisting: Option<BTreeMap<Key, K>>,
    /// Whether a list has completed.
    listed: bool,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            objects: BTreeMap::new(),
            relisting: None,
            listed: false,
        }
    }
}

impl<K: Resource> Cache<K> {
    /// Applies one watch event; whether the objects changed.
    fn apply(&mut self, event: Event<K>) -> bool {
        match event {
            Event::Init => {
                self.relisting = Some(BTreeMap::new());
                false
            }
            Event::InitApply(object) => match &mut self.relisting {
                Some(list) => {
                    list.insert(key(&object), object);
                    false
                }
                None => {
                    self.objects.insert(key(&object), object);
                    true
                }
            },
            Event::InitDone => {
                if let Some(list) = self.relisting.take() {
                    self.objects = list;
                }
                self.listed = true;
                true
            }
            Event::Apply(object) => {
                self.objects.insert(key(&object), object);
                true
            }
            Event::Delete(object) => {
                self.objects.remove(&key(&object));
                true
            }
        }
    }
}

fn key<K: Resource>(object: &K) -> Key {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Keeps `records` current until the watches end (they retry with
/// back-off, so in practice never). The domain is the one `records` was
/// made for.
pub async fn watch(client: kube::Client, records: SharedRecords) {
    let domain = records
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .domain()
        .to_string();
    let services = watcher::watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|e| Change::Services(Box::new(e)));
    let endpoints = watcher::watcher(Api::<Endpoints>::all(client), watcher::Config::default())
        .default_backoff()
        .map(|e| Change::Endpoints(Box::new(e)));
    let mut changes = futures::stream::select(services, endpoints).boxed();
    let mut services: Cache<Service> = Cache::default();
    let mut endpoints: Cache<Endpoints> = Cache::default();
    let mut pacer = Pacer::new(BATCH);
    while let Some(first) = changes.next().await {
        let mut changed = apply(first, &mut services, &mut endpoints);
        pacer
            .gather(&mut changes, |more| {
                changed |= apply(more, &mut services, &mut endpoints)
            })
            .await;
        if !(changed && services.listed && endpoints.listed) {
            continue;
        }
        let snapshot = Records::from_objects(
            services.objects.values(),
            endpoints.objects.values(),
            &domain,
        )
        .with_serial(serial());
        *records.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
        tracing::debug!(
            "cluster DNS: {} services, {} endpoints",
            services.objects.len(),
            endpoints.objects.len()
        );
    }
}

fn apply(change: Change, services: &mut Cache<Service>, endpoints: &mut Cache<Endpoints>) -> bool {
    match change {
        Change::Services(e) => match *e {
            Ok(event) => services.apply(event),
            Err(e) => {
                tracing::warn!("cluster DNS: watching services: {e}");
                false
            }
        },
        Change::Endpoints(e) => match *e {
            Ok(event) => endpoints.apply(event),
            Err(e) => {
                tracing::warn!("cluster DNS: watching endpoints: {e}");
                false
            }
        },
    }
}
/// The SOA serial: the time of the snapshot, in Unix seconds.
fn serial() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn svc(name: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(cache: &Cache<Service>) -> Vec<String> {
        cache.objects.keys().map(|(_, name)| name.clone()).collect()
    }

    #[test]
    fn a_relist_replaces_the_objects_when_it_is_done() {
        let mut cache: Cache<Service> = Cache::default();
        assert!(!cache.apply(Event::Init));
        assert!(!cache.apply(Event::InitApply(svc("a"))));
        assert!(!cache.listed);
        assert!(cache.apply(Event::InitDone));
        assert!(cache.listed);
        assert_eq!(names(&cache), ["a"]);
        assert!(cache.apply(Event::Apply(svc("b"))));
        assert_eq!(names(&cache), ["a", "b"]);
        // A relist that no longer has `a`: it stays until the relist is done.
        cache.apply(Event::Init);
        cache.apply(Event::InitApply(svc("b")));
        assert_eq!(names(&cache), ["a", "b"]);
        cache.apply(Event::InitDone);
        assert_eq!(names(&cache), ["b"]);
        assert!(cache.apply(Event::Delete(svc("b"))));
        assert!(names(&cache).is_empty());
    }
}
