//! Loops that run inside the control plane. Each is a client of the API
//! (through the in-process client), never of the store.

mod autoscaler;
pub mod client;
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
mod runner;
mod statefulset;

use std::time::Duration;

use peapod_common::events::Recorder;

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
    if enabled("replicaset") {
        tokio::spawn(replicaset::run(ctx.clone()));
    }
    if enabled("deployment") {
        tokio::spawn(deployment::run(ctx.clone()));
    }
    if enabled("statefulset") {
        tokio::spawn(statefulset::run(ctx.clone()));
    }
    if enabled("daemonset") {
        tokio::spawn(daemonset::run(ctx.clone()));
    }
    if enabled("job") {
        tokio::spawn(job::run(ctx.clone()));
    }
    if enabled("cronjob") {
        tokio::spawn(cronjob::run(ctx.clone()));
    }
    if enabled("garbagecollector") {
        tokio::spawn(gc::run(ctx.clone()));
    }
    if enabled("endpoints") {
        tokio::spawn(endpoints::run(ctx.clone()));
    }
    if enabled("horizontalpodautoscaling") {
        tokio::spawn(hpa::run(ctx.clone()));
    }
    if enabled("knative") {
        tokio::spawn(knative::run_services(ctx.clone()));
        tokio::spawn(knative::run_revisions(ctx.clone()));
        tokio::spawn(autoscaler::run(ctx.clone()));
    }
    if enabled("nodeipam") {
        tokio::spawn(nodeipam::run(ctx.clone()));
    }
    if enabled("nodelifecycle") {
        tokio::spawn(nodelifecycle::run(ctx.clone()));
    }
    if enabled("scheduler") {
        tokio::spawn(crate::scheduler::run(
            client.clone(),
            Recorder::new(client, crate::scheduler::SCHEDULER_NAME),
        ));
    }
}
