//! `metrics.k8s.io/v1beta1`, the resource metrics API that metrics-server
//! serves in Kubernetes and `kubectl top` reads: PodMetrics and NodeMetrics.
//! Nothing is stored; the API server builds them from the nodes' samples
//! on each read. `k8s-openapi` has no types for them, so they are declared
//! here with its traits, as the Knative kinds are.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";

/// One container's usage: `cpu` and `memory`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerMetrics {
    pub name: String,
    pub usage: BTreeMap<String, Quantity>,
}

/// Usage of a pod's containers over a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics")]
pub struct PodMetrics {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The end of the window.
    pub timestamp: Time,
    /// Its length, as a Go duration (`5.002s`).
    pub window: String,
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

/// Usage of a node over a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics")]
pub struct NodeMetrics {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub timestamp: Time,
    pub window: String,
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

served_kind!(
    PodMetrics,
    "metrics.k8s.io/v1beta1",
    GROUP,
    VERSION,
    "PodMetrics",
    "PodMetricsList",
    "pods",
    NamespaceResourceScope
);
served_kind!(
    NodeMetrics,
    "metrics.k8s.io/v1beta1",
    GROUP,
    VERSION,
    "NodeMetrics",
    "NodeMetricsList",
    "nodes",
    ClusterResourceScope
);

/// CPU in Kubernetes' quantity form: nanocores (`12345n`), as
/// metrics-server reports it.
pub fn cpu(nanocores: u64) -> Quantity {
    Quantity(format!("{nanocores}n"))
}

/// Memory in Kibibytes (`1234Ki`), as metrics-server reports it.
pub fn memory(bytes: u64) -> Quantity {
    Quantity(format!("{}Ki", bytes / 1024))
}
