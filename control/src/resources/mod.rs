//! What every served kind shares: the resource descriptor, subresources,
//! the catalog, and the machinery of defaults, validation, lifecycle,
//! field selectors and printing that calls into each kind's rules
//! (`crate::kinds`).
//!
//! Types come from `k8s-openapi`; this module only adds what the API server
//! needs to know about them beyond their shape.

/// Gives a kind declared here (no `k8s-openapi` type exists for it) the
/// traits `k8s-openapi`'s own kinds have, so the catalog, OpenAPI and
/// kube-rs treat it alike. The type needs a `metadata: ObjectMeta` field.
macro_rules! served_kind {
    ($name:ident, $api_version:literal, $group:expr, $version:expr, $kind:literal, $list:literal, $plural:literal, $scope:ty) => {
        impl k8s_openapi::Resource for $name {
            const API_VERSION: &'static str = $api_version;
            const GROUP: &'static str = $group;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = $version;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = $scope;
        }

        impl k8s_openapi::ListableResource for $name {
            const LIST_KIND: &'static str = $list;
        }

        impl k8s_openapi::Metadata for $name {
            type Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
            fn metadata(&self) -> &Self::Ty {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut Self::Ty {
                &mut self.metadata
            }
        }
    };
}

mod catalog;
pub mod defaults;
pub mod fields;
pub mod knative;
pub mod lifecycle;
pub mod metrics;
pub mod table;
pub mod validation;

pub use catalog::{Catalog, created_only, served};

use schemars::{Schema, SchemaGenerator};
use serde_json::Value;

/// A subresource path segment a kind answers, e.g. `status` or `scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Binding,
    Eviction,
    Log,
    Exec,
    Attach,
    PortForward,
    Proxy,
    Finalize,
    Token,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::Proxy => "proxy",
            Subresource::Finalize => "finalize",
            Subresource::Token => "token",
        }
    }

    /// (group, version, kind) of the body this subresource speaks, when it
    /// is not the parent kind itself.
    pub fn body_kind(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Subresource::Scale => Some(("autoscaling", "v1", "Scale")),
            Subresource::Binding => Some(("", "v1", "Binding")),
            Subresource::Eviction => Some(("policy", "v1", "Eviction")),
            Subresource::Exec => Some(("", "v1", "PodExecOptions")),
            Subresource::Attach => Some(("", "v1", "PodAttachOptions")),
            Subresource::PortForward => Some(("", "v1", "PodPortForwardOptions")),
            Subresource::Proxy => Some(("", "v1", "PodProxyOptions")),
            Subresource::Token => Some(("authentication.k8s.io", "v1", "TokenRequest")),
            Subresource::Status | Subresource::Log | Subresource::Finalize => None,
        }
    }

    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
            Subresource::Binding | Subresource::Eviction | Subresource::Token => &["create"],
            Subresource::Log => &["get"],
            Subresource::Exec | Subresource::Attach | Subresource::PortForward => {
                &["create", "get"]
            }
            Subresource::Proxy => &["create", "delete", "get", "patch", "update"],
            Subresource::Finalize => &["update"],
        }
    }

    pub fn parse(s: &str) -> Option<Subresource> {
        ALL_SUBRESOURCES.iter().copied().find(|sub| sub.name() == s)
    }
}

const ALL_SUBRESOURCES: &[Subresource] = &[
    Subresource::Status,
    Subresource::Scale,
    Subresource::Binding,
    Subresource::Eviction,
    Subresource::Log,
    Subresource::Exec,
    Subresource::Attach,
    Subresource::PortForward,
    Subresource::Proxy,
    Subresource::Finalize,
    Subresource::Token,
];

/// One served resource: a kind at a group-version.
/// The verbs of a stored kind.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The verbs of a kind computed on read (`metrics.k8s.io`).
pub const READ_ONLY_VERBS: &[&str] = &["get", "list"];

#[derive(Debug)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    pub plural: &'static str,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// What clients may do with it (discovery lists these).
    pub verbs: &'static [&'static str],
    /// The OpenAPI schema name, e.g. `io.k8s.api.core.v1.Pod`.
    pub schema_name: String,
    /// Adds the kind's schema (and everything it references) to a generator.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
    /// Decodes into the typed form and back: checks types and drops unknown fields.
    pub normalize: fn(Value) -> Result<Value, DecodeError>,
    /// The kind's rules: defaults, validation, lifecycle, printing.
    pub rules: &'static dyn crate::kinds::Kind,
}

/// A body that does not decode as its kind.
#[derive(Debug)]
pub struct DecodeError {
    /// Dotted path of the offending field, empty for the root.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The store key prefix for every object of this resource.
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("{group}/{}/", self.plural)
    }

    /// The store key prefix for one namespace (or all, when `None`).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }

    /// `pods`, or `deployments.apps` as Kubernetes names resources in messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}
