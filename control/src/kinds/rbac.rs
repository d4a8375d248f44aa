//! `rbac.authorization.k8s.io/v1`: Roles and ClusterRoles (rules), and the
//! RoleBindings and ClusterRoleBindings that grant them to subjects. What
//! they mean for requests is `crate::authz`.

use k8s_openapi::api::rbac::v1 as rbac;
use serde_json::{Value, json};

use super::{Kind, NONE};
use crate::error::FieldError;
use crate::resources::table::{AGE, Column, NAME, Row};
use crate::resources::validation::{Errors, names};
use crate::resources::{ResourceType, served};

const GROUP: &str = "rbac.authorization.k8s.io";

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// kube-apiserver's `ValidatePolicyRule`.
fn validate_rules(object: &Value, namespaced: bool, errs: &mut Errors) {
    for (i, rule) in object["rules"].as_array().into_iter().flatten().enumerate() {
        let path = format!("rules[{i}]");
        if strings(&rule["verbs"]).is_empty() {
            errs.push(FieldError::required(
                format!("{path}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = strings(&rule["nonResourceURLs"]);
        if !urls.is_empty() {
            if namespaced {
                errs.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    &rule["nonResourceURLs"],
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !strings(&rule["apiGroups"]).is_empty() || !strings(&rule["resources"]).is_empty() {
                errs.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    &rule["nonResourceURLs"],
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if rule["apiGroups"].as_array().is_none_or(Vec::is_empty) {
            errs.push(FieldError::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if strings(&rule["resources"]).is_empty() {
            errs.push(FieldError::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

/// kube-apiserver's `ValidateRoleBinding`: what a binding refers to and
/// whom it names.
fn validate_binding(object: &Value, old: Option<&Value>, cluster: bool, errs: &mut Errors) {
    let role_ref = &object["roleRef"];
    if role_ref["apiGroup"].as_str() != Some(GROUP) {
        errs.push(FieldError::not_supported(
            "roleRef.apiGroup",
            &role_ref["apiGroup"],
            &[GROUP],
        ));
    }
    let kinds: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    if !role_ref["kind"]
        .as_str()
        .is_some_and(|k| kinds.contains(&k))
    {
        errs.push(FieldError::not_supported(
            "roleRef.kind",
            &role_ref["kind"],
            kinds,
        ));
    }
    if role_ref["name"].as_str().is_none_or(str::is_empty) {
        errs.push(FieldError::required("roleRef.name", ""));
    }
    if let Some(old) = old
        && old["roleRef"] != *role_ref
    {
        errs.push(FieldError::invalid(
            "roleRef",
            role_ref,
            "cannot change roleRef",
        ));
    }
    for (i, s) in object["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("subjects[{i}]");
        if s["name"].as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        }
        match s["kind"].as_str() {
            Some("ServiceAccount") => {
                if s["apiGroup"].as_str().is_some_and(|g| !g.is_empty()) {
                    errs.push(FieldError::not_supported(
                        format!("{path}.apiGroup"),
                        &s["apiGroup"],
                        &[""],
                    ));
                }
                if cluster && s["namespace"].as_str().is_none_or(str::is_empty) {
                    errs.push(FieldError::required(format!("{path}.namespace"), ""));
                }
            }
            Some("User" | "Group") => {
                if s["apiGroup"].as_str() != Some(GROUP) {
                    errs.push(FieldError::not_supported(
                        format!("{path}.apiGroup"),
                        &s["apiGroup"],
                        &[GROUP],
                    ));
                }
            }
            _ => errs.push(FieldError::not_supported(
                format!("{path}.kind"),
                &s["kind"],
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

/// `kubectl create rolebinding` leaves the subjects' API group to the
/// server, as kube-apiserver's defaulting fills it in.
fn default_subjects(object: &mut Value) {
    if let Some(subjects) = object.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects {
            if s.get("apiGroup").is_none_or(Value::is_null)
                && matches!(s["kind"].as_str(), Some("User" | "Group"))
            {
                s["apiGroup"] = json!(GROUP);
            }
        }
    }
    if object
        .pointer("/roleRef/apiGroup")
        .is_none_or(Value::is_null)
        && let Some(r) = object.get_mut("roleRef").and_then(Value::as_object_mut)
    {
        r.insert("apiGroup".into(), json!(GROUP));
    }
}

const CREATED_AT: Column = Column::date("Created At");

fn created_at(o: &Value) -> Row {
    Row::new().cell("Created At", o["metadata"]["creationTimestamp"].clone())
}

fn binding_columns() -> Vec<Column> {
    vec![
        NAME,
        Column::text("Role"),
        AGE,
        Column::text("Users").wide(),
        Column::text("Groups").wide(),
        Column::text("ServiceAccounts").wide(),
    ]
}

fn binding_row(o: &Value) -> Row {
    let subjects = |kind: &str| -> String {
        o["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["kind"] == kind)
            .map(|s| match (kind, s["namespace"].as_str()) {
                ("ServiceAccount", Some(ns)) => {
                    format!("{ns}/{}", s["name"].as_str().unwrap_or_default())
                }
                _ => s["name"].as_str().unwrap_or_default().to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    Row::new()
        .cell(
            "Role",
            format!(
                "{}/{}",
                o["roleRef"]["kind"].as_str().unwrap_or_default(),
                o["roleRef"]["name"].as_str().unwrap_or_default()
            ),
        )
        .cell("Users", subjects("User"))
        .cell("Groups", subjects("Group"))
        .cell("ServiceAccounts", subjects("ServiceAccount"))
}

#[derive(Debug)]
pub struct Role;

impl Kind for Role {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<rbac::Role>(self, NONE, NONE, &[])]
    }

    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::path_segment
    }

    fn validate(&self, object: &Value, _old: Option<&Value>, errs: &mut Errors) {
        validate_rules(object, true, errs);
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, CREATED_AT]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        created_at(o)
    }
}

#[derive(Debug)]
pub struct ClusterRole;

impl Kind for ClusterRole {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<rbac::ClusterRole>(self, NONE, NONE, &[])]
    }

    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::path_segment
    }

    fn validate(&self, object: &Value, _old: Option<&Value>, errs: &mut Errors) {
        validate_rules(object, false, errs);
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, CREATED_AT]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        created_at(o)
    }
}

#[derive(Debug)]
pub struct RoleBinding;

impl Kind for RoleBinding {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<rbac::RoleBinding>(self, NONE, NONE, &[])]
    }

    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::path_segment
    }

    fn defaults(&self, object: &mut Value) {
        default_subjects(object);
    }

    fn validate(&self, object: &Value, old: Option<&Value>, errs: &mut Errors) {
        validate_binding(object, old, false, errs);
    }

    fn columns(&self) -> Vec<Column> {
        binding_columns()
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        binding_row(o)
    }
}

#[derive(Debug)]
pub struct ClusterRoleBinding;

impl Kind for ClusterRoleBinding {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<rbac::ClusterRoleBinding>(self, NONE, NONE, &[])]
    }

    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::path_segment
    }

    fn defaults(&self, object: &mut Value) {
        default_subjects(object);
    }

    fn validate(&self, object: &Value, old: Option<&Value>, errs: &mut Errors) {
        validate_binding(object, old, true, errs);
    }

    fn columns(&self) -> Vec<Column> {
        binding_columns()
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        binding_row(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(kind: &dyn Kind, object: Value, old: Option<Value>) -> Vec<String> {
        let mut errs = Errors::default();
        kind.validate(&object, old.as_ref(), &mut errs);
        errs.0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn rules_need_verbs_and_a_target_and_roles_no_paths() {
        let bad = json!({"rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": []},
            {"verbs": ["get"]},
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
        ]});
        let role = errors(&Role, bad.clone(), None);
        assert!(
            role.iter().any(|e| e.contains("rules[0].verbs")),
            "{role:?}"
        );
        assert!(
            role.iter().any(|e| e.contains("rules[1].apiGroups")),
            "{role:?}"
        );
        assert!(
            role.iter()
                .any(|e| e.contains("namespaced rules cannot apply to non-resource URLs")),
            "{role:?}"
        );
        let cluster = errors(&ClusterRole, bad, None);
        assert!(
            !cluster.iter().any(|e| e.contains("rules[2]")),
            "{cluster:?}"
        );
    }

    #[test]
    fn bindings_name_a_role_of_rbac_and_proper_subjects() {
        let mut b = json!({
            "roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "bot"}],
        });
        RoleBinding.defaults(&mut b);
        assert_eq!(b["roleRef"]["apiGroup"], GROUP);
        assert_eq!(b["subjects"][0]["apiGroup"], GROUP);
        assert!(errors(&RoleBinding, b.clone(), None).is_empty());
        // A ClusterRoleBinding binds only ClusterRoles, and its service
        // accounts need a namespace.
        let cluster = errors(&ClusterRoleBinding, b.clone(), None);
        assert!(
            cluster.iter().any(|e| e.contains("roleRef.kind")),
            "{cluster:?}"
        );
        assert!(
            cluster.iter().any(|e| e.contains("subjects[1].namespace")),
            "{cluster:?}"
        );
        let mut changed = b.clone();
        changed["roleRef"]["name"] = json!("other");
        let update = errors(&RoleBinding, changed, Some(b));
        assert!(
            update.iter().any(|e| e.contains("cannot change roleRef")),
            "{update:?}"
        );
        let odd = json!({"roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "r"},
            "subjects": [{"kind": "Robot", "name": "x"}]});
        assert!(!errors(&RoleBinding, odd, None).is_empty());
    }
}
