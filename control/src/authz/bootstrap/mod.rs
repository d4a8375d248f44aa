//! The roles and bindings every cluster starts with, as kube-apiserver's
//! bootstrap policy creates them: `cluster-admin` for `system:masters`,
//! discovery, basic-user and public-info-viewer for everyone, and the
//! user-facing `admin`, `edit` and `view`, aggregated from the
//! `system:aggregate-to-*` roles (and any role a user labels so); the
//! control plane's own loops' roles are in `controllers.rs`.

pub mod controllers;

use serde_json::{Value, json};

const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn paths(urls: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": urls, "verbs": verbs})
}

fn metadata(name: &str, labels: &[(&str, &str)]) -> Value {
    let mut l = serde_json::Map::new();
    l.insert("kubernetes.io/bootstrapping".into(), json!("rbac-defaults"));
    for (k, v) in labels {
        l.insert(k.to_string(), json!(v));
    }
    json!({"name": name, "labels": l, "annotations": {AUTOUPDATE: "true"}})
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": metadata(name, labels), "rules": rules})
}

fn aggregated(name: &str, labels: &[(&str, &str)], to: &str) -> Value {
    let mut role = cluster_role(name, labels, vec![]);
    role["aggregationRule"] = json!({"clusterRoleSelectors": [
        {"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true"}}]});
    role
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}))
        .collect();
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": metadata(name, &[]),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects})
}

const TO_ADMIN: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-admin", "true");
const TO_EDIT: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-edit", "true");
const TO_VIEW: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-view", "true");

fn view_rules() -> Vec<Value> {
    vec![
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
            ],
            READ,
        ),
        rule(
            &[""],
            &[
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
            ],
            READ,
        ),
        rule(&[""], &["namespaces"], READ),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
        rule(
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
            READ,
        ),
        rule(
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
            READ,
        ),
        rule(
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            READ,
        ),
        rule(
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            READ,
        ),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
            READ,
        ),
        // Knative's own install aggregates its kinds into view and edit.
        rule(
            &["serving.knative.dev"],
            &["services", "revisions", "configurations", "routes"],
            READ,
        ),
    ]
}

fn edit_rules() -> Vec<Value> {
    vec![
        rule(
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
            WRITE,
        ),
        rule(&[""], &["pods/eviction"], &["create"]),
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
            WRITE,
        ),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
        rule(&[""], &["serviceaccounts"], &["impersonate"]),
        rule(
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
            READ,
        ),
        rule(
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
            WRITE,
        ),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], WRITE),
        rule(&["batch"], &["cronjobs", "jobs"], WRITE),
        rule(&["policy"], &["poddisruptionbudgets"], WRITE),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
            WRITE,
        ),
        rule(
            &["serving.knative.dev"],
            &["services", "configurations", "routes"],
            WRITE,
        ),
    ]
}

fn admin_rules() -> Vec<Value> {
    vec![
        rule(
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
            &["create"],
        ),
        rule(
            &["rbac.authorization.k8s.io"],
            &["rolebindings", "roles"],
            crate::resources::VERBS,
        ),
    ]
}

/// The ClusterRoles, in creation order.
pub fn cluster_roles() -> Vec<Value> {
    let mut out = vec![
        cluster_role(
            "cluster-admin",
            &[],
            vec![rule(&["*"], &["*"], &["*"]), paths(&["*"], &["*"])],
        ),
        cluster_role(
            "system:discovery",
            &[],
            vec![paths(
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
                &["get"],
            )],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![paths(
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
                &["get"],
            )],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            &[],
            vec![paths(
                &[
                    "/.well-known/openid-configuration",
                    "/.well-known/openid-configuration/",
                    "/openid/v1/jwks",
                    "/openid/v1/jwks/",
                ],
                &["get"],
            )],
        ),
        cluster_role("system:aggregate-to-admin", &[TO_ADMIN], admin_rules()),
        cluster_role(
            "system:aggregate-to-edit",
            &[TO_ADMIN, TO_EDIT],
            edit_rules(),
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[TO_ADMIN, TO_EDIT, TO_VIEW],
            view_rules(),
        ),
        cluster_role(
            "system:aggregated-metrics-reader",
            &[TO_ADMIN, TO_EDIT, TO_VIEW],
            vec![rule(&["metrics.k8s.io"], &["pods", "nodes"], READ)],
        ),
        aggregated("admin", &[], "admin"),
        aggregated("edit", &[TO_ADMIN], "edit"),
        aggregated("view", &[TO_EDIT], "view"),
    ];
    out.extend(controllers::cluster_roles());
    fill_aggregates(&mut out);
    out
}

