//! The served resources, built from the kinds' registry and `k8s-openapi`'s types.

use std::collections::BTreeMap;

use k8s_openapi::{ClusterResourceScope, ListableResource, NamespaceResourceScope, Resource};
use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::{DecodeError, ResourceType, Subresource};
use crate::kinds::{Kind, REGISTRY};

/// Whether a `k8s-openapi` scope marker means namespaced.
pub trait Scope {
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

/// The resource of a typed kind, with the rules and names its module gives.
pub fn served<T>(
    rules: &'static dyn Kind,
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
        rules,
    }
}

/// A resource that is only ever created and answered, never stored (the
/// access and identity reviews): `create` is its one verb.
pub fn created_only<T>(rules: &'static dyn Kind) -> ResourceType
where
    T: Resource + DeserializeOwned + Serialize + JsonSchema,
    T::Scope: Scope,
{
    ResourceType {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        list_kind: "",
        plural: T::URL_PATH_SEGMENT,
        singular: T::KIND.to_ascii_lowercase(),
        namespaced: <T::Scope as Scope>::NAMESPACED,
        short_names: &[],
        categories: &[],
        subresources: &[],
        verbs: &["create"],
        schema_name: T::schema_name().into_owned(),
        schema: T::json_schema,
        normalize: normalize::<T>,
        rules,
    }
}

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
        let types: Vec<ResourceType> = REGISTRY.iter().flat_map(|k| k.resources()).collect();
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
