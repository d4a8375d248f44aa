//! The fields each kind can be selected by, as Kubernetes' field label
//! conversion functions define them.

use serde_json::Value;

use super::ResourceType;

/// JSON pointer of each selectable field beyond `metadata.name` and
/// `metadata.namespace`.
fn kind_fields(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "Pod" => &[
            ("spec.nodeName", "/spec/nodeName"),
            ("spec.restartPolicy", "/spec/restartPolicy"),
            ("spec.schedulerName", "/spec/schedulerName"),
            ("spec.serviceAccountName", "/spec/serviceAccountName"),
            ("spec.hostNetwork", "/spec/hostNetwork"),
            ("status.phase", "/status/phase"),
            ("status.podIP", "/status/podIP"),
            ("status.nominatedNodeName", "/status/nominatedNodeName"),
        ],
        "Event" => &[
            ("involvedObject.kind", "/involvedObject/kind"),
            ("involvedObject.namespace", "/involvedObject/namespace"),
            ("involvedObject.name", "/involvedObject/name"),
            ("involvedObject.uid", "/involvedObject/uid"),
            ("involvedObject.apiVersion", "/involvedObject/apiVersion"),
            (
                "involvedObject.resourceVersion",
                "/involvedObject/resourceVersion",
            ),
            ("involvedObject.fieldPath", "/involvedObject/fieldPath"),
            ("reason", "/reason"),
            ("reportingComponent", "/reportingComponent"),
            ("source", "/source/component"),
            ("type", "/type"),
        ],
        "Node" => &[("spec.unschedulable", "/spec/unschedulable")],
        "Namespace" => &[("status.phase", "/status/phase")],
        "Secret" => &[("type", "/type")],
        "Service" => &[
            ("spec.clusterIP", "/spec/clusterIP"),
            ("spec.type", "/spec/type"),
        ],
        "Job" => &[("status.successful", "/status/succeeded")],
        "ReplicaSet" => &[("status.replicas", "/status/replicas")],
        "PersistentVolumeClaim" => &[("spec.volumeName", "/spec/volumeName")],
        _ => &[],
    }
}

/// Whether `field` can be used in a field selector on this kind.
pub fn supported(rt: &ResourceType, field: &str) -> bool {
    matches!(field, "metadata.name" | "metadata.namespace")
        || kind_fields(rt.kind).iter().any(|(f, _)| *f == field)
}

/// The value of a selectable field as a string (`""` when absent). Booleans
/// and numbers print as Kubernetes prints them (`true`, `3`).
pub fn value(rt: &ResourceType, object: &Value, field: &str) -> String {
    let pointer = match field {
        "metadata.name" => "/metadata/name",
        "metadata.namespace" => "/metadata/namespace",
        _ => match kind_fields(rt.kind).iter().find(|(f, _)| *f == field) {
            Some((_, p)) => p,
            None => return String::new(),
        },
    };
    match object.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        // Kubernetes selects an absent boolean as "false" and counts as "0".
        None if field == "spec.hostNetwork" || field == "spec.unschedulable" => "false".into(),
        None if field == "status.successful" || field == "status.replicas" => "0".into(),
        _ => String::new(),
    }
}