/// Writes each aggregated role's rules into it, as the aggregation
/// controller would, so `kubectl describe clusterrole view` shows them.
fn fill_aggregates(roles: &mut [Value]) {
    let sources: Vec<Value> = roles.to_vec();
    for role in roles.iter_mut() {
        let Some(to) = role
            .pointer("/aggregationRule/clusterRoleSelectors/0/matchLabels")
            .and_then(Value::as_object)
            .and_then(|m| m.keys().next().cloned())
        else {
            continue;
        };
        let mut rules: Vec<Value> = Vec::new();
        for other in &sources {
            if other.pointer("/aggregationRule").is_none()
                && other.pointer("/metadata/labels").and_then(|l| l.get(&to))
                    == Some(&json!("true"))
            {
                for r in other["rules"].as_array().into_iter().flatten() {
                    if !rules.contains(r) {
                        rules.push(r.clone());
                    }
                }
            }
        }
        role["rules"] = json!(rules);
    }
}

/// The ClusterRoleBindings, in creation order.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", &[super::MASTERS]),
        binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
        binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            &["system:serviceaccounts"],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ]
    .into_iter()
    .chain(controllers::cluster_role_bindings())
    .collect()
}

/// Whether a stored bootstrap object may be brought up to date (its
/// `autoupdate` annotation was not set to `false` by the admin).
pub fn may_update(stored: &Value) -> bool {
    stored
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(AUTOUPDATE))
        .and_then(Value::as_str)
        != Some("false")
}

/// Creates the bootstrap roles and bindings that are missing, and brings
/// those that differ from this version's back to it (unless their
/// `autoupdate` annotation is `false`), as kube-apiserver does at start.
pub async fn ensure(objects: &crate::objects::Objects) -> Result<(), crate::error::ApiError> {
    let catalog = objects.catalog();
    let lookup = |plural: &str| {
        catalog
            .lookup("rbac.authorization.k8s.io", "v1", plural)
            .expect("RBAC kinds are served")
    };
    let wanted = cluster_roles()
        .into_iter()
        .map(|o| (lookup("clusterroles"), o))
        .chain(
            cluster_role_bindings()
                .into_iter()
                .map(|o| (lookup("clusterrolebindings"), o)),
        );
    for (rt, object) in wanted {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match objects
            .create(rt, None, object.clone(), Default::default())
            .await
        {
            Ok(_) => continue,
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
        let target = crate::objects::Target {
            rt,
            namespace: None,
            name: &name,
        };
        let stored = objects.get(target).await?;
        // Compared in the stored (normalized) form.
        let object = (rt.normalize)(object).unwrap_or_default();
        // An aggregated role's rules are the aggregation controller's.
        let owned: &[&str] = if object.get("aggregationRule").is_some() {
            &["aggregationRule"]
        } else {
            &["rules", "aggregationRule", "roleRef", "subjects"]
        };
        if !may_update(&stored) || owned.iter().all(|f| stored.get(*f) == object.get(*f)) {
            continue;
        }
        let mut updated = (*stored).clone();
        for f in owned.iter().copied() {
            match object.get(f) {
                Some(v) => updated[f] = v.clone(),
                None => {
                    if let Some(m) = updated.as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        objects
            .update(target, updated, None, Default::default())
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_edit_and_admin_hold_their_aggregates_and_nest() {
        let roles = cluster_roles();
        let rules_of = |n: &str| {
            roles.iter().find(|r| r["metadata"]["name"] == n).unwrap()["rules"]
                .as_array()
                .unwrap()
                .len()
        };
        let view = rules_of("view");
        let edit = rules_of("edit");
        let admin = rules_of("admin");
        assert!(
            view > 5 && edit > view && admin > edit,
            "{view} {edit} {admin}"
        );
        let view_role = roles
            .iter()
            .find(|r| r["metadata"]["name"] == "view")
            .unwrap();
        assert!(!view_role.to_string().contains("\"secrets\""));
    }
}
