//! Loops that run inside the control plane. Each is a client of the API
//! (through the in-process client), never of the store.

mod autoscaler;
pub mod client;
mod clusterrole_aggregation;
pub mod common;
mod cronjob;
mod daemonset;
pub mod deployment;
pub mod endpoints;
mod gc;
mod hpa;
mod job;
pub mod knative;
pub mod namespace;
mod node_stats;
mod nodeipam;
pub mod nodelifecycle;
pub mod replicaset;
mod root_ca_publisher;
mod runner;
mod statefulset;
#[cfg(test)]
mod testing;

use std::time::Duration;

use peapod_common::events::Recorder;

pub use root_ca_publisher::ROOT_CA_CONFIG_MAP;

/// Settings of the controllers, from the server's flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a node may go without renewing its lease before it is `Unknown`.
    pub node_monitor_grace_period: Duration,
    /// How long pods stay on an unreachable node before they are deleted.
    pub pod_eviction_timeout: Duration,
    /// Loops not to start (`scheduler`, `deployment`, ...), e.g. to run
    /// them elsewhere as clients of this API.
    pub disabled: Vec<String>,
    /// Where nodes' pod CIDRs come from.
    pub cluster_cidr: ipnet::Ipv4Net,
    /// The prefix length of each node's pod CIDR.
    pub node_cidr_mask_size: u8,
    /// Knative Services answer at `<name>.<namespace>.<domain>`.
    pub domain: String,
    /// How long a function goes without requests before it scales to zero.
    pub scale_to_zero_grace_period: Duration,
    /// The cluster CA (PEM) published to every namespace; empty: none.
    pub root_ca_pem: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            node_monitor_grace_period: Duration::from_secs(40),
            pod_eviction_timeout: Duration::from_secs(300),
            disabled: Vec::new(),
            cluster_cidr: "10.244.0.0/16".parse().expect("a valid CIDR"),
            node_cidr_mask_size: 24,
            domain: "example.com".into(),
            scale_to_zero_grace_period: Duration::from_secs(30),
            root_ca_pem: String::new(),
        }
    }
}

/// What every controller's reconcile gets.
pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub settings: Settings,
}

/// Starts every controller and the scheduler on `client`.
pub fn start(client: kube::Client, settings: Settings) {
    let ctx = std::sync::Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), "controller-manager"),
        settings,
    });
    let enabled = |name: &str| !ctx.settings.disabled.iter().any(|d| d == name);
    let mut loops = tokio::task::JoinSet::new();
    if enabled("replicaset") {
        loops.spawn(named("replicaset", replicaset::run(ctx.clone())));
    }
    if enabled("deployment") {
        loops.spawn(named("deployment", deployment::run(ctx.clone())));
    }
    if enabled("statefulset") {
        loops.spawn(named("statefulset", statefulset::run(ctx.clone())));
    }
    if enabled("daemonset") {
        loops.spawn(named("daemonset", daemonset::run(ctx.clone())));
    }
    if enabled("job") {
        loops.spawn(named("job", job::run(ctx.clone())));
    }
    if enabled("cronjob") {
        loops.spawn(named("cronjob", cronjob::run(ctx.clone())));
    }
    if enabled("garbagecollector") {
        loops.spawn(named("gc", gc::run(ctx.clone())));
    }
    if enabled("endpoints") {
        loops.spawn(named("endpoints", endpoints::run(ctx.clone())));
    }
    if enabled("horizontalpodautoscaling") {
        loops.spawn(named("hpa", hpa::run(ctx.clone())));
    }
    if enabled("knative") {
        loops.spawn(named("knative service", knative::run_services(ctx.clone())));
        loops.spawn(named(
            "knative revision",
            knative::run_revisions(ctx.clone()),
        ));
        loops.spawn(named("autoscaler", autoscaler::run(ctx.clone())));
    }
    if enabled("clusterrole-aggregation") {
        loops.spawn(named(
            "clusterrole-aggregation",
            clusterrole_aggregation::run(ctx.clone()),
        ));
    }
    if enabled("root-ca-cert-publisher") {
        loops.spawn(named(
            "root-ca-cert-publisher",
            root_ca_publisher::run(ctx.clone()),
        ));
    }
    if enabled("nodeipam") {
        loops.spawn(named("nodeipam", nodeipam::run(ctx.clone())));
    }
    if enabled("nodelifecycle") {
        loops.spawn(named("nodelifecycle", nodelifecycle::run(ctx.clone())));
    }
    if enabled("scheduler") {
        let recorder = Recorder::new(client.clone(), crate::scheduler::SCHEDULER_NAME);
        loops.spawn(named("scheduler", crate::scheduler::run(client, recorder)));
    }
    // The loops run for ever; one that ends or panics is a bug to hear of.
    tokio::spawn(async move {
        while let Some(ended) = loops.join_next().await {
            match ended {
                Ok(name) => tracing::error!("the {name} loop stopped"),
                Err(e) => tracing::error!("a controller loop failed: {e}"),
            }
        }
    });
}

/// `run`, returning `name` when it ends.
async fn named(name: &'static str, run: impl std::future::Future<Output = ()>) -> &'static str {
    run.await;
    name
}
