//! Keeps the routing table and the certificates current: watches
//! Ingresses, IngressClasses, Services, Endpoints and TLS Secrets, and
//! after each batch of changes (once all five are listed) rebuilds both
//! and swaps them in, then brings the Ingresses' status in line.

use std::fmt::Debug;
use std::net::Ipv4Addr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;

use peapod_control::controllers::pace::Pacer;

use super::proxy::SharedRoutes;
use super::routes::{self, Key, Objects, RouteTable};
use super::status;
use super::tls::{CertLoader, SharedCerts, TLS_SECRET_TYPE};

/// The least time between two rebuilds (see `Pacer`).
const BATCH: Duration = Duration::from_millis(30);

enum Change {
    Ingresses(Box<watcher::Result<Event<Ingress>>>),
    Classes(Box<watcher::Result<Event<IngressClass>>>),
    Services(Box<watcher::Result<Event<Service>>>),
    Endpoints(Box<watcher::Result<Event<Endpoints>>>),
    Secrets(Box<watcher::Result<Event<Secret>>>),
}

/// The objects of one kind, as the watch last listed and updated them.
struct Cache<K> {
    objects: Objects<K>,
    /// Objects of a relist in progress, which replace `objects` when done.
    relisting: Option<Objects<K>>,
    /// Whether a list has completed.
    listed: bool,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            objects: Objects::new(),
            relisting: None,
            listed: false,
        }
    }
}

impl<K: Resource> Cache<K> {
    /// Applies one watch result; whether the objects changed.
    fn apply(&mut self, what: &str, result: watcher::Result<Event<K>>) -> bool {
        let event = match result {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!("ingress: watching {what}: {e}");
                return false;
            }
        };
        match event {
            Event::Init => {
                self.relisting = Some(Objects::new());
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

#[derive(Default)]
struct State {
    ingresses: Cache<Ingress>,
    classes: Cache<IngressClass>,
    services: Cache<Service>,
    endpoints: Cache<Endpoints>,
    secrets: Cache<Secret>,
}

impl State {
    fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::Ingresses(r) => self.ingresses.apply("ingresses", *r),
            Change::Classes(r) => self.classes.apply("ingress classes", *r),
            Change::Services(r) => self.services.apply("services", *r),
            Change::Endpoints(r) => self.endpoints.apply("endpoints", *r),
            Change::Secrets(r) => self.secrets.apply("secrets", *r),
        }
    }

    fn listed(&self) -> bool {
        self.ingresses.listed
            && self.classes.listed
            && self.services.listed
            && self.endpoints.listed
            && self.secrets.listed
    }

    /// Whether class-less Ingresses are ours (IngressClass is cluster
    /// scoped: its key has an empty namespace).
    fn class_is_default(&self, class: &str) -> bool {
        routes::class_is_default(
            self.classes
                .objects
                .get(&(String::new(), class.to_string())),
        )
    }

    /// The class's Ingresses in precedence order.
    fn ours(&self, class: &str) -> Vec<&Ingress> {
        let default = self.class_is_default(class);
        routes::ordered(
            self.ingresses
                .objects
                .values()
                .filter(|i| routes::in_class(i, class, default)),
        )
    }
}

/// A watch of every object of kind `K`, each event wrapped by `wrap`.
fn events<K>(
    client: &kube::Client,
    config: watcher::Config,
    wrap: fn(Box<watcher::Result<Event<K>>>) -> Change,
) -> BoxStream<'static, Change>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    watcher::watcher(Api::<K>::all(client.clone()), config)
        .default_backoff()
        .map(move |e| wrap(Box::new(e)))
        .boxed()
}

/// Keeps `routes` and `certs` current until the watches end (they retry
/// with back-off, so in practice never).
pub async fn watch(
    client: kube::Client,
    class: String,
    node_ip: Ipv4Addr,
    routes: SharedRoutes,
    certs: SharedCerts,
) {
    let secrets = watcher::Config::default().fields(&format!("type={TLS_SECRET_TYPE}"));
    let mut changes = futures::stream::select_all([
        events::<Ingress>(&client, watcher::Config::default(), Change::Ingresses),
        events::<IngressClass>(&client, watcher::Config::default(), Change::Classes),
        events::<Service>(&client, watcher::Config::default(), Change::Services),
        events::<Endpoints>(&client, watcher::Config::default(), Change::Endpoints),
        events::<Secret>(&client, secrets, Change::Secrets),
    ]);
    let mut state = State::default();
    let mut loader = CertLoader::default();
    let mut pacer = Pacer::new(BATCH);
    while let Some(first) = changes.next().await {
        let mut changed = state.apply(first);
        pacer
            .gather(&mut changes, |more| changed |= state.apply(more))
            .await;
        if !(changed && state.listed()) {
            continue;
        }
        let ours = state.ours(&class);
        let table = RouteTable::build(&ours, &state.services.objects, &state.endpoints.objects);
        let cert_table = loader.build(&ours, &state.secrets.objects);
        tracing::debug!(
            "ingress: {} ingresses, {} routes, {} certificate names",
            ours.len(),
            table.len(),
            cert_table.len()
        );
        *routes.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
        *certs.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(cert_table);
        update_status(&client, &state, &class, node_ip).await;
    }
}

/// Adds this node's IP to the class's Ingresses that lack it, and removes
/// it from those that left the class. Failures are retried at the next
/// batch, which comes at the latest with the next change of any watched
/// object.
async fn update_status(client: &kube::Client, state: &State, class: &str, node_ip: Ipv4Addr) {
    let default = state.class_is_default(class);
    for (key, ingress) in &state.ingresses.objects {
        let in_class = routes::in_class(ingress, class, default);
        let Some(patch) = status::patch(ingress, node_ip, in_class) else {
            continue;
        };
        if let Err(e) = status::apply(client, &key.0, &key.1, &patch).await {
            tracing::warn!("ingress: status of {}/{}: {e}", key.0, key.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn ingress(name: &str) -> Ingress {
        Ingress {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_relist_replaces_the_objects_when_it_is_done() {
        let mut cache: Cache<Ingress> = Cache::default();
        assert!(!cache.apply("ingresses", Ok(Event::Init)));
        assert!(!cache.apply("ingresses", Ok(Event::InitApply(ingress("a")))));
        assert!(cache.apply("ingresses", Ok(Event::InitDone)));
        assert!(cache.listed);
        cache.apply("ingresses", Ok(Event::Init));
        cache.apply("ingresses", Ok(Event::InitApply(ingress("b"))));
        assert_eq!(cache.objects.len(), 1, "a stays until the relist is done");
        cache.apply("ingresses", Ok(Event::InitDone));
        let names: Vec<&str> = cache.objects.keys().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn class_less_ingresses_follow_the_default_annotation() {
        let mut state = State::default();
        state
            .ingresses
            .objects
            .insert(key(&ingress("a")), ingress("a"));
        assert_eq!(state.ours("peapod").len(), 1, "no IngressClass: default");
        let class: IngressClass = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "peapod", "annotations": {(routes::DEFAULT_CLASS_ANNOTATION): "false"}},
        }))
        .expect("class");
        state.classes.objects.insert(key(&class), class);
        assert!(state.ours("peapod").is_empty());
    }
}
