//! The other nodes, as this node's network sees them: a route to each one's
//! pod CIDR via its address, kept in line with the Node objects.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::Api;
use peapod_common::watch::{self, Change, Config};

use super::NodeCtx;

/// The pod CIDR and address a Node object names, if it names both.
fn claim(other: &Node) -> Option<(Ipv4Net, Ipv4Addr)> {
    let cidr: Ipv4Net = other.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok()?;
    let ip: Ipv4Addr = other
        .status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()?;
    Some((cidr, ip))
}

/// What this node knows of its own network.
struct Own {
    name: String,
    ip: Ipv4Addr,
    pod_cidr: Ipv4Net,
    cluster_cidr: Ipv4Net,
}

/// The routes to install: one per other node whose pod CIDR is a block of
/// the cluster CIDR (as the node IPAM controller allocates), not this
/// node's and not claimed by another node too, via a unicast address. A
/// Node object is only data: one naming `0.0.0.0/1`, the host's LAN or
/// another node's block must not redirect this host's traffic. Refused
/// claims come back with the reason.
fn wanted(nodes: &[Arc<Node>], own: &Own) -> (BTreeMap<Ipv4Net, Ipv4Addr>, Vec<String>) {
    let mut refused = Vec::new();
    let claims: Vec<(String, Ipv4Net, Ipv4Addr)> = nodes
        .iter()
        .filter(|n| n.name_any() != own.name)
        .filter_map(|n| claim(n).map(|(cidr, ip)| (n.name_any(), cidr, ip)))
        .filter(|(_, _, ip)| *ip != own.ip)
        .collect();
    let why_not = |cidr: &Ipv4Net, ip: &Ipv4Addr| {
        if !own.cluster_cidr.contains(cidr) || cidr.prefix_len() <= own.cluster_cidr.prefix_len() {
            Some(format!(
                "is not a block of the cluster CIDR {}",
                own.cluster_cidr
            ))
        } else if cidr.contains(&own.pod_cidr) || own.pod_cidr.contains(cidr) {
            Some("overlaps this node's own pod CIDR".to_string())
        } else if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast()
        {
            Some(format!(
                "is to be reached via {ip}, which is not a node address"
            ))
        } else {
            None
        }
    };
    let mut proper = Vec::new();
    for (name, cidr, ip) in &claims {
        match why_not(cidr, ip) {
            Some(why) => refused.push(format!("node {name}: pod CIDR {cidr} {why}: not routed")),
            None => proper.push((name, cidr, ip)),
        }
    }
    // Among proper claims, a block two nodes claim goes to neither: which
    // of them is lying cannot be told here.
    let mut want = BTreeMap::new();
    for (name, cidr, ip) in &proper {
        if proper
            .iter()
            .any(|(n, c, _)| n != name && (c.contains(*cidr) || cidr.contains(*c)))
        {
            refused.push(format!(
                "node {name}: pod CIDR {cidr} is claimed by another node too: not routed"
            ));
        } else {
            want.insert(**cidr, **ip);
        }
    }
    (want, refused)
}

pub async fn run(node: Arc<NodeCtx>) {
    let nodes = watch::watch(
        Api::<Node>::all(node.client.clone()),
        Config::default(),
        "nodes",
    );
    let mut changes = nodes.changes;
    let mut synced = false;
    let mut applied: Option<BTreeMap<Ipv4Net, Ipv4Addr>> = None;
    let mut told = BTreeSet::new();
    while let Some(change) = changes.next().await {
        synced |= matches!(change, Change::Synced);
        if !synced {
            // Until the first list is complete, routes to nodes not seen
            // yet would be removed.
            continue;
        }
        let own = Own {
            name: node.config.name.clone(),
            ip: node.config.node_ip,
            pod_cidr: node.network.pod_cidr(),
            cluster_cidr: node.config.cluster_cidr,
        };
        let (want, refused) = wanted(&nodes.store.state(), &own);
        // Each refusal is told once, not at every Node status update.
        let refused: BTreeSet<String> = refused.into_iter().collect();
        for why in refused.difference(&told) {
            tracing::warn!("{why}");
        }
        told = refused;
        if applied.as_ref() == Some(&want) {
            continue;
        }
        match node.network.sync_routes(&want).await {
            Ok(()) => applied = Some(want),
            Err(e) => tracing::warn!("routes to other nodes' pods: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: &str, ip: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {"podCIDR": cidr},
                "status": {"addresses": [{"type": "InternalIP", "address": ip}]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn only_blocks_of_the_cluster_cidr_are_routed() {
        let own = Own {
            name: "me".into(),
            ip: "192.168.1.10".parse().unwrap(),
            pod_cidr: "10.244.0.0/24".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        };
        let nodes = [
            node("me", "10.244.0.0/24", "192.168.1.10"),
            node("good", "10.244.1.0/24", "192.168.1.11"),
            node("lan", "192.168.1.0/24", "192.168.1.12"),
            node("everything", "0.0.0.0/1", "192.168.1.13"),
            node("whole", "10.244.0.0/16", "192.168.1.14"),
            node("mine", "10.244.0.0/25", "192.168.1.15"),
            node("twin-a", "10.244.2.0/24", "192.168.1.16"),
            node("twin-b", "10.244.2.0/24", "192.168.1.17"),
            node("loop", "10.244.3.0/24", "127.0.0.1"),
        ];
        let (want, refused) = wanted(&nodes, &own);
        assert_eq!(
            want,
            BTreeMap::from([(
                "10.244.1.0/24".parse().unwrap(),
                "192.168.1.11".parse().unwrap()
            )])
        );
        assert_eq!(refused.len(), 7, "{refused:?}");
        assert!(
            refused
                .iter()
                .any(|r| r.starts_with("node lan: pod CIDR 192.168.1.0/24 is not a block"))
        );
        assert!(
            refused
                .iter()
                .any(|r| r.contains("mine") && r.contains("own pod CIDR"))
        );
        assert!(
            refused
                .iter()
                .any(|r| r.contains("twin-b") && r.contains("another node"))
        );
    }
}
