//! The cluster CA in every namespace, as kube-controller-manager's
//! root-ca-cert-publisher: a `kube-root-ca.crt` ConfigMap holding
//! `ca.crt`, which the token volume of every pod projects (so in-cluster
//! clients verify the API server), put back when changed or deleted.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use super::Context;
use peapod_common::watch::{self, Change, Config};

/// The ConfigMap's name, which pods' token volumes refer to.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

pub async fn run(ctx: Arc<Context>) {
    let ca = ctx.settings.root_ca_pem.clone();
    if ca.is_empty() {
        return;
    }
    let namespaces = watch::watch(
        Api::<Namespace>::all(ctx.client.clone()),
        Config::default(),
        "namespaces",
    );
    let maps = watch::watch(
        Api::<ConfigMap>::all(ctx.client.clone()),
        Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIG_MAP}")),
        "root CA configmaps",
    );
    let (ns_store, map_store) = (namespaces.store, maps.store);
    // Which of the two watches has listed everything.
    let mut changes = futures::stream::select(
        namespaces
            .changes
            .map(|c| (true, matches!(c, Change::Synced))),
        maps.changes.map(|c| (false, matches!(c, Change::Synced))),
    );
    let (mut ns_synced, mut maps_synced) = (false, false);
    while let Some((is_ns, synced)) = changes.next().await {
        match (is_ns, synced) {
            (true, true) => ns_synced = true,
            (false, true) => maps_synced = true,
            _ => {}
        }
        if !(ns_synced && maps_synced) {
            continue;
        }
        for ns in ns_store.state() {
            if ns.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = ns.name_any();
            let current = map_store.get(&ObjectRef::new(ROOT_CA_CONFIG_MAP).within(&name));
            let holds = |m: &ConfigMap| m.data.as_ref().and_then(|d| d.get("ca.crt")) == Some(&ca);
            if current.as_deref().is_some_and(holds) {
                continue;
            }
            if let Err(e) = publish(&ctx, &name, &ca, current.is_some()).await {
                tracing::warn!("publishing {ROOT_CA_CONFIG_MAP} in {name}: {e}");
            }
        }
    }
}

async fn publish(ctx: &Context, namespace: &str, ca: &str, exists: bool) -> kube::Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let body = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": ROOT_CA_CONFIG_MAP,
            "annotations": {"kubernetes.io/description": DESCRIPTION}},
        "data": {"ca.crt": ca},
    });
    if exists {
        let patch = Patch::Merge(&body);
        api.patch(ROOT_CA_CONFIG_MAP, &PatchParams::default(), &patch)
            .await?;
        return Ok(());
    }
    let map: ConfigMap = serde_json::from_value(body).expect("a ConfigMap");
    match api.create(&PostParams::default(), &map).await {
        Ok(_) => Ok(()),
        // Made meanwhile (the watch brings it), or the namespace is going.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => Ok(()),
        Err(e) => Err(e),
    }
}
