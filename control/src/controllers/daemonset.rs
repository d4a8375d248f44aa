//! DaemonSet controller: one pod on every eligible node (node selector,
//! required node affinity, tolerated taints), placed directly on its node,
//! following nodes as they come and go; updates replace pods node by node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;

use super::Context;
use super::common::{
    controlled_by, delete, is_pod_ready, list_selected, owner_reference, pod_from_template,
    template_hash,
};
use super::runner::{self, Error};
use crate::scheduler::filter::tolerates;
use peapod_common::events::{Kind, reference};
use peapod_common::watch::{self, Config};

const HASH_LABEL: &str = "controller-revision-hash";

/// Runs the controller; every node change (a deletion too) re-checks
/// every DaemonSet.
pub async fn run(ctx: Arc<Context>) {
    let nodes = watch::watch(
        Api::<Node>::all(ctx.client.clone()),
        Config::default(),
        "nodes",
    )
    .changes
    .map(|_| ());
    runner::run_owning_and_on::<DaemonSet, Pod, _, _>(ctx, "daemonset", reconcile, nodes).await;
}

/// Tolerations every daemon pod gets, as Kubernetes adds them.
fn daemon_tolerations() -> Vec<Toleration> {
    [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
    .iter()
    .map(|(k, e)| Toleration {
        key: Some(k.to_string()),
        operator: Some("Exists".into()),
        effect: Some(e.to_string()),
        ..Default::default()
    })
    .collect()
}

fn eligible(ds: &DaemonSet, node: &Node) -> bool {
    let spec = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selector_ok = spec
        .and_then(|s| s.node_selector.as_ref())
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let mut tolerations = spec.and_then(|s| s.tolerations.clone()).unwrap_or_default();
    tolerations.extend(daemon_tolerations());
    let taints_ok = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerates(&tolerations, t));
    selector_ok && taints_ok && node.metadata.deletion_timestamp.is_none()
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let uid = ds.uid().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let hash = template_hash(
        &spec.template,
        ds.status.as_ref().and_then(|s| s.collision_count),
    );
    let nodes = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut by_node: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for p in list_selected(&pods_api, &spec.selector).await?.items {
        if controlled_by(&p.metadata, &uid) && p.metadata.deletion_timestamp.is_none() {
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            by_node.entry(node).or_default().push(p);
        }
    }
    let max_unavailable = 1;
    let mut unavailable = 0;
    let (mut desired, mut current, mut ready, mut updated) = (0, 0, 0, 0);
    for node in &nodes {
        let node_name = node.name_any();
        let pods = by_node.remove(&node_name).unwrap_or_default();
        if !eligible(&ds, node) {
            for p in pods {
                delete(&pods_api, &p.name_any(), &DeleteParams::default()).await?;
            }
            continue;
        }
        desired += 1;
        match pods.first() {
            None => {
                let mut pod = pod_from_template(
                    &spec.template,
                    &format!("{name}-"),
                    owner_reference(ds.as_ref()),
                );
                pod.metadata
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert(HASH_LABEL.into(), hash.clone());
                let pod_spec = pod.spec.get_or_insert_with(Default::default);
                pod_spec.node_name = Some(node_name.clone());
                pod_spec
                    .tolerations
                    .get_or_insert_with(Vec::new)
                    .extend(daemon_tolerations());
                let created = pods_api.create(&PostParams::default(), &pod).await?;
                let msg = format!("Created pod: {}", created.name_any());
                ctx.recorder.publish(
                    &reference(ds.as_ref()),
                    Kind::Normal,
                    "SuccessfulCreate",
                    &msg,
                );
                unavailable += 1;
            }
            Some(p) => {
                current += 1;
                let is_ready = is_pod_ready(p);
                ready += usize::from(is_ready);
                let up_to_date = p.labels().get(HASH_LABEL) == Some(&hash);
                updated += usize::from(up_to_date);
                if !is_ready {
                    unavailable += 1;
                }
                // Extra pods on the node go; an outdated one is replaced
                // while the unavailability budget allows.
                for extra in &pods[1..] {
                    delete(&pods_api, &extra.name_any(), &DeleteParams::default()).await?;
                }
                if !up_to_date && unavailable < max_unavailable {
                    delete(&pods_api, &p.name_any(), &DeleteParams::default()).await?;
                    unavailable += 1;
                }
            }
        }
    }
    // Pods on nodes that no longer exist.
    for p in by_node.into_values().flatten() {
        delete(&pods_api, &p.name_any(), &DeleteParams::default()).await?;
    }
    let status = json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberReady": ready,
        "updatedNumberScheduled": updated,
        "numberAvailable": ready,
        "numberUnavailable": desired - ready.min(desired),
        "numberMisscheduled": 0,
        "observedGeneration": ds.metadata.generation,
    });
    let old = serde_json::to_value(&ds.status).unwrap_or_default();
    if status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| old.get(k).unwrap_or(&json!(0)) != v)
    {
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(Action::requeue(Duration::from_secs(if desired == ready {
        300
    } else {
        2
    })))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::ResourceExt;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
    use serde_json::{Value, json};

    use super::reconcile;
    use crate::controllers::testing::Cluster;

    fn daemonset(node_selector: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {
                        "nodeSelector": node_selector,
                        "containers": [{"name": "c", "image": "busybox:1"}],
                    },
                },
            },
        })
    }

    async fn node(c: &Cluster, name: &str, labels: Value, taints: Value) {
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
        }))
        .unwrap();
        Api::<Node>::all(c.ctx.client.clone())
            .create(&PostParams::default(), &node)
            .await
            .unwrap();
    }

    async fn step(c: &Cluster) {
        reconcile(c.get("agent").await, c.ctx.clone())
            .await
            .unwrap();
    }

    /// (node, pod image) of the pods not being deleted, by node.
    async fn placed(c: &Cluster) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = c
            .list::<Pod>()
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| {
                let spec = p.spec.unwrap();
                (
                    spec.node_name.unwrap_or_default(),
                    spec.containers[0].image.clone().unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn on(nodes: &[&str], image: &str) -> Vec<(String, String)> {
        nodes
            .iter()
            .map(|n| (n.to_string(), image.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn every_node_gets_one_pod_bound_to_it_that_tolerates_node_trouble() {
        let c = Cluster::new().await;
        node(&c, "a", json!({}), json!([])).await;
        node(&c, "b", json!({}), json!([])).await;
        c.create::<DaemonSet>(daemonset(json!({}))).await;
        step(&c).await;
        step(&c).await;
        assert_eq!(placed(&c).await, on(&["a", "b"], "busybox:1"));
        let pod = &c.list::<Pod>().await[0];
        let tolerations = pod.spec.as_ref().unwrap().tolerations.clone().unwrap();
        assert!(
            tolerations
                .iter()
                .any(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready"))
        );
        let status = c.get::<DaemonSet>("agent").await.status.clone().unwrap();
        assert_eq!(status.desired_number_scheduled, 2);
    }

    #[tokio::test]
    async fn nodes_the_selector_or_an_untolerated_taint_excludes_get_none() {
        let c = Cluster::new().await;
        node(&c, "ssd", json!({"disk": "ssd"}), json!([])).await;
        node(&c, "hdd", json!({"disk": "hdd"}), json!([])).await;
        let taint = json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]);
        node(&c, "tainted", json!({"disk": "ssd"}), taint).await;
        c.create::<DaemonSet>(daemonset(json!({"disk": "ssd"})))
            .await;
        step(&c).await;
        assert_eq!(placed(&c).await, on(&["ssd"], "busybox:1"));
    }

    #[tokio::test]
    async fn a_node_that_goes_away_loses_its_pod() {
        let c = Cluster::new().await;
        node(&c, "a", json!({}), json!([])).await;
        node(&c, "b", json!({}), json!([])).await;
        c.create::<DaemonSet>(daemonset(json!({}))).await;
        step(&c).await;
        Api::<Node>::all(c.ctx.client.clone())
            .delete("b", &DeleteParams::default())
            .await
            .unwrap();
        step(&c).await;
        assert_eq!(placed(&c).await, on(&["a"], "busybox:1"));
    }

    #[tokio::test]
    async fn a_new_template_replaces_the_pods_one_node_at_a_time() {
        let c = Cluster::new().await;
        node(&c, "a", json!({}), json!([])).await;
        node(&c, "b", json!({}), json!([])).await;
        c.create::<DaemonSet>(daemonset(json!({}))).await;
        step(&c).await;
        for p in c.list::<Pod>().await {
            c.pod_ready(&p.name_any()).await;
        }
        c.api::<DaemonSet>()
            .patch(
                "agent",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"template": {"spec": {
                    "containers": [{"name": "c", "image": "busybox:2"}]}}}})),
            )
            .await
            .unwrap();
        step(&c).await;
        assert_eq!(
            placed(&c).await.len(),
            1,
            "one old pod goes, the other keeps serving"
        );
        step(&c).await;
        let now = placed(&c).await;
        assert_eq!(now.len(), 2);
        assert_eq!(now.iter().filter(|(_, i)| i == "busybox:2").count(), 1);
    }
}
