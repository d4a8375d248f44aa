//! Node lifecycle: a node whose Lease goes unrenewed past the grace
//! period turns `Ready=Unknown` and gets the `unreachable` NoExecute taint;
//! its pods are deleted once the eviction timeout (or their own toleration
//! time) passes, so their controllers recreate them on healthy nodes. A
//! node that comes back loses the taint.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

use super::Context;
use super::common::{now, time_now};
use peapod_common::events::{Kind, reference};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const CHECK_EVERY: Duration = Duration::from_secs(2);

pub async fn run(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tick.tick().await;
        if let Err(e) = check(&ctx).await {
            tracing::debug!("node lifecycle: {e}");
        }
    }
}

fn seconds_ago(t: Option<jiff::Timestamp>) -> Option<i64> {
    t.map(|t| now().as_second() - t.as_second())
}

async fn check(ctx: &Context) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), "kube-node-lease");
    let lease_list = leases.list(&ListParams::default()).await?;
    let grace = ctx.settings.node_monitor_grace_period.as_secs() as i64;
    for node in nodes.list(&ListParams::default()).await?.items {
        let name = node.name_any();
        let renewed = lease_list
            .items
            .iter()
            .find(|l| l.name_any() == name)
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0))
            .or_else(|| node.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let stale = seconds_ago(renewed).is_some_and(|age| age > grace);
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let tainted = taints.iter().find(|t| t.key == UNREACHABLE).cloned();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        if stale {
            if ready.as_deref() != Some("Unknown") {
                let patch = json!({"status": {"conditions": [{
                    "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                    "message": "Kubelet stopped posting node status.",
                    "lastTransitionTime": time_now(), "lastHeartbeatTime": time_now(),
                }]}});
                nodes
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await?;
                ctx.recorder.publish(
                    &reference(&node),
                    Kind::Normal,
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                );
            }
            match tainted {
                None => {
                    let mut all = taints.clone();
                    all.push(Taint {
                        key: UNREACHABLE.into(),
                        effect: "NoExecute".into(),
                        time_added: Some(time_now()),
                        value: None,
                    });
                    nodes
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(&json!({"spec": {"taints": all}})),
                        )
                        .await?;
                }
                Some(t) => evict(ctx, &name, &t).await?,
            }
        } else if tainted.is_some() && ready.as_deref() == Some("True") {
            let rest: Vec<Taint> = taints
                .into_iter()
                .filter(|t| t.key != UNREACHABLE)
                .collect();
            nodes
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"taints": rest}})),
                )
                .await?;
        }
    }
    Ok(())
}

/// Deletes the pods of an unreachable node whose tolerance has run out.
async fn evict(ctx: &Context, node: &str, taint: &Taint) -> Result<(), kube::Error> {
    let tainted_for = seconds_ago(taint.time_added.as_ref().map(|t| t.0)).unwrap_or(0);
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    for pod in on_node.items {
        let tolerated_for = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_ref())
            .and_then(|ts| {
                ts.iter()
                    .find(|t| crate::scheduler::filter::tolerates(std::slice::from_ref(*t), taint))
            })
            .map(|t| t.toleration_seconds);
        let limit = match tolerated_for {
            // Tolerated forever.
            Some(None) => continue,
            Some(Some(s)) => s,
            None => ctx.settings.pod_eviction_timeout.as_secs() as i64,
        };
        if tainted_for < limit {
            continue;
        }
        let api: Api<Pod> =
            Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        // The node cannot confirm the pod stopped: delete without grace.
        match api
            .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => {
                let msg = format!(
                    "Marking for deletion Pod {}/{}",
                    pod.namespace().unwrap_or_default(),
                    pod.name_any()
                );
                ctx.recorder
                    .publish(&reference(&pod), Kind::Normal, "TaintManagerEviction", &msg);
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
