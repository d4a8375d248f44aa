//! What a request asks to do, in the terms RBAC rules speak (kube-apiserver's
//! `RequestInfo`): a verb on a resource of a group, perhaps a subresource,
//! namespace and name; or a verb on a path outside the resource tree.

use axum::http::Method;

use crate::api::auth::User;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Resource {
        group: String,
        resource: String,
        subresource: String,
        /// Empty for cluster-scoped requests and lists across namespaces.
        namespace: String,
        /// Empty for lists and creates.
        name: String,
    },
    /// A path outside `/api` and `/apis` resources (`/healthz`, `/metrics`,
    /// discovery, OpenAPI).
    NonResource { path: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub target: Target,
}

impl Attributes {
    pub fn resource(
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            verb: verb.to_string(),
            target: Target::Resource {
                group: group.to_string(),
                resource: resource.to_string(),
                subresource: subresource.to_string(),
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
        }
    }

    pub fn path(verb: &str, path: &str) -> Attributes {
        Attributes {
            verb: verb.to_string(),
            target: Target::NonResource {
                path: path.to_string(),
            },
        }
    }

    pub fn namespace(&self) -> &str {
        match &self.target {
            Target::Resource { namespace, .. } => namespace,
            Target::NonResource { .. } => "",
        }
    }

    /// kube-apiserver's words for a denial (without the `... is
    /// forbidden:` prefix the resource's error adds).
    pub fn denial(&self, user: &User) -> String {
        match &self.target {
            Target::NonResource { path } => {
                format!("User {:?} cannot {} path {path:?}", user.name, self.verb)
            }
            Target::Resource {
                group,
                resource,
                subresource,
                namespace,
                ..
            } => {
                let what = if subresource.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource}/{subresource}")
                };
                let scope = if namespace.is_empty() {
                    "at the cluster scope".to_string()
                } else {
                    format!("in the namespace {namespace:?}")
                };
                format!(
                    "User {:?} cannot {} resource {what:?} in API group {group:?} {scope}",
                    user.name, self.verb
                )
            }
        }
    }
}

/// The verb of a resource request, as kube-apiserver names it: reads of
/// one object are `get`, of a collection `list` (or `watch`), writes are
/// `create`, `update`, `patch`, `delete` and `deletecollection`.
pub fn resource_verb(method: &Method, named: bool, watch: bool) -> &'static str {
    match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "",
    }
}

/// The verb of a request for a path outside the resource tree: the
/// method's name in lower case, as kube-apiserver does.
pub fn path_verb(method: &Method) -> String {
    method.as_str().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> User {
        User {
            name: "alice".into(),
            groups: vec![],
        }
    }

    #[test]
    fn denials_read_as_kube_apiservers() {
        let a = Attributes::resource("create", "", "pods", "", "default", "");
        assert_eq!(
            a.denial(&alice()),
            r#"User "alice" cannot create resource "pods" in API group "" in the namespace "default""#
        );
        let a = Attributes::resource("get", "", "pods", "log", "ns1", "web");
        assert_eq!(
            a.denial(&alice()),
            r#"User "alice" cannot get resource "pods/log" in API group "" in the namespace "ns1""#
        );
        let a = Attributes::resource("list", "apps", "deployments", "", "", "");
        assert_eq!(
            a.denial(&alice()),
            r#"User "alice" cannot list resource "deployments" in API group "apps" at the cluster scope"#
        );
        let a = Attributes::path("get", "/metrics");
        assert_eq!(
            a.denial(&alice()),
            r#"User "alice" cannot get path "/metrics""#
        );
    }

    #[test]
    fn verbs_follow_method_name_and_watch() {
        assert_eq!(resource_verb(&Method::GET, true, false), "get");
        assert_eq!(resource_verb(&Method::GET, false, false), "list");
        assert_eq!(resource_verb(&Method::GET, false, true), "watch");
        assert_eq!(
            resource_verb(&Method::DELETE, false, false),
            "deletecollection"
        );
        assert_eq!(resource_verb(&Method::PATCH, true, false), "patch");
        assert_eq!(path_verb(&Method::GET), "get");
    }
}
