//! One module per kind: all the API server knows about a kind — the names
//! and subresources it is served under, its defaults, its validation, what
//! an update may change, what happens on delete, the fields it can be
//! selected by and its `kubectl get` columns — behind one trait, [`Kind`].
//!
//! Adding a kind is one file here and one line in [`REGISTRY`]. What every
//! kind shares (metadata validation, pod template rules, the Table
//! machinery, generation and status handling) lives in `crate::resources`
//! and calls into the kind through this trait; a custom resource will be
//! one more implementation, driven by its schema instead of code.

use std::fmt::Debug;

use serde_json::{Value, json};

use crate::resources::ResourceType;
use crate::resources::fields::Field;
use crate::resources::table::{AGE, Column, NAME, Row};
use crate::resources::validation::{Errors, names};

mod config_map;
mod controller_revision;
mod cron_job;
mod daemon_set;
mod deployment;
mod endpoint_slice;
mod endpoints;
mod event;
mod horizontal_pod_autoscaler;
mod ingress;
mod ingress_class;
mod job;
mod knative;
mod lease;
mod limit_range;
mod metrics;
mod namespace;
mod node;
mod persistent_volume;
mod persistent_volume_claim;
mod pod;
mod rbac;
mod replica_set;
mod resource_quota;
mod reviews;
mod runtime_class;
mod secret;
mod service;
mod service_account;
mod stateful_set;
#[cfg(test)]
mod tests;

/// What the API server knows about one kind beyond its shape. Every rule
/// but `resources` has a default: a kind says only where it differs.
pub trait Kind: Sync + Debug {
    /// The resources this kind is served as (one per group-version).
    fn resources(&'static self) -> Vec<ResourceType>;

    /// The check `metadata.name` must pass.
    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::dns1123_subdomain
    }

    /// Fills in defaults, as kube-apiserver's `SetDefaults_*` on every write.
    fn defaults(&self, _object: &mut Value) {}

    /// Checks the object beyond its metadata (an update when `old` is given).
    fn validate(&self, _object: &Value, _old: Option<&Value>, _errs: &mut Errors) {}

    /// Whether `metadata.generation` counts changes to the spec.
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Whether an update changed what the generation counts.
    fn spec_changed(&self, new: &Value, old: &Value) -> bool {
        new.get("spec") != old.get("spec")
    }

    /// The status a new object starts with (kinds with a status
    /// subresource); `None` keeps what the client sent.
    fn initial_status(&self, _object: &Value) -> Option<Value> {
        Some(json!({}))
    }

    /// Sets the fields the server owns on a new object.
    fn on_create(&self, _object: &mut Value) {}

    /// Carries server-owned state from `old` into an update.
    fn on_update(&self, _new: &mut Value, _old: &Value) {}

    /// Restores what a write to the main resource may not change (beyond
    /// the status, which the caller keeps).
    fn keep_on_main_update(&self, _new: &mut Value, _old: &Value) {}

    /// What a write to `/status` takes from the request besides the status.
    fn on_status_write(&self, _request: &Value, _merged: &mut Value) {}

    /// The grace period a delete waits (0: at once).
    fn grace_period(&self, _object: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// Marks the start of a deletion that has to wait.
    fn on_deletion_start(&self, _object: &mut Value) {}

    /// The fields a field selector may name besides `metadata.name` and
    /// `metadata.namespace`.
    fn fields(&self) -> &'static [Field] {
        &[]
    }

    /// The columns of `kubectl get`.
    fn columns(&self) -> Vec<Column> {
        vec![NAME, AGE]
    }

    /// One object's row, its cells named by column (Name and Age are
    /// filled in when the row leaves them out).
    fn row(&self, _object: &Value, _now: jiff::Timestamp) -> Row {
        Row::new()
    }
}

/// `kubectl get all` lists kinds in this category.
const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

/// Every served kind, in discovery order (core first).
pub const REGISTRY: &[&dyn Kind] = &[
    &namespace::Namespace,
    &pod::Pod,
    &service::Service,
    &endpoints::Endpoints,
    &node::Node,
    &config_map::ConfigMap,
    &secret::Secret,
    &event::Event,
    &service_account::ServiceAccount,
    &persistent_volume::PersistentVolume,
    &persistent_volume_claim::PersistentVolumeClaim,
    &resource_quota::ResourceQuota,
    &limit_range::LimitRange,
    &deployment::Deployment,
    &replica_set::ReplicaSet,
    &stateful_set::StatefulSet,
    &daemon_set::DaemonSet,
    &controller_revision::ControllerRevision,
    &job::Job,
    &cron_job::CronJob,
    &horizontal_pod_autoscaler::HorizontalPodAutoscaler,
    &ingress::Ingress,
    &ingress_class::IngressClass,
    &runtime_class::RuntimeClass,
    &lease::Lease,
    &endpoint_slice::EndpointSlice,
    &rbac::Role,
    &rbac::ClusterRole,
    &rbac::RoleBinding,
    &rbac::ClusterRoleBinding,
    &reviews::SelfSubjectAccessReview,
    &reviews::SelfSubjectRulesReview,
    &reviews::SubjectAccessReview,
    &reviews::LocalSubjectAccessReview,
    &reviews::SelfSubjectReview,
    &reviews::TokenReview,
    &knative::Service,
    &knative::Revision,
    &metrics::PodMetrics,
    &metrics::NodeMetrics,
];
