//! Escalation prevention, as kube-apiserver's RBAC storage does it: a user
//! may write a role only with rules they hold themselves (or with the
//! `escalate` verb on it), and bind a role only when they hold its rules
//! (or with the `bind` verb on it). Otherwise anyone allowed to create
//! RoleBindings could make themselves cluster-admin.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;

use super::{Attributes, Authorizer, is_master};
use crate::api::auth::User;
use crate::error::ApiError;

const GROUP: &str = "rbac.authorization.k8s.io";

fn forbidden(plural: &str, name: &str, why: String) -> ApiError {
    super::resource_forbidden(GROUP, plural, name, &why)
}

/// `Ok` when `user` holds every right of `wanted` in `namespace`.
fn holds(
    authz: &Authorizer,
    user: &User,
    namespace: &str,
    wanted: &[PolicyRule],
    plural: &str,
    name: &str,
) -> Result<(), ApiError> {
    let held = authz.index().rules_for(user, namespace);
    let missing = super::rules::uncovered(&held, wanted);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(forbidden(plural, name, not_held(user, &missing)))
    }
}

fn not_held(user: &User, missing: &[String]) -> String {
    format!(
        "user {:?} (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        user.groups,
        missing.join("\n")
    )
}

/// Checks a Role, ClusterRole, RoleBinding or ClusterRoleBinding about to
/// be written by `user` (`namespace` empty for the cluster-scoped ones).
/// Other resources pass.
pub fn check(
    authz: &Authorizer,
    user: &User,
    plural: &str,
    namespace: &str,
    object: &Value,
) -> Result<(), ApiError> {
    if is_master(user) {
        return Ok(());
    }
    let name = crate::objects::name_of(object);
    let may = |verb: &str, resource: &str, name: &str| {
        authz.allows(
            user,
            &Attributes::resource(verb, GROUP, resource, "", namespace, name),
        )
    };
    match plural {
        "roles" | "clusterroles" => {
            if plural == "clusterroles"
                && object.get("aggregationRule").is_some_and(|a| !a.is_null())
            {
                // The aggregated rules are not known until written: only
                // those who may do anything may use it.
                if !may("escalate", plural, name) {
                    return Err(forbidden(
                        plural,
                        name,
                        "must have cluster-admin privileges to use the aggregationRule".into(),
                    ));
                }
                return Ok(());
            }
            if may("escalate", plural, name) {
                return Ok(());
            }
            let wanted: Vec<PolicyRule> = object
                .get("rules")
                .and_then(|r| serde_json::from_value(r.clone()).ok())
                .unwrap_or_default();
            holds(authz, user, namespace, &wanted, plural, name)
        }
        "rolebindings" | "clusterrolebindings" => {
            let kind = object
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let role = object
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let role_resource = if kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            if may("bind", role_resource, role) {
                return Ok(());
            }
            let Some(wanted) = authz.index().role_rules(kind, namespace, role) else {
                return Err(forbidden(
                    plural,
                    name,
                    format!(
                        "{kind} {role:?} not found, and only a user who may bind it can refer to it"
                    ),
                ));
            };
            holds(authz, user, namespace, &wanted, plural, name)
        }
        _ => Ok(()),
    }
}
