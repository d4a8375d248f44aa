//! The one watch layer every loop of Peapod follows objects through: a
//! kube-runtime watcher (list, then watch from the list's resourceVersion;
//! on 410 Gone or a failed resume, list again; back-off with jitter between
//! failures) feeding a reflector store, and a stream of what changed.
//!
//! A relist *replaces* the store, and what the relist no longer has comes
//! out of the stream as `Deleted`: a loop that acts on changes sees an
//! object deleted while its watch was down go away, as it would have seen
//! the delete itself. What the relist has that is new or changed comes out
//! as `Applied`; what is unchanged (same resourceVersion) does not.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, store::Writer};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;

pub use kube::runtime::reflector::Store;
pub use kube::runtime::watcher::Config;

/// One change to the watched objects.
#[derive(Debug)]
pub enum Change<K> {
    /// Created or updated, or found new or changed by a relist.
    Applied(Arc<K>),
    /// Deleted, or missing from a relist.
    Deleted(Arc<K>),
    /// A list (the first, or a relist) is complete: the store holds what
    /// the server has. Loops that need every object wait for this.
    Synced,
}

/// The store (read-only, shared) and the stream of changes of one kind.
/// The store follows the stream: it is current as of the last change the
/// loop took.
pub struct Watch<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    pub store: Store<K>,
    pub changes: Changes<K>,
}

pub type Changes<K> = BoxStream<'static, Change<K>>;

/// Watches the objects of `api` (`what` names them in logs).
pub fn watch<K>(api: Api<K>, config: Config, what: &'static str) -> Watch<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    watch_with(api, config, K::DynamicType::default(), what)
}

/// `watch` for kinds known at run time (`DynamicObject`).
pub fn watch_with<K>(
    api: Api<K>,
    config: Config,
    dyntype: K::DynamicType,
    what: &'static str,
) -> Watch<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    let mut reflector = Reflector::new(dyntype, what);
    let store = reflector.store.clone();
    let changes = watcher::watcher(api, config)
        .default_backoff()
        .flat_map(move |result| stream::iter(reflector.apply(result)))
        .boxed();
    Watch { store, changes }
}

/// The store's writer and the changes each watch event makes to it.
struct Reflector<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    writer: Writer<K>,
    store: Store<K>,
    dyntype: K::DynamicType,
    what: &'static str,
}

impl<K: Resource + Clone + 'static> Reflector<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn new(dyntype: K::DynamicType, what: &'static str) -> Self {
        let writer = Writer::new(dyntype.clone());
        let store = writer.as_reader();
        Reflector {
            writer,
            store,
            dyntype,
            what,
        }
    }

    fn key(&self, object: &K) -> ObjectRef<K> {
        ObjectRef::from_obj_with(object, self.dyntype.clone())
    }

    fn apply(&mut self, result: watcher::Result<Event<K>>) -> Vec<Change<K>> {
        let event = match result {
            Ok(event) => event,
            Err(e) => {
                // The watcher lists or watches again after a back-off.
                tracing::warn!("watching {}: {e}", self.what);
                return Vec::new();
            }
        };
        match &event {
            Event::Init | Event::InitApply(_) => {
                self.writer.apply_watcher_event(&event);
                Vec::new()
            }
            Event::Apply(object) => {
                let key = self.key(object);
                self.writer.apply_watcher_event(&event);
                let stored = self.store.get(&key);
                vec![Change::Applied(
                    stored.unwrap_or_else(|| Arc::new(object.clone())),
                )]
            }
            Event::Delete(object) => {
                self.writer.apply_watcher_event(&event);
                vec![Change::Deleted(Arc::new(object.clone()))]
            }
            Event::InitDone => {
                let mut before: HashMap<ObjectRef<K>, Arc<K>> = self
                    .store
                    .state()
                    .into_iter()
                    .map(|o| (self.key(&o), o))
                    .collect();
                self.writer.apply_watcher_event(&event);
                let mut changes = Vec::new();
                for object in self.store.state() {
                    match before.remove(&self.key(&object)) {
                        Some(old) if same_version(&*old, &*object) => {}
                        _ => changes.push(Change::Applied(object)),
                    }
                }
                changes.extend(before.into_values().map(Change::Deleted));
                changes.push(Change::Synced);
                changes
            }
        }
    }
}

/// (namespace, name); cluster-scoped objects have an empty namespace.
pub type Key = (String, String);

