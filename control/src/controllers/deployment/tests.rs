use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::{REVISION, reconcile, replicas};
use crate::controllers::testing::Cluster;

fn deployment(replicas: i32, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "strategy": strategy,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
            },
        },
    })
}

fn rolling(surge: i32, unavailable: i32) -> Value {
    json!({"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

async fn step(c: &Cluster) {
    reconcile(c.get("web").await, c.ctx.clone()).await.unwrap();
}

async fn patch(c: &Cluster, spec: Value) {
    c.api::<Deployment>()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": spec })),
        )
        .await
        .unwrap();
}

fn new_image() -> Value {
    json!({"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}})
}

/// The ReplicaSets as (revision, spec.replicas), oldest first.
async fn sets(c: &Cluster) -> Vec<(String, i32)> {
    let mut all: Vec<ReplicaSet> = c.list().await;
    all.sort_by_key(|rs| rs.annotations().get(REVISION).cloned());
    all.iter()
        .map(|rs| (rs.annotations()[REVISION].clone(), replicas(rs)))
        .collect()
}

/// Plays the ReplicaSet controller and the kubelets: every ReplicaSet
/// has the pods its spec asks for, all available if `ready`, else only
/// as many as were before.
async fn sync(c: &Cluster, ready: bool) {
    for rs in c.list::<ReplicaSet>().await {
        let n = replicas(&rs);
        let before = rs.status.as_ref().and_then(|s| s.available_replicas);
        let available = if ready { n } else { before.unwrap_or(0).min(n) };
        c.set_status::<ReplicaSet>(
            &rs.name_any(),
            json!({"replicas": n, "readyReplicas": available, "availableReplicas": available}),
        )
        .await;
    }
}

#[tokio::test]
async fn a_new_deployment_makes_one_replicaset_named_by_its_template_hash() {
    let c = Cluster::new().await;
    c.create::<Deployment>(deployment(3, rolling(1, 0))).await;
    step(&c).await;
    let all: Vec<ReplicaSet> = c.list().await;
    assert_eq!(all.len(), 1);
    let hash = all[0].labels()["pod-template-hash"].clone();
    assert_eq!(all[0].name_any(), format!("web-{hash}"));
    assert_eq!(sets(&c).await, [("1".to_string(), 3)]);
    let template_labels = all[0].spec.as_ref().unwrap().template.as_ref().unwrap();
    assert_eq!(
        template_labels
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap()["pod-template-hash"],
        hash
    );
}

#[tokio::test]
async fn scaled_from_three_to_five_its_replicaset_is_scaled_to_five() {
    let c = Cluster::new().await;
    c.create::<Deployment>(deployment(3, rolling(1, 0))).await;
    step(&c).await;
    patch(&c, json!({"replicas": 5})).await;
    step(&c).await;
    assert_eq!(sets(&c).await, [("1".to_string(), 5)]);
}

#[tokio::test]
async fn a_new_template_with_max_surge_1_and_max_unavailable_0_rolls_one_pod_at_a_time() {
    let c = Cluster::new().await;
    c.create::<Deployment>(deployment(3, rolling(1, 0))).await;
    step(&c).await;
    sync(&c, true).await;
    patch(&c, new_image()).await;
    step(&c).await;
    let one = |old, new| vec![("1".to_string(), old), ("2".to_string(), new)];
    assert_eq!(sets(&c).await, one(3, 1), "one surge pod, no old one gone");
    sync(&c, false).await;
    step(&c).await;
    assert_eq!(
        sets(&c).await,
        one(3, 1),
        "nothing more until the new pod is available"
    );
    sync(&c, true).await;
    step(&c).await;
    assert_eq!(
        sets(&c).await,
        one(2, 1),
        "an old pod goes once a new one is available"
    );
    sync(&c, false).await;
    step(&c).await;
    assert_eq!(
        sets(&c).await,
        one(2, 2),
        "and the surge room it left is used"
    );
    for _ in 0..3 {
        sync(&c, true).await;
        step(&c).await;
    }
    assert_eq!(sets(&c).await, one(0, 3));
    let status = c.get::<Deployment>("web").await.status.clone().unwrap();
    assert_eq!(status.updated_replicas, Some(3));
}

#[tokio::test]
async fn recreate_scales_the_old_pods_away_before_the_new_template_starts() {
    let c = Cluster::new().await;
    c.create::<Deployment>(deployment(2, json!({"type": "Recreate"})))
        .await;
    step(&c).await;
    sync(&c, true).await;
    patch(&c, new_image()).await;
    step(&c).await;
    assert_eq!(sets(&c).await, [("1".to_string(), 0)], "old pods still run");
    sync(&c, true).await;
    step(&c).await;
    assert_eq!(sets(&c).await, [("1".to_string(), 0), ("2".to_string(), 2)]);
}

#[tokio::test]
async fn a_paused_deployment_does_not_roll_out_a_new_template() {
    let c = Cluster::new().await;
    c.create::<Deployment>(deployment(2, rolling(1, 0))).await;
    step(&c).await;
    patch(&c, json!({"paused": true})).await;
    patch(&c, new_image()).await;
    step(&c).await;
    assert_eq!(sets(&c).await, [("1".to_string(), 2)]);
    patch(&c, json!({"paused": false})).await;
    step(&c).await;
    assert_eq!(sets(&c).await.len(), 2);
}
