//! `status.loadBalancer.ingress` of the class's Ingresses: the addresses
//! of the nodes that serve them. Every node adds its own IP and keeps the
//! others'; a node also takes its IP back from an Ingress that left the
//! class. A merge patch replaces the whole list, so two nodes writing at
//! once can drop each other's entry; the write shows up as a watch event,
//! the loser sees its IP missing and adds it again.

use std::net::Ipv4Addr;

use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::api::{Api, Patch, PatchParams};

/// The merge patch that brings `ingress`'s addresses in line with whether
/// it is of our class, or `None` when they already are.
pub fn patch(ingress: &Ingress, node_ip: Ipv4Addr, in_class: bool) -> Option<serde_json::Value> {
    let current: Vec<IngressLoadBalancerIngress> = ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    let own = node_ip.to_string();
    let listed = current
        .iter()
        .any(|e| e.ip.as_deref() == Some(own.as_str()));
    let mut next = current;
    match (in_class, listed) {
        (true, false) => next.push(IngressLoadBalancerIngress {
            ip: Some(own),
            ..Default::default()
        }),
        (false, true) => next.retain(|e| e.ip.as_deref() != Some(own.as_str())),
        _ => return None,
    }
    // A stable order, so every node writes the same list for the same set.
    next.sort_by(|a, b| {
        (a.ip.as_deref(), a.hostname.as_deref()).cmp(&(b.ip.as_deref(), b.hostname.as_deref()))
    });
    let list = serde_json::to_value(&next).ok()?;
    Some(serde_json::json!({"status": {"loadBalancer": {"ingress": list}}}))
}

/// Applies a patch made by [`patch`] to `ingresses/status`.
pub async fn apply(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<(), kube::Error> {
    Api::<Ingress>::namespaced(client.clone(), namespace)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ingress(ips: &[&str]) -> Ingress {
        let list: Vec<serde_json::Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "status": {"loadBalancer": {"ingress": list}},
        }))
        .expect("ingress")
    }

    const NODE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn the_node_adds_its_address_and_keeps_the_others() {
        assert_eq!(
            patch(&ingress(&["10.0.0.3"]), NODE, true),
            Some(
                json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}]}}})
            )
        );
        assert_eq!(
            patch(&Ingress::default(), NODE, true),
            Some(json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}]}}}))
        );
        assert_eq!(patch(&ingress(&["10.0.0.2"]), NODE, true), None);
    }

    #[test]
    fn the_node_takes_its_address_back_when_the_ingress_leaves_the_class() {
        assert_eq!(
            patch(&ingress(&["10.0.0.2", "10.0.0.3"]), NODE, false),
            Some(json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.3"}]}}}))
        );
        assert_eq!(patch(&ingress(&["10.0.0.3"]), NODE, false), None);
    }
}
