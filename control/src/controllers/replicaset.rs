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
