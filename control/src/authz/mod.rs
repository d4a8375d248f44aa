//! Authorization: may this user do this? `system:masters` may do anything
//! (kube-apiserver's privileged group); everyone else gets what the RBAC
//! roles bound to them allow (`rbac.authorization.k8s.io/v1`), and a
//! denial is kube-apiserver's `403 Forbidden`.

pub mod attributes;
pub mod bootstrap;
mod cache;
pub mod escalation;
mod index;
pub mod rules;

use std::sync::Arc;

use serde_json::json;

pub use self::attributes::{Attributes, Target};
pub use self::cache::Cache;
pub use self::index::Index;
use crate::api::auth::User;
use crate::error::ApiError;

/// The group whose members are never checked.
pub const MASTERS: &str = "system:masters";

#[derive(Clone)]
pub struct Authorizer {
    cache: Arc<Cache>,
}

impl Authorizer {
    pub fn new(cache: Arc<Cache>) -> Authorizer {
        Authorizer { cache }
    }

    /// Lets only `system:masters` through (until a cache is given).
    pub fn masters_only() -> Authorizer {
        Authorizer::new(Cache::empty())
    }

    pub fn index(&self) -> Arc<Index> {
        self.cache.index()
    }

    pub fn allows(&self, user: &User, a: &Attributes) -> bool {
        is_master(user) || self.cache.index().allows(user, a)
    }

    /// `Ok` when allowed; otherwise the 403 kube-apiserver answers.
    pub fn check(&self, user: &User, a: &Attributes) -> Result<(), ApiError> {
        if self.allows(user, a) {
            Ok(())
        } else {
            Err(forbidden(user, a))
        }
    }
}

pub fn is_master(user: &User) -> bool {
    user.groups.iter().any(|g| g == MASTERS)
}

/// kube-apiserver's `Forbidden` for a denied request: `pods "web" is
/// forbidden: User "alice" cannot delete resource "pods" ...`.
pub fn forbidden(user: &User, a: &Attributes) -> ApiError {
    let why = a.denial(user);
    match &a.target {
        Target::NonResource { .. } => ApiError::forbidden(format!("forbidden: {why}")),
        Target::Resource {
            group,
            resource,
            name,
            ..
        } => resource_forbidden(group, resource, name, &why),
    }
}

/// A `Forbidden` about one resource (one object when `name` is given):
/// `<resource>[.<group>] ["name"] is forbidden: <why>`.
pub fn resource_forbidden(group: &str, resource: &str, name: &str, why: &str) -> ApiError {
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let message = if name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {name:?} is forbidden: {why}")
    };
    let mut details = json!({"group": group, "kind": resource});
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    ApiError {
        details: Some(details),
        ..ApiError::forbidden(message)
    }
}
