//! The node's own object: registered with the machine's capacity, labels
//! and addresses, kept alive by its Lease, and its status re-posted
//! periodically. The pod CIDR comes from the control plane.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::config::AgentConfig;

/// Node status is re-posted this often even when nothing changed.
const STATUS_REFRESH: Duration = Duration::from_secs(60);

/// The machine's capacity, as the kubelet reports it.
struct Capacity {
    cpus: usize,
    memory_kib: u64,
    storage_kib: u64,
}

fn capacity(config: &AgentConfig) -> Capacity {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    let storage_kib = nix::sys::statvfs::statvfs(&config.data_dir)
        .map(|s| s.blocks() * s.fragment_size() / 1024)
        .unwrap_or(0);
    Capacity {
        cpus,
        memory_kib,
        storage_kib,
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

fn status(config: &AgentConfig, kubelet_port: u16) -> Value {
    let c = capacity(config);
    let capacity = json!({
        "cpu": c.cpus.to_string(),
        "memory": format!("{}Ki", c.memory_kib),
        "pods": config.max_pods.to_string(),
        "ephemeral-storage": format!("{}Ki", c.storage_kib),
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
            {"type": "InternalIP", "address": config.node_ip.to_string()},
            {"type": "Hostname", "address": config.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": std::fs::read_to_string("/etc/machine-id").unwrap_or_default().trim(),
            "systemUUID": "", "bootID": std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim(),
            "kernelVersion": kernel_version(), "osImage": os_image(),
            "containerRuntimeVersion": format!("peapod://{}", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": format!("v1.32.0-peapod-{}", env!("CARGO_PKG_VERSION")), "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": go_arch(),
        },
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn labels(config: &AgentConfig) -> Value {
    let mut labels = config.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), config.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), go_arch().into());
    labels.insert("runtime.peapod.dev/oci".into(), "true".into());
    if config.wasm {
        labels.insert("runtime.peapod.dev/wasm".into(), "true".into());
    }
    json!(labels)
}

/// Creates or refreshes the Node, then waits for its pod CIDR.
pub async fn register(
    client: &kube::Client,
    config: &AgentConfig,
    kubelet_port: u16,
) -> Result<ipnet::Ipv4Net, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": config.name, "labels": labels(config)},
    }))
    .expect("a valid node");
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({"metadata": {"labels": labels(config)}});
            nodes
                .patch(&config.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Err(e) => return Err(e),
    }
    post_status(client, config, kubelet_port).await?;
    crate::lease::renew(client, &config.name).await?;
    let mut waited = Duration::ZERO;
    loop {
        let node = nodes.get(&config.name).await?;
        if let Some(cidr) = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_ref())
            .and_then(|c| c.parse().ok())
        {
            return Ok(cidr);
        }
        if waited.as_secs() > 0 && waited.as_millis().is_multiple_of(10_000) {
            tracing::info!(
                "waiting for the control plane to assign a pod CIDR to {}",
                config.name
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited += Duration::from_millis(200);
    }
}

pub async fn post_status(
    client: &kube::Client,
    config: &AgentConfig,
    kubelet_port: u16,
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            &config.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status(config, kubelet_port)})),
        )
        .await?;
    Ok(())
}

/// Renews the lease and refreshes the status for as long as the agent runs.
pub async fn heartbeat(client: kube::Client, config: AgentConfig, kubelet_port: u16) {
    let mut lease = tokio::time::interval(crate::lease::RENEWAL);
    let mut status = tokio::time::interval(STATUS_REFRESH);
    loop {
        tokio::select! {
            _ = lease.tick() => {
                if let Err(e) = crate::lease::renew(&client, &config.name).await {
                    tracing::warn!("renewing the node lease: {e}");
                }
            }
            _ = status.tick() => {
                if let Err(e) = post_status(&client, &config, kubelet_port).await {
                    tracing::warn!("posting node status: {e}");
                }
            }
        }
    }
}
