//! The other nodes, as this node's network sees them: a route to each one's
//! pod CIDR via its address, kept in line with the Node objects.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::Api;
use peapod_common::watch::{self, Change, Config};

use super::NodeCtx;

/// The route a node needs to the pods of `other`.
fn route(other: &Node) -> Option<(Ipv4Net, Ipv4Addr)> {
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

pub async fn run(node: Arc<NodeCtx>) {
    let nodes = watch::watch(
        Api::<Node>::all(node.client.clone()),
        Config::default(),
        "nodes",
    );
    let mut changes = nodes.changes;
    let mut synced = false;
    let mut applied: Option<BTreeMap<Ipv4Net, Ipv4Addr>> = None;
    while let Some(change) = changes.next().await {
        synced |= matches!(change, Change::Synced);
        if !synced {
            // Until the first list is complete, routes to nodes not seen
            // yet would be removed.
            continue;
        }
        let want: BTreeMap<Ipv4Net, Ipv4Addr> = nodes
            .store
            .state()
            .iter()
            .filter(|n| n.name_any() != node.config.name)
            .filter_map(|n| route(n))
            .filter(|(_, ip)| *ip != node.config.node_ip)
            .collect();
        if applied.as_ref() == Some(&want) {
            continue;
        }
        match node.network.sync_routes(&want).await {
            Ok(()) => applied = Some(want),
            Err(e) => tracing::warn!("routes to other nodes' pods: {e}"),
        }
    }
}
