//! `metrics.k8s.io`: pod and node usage, computed on read (their types
//! are `crate::resources::metrics`, their handler `crate::api::metrics`).

use super::{Kind, NONE};
use crate::resources::metrics;
use crate::resources::{READ_ONLY_VERBS, ResourceType, served};

#[derive(Debug)]
pub struct PodMetrics;

impl Kind for PodMetrics {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![ResourceType {
            verbs: READ_ONLY_VERBS,
            ..served::<metrics::PodMetrics>(self, NONE, NONE, &[])
        }]
    }
}

#[derive(Debug)]
pub struct NodeMetrics;

impl Kind for NodeMetrics {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![ResourceType {
            verbs: READ_ONLY_VERBS,
            ..served::<metrics::NodeMetrics>(self, NONE, NONE, &[])
        }]
    }
}
