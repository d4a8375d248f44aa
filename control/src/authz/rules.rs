//! One RBAC rule against one request, and whether a set of rules holds
//! every right another set grants (escalation prevention), in the terms of
//! kube-apiserver's `rbac` authorizer and `validation.Covers`.

use k8s_openapi::api::rbac::v1::PolicyRule;

use super::attributes::{Attributes, Target};

const ALL: &str = "*";

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|s| s == ALL || s == want)
}

fn list(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or_default()
}

/// `*`, the name itself, or `*/sub` for a subresource.
fn resource_matches(rule: &[String], resource: &str, subresource: &str) -> bool {
    rule.iter().any(|r| {
        if r == ALL {
            return true;
        }
        if subresource.is_empty() {
            return r == resource;
        }
        r.split_once('/')
            .is_some_and(|(res, sub)| (res == resource || res == ALL) && sub == subresource)
    })
}

/// `*`, the path itself, or a prefix ending in `*`.
fn path_matches(rule: &[String], path: &str) -> bool {
    rule.iter().any(|u| {
        u == ALL
            || u == path
            || u.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

/// Whether `rule` allows the request.
pub fn allows(rule: &PolicyRule, a: &Attributes) -> bool {
    if !has(&rule.verbs, &a.verb) {
        return false;
    }
    match &a.target {
        Target::NonResource { path } => path_matches(list(&rule.non_resource_urls), path),
        Target::Resource {
            group,
            resource,
            subresource,
            name,
            ..
        } => {
            let names = list(&rule.resource_names);
            has(list(&rule.api_groups), group)
                && resource_matches(list(&rule.resources), resource, subresource)
                && (names.is_empty() || names.iter().any(|n| n == name))
        }
    }
}

/// One right a rule grants: a verb on one group's resource (maybe one
/// name), or a verb on one path.
struct Atom<'a> {
    verb: &'a str,
    group: Option<&'a str>,
    resource: &'a str,
    name: Option<&'a str>,
    path: Option<&'a str>,
}

fn atoms(rule: &PolicyRule) -> Vec<Atom<'_>> {
    let mut out = Vec::new();
    for verb in &rule.verbs {
        for path in list(&rule.non_resource_urls) {
            out.push(Atom {
                verb,
                group: None,
                resource: "",
                name: None,
                path: Some(path),
            });
        }
        for group in list(&rule.api_groups) {
            for resource in list(&rule.resources) {
                let names = list(&rule.resource_names);
                if names.is_empty() {
                    out.push(Atom {
                        verb,
                        group: Some(group),
                        resource,
                        name: None,
                        path: None,
                    });
                }
                for name in names {
                    out.push(Atom {
                        verb,
                        group: Some(group),
                        resource,
                        name: Some(name),
                        path: None,
                    });
                }
            }
        }
    }
    out
}

/// Whether `owner` grants at least `atom` (`*` in the owner covers
/// anything; `*` in the atom only another `*`).
fn covers_atom(owner: &PolicyRule, atom: &Atom) -> bool {
    if !has(&owner.verbs, atom.verb) {
        return false;
    }
    if let Some(path) = atom.path {
        return list(&owner.non_resource_urls).iter().any(|u| {
            u == ALL
                || u == path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix))
        });
    }
    let Some(group) = atom.group else {
        return false;
    };
    if !has(list(&owner.api_groups), group) {
        return false;
    }
    let resources = list(&owner.resources);
    let resource_ok = resources.iter().any(|r| r == ALL || r == atom.resource)
        || atom
            .resource
            .split_once('/')
            .is_some_and(|(_, sub)| resources.iter().any(|r| r.strip_prefix("*/") == Some(sub)));
    let names = list(&owner.resource_names);
    resource_ok && (names.is_empty() || atom.name.is_some_and(|n| names.iter().any(|o| o == n)))
}

