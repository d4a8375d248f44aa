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

pub use crate::authz::bootstrap::controllers as accounts;
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

/// Starts every controller and the scheduler, each on the client
/// `client_for` gives its identity (a controller account of
/// [`accounts`], or the scheduler's user).
pub fn start(client_for: &dyn Fn(&str) -> kube::Client, settings: Settings) {
    let ctx = |account: &str| {
        let client = client_for(account);
        std::sync::Arc::new(Context {
            recorder: Recorder::new(client.clone(), "controller-manager"),
            client,
            settings: settings.clone(),
        })
    };
    let enabled = |name: &str| !settings.disabled.iter().any(|d| d == name);
    let mut loops = tokio::task::JoinSet::new();
    if enabled("replicaset") {
        loops.spawn(named(
            "replicaset",
            replicaset::run(ctx(accounts::REPLICASET)),
        ));
    }
    if enabled("deployment") {
        loops.spawn(named(
            "deployment",
            deployment::run(ctx(accounts::DEPLOYMENT)),
        ));
    }
    if enabled("statefulset") {
        loops.spawn(named(
            "statefulset",
            statefulset::run(ctx(accounts::STATEFULSET)),
        ));
    }
    if enabled("daemonset") {
        loops.spawn(named("daemonset", daemonset::run(ctx(accounts::DAEMONSET))));
    }
    if enabled("job") {
        loops.spawn(named("job", job::run(ctx(accounts::JOB))));
    }
    if enabled("cronjob") {
        loops.spawn(named("cronjob", cronjob::run(ctx(accounts::CRONJOB))));
    }
    if enabled("garbagecollector") {
        loops.spawn(named("gc", gc::run(ctx(accounts::GARBAGE_COLLECTOR))));
    }
    if enabled("endpoints") {
        loops.spawn(named("endpoints", endpoints::run(ctx(accounts::ENDPOINTS))));
    }
    if enabled("horizontalpodautoscaling") {
        loops.spawn(named("hpa", hpa::run(ctx(accounts::HPA))));
    }
    if enabled("knative") {
        loops.spawn(named(
            "knative service",
            knative::run_services(ctx(accounts::KNATIVE)),
        ));
        loops.spawn(named(
            "knative revision",
            knative::run_revisions(ctx(accounts::KNATIVE)),
        ));
        loops.spawn(named("autoscaler", autoscaler::run(ctx(accounts::KNATIVE))));
    }
    if enabled("clusterrole-aggregation") {
        loops.spawn(named(
            "clusterrole-aggregation",
            clusterrole_aggregation::run(ctx(accounts::AGGREGATION)),
        ));
    }
    if enabled("root-ca-cert-publisher") {
        loops.spawn(named(
            "root-ca-cert-publisher",
            root_ca_publisher::run(ctx(accounts::ROOT_CA)),
        ));
    }
    if enabled("nodeipam") {
        loops.spawn(named("nodeipam", nodeipam::run(ctx(accounts::NODE_IPAM))));
    }
    if enabled("nodelifecycle") {
        loops.spawn(named(
            "nodelifecycle",
            nodelifecycle::run(ctx(accounts::NODE_LIFECYCLE)),
        ));
    }
    if enabled("scheduler") {
        let client = client_for(accounts::SCHEDULER);
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
