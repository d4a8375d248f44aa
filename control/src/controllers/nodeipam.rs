//! Node IPAM: every (real) node gets a pod CIDR, a /24 by default out of
//! the cluster CIDR, in `spec.podCIDR(s)`, as kube-controller-manager's
//! range allocator does. Hollow nodes run no pods on a network and get none.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use super::Context;
use peapod_common::events::{Kind, reference};
use peapod_common::watch::{self, Change, Config};

const HOLLOW_LABEL: &str = "node.peapod.dev/hollow";

pub async fn run(ctx: Arc<Context>) {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut changes = watch::watch(nodes.clone(), Config::default(), "nodes").changes;
    while let Some(change) = changes.next().await {
        let Change::Applied(node) = change else {
            continue;
        };
        if needs_cidr(&node)
            && let Err(e) = assign(&ctx, &nodes, &node).await
        {
            tracing::warn!("assigning a pod CIDR to node {}: {e}", node.name_any());
        }
    }
}

fn needs_cidr(node: &Node) -> bool {
    let hollow = node.labels().get(HOLLOW_LABEL).is_some_and(|v| v == "true");
    let has = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some();
    !hollow && !has && node.metadata.deletion_timestamp.is_none()
}

/// The first subnet of `cluster` not in `used`.
pub fn first_free(cluster: Ipv4Net, prefix: u8, used: &HashSet<Ipv4Net>) -> Option<Ipv4Net> {
    cluster.subnets(prefix).ok()?.find(|s| !used.contains(s))
}

async fn assign(ctx: &Context, nodes: &Api<Node>, node: &Node) -> Result<(), kube::Error> {
    let all = nodes.list(&ListParams::default()).await?.items;
    // The event may predate an assignment already made: never assign twice.
    if all
        .iter()
        .any(|n| n.name_any() == node.name_any() && !needs_cidr(n))
    {
        return Ok(());
    }
    let used: HashSet<Ipv4Net> = all
        .iter()
        .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok())
        .collect();
    let settings = &ctx.settings;
    let Some(cidr) = first_free(settings.cluster_cidr, settings.node_cidr_mask_size, &used) else {
        ctx.recorder.publish(
            &reference(node),
            Kind::Warning,
            "CIDRNotAvailable",
            &format!(
                "Node {} status is now: CIDRNotAvailable (no /{} left in {})",
                node.name_any(),
                settings.node_cidr_mask_size,
                settings.cluster_cidr
            ),
        );
        return Ok(());
    };
    let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
    nodes
        .patch(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    tracing::info!("node {} gets pod CIDR {cidr}", node.name_any());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_handed_out_in_order_and_never_twice() {
        let cluster: Ipv4Net = "10.244.0.0/16".parse().unwrap();
        let mut used = HashSet::new();
        let a = first_free(cluster, 24, &used).unwrap();
        assert_eq!(a.to_string(), "10.244.0.0/24");
        used.insert(a);
        assert_eq!(
            first_free(cluster, 24, &used).unwrap().to_string(),
            "10.244.1.0/24"
        );
        let tiny: Ipv4Net = "10.0.0.0/24".parse().unwrap();
        used.insert(tiny);
        assert_eq!(first_free(tiny, 24, &used), None);
    }
}
