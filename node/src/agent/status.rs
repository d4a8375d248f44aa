//! The pod status the node reports: phase, addresses, conditions and one
//! status per container, in the shapes `kubectl get` and `describe` read.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use super::container::{ContainerState, Current, Terminated, container_id};
use super::plan;

/// What the worker knows besides its containers.
pub struct PodFacts<'a> {
    pub pod: &'a Pod,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: &'a str,
    /// Why the pod cannot progress, if it is stuck before its containers
    /// (volumes, sandbox): shown as the containers' waiting message.
    pub blocked: Option<(String, String)>,
    pub init_done: bool,
    /// Set once the pod ended for good.
    pub phase_override: Option<&'a str>,
    /// Why the node evicted the pod, if it did.
    pub evicted: Option<&'a str>,
}

fn terminated_json(t: &Terminated) -> Value {
    let mut v = json!({
        "exitCode": t.exit_code,
        "reason": t.reason,
        "finishedAt": t.finished_at,
    });
    if let Some(s) = &t.started_at {
        v["startedAt"] = json!(s);
    }
    if let Some(s) = t.signal {
        v["signal"] = json!(s);
    }
    if let Some(m) = &t.message {
        v["message"] = json!(m);
    }
    if let Some(id) = &t.container_id {
        v["containerID"] = json!(id);
    }
    v
}

fn state_json(c: &ContainerState) -> Value {
    match &c.current {
        Current::Waiting { reason, message } => {
            let mut w = json!({"reason": reason});
            if let Some(m) = message {
                w["message"] = json!(m);
            }
            json!({"waiting": w})
        }
        Current::Running(r) => json!({"running": {"startedAt": r.started_at()}}),
        Current::Terminated(t) => json!({"terminated": terminated_json(t)}),
    }
}

fn container_status(
    spec: &Container,
    c: &ContainerState,
    blocked: Option<&(String, String)>,
) -> Value {
    let image = spec.image.clone().unwrap_or_default();
    let state = match (blocked, &c.current) {
        (Some((reason, message)), Current::Waiting { .. }) => {
            json!({"waiting": {"reason": reason, "message": message}})
        }
        _ => state_json(c),
    };
    let mut v = json!({
        "name": c.name,
        "image": image,
        "imageID": c.image_id.clone().unwrap_or_default(),
        "ready": c.ready,
        "started": c.is_running() && c.started,
        "restartCount": c.restart_count,
        "state": state,
        "lastState": c.last_terminated.as_ref().map_or(json!({}), |t| json!({"terminated": terminated_json(t)})),
    });
    if let Some(id) = &c.id
        && !matches!(c.current, Current::Waiting { .. })
    {
        v["containerID"] = json!(container_id(id));
    }
    v
}

fn condition(ty: &str, ok: bool, reason: Option<&str>, since: &str) -> Value {
    let mut c = json!({"type": ty, "status": if ok { "True" } else { "False" }, "lastTransitionTime": since, "lastProbeTime": null});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

/// The phase from the containers' states and the restart policy.
pub fn phase(
    pod: &Pod,
    init: &[ContainerState],
    app: &[ContainerState],
    init_done: bool,
) -> &'static str {
    let policy = plan::restart_policy(pod);
    let init: Vec<_> = init.iter().map(ContainerState::seen).collect();
    let app: Vec<_> = app.iter().map(ContainerState::seen).collect();
    plan::phase(policy, &init, &app, init_done).as_str()
}

/// The whole status.
pub fn build(facts: &PodFacts, init: &[ContainerState], app: &[ContainerState]) -> Value {
    let pod = facts.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let blocked = facts.blocked.as_ref();
    let phase = facts
        .phase_override
        .unwrap_or_else(|| phase(pod, init, app, facts.init_done));
    let statuses: Vec<Value> = spec
        .containers
        .iter()
        .zip(app)
        .map(|(s, c)| container_status(s, c, blocked))
        .collect();
    let init_statuses: Vec<Value> = spec
        .init_containers
        .iter()
        .flatten()
        .zip(init)
        .map(|(s, c)| container_status(s, c, blocked))
        .collect();
    let since = facts.start_time;
    let all_ready = !app.is_empty() && app.iter().all(|c| c.ready);
    let readiness_gates_met = spec.readiness_gates.iter().flatten().all(|g| {
        pod.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == g.condition_type && c.status == "True")
            })
    });
    let not_ready = (!all_ready).then_some("ContainersNotReady");
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let reason_done = terminal.then_some("PodCompleted");
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            facts.pod_ip.is_some() && !terminal,
            None,
            since,
        ),
        condition(
            "Initialized",
            facts.init_done,
            if facts.init_done {
                reason_done
            } else {
                Some("ContainersNotInitialized")
            },
            since,
        ),
        condition(
            "Ready",
            all_ready && readiness_gates_met,
            reason_done.or(not_ready),
            since,
        ),
        condition(
            "ContainersReady",
            all_ready,
            reason_done.or(not_ready),
            since,
        ),
        condition("PodScheduled", true, None, since),
    ];
    if let Some(message) = facts.evicted {
        let mut c = condition(
            "DisruptionTarget",
            true,
            Some("TerminationByKubelet"),
            since,
        );
        c["message"] = json!(message);
        conditions.push(c);
    }
    // Conditions others own (readiness gates) are kept as they are.
    for c in pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        let ours = [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ];
        let replaced = facts.evicted.is_some() && c.type_ == "DisruptionTarget";
        if !ours.contains(&c.type_.as_str()) && !replaced {
            conditions.push(serde_json::to_value(c).unwrap_or_default());
        }
    }
    let mut status = json!({
        "phase": phase,
        "hostIP": facts.host_ip,
        "hostIPs": [{"ip": facts.host_ip}],
        "startTime": since,
        "conditions": conditions,
        "containerStatuses": statuses,
        "qosClass": qos_class(&spec.containers),
    });
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    if let Some(message) = facts.evicted {
        status["reason"] = json!("Evicted");
        status["message"] = json!(message);
    }
    if let Some(ip) = &facts.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    status
}

/// Guaranteed, Burstable or BestEffort, from requests and limits.
fn qos_class(containers: &[Container]) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let r = c.resources.clone().unwrap_or_default();
        let limits = r.limits.unwrap_or_default();
        let requests = r.requests.unwrap_or_default();
        any |= !limits.is_empty() || !requests.is_empty();
        for res in ["cpu", "memory"] {
            let l = limits.get(res);
            let q = requests.get(res).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        _ => "Burstable",
    }
}
