//! The list of served kinds, built from `k8s-openapi`'s types.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v1 as autoscaling_v1, autoscaling::v2 as autoscaling,
    batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, networking::v1 as networking, node::v1 as node,
};
use k8s_openapi::{ClusterResourceScope, ListableResource, NamespaceResourceScope, Resource};
use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::Subresource::{self, *};
use super::{DecodeError, READ_ONLY_VERBS, ResourceType, knative, metrics};

/// Whether a `k8s-openapi` scope marker means namespaced.
trait Scope {
    const NAMESPACED: bool;
}
impl Scope for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl Scope for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

fn normalize<T: DeserializeOwned + Serialize>(value: Value) -> Result<Value, DecodeError> {
    let typed: T = serde_path_to_error::deserialize(value).map_err(|e| DecodeError {
        path: e.path().to_string().trim_start_matches('.').to_string(),
        message: e.into_inner().to_string(),
    })?;
    serde_json::to_value(&typed).map_err(|e| DecodeError {
        path: String::new(),
        message: e.to_string(),
    })
}

fn kind<T>(
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
) -> ResourceType
where
    T: Resource + ListableResource + DeserializeOwned + Serialize + JsonSchema,
    T::Scope: Scope,
{
    ResourceType {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        list_kind: T::LIST_KIND,
        plural: T::URL_PATH_SEGMENT,
        singular: T::KIND.to_ascii_lowercase(),
        namespaced: <T::Scope as Scope>::NAMESPACED,
        short_names,
        categories,
        subresources,
        verbs: super::VERBS,
        schema_name: T::schema_name().into_owned(),
        schema: T::json_schema,
        normalize: normalize::<T>,
    }
}

const ALL: &[&str] = &["all"];
/// Knative's categories for its kinds.
const KNATIVE: &[&str] = &["all", "knative", "serving"];
const NONE: &[&str] = &[];

/// Every served resource, with lookups by the names clients use.
pub struct Catalog {
    types: Vec<ResourceType>,
    /// (group, version, plural) → index into `types`.
    by_path: BTreeMap<(&'static str, &'static str, &'static str), usize>,
}

impl Catalog {
    /// The catalog of this build, built once.
    pub fn global() -> &'static Catalog {
        static CATALOG: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
        CATALOG.get_or_init(Catalog::new)
    }

    pub fn new() -> Catalog {
        let types = vec![
            kind::<core::Namespace>(&["ns"], NONE, &[Status, Finalize]),
            kind::<core::Pod>(
                &["po"],
                ALL,
                &[
                    Status,
                    Binding,
                    Eviction,
                    Log,
                    Exec,
                    Attach,
                    PortForward,
                    Proxy,
                ],
            ),
            kind::<core::Service>(&["svc"], ALL, &[Status, Proxy]),
            kind::<core::Endpoints>(&["ep"], NONE, &[]),
            kind::<core::Node>(&["no"], NONE, &[Status, Proxy]),
            kind::<core::ConfigMap>(&["cm"], NONE, &[]),
            kind::<core::Secret>(NONE, NONE, &[]),
            kind::<core::Event>(&["ev"], NONE, &[]),
            kind::<core::ServiceAccount>(&["sa"], NONE, &[]),
            kind::<core::PersistentVolume>(&["pv"], NONE, &[Status]),
            kind::<core::PersistentVolumeClaim>(&["pvc"], NONE, &[Status]),
            kind::<core::ResourceQuota>(&["quota"], NONE, &[Status]),
            kind::<core::LimitRange>(&["limits"], NONE, &[]),
            kind::<apps::Deployment>(&["deploy"], ALL, &[Status, Scale]),
            kind::<apps::ReplicaSet>(&["rs"], ALL, &[Status, Scale]),
            kind::<apps::StatefulSet>(&["sts"], ALL, &[Status, Scale]),
            kind::<apps::DaemonSet>(&["ds"], ALL, &[Status]),
            kind::<apps::ControllerRevision>(NONE, NONE, &[]),
            kind::<batch::Job>(NONE, ALL, &[Status]),
            kind::<batch::CronJob>(&["cj"], ALL, &[Status]),
            kind::<autoscaling::HorizontalPodAutoscaler>(&["hpa"], ALL, &[Status]),
            // Served by conversion to and from v2 (what `kubectl autoscale` 1.32 writes).
            kind::<autoscaling_v1::HorizontalPodAutoscaler>(&["hpa"], ALL, &[Status]),
            kind::<networking::Ingress>(&["ing"], NONE, &[Status]),
            kind::<networking::IngressClass>(NONE, NONE, &[]),
            kind::<node::RuntimeClass>(NONE, NONE, &[]),
            kind::<coordination::Lease>(NONE, NONE, &[]),
            kind::<discovery::EndpointSlice>(NONE, NONE, &[]),
            kind::<knative::KnativeService>(&["kservice", "ksvc"], KNATIVE, &[Status]),
            kind::<knative::Revision>(&["rev"], KNATIVE, &[Status]),
            ResourceType {
                verbs: READ_ONLY_VERBS,
                ..kind::<metrics::PodMetrics>(NONE, NONE, &[])
            },
            ResourceType {
                verbs: READ_ONLY_VERBS,
                ..kind::<metrics::NodeMetrics>(NONE, NONE, &[])
            },
        ];
        let by_path = types
            .iter()
            .enumerate()
            .map(|(i, t)| ((t.group, t.version, t.plural), i))
            .collect();
        Catalog { types, by_path }
    }

    pub fn all(&self) -> &[ResourceType] {
        &self.types
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.by_path
            .get(&(group, version, plural))
            .map(|&i| &self.types[i])
    }

    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.kind == kind)
    }

    /// The group-versions served, in discovery order (core first).
    pub fn group_versions(&self) -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<(&'static str, &'static str)> = Vec::new();
        for t in &self.types {
            if !out.contains(&(t.group, t.version)) {
                out.push((t.group, t.version));
            }
        }
        out
    }

    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceType> + 'a {
        self.types
            .iter()
            .filter(move |t| t.group == group && t.version == version)
    }
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::new()
    }
}