/// The rights in `wanted` that no rule of `held` grants, as
/// `verb group/resource[name]` or `verb path` (empty: all are held).
pub fn uncovered(held: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<String> {
    let mut missing = Vec::new();
    for rule in wanted {
        for atom in atoms(rule) {
            if held.iter().any(|h| covers_atom(h, &atom)) {
                continue;
            }
            missing.push(match (atom.path, atom.group) {
                (Some(path), _) => format!("{{NonResourceURLs:[{path}], Verbs:[{}]}}", atom.verb),
                (None, group) => format!(
                    "{{APIGroups:[{:?}], Resources:[{:?}]{}, Verbs:[{:?}]}}",
                    group.unwrap_or_default(),
                    atom.resource,
                    atom.name
                        .map(|n| format!(", ResourceNames:[{n:?}]"))
                        .unwrap_or_default(),
                    atom.verb
                ),
            });
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect());
        PolicyRule {
            api_groups: v(groups),
            resources: v(resources),
            verbs: verbs.iter().map(|x| x.to_string()).collect(),
            ..Default::default()
        }
    }

    fn get(resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes::resource("get", "", resource, sub, "default", name)
    }

    #[test]
    fn a_rule_matches_verb_group_resource_subresource_and_name() {
        let r = rule(&[""], &["pods", "pods/log"], &["get", "list"]);
        assert!(allows(&r, &get("pods", "", "web")));
        assert!(allows(&r, &get("pods", "log", "web")));
        assert!(!allows(&r, &get("pods", "exec", "web")));
        assert!(!allows(&r, &get("secrets", "", "web")));
        assert!(!allows(
            &r,
            &Attributes::resource("create", "", "pods", "", "default", "")
        ));
        assert!(!allows(
            &r,
            &Attributes::resource("get", "apps", "pods", "", "default", "x")
        ));
        let any_status = rule(&["*"], &["*/status"], &["*"]);
        assert!(allows(&any_status, &get("pods", "status", "web")));
        assert!(!allows(&any_status, &get("pods", "", "web")));
        let mut named = rule(&[""], &["configmaps"], &["get"]);
        named.resource_names = Some(vec!["one".into()]);
        assert!(allows(
            &named,
            &Attributes::resource("get", "", "configmaps", "", "d", "one")
        ));
        assert!(!allows(
            &named,
            &Attributes::resource("get", "", "configmaps", "", "d", "two")
        ));
        assert!(!allows(
            &named,
            &Attributes::resource("get", "", "configmaps", "", "d", "")
        ));
    }

    #[test]
    fn non_resource_rules_match_paths_and_prefixes() {
        let r = PolicyRule {
            non_resource_urls: Some(vec!["/healthz".into(), "/apis/*".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        };
        assert!(allows(&r, &Attributes::path("get", "/healthz")));
        assert!(allows(&r, &Attributes::path("get", "/apis/apps/v1")));
        assert!(!allows(&r, &Attributes::path("get", "/metrics")));
        assert!(!allows(&r, &Attributes::path("post", "/healthz")));
        // A resource rule never matches a path.
        assert!(!allows(
            &rule(&["*"], &["*"], &["*"]),
            &Attributes::path("get", "/healthz")
        ));
    }

    #[test]
    fn rules_cover_only_what_they_hold() {
        let held = vec![rule(&[""], &["pods", "configmaps"], &["get", "list"])];
        assert!(uncovered(&held, &[rule(&[""], &["pods"], &["get"])]).is_empty());
        let more = uncovered(
            &held,
            &[rule(&[""], &["pods", "secrets"], &["get", "delete"])],
        );
        assert_eq!(more.len(), 3, "{more:?}");
        // A wildcard asked for is held only by a wildcard.
        assert!(!uncovered(&held, &[rule(&[""], &["*"], &["get"])]).is_empty());
        let admin = vec![rule(&["*"], &["*"], &["*"])];
        assert!(uncovered(&admin, &[rule(&["apps"], &["*"], &["*"])]).is_empty());
        let mut named = rule(&[""], &["configmaps"], &["get"]);
        named.resource_names = Some(vec!["a".into()]);
        assert!(uncovered(&[named.clone()], &[named.clone()]).is_empty());
        assert!(!uncovered(&[named], &[rule(&[""], &["configmaps"], &["get"])]).is_empty());
    }
}
