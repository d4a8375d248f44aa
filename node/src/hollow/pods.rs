//! What a hollow node does with the pods bound to it: reports them
//! Running (or finished, when the pod asks for it with
//! `peapod.dev/hollow-exit-code`), and confirms their deletion.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use peapod_common::watch::{self, Change, Config};
use serde_json::{Value, json};

use super::{Hollow, now};

/// Annotation: the exit code a hollow pod "exits" with (restartPolicy
/// Never or OnFailure only).
pub const EXIT_CODE_ANNOTATION: &str = "peapod.dev/hollow-exit-code";

static NEXT_IP: AtomicUsize = AtomicUsize::new(1);

/// A fake pod address, unique within this process.
fn pod_ip() -> String {
    let n = NEXT_IP.fetch_add(1, Ordering::Relaxed);
    format!("10.{}.{}.{}", 64 + (n >> 16) % 64, (n >> 8) % 256, n % 256)
}

fn condition(ty: &str, status: &str, t: &str) -> Value {
    json!({"type": ty, "status": status, "lastTransitionTime": t})
}

/// The status a hollow kubelet reports for `pod`.
fn status(pod: &Pod, host_ip: &str) -> Value {
    let t = now();
    let spec = pod.spec.clone().unwrap_or_default();
    let restart = spec.restart_policy.as_deref().unwrap_or("Always");
    let exit: Option<i32> = pod
        .annotations()
        .get(EXIT_CODE_ANNOTATION)
        .and_then(|c| c.parse().ok())
        .filter(|_| restart != "Always");
    let ip = pod_ip();
    let container = |c: &k8s_openapi::api::core::v1::Container| {
        let image = c.image.clone().unwrap_or_default();
        let state = match exit {
            None => json!({"running": {"startedAt": t}}),
            Some(code) => {
                json!({"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }, "startedAt": t, "finishedAt": t}})
            }
        };
        json!({
            "name": c.name, "image": image, "imageID": format!("hollow://{image}"),
            "containerID": format!("hollow://{}/{}", pod.uid().unwrap_or_default(), c.name),
            "ready": exit.is_none(), "started": exit.is_none(), "restartCount": 0, "state": state,
        })
    };
    let statuses: Vec<Value> = spec.containers.iter().map(container).collect();
    let (phase, ready) = match exit {
        None => ("Running", "True"),
        Some(0) => ("Succeeded", "False"),
        Some(_) => ("Failed", "False"),
    };
    json!({
        "phase": phase,
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": ip, "podIPs": [{"ip": ip}],
        "startTime": t,
        "conditions": [
            condition("PodReadyToStartContainers", "True", &t),
            condition("Initialized", "True", &t),
            condition("Ready", ready, &t),
            condition("ContainersReady", ready, &t),
            condition("PodScheduled", "True", &t),
        ],
        "containerStatuses": statuses,
    })
}

/// Whether the hollow kubelet has already reported on this pod.
fn reported(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|c| !c.is_empty())
}

pub async fn run(hollow: Arc<Hollow>) {
    let pods: Api<Pod> = Api::all(hollow.client.clone());
    let mut changes =
        watch::watch(pods, Config::default().fields("spec.nodeName!="), "pods").changes;
    // Pods with a report in flight, so that a burst of events sends one.
    let busy = Arc::new(std::sync::Mutex::new(HashSet::<String>::new()));
    while let Some(change) = changes.next().await {
        let Change::Applied(pod) = change else {
            continue;
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let Some(index) = hollow
            .names
            .contains(&node)
            .then(|| {
                node.rsplit('-')
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
            })
            .flatten()
        else {
            continue;
        };
        let deleting = pod.metadata.deletion_timestamp.is_some();
        if !deleting && reported(&pod) {
            continue;
        }
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
        if !busy.lock().expect("lock").insert(key.clone()) {
            continue;
        }
        let permit = hollow
            .limit
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore");
        let (client, busy) = (hollow.client.clone(), busy.clone());
        tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, &pod.namespace().unwrap_or_default());
            let result = if deleting {
                api.delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                    .await
                    .map(|_| ())
            } else {
                let host_ip = Hollow::node_ip(index);
                api.patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": status(&pod, &host_ip)})),
                )
                .await
                .map(|_| ())
            };
            if let Err(e) = result
                && !matches!(&e, kube::Error::Api(a) if a.code == 404)
            {
                tracing::debug!("hollow pod {key}: {e}");
            }
            busy.lock().expect("lock").remove(&key);
            drop(permit);
        });
    }
}
