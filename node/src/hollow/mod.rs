//! Hollow nodes, as kubemark's: Node objects with capacity and labels that
//! renew their Leases and mark the pods bound to them Running (or
//! Succeeded), without running anything. They let the scheduler and the
//! controllers be tested and measured at scale on one machine.

mod pods;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use peapod_common::watch::{self, Change, Config};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// Node status is re-posted this often even when nothing changed.
const STATUS_REFRESH: Duration = Duration::from_secs(60);
/// API requests in flight at once per hollow process.
const CONCURRENCY: usize = 32;

#[derive(Clone, Debug)]
pub struct HollowConfig {
    /// Nodes are named `<prefix>-0` .. `<prefix>-(count-1)`.
    pub prefix: String,
    pub count: usize,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    /// Offer the Wasm runtime as well as OCI.
    pub wasm: bool,
    /// Extra labels for every node.
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HollowError {
    #[error("API: {0}")]
    Kube(#[from] kube::Error),
}

pub(crate) struct Hollow {
    pub client: kube::Client,
    pub config: HollowConfig,
    pub names: HashSet<String>,
    pub limit: Arc<Semaphore>,
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Hollow {
    fn node_name(&self, i: usize) -> String {
        format!("{}-{i}", self.config.prefix)
    }

    /// A stable fake address for node `i`, in 10.128.0.0/9.
    fn node_ip(i: usize) -> String {
        format!(
            "10.{}.{}.{}",
            128 + (i >> 16) % 128,
            (i >> 8) % 256,
            i % 256
        )
    }

    fn status(&self, i: usize) -> Value {
        let capacity = json!({
            "cpu": self.config.cpu, "memory": self.config.memory,
            "pods": self.config.pods.to_string(), "ephemeral-storage": "100Gi",
        });
        let t = now();
        let condition = |ty: &str, status: &str, reason: &str, message: &str| {
            json!({"type": ty, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": t, "lastTransitionTime": t})
        };
        json!({
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": Self::node_ip(i)},
                {"type": "Hostname", "address": self.node_name(i)},
            ],
            "nodeInfo": {
                "machineID": format!("hollow-{i}"), "systemUUID": format!("hollow-{i}"), "bootID": format!("hollow-{i}"),
                "kernelVersion": "hollow", "osImage": "Peapod hollow node",
                "containerRuntimeVersion": "hollow://0.1.0",
                "kubeletVersion": format!("v1.32.0-peapod-hollow"), "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": "amd64",
            },
        })
    }

    fn node(&self, i: usize) -> Node {
        let name = self.node_name(i);
        let mut labels = self.config.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), name.clone());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert("kubernetes.io/arch".into(), "amd64".into());
        labels.insert("runtime.peapod.dev/oci".into(), "true".into());
        if self.config.wasm {
            labels.insert("runtime.peapod.dev/wasm".into(), "true".into());
        }
        labels.insert("node.peapod.dev/hollow".into(), "true".into());
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "status": self.status(i),
        }))
        .expect("a valid node")
    }

    /// Creates the node (or refreshes it if it exists) and its lease.
    async fn register(&self, i: usize) -> Result<(), HollowError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = self.node(i);
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let patch = json!({"metadata": {"labels": node.metadata.labels}});
                nodes
                    .patch(
                        &self.node_name(i),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                self.post_status(i).await?;
            }
            Err(e) => return Err(e.into()),
        }
        self.renew_lease(i).await
    }

    async fn post_status(&self, i: usize) -> Result<(), HollowError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes
            .patch_status(
                &self.node_name(i),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": self.status(i)})),
            )
            .await?;
        Ok(())
    }

    async fn renew_lease(&self, i: usize) -> Result<(), HollowError> {
        Ok(crate::lease::renew(&self.client, &self.node_name(i)).await?)
    }

    /// Runs `f` for every node, `CONCURRENCY` at a time.
    async fn each_node<F, Fut>(self: &Arc<Self>, f: F)
    where
        F: Fn(Arc<Self>, usize) -> Fut,
        Fut: std::future::Future<Output = Result<(), HollowError>>,
    {
        futures::stream::iter(0..self.config.count)
            .map(|i| f(self.clone(), i))
            .buffer_unordered(CONCURRENCY)
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::warn!("hollow node: {e}");
                }
            })
            .await;
    }
}

/// Registers the hollow nodes and keeps them alive until the process ends.
pub async fn run(client: kube::Client, config: HollowConfig) -> Result<(), HollowError> {
    let names = (0..config.count)
        .map(|i| format!("{}-{i}", config.prefix))
        .collect();
    let hollow = Arc::new(Hollow {
        client,
        config,
        names,
        limit: Arc::new(Semaphore::new(CONCURRENCY)),
    });
    hollow
        .each_node(|h, i| async move { h.register(i).await })
        .await;
    tracing::info!("{} hollow nodes registered", hollow.config.count);

    tokio::spawn(pods::run(hollow.clone()));
    tokio::spawn(watch_readiness(hollow.clone()));
    let mut leases = tokio::time::interval(crate::lease::RENEWAL);
    let mut status = tokio::time::interval(STATUS_REFRESH);
    leases.tick().await;
    status.tick().await;
    loop {
        tokio::select! {
            _ = leases.tick() => hollow.each_node(|h, i| async move { h.renew_lease(i).await }).await,
            _ = status.tick() => hollow.each_node(|h, i| async move { h.post_status(i).await }).await,
        }
    }
}

/// Re-posts Ready at once when the control plane marked one of our nodes
/// otherwise (after a pause longer than the grace period, say).
async fn watch_readiness(hollow: Arc<Hollow>) {
    let nodes: Api<Node> = Api::all(hollow.client.clone());
    let hollow_nodes = Config::default().labels("node.peapod.dev/hollow=true");
    let mut changes = watch::watch(nodes, hollow_nodes, "hollow nodes").changes;
    while let Some(change) = changes.next().await {
        let Change::Applied(node) = change else {
            continue;
        };
        let name = node.metadata.name.clone().unwrap_or_default();
        if !hollow.names.contains(&name) {
            continue;
        }
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if !ready
            && let Some(i) = name
                .rsplit('-')
                .next()
                .and_then(|n| n.parse::<usize>().ok())
            && let Err(e) = hollow.post_status(i).await
        {
            tracing::warn!("hollow node {name}: {e}");
        }
    }
}
