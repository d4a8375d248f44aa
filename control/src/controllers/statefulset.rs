//! StatefulSet controller: pods `<name>-0 .. <name>-(N-1)` with stable
//! names and hostnames, created in order (the next once the previous is
//! Running and Ready, unless `podManagementPolicy: Parallel`) and removed
//! in reverse; one PersistentVolumeClaim per pod and claim template, kept
//! when the pod goes; rolling updates from the highest ordinal down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;

use super::Context;
use super::common::{
    controlled_by, delete, is_pod_ready, list_selected, owner_reference, pod_from_template,
    template_hash,
};
use super::runner::{self, Error};
use peapod_common::events::{Kind, reference};

const REVISION_LABEL: &str = "controller-revision-hash";

pub async fn run(ctx: Arc<Context>) {
    runner::run_owning::<StatefulSet, Pod, _, _>(ctx, "statefulset", reconcile).await;
}

fn ordinal(sts: &str, pod: &Pod) -> Option<i32> {
    pod.name_any()
        .strip_prefix(&format!("{sts}-"))?
        .parse()
        .ok()
}

fn running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && is_pod_ready(pod)
}

fn revision_of(pod: &Pod) -> Option<&String> {
    pod.labels().get(REVISION_LABEL)
}

async fn reconcile(sts: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    if sts.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = sts.namespace().unwrap_or_default();
    let name = sts.name_any();
    let uid = sts.uid().unwrap_or_default();
    let spec = sts.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let revision = format!(
        "{name}-{}",
        template_hash(
            &spec.template,
            sts.status.as_ref().and_then(|s| s.collision_count)
        )
    );
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut pods: BTreeMap<i32, Pod> = BTreeMap::new();
    for p in list_selected(&pods_api, &spec.selector).await?.items {
        if controlled_by(&p.metadata, &uid)
            && let Some(i) = ordinal(&name, &p)
        {
            pods.insert(i, p);
        }
    }

    // Replace pods that finished; they are recreated under the same name.
    for (_, p) in pods.iter().filter(|(_, p)| {
        matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        ) && p.metadata.deletion_timestamp.is_none()
    }) {
        delete(&pods_api, &p.name_any(), &DeleteParams::default()).await?;
    }

    let mut busy = false;
    // Create missing pods, in order.
    for i in 0..replicas {
        if let Some(p) = pods.get(&i) {
            if !parallel && !running_and_ready(p) {
                busy = true;
                break;
            }
            continue;
        }
        ensure_claims(&ctx, &sts, i).await?;
        let pod = new_pod(&sts, i, &revision);
        match pods_api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                let msg = format!("create Pod {name}-{i} in StatefulSet {name} successful");
                ctx.recorder.publish(
                    &reference(sts.as_ref()),
                    Kind::Normal,
                    "SuccessfulCreate",
                    &msg,
                );
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        busy = true;
        if !parallel {
            break;
        }
    }

    // Remove pods beyond the replica count, highest first.
    if !busy {
        for (i, p) in pods.iter().rev().filter(|(i, _)| **i >= replicas) {
            if p.metadata.deletion_timestamp.is_none() {
                pods_api
                    .delete(&p.name_any(), &DeleteParams::default())
                    .await?;
                let msg = format!("delete Pod {name}-{i} in StatefulSet {name} successful");
                ctx.recorder.publish(
                    &reference(sts.as_ref()),
                    Kind::Normal,
                    "SuccessfulDelete",
                    &msg,
                );
            }
            busy = true;
            if !parallel {
                break;
            }
        }
    }

    // Roll pods of an older revision, highest ordinal first, one at a time.
    let on_delete = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete");
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let all_ready = pods.values().all(running_and_ready) && pods.len() as i32 == replicas;
    if !busy
        && !on_delete
        && all_ready
        && let Some((_, p)) = pods
            .iter()
            .rev()
            .find(|(i, p)| **i >= partition && **i < replicas && revision_of(p) != Some(&revision))
    {
        pods_api
            .delete(&p.name_any(), &DeleteParams::default())
            .await?;
        busy = true;
    }

    let ready = pods.values().filter(|p| is_pod_ready(p)).count();
    let updated = pods
        .values()
        .filter(|p| revision_of(p) == Some(&revision))
        .count();
    let current_revision = if updated == pods.len() && pods.len() as i32 == replicas {
        revision.clone()
    } else {
        sts.status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .unwrap_or_else(|| revision.clone())
    };
    let status = json!({
        "observedGeneration": sts.metadata.generation,
        "replicas": pods.len(),
        "readyReplicas": ready,
        "currentReplicas": pods.values().filter(|p| revision_of(p) == Some(&current_revision)).count(),
        "updatedReplicas": updated,
        "availableReplicas": ready,
        "currentRevision": current_revision,
        "updateRevision": revision,
        "collisionCount": sts.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0),
    });
    let current = serde_json::to_value(&sts.status).unwrap_or_default();
    if status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| current.get(k) != Some(v))
    {
        let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(Action::requeue(Duration::from_secs(if busy {
        2
    } else {
        300
    })))
}

