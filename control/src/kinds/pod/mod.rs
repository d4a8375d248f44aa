//! Pods: defaults beyond the pod spec, what an update may change, the QoS
//! class, the grace period of a delete, and the row `kubectl get pods` prints
//! (`table.rs`). The pod spec rules every template shares are in
//! `crate::resources::{defaults, validation::pod}`.

mod table;

use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

use super::{ALL, Kind};
use crate::error::FieldError;
use crate::resources::defaults::{entry, items_mut, pod_spec, set_missing};
use crate::resources::fields::Field;
use crate::resources::table::{Column, Row};
use crate::resources::validation::{self, Errors};
use crate::resources::{ResourceType, Subresource::*, served};

const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

#[derive(Debug)]
pub struct Pod;

impl Kind for Pod {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<core::Pod>(
            self,
            &["po"],
            ALL,
            &[
                Status,
                Binding,
                Eviction,
                Log,
                Exec,
                Attach,
                PortForward,
                Proxy,
            ],
        )]
    }

    fn defaults(&self, object: &mut Value) {
        if let Some(spec) = object.get_mut("spec") {
            pod_spec(spec);
            pod_only(spec);
        }
    }

    fn validate(&self, object: &Value, old: Option<&Value>, errs: &mut Errors) {
        let spec = &object["spec"];
        validation::pod::function_annotations(&object["metadata"], "metadata", errs);
        validation::pod::pod_spec(spec, "spec", &[], errs);
        if let Some(old) = old {
            pod_update(spec, &old["spec"], errs);
        } else if spec["ephemeralContainers"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
        {
            errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                "cannot be set on create",
            ));
        }
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn initial_status(&self, object: &Value) -> Option<Value> {
        let mut status = json!({"phase": "Pending", "qosClass": qos_class(&object["spec"])});
        if object["spec"]["schedulingGates"]
            .as_array()
            .is_some_and(|g| !g.is_empty())
        {
            status["conditions"] = json!([{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated", "message": "Scheduling is blocked due to non-empty scheduling gates"}]);
        }
        Some(status)
    }

    fn on_update(&self, new: &mut Value, old: &Value) {
        if new.pointer("/status/qosClass").is_none()
            && let Some(q) = old.pointer("/status/qosClass").cloned()
        {
            new["status"]["qosClass"] = q;
        }
    }

    /// Pods bound to a node get one (from the request, else the pod's
    /// `terminationGracePeriodSeconds`); the others go at once.
    fn grace_period(&self, object: &Value, requested: Option<i64>) -> i64 {
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

    fn fields(&self) -> &'static [Field] {
        const FIELDS: &[Field] = &[
            Field::new("spec.nodeName", "/spec/nodeName"),
            Field::new("spec.restartPolicy", "/spec/restartPolicy"),
            Field::new("spec.schedulerName", "/spec/schedulerName"),
            Field::new("spec.serviceAccountName", "/spec/serviceAccountName"),
            Field::new("spec.hostNetwork", "/spec/hostNetwork").or("false"),
            Field::new("status.phase", "/status/phase"),
            Field::new("status.podIP", "/status/podIP"),
            Field::new("status.nominatedNodeName", "/status/nominatedNodeName"),
        ];
        FIELDS
    }

    fn columns(&self) -> Vec<Column> {
        table::columns()
    }

    fn row(&self, object: &Value, now: jiff::Timestamp) -> Row {
        table::row(object, now)
    }
}

/// Defaults that apply to Pods but not to pod templates.
fn pod_only(spec: &mut Value) {
    set_missing(spec, "enableServiceLinks", json!(true));
    let host_network = spec["hostNetwork"] == true;
    for list in ["containers", "initContainers"] {
        for c in items_mut(spec, list) {
            // Requests default to limits for resources with only a limit.
            if let Some(limits) = c
                .pointer("/resources/limits")
                .and_then(Value::as_object)
                .cloned()
            {
                let resources = entry(c, "resources", json!({}));
                let requests = entry(resources, "requests", json!({}));
                for (k, v) in limits {
                    set_missing(requests, &k, v);
                }
            }
            if host_network {
                for p in items_mut(c, "ports") {
                    if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                        p["hostPort"] = p["containerPort"].clone();
                    }
                }
            }
        }
    }
}

/// The pod's QoS class from its containers' cpu and memory requests and limits.
fn qos_class(spec: &Value) -> &'static str {
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

/// What may change on a pod after creation (images, activeDeadlineSeconds,
/// added tolerations, removed scheduling gates); everything else is fixed.
fn pod_update(new: &Value, old: &Value, errs: &mut Errors) {
    for list in ["containers", "initContainers"] {
        let n = new[list].as_array().map_or(0, Vec::len);
        let o = old[list].as_array().map_or(0, Vec::len);
        if n != o {
            errs.push(FieldError::forbidden(
                format!("spec.{list}"),
                "pod updates may not add or remove containers",
            ));
            return;
        }
    }
    let mut a = new.clone();
    let mut b = old.clone();
    for v in [&mut a, &mut b] {
        for list in ["containers", "initContainers"] {
            for c in v[list].as_array_mut().into_iter().flatten() {
                c["image"] = Value::Null;
            }
        }
        for field in [
            "activeDeadlineSeconds",
            "tolerations",
            "schedulingGates",
            "terminationGracePeriodSeconds",
            "nodeName",
        ] {
            if let Some(m) = v.as_object_mut() {
                m.remove(field);
            }
        }
    }
    // Binding sets `nodeName` once; after that it is fixed.
    if let Some(old_node) = old["nodeName"].as_str().filter(|n| !n.is_empty())
        && new["nodeName"].as_str() != Some(old_node)
    {
        errs.push(FieldError::forbidden("spec", POD_UPDATE_FORBIDDEN));
        return;
    }
    if a != b {
        errs.push(FieldError::forbidden("spec", POD_UPDATE_FORBIDDEN));
    }
}
