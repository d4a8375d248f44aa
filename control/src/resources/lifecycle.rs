//! What the server does to an object across its life, per kind: initial
//! status, `generation`, fields the server owns (a Job's selector, a
//! DaemonSet's template generation), graceful deletion and finalizers.

use serde_json::{Value, json};

use super::{ResourceType, Subresource};

/// Kinds whose `metadata.generation` tracks changes to their spec.
fn tracks_generation(rt: &ResourceType) -> bool {
    rt.group == super::knative::GROUP
        || matches!(
            rt.kind,
            "Pod"
                | "Deployment"
                | "ReplicaSet"
                | "StatefulSet"
                | "DaemonSet"
                | "Job"
                | "CronJob"
                | "Ingress"
                | "IngressClass"
                | "EndpointSlice"
        )
}

/// Prepares a new object: resets status, sets generation and server-owned fields.
pub fn prepare_create(rt: &ResourceType, object: &mut Value) {
    if tracks_generation(rt) {
        object["metadata"]["generation"] = json!(1);
    }
    if rt.has(Subresource::Status) && rt.kind != "Node" {
        object["status"] = initial_status(rt, object);
    }
    match rt.kind {
        "Namespace" => {
            let spec = object
                .as_object_mut()
                .expect("normalized objects are maps")
                .entry("spec")
                .or_insert_with(|| json!({}));
            let finalizers = spec
                .as_object_mut()
                .expect("spec is a map")
                .entry("finalizers")
                .or_insert_with(|| json!([]));
            if let Some(list) = finalizers.as_array_mut()
                && !list.iter().any(|f| f == "kubernetes")
            {
                list.push(json!("kubernetes"));
            }
        }
        "Job" => job_selector(object),
        "DaemonSet" => {
            object["metadata"]["annotations"]["deprecated.daemonset.template.generation"] =
                json!("1");
        }
        _ => {}
    }
}

fn initial_status(rt: &ResourceType, object: &Value) -> Value {
    match rt.kind {
        "Pod" => {
            let mut status = json!({"phase": "Pending", "qosClass": qos_class(&object["spec"])});
            if object["spec"]["schedulingGates"]
                .as_array()
                .is_some_and(|g| !g.is_empty())
            {
                status["conditions"] = json!([{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated", "message": "Scheduling is blocked due to non-empty scheduling gates"}]);
            }
            status
        }
        "Namespace" => json!({"phase": "Active"}),
        "PersistentVolume" => {
            json!({"phase": "Pending", "lastPhaseTransitionTime": crate::objects::now()})
        }
        "PersistentVolumeClaim" => json!({"phase": "Pending"}),
        "Service" if rt.group.is_empty() => json!({"loadBalancer": {}}),
        _ => json!({}),
    }
}

/// The pod's QoS class from its containers' cpu and memory requests and limits.
pub fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|l| spec[*l].as_array())
        .flatten();
    for c in containers {
        for res in ["cpu", "memory"] {
            let limit = c["resources"]["limits"].get(res);
            // Requests default to limits.
            let request = c["resources"]["requests"].get(res).or(limit);
            if limit.is_some() || request.is_some() {
                any = true;
            }
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// A Job's generated selector and the labels it selects (unless `manualSelector`).
fn job_selector(object: &mut Value) {
    if object["spec"]["manualSelector"] == true {
        return;
    }
    let uid = object["metadata"]["uid"].clone();
    let name = object["metadata"]["name"].clone();
    let labels = &mut object["spec"]["template"]["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    let labels = labels.as_object_mut().expect("labels map");
    for (key, value) in [
        ("controller-uid", &uid),
        ("batch.kubernetes.io/controller-uid", &uid),
        ("job-name", &name),
        ("batch.kubernetes.io/job-name", &name),
    ] {
        labels.entry(key).or_insert_with(|| value.clone());
    }
    object["spec"]["selector"] =
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
}

/// Carries server-owned state from `old` into an update and bumps
/// `generation` when the spec changed.
/// `status_only` is a write to the status subresource, which never bumps
/// the generation.
pub fn prepare_update(rt: &ResourceType, new: &mut Value, old: &Value, status_only: bool) {
    if tracks_generation(rt) && !status_only {
        let old_gen = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let spec_changed = new.get("spec") != old.get("spec")
            || (rt.kind == "Deployment"
                && new["metadata"].get("annotations") != old["metadata"].get("annotations"));
        let generation = if spec_changed { old_gen + 1 } else { old_gen };
        new["metadata"]["generation"] = json!(generation);
    }
    match rt.kind {
        "DaemonSet" => {
            let key = "deprecated.daemonset.template.generation";
            let old_tg: i64 = old["metadata"]["annotations"][key]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            let tg = if new["spec"]["template"] != old["spec"]["template"] {
                old_tg + 1
            } else {
                old_tg
            };
            new["metadata"]["annotations"][key] = json!(tg.to_string());
        }
        "Pod" => {
            if new.pointer("/status/qosClass").is_none()
                && let Some(q) = old.pointer("/status/qosClass").cloned()
            {
                new["status"]["qosClass"] = q;
            }
        }
        _ => {}
    }
}

/// Keeps what a write to the main resource may not change: the status
/// (kinds with a status subresource) and a namespace's finalizers (which
/// change only through `/finalize`).
pub fn preserve_on_main_update(rt: &ResourceType, new: &mut Value, old: &Value) {
    let copy = |new: &mut Value, pointer: &str, parent: &str, field: &str| {
        let value = old.pointer(pointer).cloned();
        let Some(map) = (if parent.is_empty() {
            new.as_object_mut()
        } else {
            new.get_mut(parent).and_then(Value::as_object_mut)
        }) else {
            return;
        };
        match value {
            Some(v) => map.insert(field.into(), v),
            None => map.remove(field),
        };
    };
    if rt.has(Subresource::Status) {
        copy(new, "/status", "", "status");
    }
    if rt.kind == "Namespace" {
        copy(new, "/spec/finalizers", "spec", "finalizers");
    }
}

/// The grace period a delete gets: pods bound to a node get one (from the
/// request, else the pod's `terminationGracePeriodSeconds`); everything else
/// goes at once.
pub fn grace_period(rt: &ResourceType, object: &Value, requested: Option<i64>) -> i64 {
    if rt.kind != "Pod" {
        return 0;
    }
    let bound = object["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        object["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    );
    if !bound || finished {
        return 0;
    }
    requested
        .or_else(|| object["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
        .max(0)
}

/// Whether anything still holds the object back from being removed.
pub fn has_finalizers(object: &Value) -> bool {
    let listed = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    listed("/metadata/finalizers") || listed("/spec/finalizers") && object["kind"] == "Namespace"
}

/// An object being deleted whose finalizers and grace period are all done.
pub fn deletion_complete(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some()
        && !has_finalizers(object)
        && object["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            == 0
}

/// Marks the start of a deletion that has to wait (finalizers, grace period).
pub fn on_deletion_start(rt: &ResourceType, object: &mut Value) {
    if rt.kind == "Namespace" {
        object["status"]["phase"] = json!("Terminating");
    }
    if tracks_generation(rt)
        && let Some(g) = object["metadata"]["generation"].as_i64()
    {
        object["metadata"]["generation"] = json!(g + 1);
    }
}
