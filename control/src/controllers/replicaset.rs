//! ReplicaSet controller: keeps `spec.replicas` active pods matching the
//! selector, adopting orphans, and reports counts in the status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;

use super::Context;
use super::common::{
    controller_of, is_pod_active, is_pod_available, is_pod_ready, list_selected, now,
    owner_reference, pod_from_template,
};
use super::runner::{self, Error};
use peapod_common::events::{Kind, reference};

pub async fn run(ctx: Arc<Context>) {
    runner::run_owning::<ReplicaSet, Pod, _, _>(ctx, "replicaset", reconcile).await;
}

/// Orders pods so that the cheapest to lose come first: unscheduled,
/// pending, not ready, ready the shortest time, most restarted, newest.
fn deletion_rank(pod: &Pod) -> (u8, u8, u8, std::cmp::Reverse<i64>, std::cmp::Reverse<i64>) {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let restarts: i64 = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| i64::from(c.restart_count)).sum())
        .unwrap_or(0);
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second());
    (
        u8::from(scheduled),
        phase,
        u8::from(is_pod_ready(pod)),
        std::cmp::Reverse(restarts),
        std::cmp::Reverse(created),
    )
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let uid = rs.uid().unwrap_or_default();
    let spec = rs.spec.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let listed = list_selected(&pods, &spec.selector).await?;

    let mut owned = Vec::new();
    for pod in listed.items {
        match controller_of(&pod.metadata) {
            Some(r) if r.uid == uid => owned.push(pod),
            Some(_) => {}
            None if pod.metadata.deletion_timestamp.is_none() => {
                // Adopt an orphan that matches (the uid in the patch is a precondition).
                let patch = json!({"metadata": {
                    "uid": pod.uid(),
                    "ownerReferences": [owner_reference(rs.as_ref())],
                }});
                if let Ok(p) = pods
                    .patch(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Strategic(&patch),
                    )
                    .await
                {
                    owned.push(p);
                }
            }
            None => {}
        }
    }
    let mut active: Vec<Pod> = owned.into_iter().filter(is_pod_active).collect();
    let desired = spec.replicas.unwrap_or(1).max(0) as usize;

    if active.len() < desired {
        let template = spec.template.clone().unwrap_or_default();
        let mut missing = desired - active.len();
        // Slow start: a failing create (quota, bad template) costs one request, not hundreds.
        let mut batch = 1;
        while missing > 0 {
            let n = batch.min(missing);
            let results = futures::future::join_all((0..n).map(|_| {
                let pod =
                    pod_from_template(&template, &format!("{name}-"), owner_reference(rs.as_ref()));
                let pods = pods.clone();
                async move { pods.create(&PostParams::default(), &pod).await }
            }))
            .await;
            let mut failed = false;
            for r in results {
                match r {
                    Ok(p) => {
                        let msg = format!("Created pod: {}", p.name_any());
                        ctx.recorder.publish(
                            &reference(rs.as_ref()),
                            Kind::Normal,
                            "SuccessfulCreate",
                            &msg,
                        );
                        active.push(p);
                    }
                    Err(e) => {
                        failed = true;
                        ctx.recorder.publish(
                            &reference(rs.as_ref()),
                            Kind::Warning,
                            "FailedCreate",
                            &format!("Error creating: {e}"),
                        );
                    }
                }
            }
            if failed {
                break;
            }
            missing -= n;
            batch *= 2;
        }
    } else if active.len() > desired {
        active.sort_by_key(deletion_rank);
        let excess: Vec<Pod> = active.drain(..active.len() - desired).collect();
        for pod in excess {
            match pods.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => {
                    let msg = format!("Deleted pod: {}", pod.name_any());
                    ctx.recorder.publish(
                        &reference(rs.as_ref()),
                        Kind::Normal,
                        "SuccessfulDelete",
                        &msg,
                    );
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    let now = now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    let fully_labeled = active
        .iter()
        .filter(|p| {
            template_labels.as_ref().is_none_or(|want| {
                let have = p.metadata.labels.clone().unwrap_or_default();
                want.iter().all(|(k, v)| have.get(k) == Some(v))
            })
        })
        .count();
    let ready = active.iter().filter(|p| is_pod_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| is_pod_available(p, min_ready, now))
        .count();
    let status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": rs.metadata.generation,
    });
    let current = serde_json::to_value(&rs.status).unwrap_or_default();
    let changed = [
        "replicas",
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
        "observedGeneration",
    ]
    .iter()
    .any(|k| current.get(*k).unwrap_or(&json!(0)) != status.get(*k).unwrap_or(&json!(0)));
    if changed {
        let rss: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        rss.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    // Pods become available minReadySeconds after turning ready: look again then.
    if ready > available && min_ready > 0 {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt;
    use kube::api::{Patch, PatchParams};
    use serde_json::json;

    use super::reconcile;
    use crate::controllers::common::{controlled_by, is_pod_active};
    use crate::controllers::testing::Cluster;

    fn replicaset(replicas: i32) -> serde_json::Value {
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        })
    }

    async fn active(c: &Cluster) -> Vec<Pod> {
        c.list::<Pod>()
            .await
            .into_iter()
            .filter(is_pod_active)
            .collect()
    }

    #[tokio::test]
    async fn a_replicaset_of_three_creates_three_pods_of_its_template_that_it_controls() {
        let c = Cluster::new().await;
        let rs = c.create::<ReplicaSet>(replicaset(3)).await;
        reconcile(rs.clone(), c.ctx.clone()).await.unwrap();
        let pods = active(&c).await;
        assert_eq!(pods.len(), 3);
        for p in &pods {
            assert!(p.name_any().starts_with("web-"), "{}", p.name_any());
            assert_eq!(p.labels().get("app").map(String::as_str), Some("web"));
            assert!(controlled_by(&p.metadata, &rs.uid().unwrap()));
        }
        let status = c.get::<ReplicaSet>("web").await.status.clone().unwrap();
        assert_eq!((status.replicas, status.ready_replicas), (3, Some(0)));
    }

    #[tokio::test]
    async fn a_second_reconcile_with_enough_pods_creates_none() {
        let c = Cluster::new().await;
        let rs = c.create::<ReplicaSet>(replicaset(2)).await;
        reconcile(rs, c.ctx.clone()).await.unwrap();
        reconcile(c.get("web").await, c.ctx.clone()).await.unwrap();
        assert_eq!(active(&c).await.len(), 2);
    }

    #[tokio::test]
    async fn scaled_down_it_deletes_the_pods_that_are_not_ready_first() {
        let c = Cluster::new().await;
        let rs = c.create::<ReplicaSet>(replicaset(3)).await;
        reconcile(rs, c.ctx.clone()).await.unwrap();
        let keep = active(&c).await[1].name_any();
        c.pod_ready(&keep).await;
        c.api::<ReplicaSet>()
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"replicas": 1}})),
            )
            .await
            .unwrap();
        reconcile(c.get("web").await, c.ctx.clone()).await.unwrap();
        let left: Vec<String> = active(&c).await.iter().map(|p| p.name_any()).collect();
        assert_eq!(left, vec![keep]);
        let status = c.get::<ReplicaSet>("web").await.status.clone().unwrap();
        assert_eq!(
            (
                status.replicas,
                status.ready_replicas,
                status.available_replicas
            ),
            (1, Some(1), Some(1))
        );
    }

    #[tokio::test]
    async fn an_orphan_matching_the_selector_is_adopted_instead_of_a_new_pod() {
        let c = Cluster::new().await;
        c.create::<Pod>(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "stray", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .await;
        let rs = c.create::<ReplicaSet>(replicaset(1)).await;
        reconcile(rs.clone(), c.ctx.clone()).await.unwrap();
        let pods = active(&c).await;
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].name_any(), "stray");
        assert!(controlled_by(&pods[0].metadata, &rs.uid().unwrap()));
    }

    #[tokio::test]
    async fn a_pod_another_controller_owns_is_left_alone() {
        let c = Cluster::new().await;
        let other = c.create::<ReplicaSet>(replicaset(1)).await;
        reconcile(other, c.ctx.clone()).await.unwrap();
        let mut second = replicaset(1);
        second["metadata"]["name"] = json!("second");
        let rs = c.create::<ReplicaSet>(second).await;
        reconcile(rs.clone(), c.ctx.clone()).await.unwrap();
        let pods = active(&c).await;
        assert_eq!(pods.len(), 2);
        let uid = rs.uid().unwrap();
        assert_eq!(
            pods.iter()
                .filter(|p| controlled_by(&p.metadata, &uid))
                .count(),
            1
        );
    }
}
