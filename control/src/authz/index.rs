//! The cluster's RBAC objects, resolved for answering requests: every
//! binding carries the rules of the role it names, and each ClusterRole
//! with an `aggregationRule` carries the rules of the roles it selects.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{PolicyRule, Subject};
use serde_json::Value;

use super::attributes::Attributes;
use super::rules;
use crate::api::auth::User;
use crate::selector::LabelSelector;
use crate::selector::labels::labels_of;

type Rules = Arc<Vec<PolicyRule>>;

struct Binding {
    /// Where a RoleBinding lives; empty for a ClusterRoleBinding.
    namespace: String,
    subjects: Vec<Subject>,
    rules: Rules,
}

/// The RBAC objects of the four kinds, as the store holds them.
#[derive(Default)]
pub struct Objects {
    pub roles: Vec<Arc<Value>>,
    pub cluster_roles: Vec<Arc<Value>>,
    pub role_bindings: Vec<Arc<Value>>,
    pub cluster_role_bindings: Vec<Arc<Value>>,
}

#[derive(Default)]
pub struct Index {
    cluster_roles: HashMap<String, Rules>,
    roles: HashMap<(String, String), Rules>,
    cluster_bindings: Vec<Binding>,
    bindings: HashMap<String, Vec<Binding>>,
}

fn name(o: &Value) -> String {
    crate::objects::name_of(o).to_string()
}

fn namespace(o: &Value) -> String {
    crate::objects::namespace_of(o).to_string()
}

fn own_rules(o: &Value) -> Vec<PolicyRule> {
    o.get("rules")
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default()
}

