//! Keeps the routing table and the certificates current: watches
//! Ingresses, IngressClasses, Services, Endpoints and TLS Secrets, and
//! after each batch of changes (once all five are listed) rebuilds both
//! and swaps them in, then brings the Ingresses' status in line.

use std::net::Ipv4Addr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::Api;

use peapod_common::pace::Pacer;
use peapod_common::watch::{self, Change, Config, snapshot};

use super::proxy::SharedRoutes;
use super::routes::{self, Objects, RouteTable};
use super::status;
use super::tls::{CertLoader, SharedCerts, TLS_SECRET_TYPE};

/// The least time between two rebuilds (see `Pacer`).
const BATCH: Duration = Duration::from_millis(30);

/// The watched objects at one rebuild.
#[derive(Default)]
struct State {
    ingresses: Objects<Ingress>,
    classes: Objects<IngressClass>,
    services: Objects<Service>,
    endpoints: Objects<Endpoints>,
    secrets: Objects<Secret>,
}

impl State {
    /// Whether class-less Ingresses are ours (IngressClass is cluster
    /// scoped: its key has an empty namespace).
    fn class_is_default(&self, class: &str) -> bool {
        routes::class_is_default(
            self.classes
                .get(&(String::new(), class.to_string()))
                .map(|c| &**c),
        )
    }

    /// The class's Ingresses in precedence order.
    fn ours(&self, class: &str) -> Vec<&Ingress> {
        let default = self.class_is_default(class);
        routes::ordered(
            self.ingresses
                .values()
                .map(|i| &**i)
                .filter(|i| routes::in_class(i, class, default)),
        )
    }
}

/// The five watches, each change reduced to (which watch, whether it
/// completed a list): the rebuild reads the stores.
struct Watches {
    ingresses: watch::Store<Ingress>,
    classes: watch::Store<IngressClass>,
    services: watch::Store<Service>,
    endpoints: watch::Store<Endpoints>,
    secrets: watch::Store<Secret>,
    changes: BoxStream<'static, (usize, bool)>,
}

impl Watches {
    const KINDS: usize = 5;

    fn new(client: &kube::Client) -> Watches {
        let secrets = Config::default().fields(&format!("type={TLS_SECRET_TYPE}"));
        let ingresses = watch::watch(Api::all(client.clone()), Config::default(), "ingresses");
        let classes = watch::watch(
            Api::all(client.clone()),
            Config::default(),
            "ingress classes",
        );
        let services = watch::watch(Api::all(client.clone()), Config::default(), "services");
        let endpoints = watch::watch(Api::all(client.clone()), Config::default(), "endpoints");
        let secret_watch = watch::watch(Api::all(client.clone()), secrets, "TLS secrets");
        fn tag<K>(i: usize, c: BoxStream<'static, Change<K>>) -> BoxStream<'static, (usize, bool)>
        where
            K: Send + Sync + 'static,
        {
            c.map(move |c| (i, matches!(c, Change::Synced))).boxed()
        }
        let changes = futures::stream::select_all([
            tag(0, ingresses.changes),
            tag(1, classes.changes),
            tag(2, services.changes),
            tag(3, endpoints.changes),
            tag(4, secret_watch.changes),
        ])
        .boxed();
        Watches {
            ingresses: ingresses.store,
            classes: classes.store,
            services: services.store,
            endpoints: endpoints.store,
            secrets: secret_watch.store,
            changes,
        }
    }

    fn state(&self) -> State {
        State {
            ingresses: snapshot(&self.ingresses),
            classes: snapshot(&self.classes),
            services: snapshot(&self.services),
            endpoints: snapshot(&self.endpoints),
            secrets: snapshot(&self.secrets),
        }
    }
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
    let mut watches = Watches::new(&client);
    let mut synced = [false; Watches::KINDS];
    let mut loader = CertLoader::default();
    let mut pacer = Pacer::new(BATCH);
    while let Some((kind, done)) = watches.changes.next().await {
        synced[kind] |= done;
        pacer
            .gather(&mut watches.changes, |(kind, done)| synced[kind] |= done)
            .await;
        if !synced.iter().all(|s| *s) {
            continue;
        }
        let state = watches.state();
        let ours = state.ours(&class);
        let table = RouteTable::build(&ours, &state.services, &state.endpoints);
        let cert_table = loader.build(&ours, &state.secrets);
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
    for (key, ingress) in &state.ingresses {
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
    use peapod_common::watch::key;

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
    fn class_less_ingresses_follow_the_default_annotation() {
        let mut state = State::default();
        state
            .ingresses
            .insert(key(&ingress("a")), Arc::new(ingress("a")));
        assert_eq!(state.ours("peapod").len(), 1, "no IngressClass: default");
        let class: IngressClass = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "peapod", "annotations": {(routes::DEFAULT_CLASS_ANNOTATION): "false"}},
        }))
        .expect("class");
        state.classes.insert(key(&class), Arc::new(class));
        assert!(state.ours("peapod").is_empty());
    }
}
