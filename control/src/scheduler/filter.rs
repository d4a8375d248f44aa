//! Filters: whether a pod fits on a node, and if not, why (in the words
//! kube-scheduler uses in its `FailedScheduling` events).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm, Taint, Toleration,
};

use super::cache::{Cache, NodeInfo, Request};
use crate::selector::LabelSelector;

/// Node label saying a node runs Wasm containers.
pub const WASM_LABEL: &str = "runtime.peapod.dev/wasm";

/// What the filters need to know about the pod being scheduled, computed once.
pub struct Candidate<'a> {
    pub pod: &'a Pod,
    pub request: Request,
    /// Node labels required beyond `spec.nodeSelector` (a RuntimeClass's).
    pub extra_selector: BTreeMap<String, String>,
    /// The pod's tolerations and its RuntimeClass's.
    pub tolerations: Vec<Toleration>,
    pub needs_wasm: bool,
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.clone().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs = term.match_expressions.iter().flatten();
    let fields = term.match_fields.iter().flatten();
    let any = term
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
        || term.match_fields.as_ref().is_some_and(|f| !f.is_empty());
    any && exprs
        .clone()
        .all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
        && fields.clone().all(|r| {
            let v = (r.key == "metadata.name").then_some(node.name.as_str());
            requirement_matches(r, v)
        })
}

fn node_affinity_matches(pod: &Pod, node: &NodeInfo) -> bool {
    let Some(required) = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, node))
}

pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_ok = match t.key.as_deref() {
            None | Some("") => t.operator.as_deref() == Some("Exists"),
            Some(k) => k == taint.key,
        };
        let value_ok = match t.operator.as_deref() {
            Some("Exists") => true,
            _ => {
                t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
            }
        };
        effect_ok && key_ok && value_ok
    })
}

/// The first taint the pod does not tolerate, if any.
fn untolerated<'a>(c: &Candidate, node: &'a NodeInfo) -> Option<&'a Taint> {
    node.taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerates(&c.tolerations, t))
}

fn term_selects(
    term: &PodAffinityTerm,
    pod_ns: &str,
    placed_ns: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let in_ns = match term.namespaces.as_ref().filter(|n| !n.is_empty()) {
        Some(list) => list.iter().any(|n| n == placed_ns),
        None => placed_ns == pod_ns,
    };
    let sel = term
        .label_selector
        .as_ref()
        .map(|s| serde_json::to_value(s).unwrap_or_default());
    in_ns
        && LabelSelector::from_k8s(sel.as_ref())
            .map(|s| s.matches(labels))
            .unwrap_or(false)
}

/// Whether some pod matching `term` runs in the node's topology domain.
fn domain_has_match(term: &PodAffinityTerm, pod: &Pod, node: &NodeInfo, cache: &Cache) -> bool {
    let pod_ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let Some(domain) = node.labels.get(&term.topology_key) else {
        return false;
    };
    cache
        .nodes
        .values()
        .filter(|n| n.labels.get(&term.topology_key) == Some(domain))
        .flat_map(|n| n.pods.values())
        .any(|p| term_selects(term, pod_ns, &p.namespace, &p.labels))
}

fn pod_affinity_ok(pod: &Pod, node: &NodeInfo, cache: &Cache) -> Result<(), &'static str> {
    let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    if let Some(terms) = affinity
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        && terms.iter().any(|t| domain_has_match(t, pod, node, cache))
    {
        return Err("node(s) didn't match pod anti-affinity rules");
    }
    if let Some(terms) = affinity
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        && !terms.iter().all(|t| domain_has_match(t, pod, node, cache))
    {
        return Err("node(s) didn't match pod affinity rules");
    }
    Ok(())
}

/// Why `c` does not fit on `node`, or `None` when it does.
pub fn check(c: &Candidate, node: &NodeInfo, cache: &Cache) -> Option<String> {
    if !node.ready {
        return Some("node(s) were not ready".into());
    }
    if node.unschedulable {
        return Some("node(s) were unschedulable".into());
    }
    let spec = c.pod.spec.as_ref();
    let selector_ok = spec
        .and_then(|s| s.node_selector.as_ref())
        .into_iter()
        .flatten()
        .chain(c.extra_selector.iter())
        .all(|(k, v)| node.labels.get(k) == Some(v));
    if !selector_ok || !node_affinity_matches(c.pod, node) {
        return Some("node(s) didn't match Pod's node affinity/selector".into());
    }
    if c.needs_wasm && node.labels.get(WASM_LABEL).map(String::as_str) != Some("true") {
        return Some("node(s) didn't offer the wasm runtime".into());
    }
    if let Some(t) = untolerated(c, node) {
        return Some(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.as_deref().unwrap_or_default()
        ));
    }
    if node.pods.len() as i64 >= node.allocatable_pods {
        return Some("Too many pods".into());
    }
    if node.requested_cpu_milli.saturating_add(c.request.cpu_milli) > node.allocatable_cpu_milli {
        return Some("Insufficient cpu".into());
    }
    if node.requested_memory.saturating_add(c.request.memory) > node.allocatable_memory {
        return Some("Insufficient memory".into());
    }
    if c.request.ephemeral_storage > 0
        && node
            .requested_ephemeral_storage
            .saturating_add(c.request.ephemeral_storage)
            > node.allocatable_ephemeral_storage
    {
        return Some("Insufficient ephemeral-storage".into());
    }
    if !c.request.host_ports.is_empty() {
        let used = node
            .pods
            .values()
            .flat_map(|p| p.request.host_ports.iter())
            .any(|hp| c.request.host_ports.contains(hp));
        if used {
            return Some("node(s) didn't have free ports for the requested pod ports".into());
        }
    }
    if let Err(why) = pod_affinity_ok(c.pod, node, cache) {
        return Some(why.into());
    }
    None
}

/// `0/3 nodes are available: 1 Insufficient memory, 2 Insufficient cpu.`
pub fn explain(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    if total == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    if parts.is_empty() {
        return format!("0/{total} nodes are available.");
    }
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}
