//! What a node's API answers and the control plane reads: the request
//! counts the autoscaler sizes functions by (`/stats/functions`) and the
//! resource usage behind `metrics.k8s.io` and the HPA (`/stats/metrics`).

use serde::{Deserialize, Serialize};

/// One Service's requests as one node's data path (Ingress, activator)
/// saw them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTraffic {
    pub namespace: String,
    pub service: String,
    /// Requests being served right now.
    pub inflight: u64,
    /// Requests since the node started.
    pub requests: u64,
}

/// A container's figures in one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerUsage {
    pub name: String,
    pub cpu_nano_cores: u64,
    pub memory_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodUsage {
    pub namespace: String,
    pub name: String,
    pub containers: Vec<ContainerUsage>,
    /// Requests per second its Wasm HTTP functions served in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
}

/// A node's latest sample; an empty `timestamp` means none taken yet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeUsage {
    /// RFC 3339, the end of the window.
    pub timestamp: String,
    /// Seconds the CPU rates are averaged over.
    pub window_seconds: f64,
    pub cpu_nano_cores: u64,
    pub memory_bytes: u64,
    pub pods: Vec<PodUsage>,
}

/// Where a node asks the API server for its serving certificate, with its
/// node credential: a POST of a [`ServingCertificateRequest`].
pub const SERVING_CERTIFICATE_PATH: &str = "/peapod/v1/node-serving-certificate";

/// The name and addresses a node's serving certificate is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServingCertificateRequest {
    pub node_name: String,
    pub addresses: Vec<String>,
}

/// A serving certificate signed by the cluster CA, and its key (PEM).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServingCertificate {
    pub certificate: String,
    pub key: String,
}