/// The rules of a ClusterRole, with those of the roles its
/// `aggregationRule` selects (as the clusterrole-aggregation controller
/// writes them into it).
fn cluster_role_rules(role: &Value, all: &[Arc<Value>]) -> Vec<PolicyRule> {
    let Some(selectors) = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
    else {
        return own_rules(role);
    };
    let selectors: Vec<LabelSelector> = selectors
        .iter()
        .filter_map(|s| LabelSelector::from_k8s(Some(s)).ok())
        .collect();
    let mut out: Vec<PolicyRule> = Vec::new();
    for other in all {
        if name(other) == name(role) {
            continue;
        }
        let labels = labels_of(other);
        if selectors.iter().any(|s| s.matches(&labels)) {
            for r in own_rules(other) {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
    }
    out
}

fn subjects(o: &Value) -> Vec<Subject> {
    o.get("subjects")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default()
}

fn applies(s: &Subject, user: &User, binding_namespace: &str) -> bool {
    match s.kind.as_str() {
        "User" => s.name == user.name,
        "Group" => user.groups.contains(&s.name),
        "ServiceAccount" => {
            let ns = s
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            user.name
                .strip_prefix("system:serviceaccount:")
                .and_then(|rest| rest.split_once(':'))
                .is_some_and(|(n, sa)| n == ns && sa == s.name)
        }
        _ => false,
    }
}

impl Index {
    pub fn build(objects: &Objects) -> Index {
        let cluster_roles: HashMap<String, Rules> = objects
            .cluster_roles
            .iter()
            .map(|r| {
                (
                    name(r),
                    Arc::new(cluster_role_rules(r, &objects.cluster_roles)),
                )
            })
            .collect();
        let roles: HashMap<(String, String), Rules> = objects
            .roles
            .iter()
            .map(|r| ((namespace(r), name(r)), Arc::new(own_rules(r))))
            .collect();
        let empty: Rules = Arc::new(Vec::new());
        let role_of = |o: &Value, ns: &str| -> Rules {
            let kind = o.pointer("/roleRef/kind").and_then(Value::as_str);
            let role = o
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let found = match kind {
                Some("ClusterRole") => cluster_roles.get(role),
                Some("Role") => roles.get(&(ns.to_string(), role.to_string())),
                _ => None,
            };
            found.cloned().unwrap_or_else(|| empty.clone())
        };
        let cluster_bindings = objects
            .cluster_role_bindings
            .iter()
            .map(|b| Binding {
                namespace: String::new(),
                subjects: subjects(b),
                // A ClusterRoleBinding names only ClusterRoles.
                rules: if b.pointer("/roleRef/kind").and_then(Value::as_str) == Some("ClusterRole")
                {
                    role_of(b, "")
                } else {
                    empty.clone()
                },
            })
            .collect();
        let mut bindings: HashMap<String, Vec<Binding>> = HashMap::new();
        for b in &objects.role_bindings {
            let ns = namespace(b);
            let binding = Binding {
                rules: role_of(b, &ns),
                subjects: subjects(b),
                namespace: ns.clone(),
            };
            bindings.entry(ns).or_default().push(binding);
        }
        Index {
            cluster_roles,
            roles,
            cluster_bindings,
            bindings,
        }
    }

    fn bindings_for<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a Binding> {
        let local = (!namespace.is_empty())
            .then(|| self.bindings.get(namespace))
            .flatten();
        self.cluster_bindings
            .iter()
            .chain(local.into_iter().flatten())
    }

    /// Whether a role bound to `user` allows the request.
    pub fn allows(&self, user: &User, a: &Attributes) -> bool {
        self.bindings_for(a.namespace()).any(|b| {
            b.subjects.iter().any(|s| applies(s, user, &b.namespace))
                && b.rules.iter().any(|r| rules::allows(r, a))
        })
    }

    /// Every rule bound to `user` in `namespace` (cluster-wide ones only
    /// when it is empty).
    pub fn rules_for(&self, user: &User, namespace: &str) -> Vec<PolicyRule> {
        let mut out: Vec<PolicyRule> = Vec::new();
        for b in self.bindings_for(namespace) {
            if b.subjects.iter().any(|s| applies(s, user, &b.namespace)) {
                out.extend(b.rules.iter().cloned());
            }
        }
        out
    }

    /// The rules of the role a binding refers to, if it exists.
    pub fn role_rules(&self, kind: &str, namespace: &str, name: &str) -> Option<Rules> {
        match kind {
            "ClusterRole" => self.cluster_roles.get(name).cloned(),
            "Role" => self
                .roles
                .get(&(namespace.to_string(), name.to_string()))
                .cloned(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn arc(v: Value) -> Arc<Value> {
        Arc::new(v)
    }

    fn index() -> Index {
        Index::build(&Objects {
            cluster_roles: vec![
                arc(json!({"metadata": {"name": "view"},
                    "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "view"}}]}})),
                arc(
                    json!({"metadata": {"name": "pods-reader", "labels": {"agg": "view"}},
                    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
                ),
                arc(json!({"metadata": {"name": "secrets"},
                    "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]})),
            ],
            roles: vec![arc(json!({"metadata": {"name": "cm", "namespace": "team"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]}))],
            cluster_role_bindings: vec![arc(json!({"metadata": {"name": "viewers"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "Group", "name": "viewers"}]}))],
            role_bindings: vec![
                arc(json!({"metadata": {"name": "cm", "namespace": "team"},
                    "roleRef": {"kind": "Role", "name": "cm"},
                    "subjects": [{"kind": "User", "name": "alice"},
                                 {"kind": "ServiceAccount", "name": "bot"}]})),
                arc(json!({"metadata": {"name": "s", "namespace": "team"},
                    "roleRef": {"kind": "ClusterRole", "name": "secrets"},
                    "subjects": [{"kind": "User", "name": "alice"}]})),
            ],
        })
    }

    #[test]
    fn bindings_grant_their_roles_rules_in_their_scope() {
        let ix = index();
        let alice = user("alice", &[]);
        let viewer = user("bob", &["viewers"]);
        let bot = user("system:serviceaccount:team:bot", &[]);
        let cm = |ns: &str| Attributes::resource("create", "", "configmaps", "", ns, "");
        let secret = |ns: &str| Attributes::resource("get", "", "secrets", "", ns, "x");
        let pods = |ns: &str| Attributes::resource("list", "", "pods", "", ns, "");
        assert!(ix.allows(&alice, &cm("team")));
        assert!(!ix.allows(&alice, &cm("other")));
        assert!(ix.allows(&alice, &secret("team")));
        assert!(!ix.allows(&alice, &secret("other")));
        assert!(!ix.allows(&alice, &pods("team")));
        // The aggregated ClusterRole holds the selected role's rules, everywhere.
        assert!(ix.allows(&viewer, &pods("team")));
        assert!(ix.allows(&viewer, &pods("")));
        assert!(!ix.allows(&viewer, &cm("team")));
        assert!(ix.allows(&bot, &cm("team")));
        assert!(!ix.allows(&user("system:serviceaccount:other:bot", &[]), &cm("team")));
        assert_eq!(ix.rules_for(&alice, "team").len(), 2);
        assert!(ix.rules_for(&alice, "").is_empty());
    }
}