pub fn key<K: Resource>(object: &K) -> Key {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The store's objects by `Key`, for loops that rebuild a table from all
/// of them in a stable order.
pub fn snapshot<K>(store: &Store<K>) -> BTreeMap<Key, Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store.state().into_iter().map(|o| (key(&*o), o)).collect()
}

fn same_version<K: Resource>(a: &K, b: &K) -> bool {
    let version = |o: &K| o.meta().resource_version.clone();
    version(a).is_some() && version(a) == version(b)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn svc(name: &str, version: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// The changes as (kind of change, name, resourceVersion), sorted.
    fn seen(changes: Vec<Change<Service>>) -> Vec<(&'static str, String, String)> {
        let describe = |what, s: &Service| {
            (
                what,
                s.metadata.name.clone().unwrap_or_default(),
                s.metadata.resource_version.clone().unwrap_or_default(),
            )
        };
        let mut out: Vec<_> = changes
            .into_iter()
            .map(|c| match c {
                Change::Applied(s) => describe("applied", &s),
                Change::Deleted(s) => describe("deleted", &s),
                Change::Synced => ("synced", String::new(), String::new()),
            })
            .collect();
        out.sort();
        out
    }

    fn names(store: &Store<Service>) -> Vec<String> {
        let mut names: Vec<_> = store
            .state()
            .iter()
            .map(|s| s.metadata.name.clone().unwrap_or_default())
            .collect();
        names.sort();
        names
    }

    fn list(r: &mut Reflector<Service>, objects: &[Service]) -> Vec<Change<Service>> {
        let mut changes = r.apply(Ok(Event::Init));
        for o in objects {
            changes.extend(r.apply(Ok(Event::InitApply(o.clone()))));
        }
        changes.extend(r.apply(Ok(Event::InitDone)));
        changes
    }

    #[test]
    fn the_first_list_applies_everything_and_then_says_synced() {
        let mut r = Reflector::<Service>::new((), "services");
        let changes = list(&mut r, &[svc("a", "1"), svc("b", "2")]);
        assert_eq!(
            seen(changes),
            [
                ("applied", "a".into(), "1".into()),
                ("applied", "b".into(), "2".into()),
                ("synced", String::new(), String::new()),
            ]
        );
        assert_eq!(names(&r.store), ["a", "b"]);
    }

    #[test]
    fn events_between_lists_pass_through_and_keep_the_store() {
        let mut r = Reflector::<Service>::new((), "services");
        list(&mut r, &[svc("a", "1")]);
        let applied = r.apply(Ok(Event::Apply(svc("b", "2"))));
        assert_eq!(seen(applied), [("applied", "b".into(), "2".into())]);
        let deleted = r.apply(Ok(Event::Delete(svc("a", "3"))));
        assert_eq!(seen(deleted), [("deleted", "a".into(), "3".into())]);
        assert_eq!(names(&r.store), ["b"]);
    }

    #[test]
    fn a_relist_deletes_what_is_gone_and_applies_only_what_changed() {
        let mut r = Reflector::<Service>::new((), "services");
        list(
            &mut r,
            &[svc("gone", "1"), svc("same", "2"), svc("changed", "3")],
        );
        // The watch was down: `gone` was deleted, `changed` updated and
        // `new` created meanwhile. Until the relist is done the store
        // still has what the last list had.
        r.apply(Ok(Event::Init));
        r.apply(Ok(Event::InitApply(svc("same", "2"))));
        r.apply(Ok(Event::InitApply(svc("changed", "7"))));
        r.apply(Ok(Event::InitApply(svc("new", "8"))));
        assert_eq!(names(&r.store), ["changed", "gone", "same"]);
        let changes = r.apply(Ok(Event::InitDone));
        assert_eq!(
            seen(changes),
            [
                ("applied", "changed".into(), "7".into()),
                ("applied", "new".into(), "8".into()),
                ("deleted", "gone".into(), "1".into()),
                ("synced", String::new(), String::new()),
            ]
        );
        assert_eq!(names(&r.store), ["changed", "new", "same"]);
    }

    #[test]
    fn an_error_changes_nothing() {
        let mut r = Reflector::<Service>::new((), "services");
        list(&mut r, &[svc("a", "1")]);
        let error = watcher::Error::NoResourceVersion;
        assert!(r.apply(Err(error)).is_empty());
        assert_eq!(names(&r.store), ["a"]);
    }
}