fn claim_name(template: &PersistentVolumeClaim, sts: &str, i: i32) -> String {
    format!("{}-{sts}-{i}", template.name_any())
}

/// Creates the pod's claims from the claim templates (kept across pod restarts).
async fn ensure_claims(ctx: &Context, sts: &StatefulSet, i: i32) -> Result<(), Error> {
    let ns = sts.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let spec = sts.spec.as_ref().expect("spec");
    for t in spec.volume_claim_templates.iter().flatten() {
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(claim_name(t, &sts.name_any(), i)),
                labels: spec.selector.match_labels.clone(),
                ..Default::default()
            },
            spec: t.spec.clone(),
            status: None,
        };
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn new_pod(sts: &StatefulSet, i: i32, revision: &str) -> Pod {
    let spec = sts.spec.as_ref().expect("spec");
    let name = format!("{}-{i}", sts.name_any());
    let mut pod = pod_from_template(&spec.template, "", owner_reference(sts));
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert("statefulset.kubernetes.io/pod-name".into(), name.clone());
    labels.insert("apps.kubernetes.io/pod-index".into(), i.to_string());
    labels.insert(REVISION_LABEL.into(), revision.to_string());
    let pod_spec = pod.spec.get_or_insert_with(Default::default);
    pod_spec.hostname = Some(name);
    pod_spec.subdomain = spec.service_name.clone().filter(|s| !s.is_empty());
    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
    for t in spec.volume_claim_templates.iter().flatten() {
        let vname = t.name_any();
        volumes.retain(|v| v.name != vname);
        volumes.push(Volume {
            name: vname,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(t, &sts.name_any(), i),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    pod
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
    use kube::ResourceExt;
    use kube::api::{Patch, PatchParams};
    use serde_json::{Value, json};

    use super::reconcile;
    use crate::controllers::testing::Cluster;

    fn statefulset(replicas: i32, policy: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "serviceName": "web",
                "podManagementPolicy": policy,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}},
                }],
            },
        })
    }

    async fn step(c: &Cluster) {
        reconcile(c.get("web").await, c.ctx.clone()).await.unwrap();
    }

    async fn pods(c: &Cluster) -> Vec<String> {
        c.list::<Pod>()
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect()
    }

    async fn ready_all(c: &Cluster) {
        for p in pods(c).await {
            c.pod_ready(&p).await;
        }
    }

    #[tokio::test]
    async fn ordered_ready_starts_each_pod_once_the_one_before_is_running_and_ready() {
        let c = Cluster::new().await;
        c.create::<StatefulSet>(statefulset(3, "OrderedReady"))
            .await;
        step(&c).await;
        assert_eq!(pods(&c).await, ["web-0"]);
        step(&c).await;
        assert_eq!(pods(&c).await, ["web-0"], "web-0 is not ready yet");
        ready_all(&c).await;
        step(&c).await;
        assert_eq!(pods(&c).await, ["web-0", "web-1"]);
        let pod = c.get::<Pod>("web-1").await;
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
    }

    #[tokio::test]
    async fn parallel_starts_every_pod_at_once_each_with_its_own_claim() {
        let c = Cluster::new().await;
        c.create::<StatefulSet>(statefulset(3, "Parallel")).await;
        step(&c).await;
        assert_eq!(pods(&c).await, ["web-0", "web-1", "web-2"]);
        let claims: Vec<String> = c
            .list::<PersistentVolumeClaim>()
            .await
            .iter()
            .map(|c| c.name_any())
            .collect();
        assert_eq!(claims, ["data-web-0", "data-web-1", "data-web-2"]);
    }

    #[tokio::test]
    async fn scaled_down_the_highest_ordinal_goes_first_and_its_claim_stays() {
        let c = Cluster::new().await;
        c.create::<StatefulSet>(statefulset(3, "OrderedReady"))
            .await;
        for _ in 0..3 {
            step(&c).await;
            ready_all(&c).await;
        }
        assert_eq!(pods(&c).await.len(), 3);
        c.api::<StatefulSet>()
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"replicas": 1}})),
            )
            .await
            .unwrap();
        step(&c).await;
        assert_eq!(pods(&c).await, ["web-0", "web-1"]);
        assert_eq!(c.list::<PersistentVolumeClaim>().await.len(), 3);
    }
}
