//! ClusterRole aggregation, as kube-controller-manager's
//! clusterrole-aggregation controller: a ClusterRole with an
//! `aggregationRule` gets, as its `rules`, those of every ClusterRole its
//! selectors match (so `kubectl describe clusterrole view` shows what a
//! role labelled `aggregate-to-view` added). The authorizer computes the
//! same union itself; this keeps the objects truthful.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::Context;
use crate::selector::LabelSelector;
use peapod_common::watch::{self, Change, Config};

pub async fn run(ctx: Arc<Context>) {
    let roles: Api<ClusterRole> = Api::all(ctx.client.clone());
    let watch = watch::watch(roles.clone(), Config::default(), "clusterroles");
    let (store, mut changes) = (watch.store, watch.changes);
    while let Some(change) = changes.next().await {
        if matches!(change, Change::Synced) || store.is_empty() {
            continue;
        }
        let mut all: Vec<Arc<ClusterRole>> = store.state();
        all.sort_by_key(|r| r.name_any());
        for role in &all {
            let Some(wanted) = aggregated(role, &all) else {
                continue;
            };
            if wanted == role.rules.clone().unwrap_or_default() {
                continue;
            }
            let patch = json!({"rules": wanted});
            if let Err(e) = roles
                .patch(
                    &role.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                tracing::warn!("aggregating ClusterRole {}: {e}", role.name_any());
            }
        }
    }
}

/// The rules `role` aggregates, when it has an `aggregationRule`: those
/// of the other roles its selectors match, each once, in name order.
pub fn aggregated(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Option<Vec<PolicyRule>> {
    let selectors: Vec<LabelSelector> = role
        .aggregation_rule
        .as_ref()?
        .cluster_role_selectors
        .iter()
        .flatten()
        .filter_map(|s| LabelSelector::from_k8s(serde_json::to_value(s).ok().as_ref()).ok())
        .collect();
    let mut out: Vec<PolicyRule> = Vec::new();
    for other in all {
        if other.name_any() == role.name_any() {
            continue;
        }
        let labels = other.labels().clone();
        if selectors.iter().any(|s| s.matches(&labels)) {
            for r in other.rules.iter().flatten() {
                if !out.contains(r) {
                    out.push(r.clone());
                }
            }
        }
    }
    Some(out)
}
