//! What a request path names: discovery, OpenAPI, or a resource (with
//! namespace, name and subresource).

use crate::resources::{Catalog, ResourceType, Subresource};

/// A request on a resource.
#[derive(Debug)]
pub struct ResourcePath {
    pub rt: &'static ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
    /// The legacy `/watch/` path form.
    pub watch: bool,
}

#[derive(Debug)]
pub enum Route {
    /// `/api`
    CoreGroups,
    /// `/apis`
    Groups,
    /// `/api/v1`, `/apis/<group>/<version>`
    GroupVersion(&'static str, &'static str),
    /// `/apis/<group>`
    Group(&'static str),
    OpenApiIndex,
    OpenApiDocument(String),
    /// `/openapi/v2`
    OpenApiV2,
    Resource(ResourcePath),
    /// A path naming nothing served (a 404, with a message).
    NotFound(String),
}

/// Parses a request path.
pub fn route(catalog: &'static Catalog, path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api"] => Route::CoreGroups,
        ["apis"] => Route::Groups,
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiIndex,
        ["openapi", "v3", rest @ ..] => Route::OpenApiDocument(rest.join("/")),
        ["api", version, rest @ ..] => resource_route(catalog, "", version, rest),
        ["apis", group] => match catalog
            .group_versions()
            .into_iter()
            .find(|(g, _)| g == group)
        {
            Some((g, _)) => Route::Group(g),
            None => Route::NotFound("the server could not find the requested resource".into()),
        },
        ["apis", group, version, rest @ ..] => resource_route(catalog, group, version, rest),
        _ => Route::NotFound("the server could not find the requested resource".into()),
    }
}

fn resource_route(catalog: &'static Catalog, group: &str, version: &str, rest: &[&str]) -> Route {
    let Some(&(g, v)) = catalog
        .group_versions()
        .iter()
        .find(|(g, v)| *g == group && *v == version)
    else {
        return Route::NotFound("the server could not find the requested resource".into());
    };
    let (watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    if rest.is_empty() {
        return Route::GroupVersion(g, v);
    }
    let lookup = |plural: &str| catalog.lookup(g, v, plural);
    let not_found = || {
        Route::NotFound(format!(
            "the server could not find the requested resource ({})",
            rest.join("/")
        ))
    };
    // `namespaces/<ns>/<plural>/...` when <plural> is a namespaced resource;
    // otherwise a cluster-scoped path (including namespaces themselves).
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if lookup(plural).is_some_and(|rt| rt.namespaced) => {
            (Some(ns.to_string()), {
                let mut v = vec![*plural];
                v.extend_from_slice(tail);
                v
            })
        }
        _ => (None, rest.to_vec()),
    };
    let Some(rt) = lookup(rest[0]) else {
        return not_found();
    };
    let name = rest.get(1).map(|n| n.to_string());
    let subresource = match rest.get(2) {
        None => None,
        Some(s) => match Subresource::parse(s).filter(|sub| rt.has(*sub)) {
            Some(sub) => Some(sub),
            None => return not_found(),
        },
    };
    // Only proxy takes a path after its subresource.
    if rest.len() > 3 && subresource != Some(Subresource::Proxy) {
        return not_found();
    }
    Route::Resource(ResourcePath {
        rt,
        namespace,
        name,
        subresource,
        watch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match route(Catalog::global(), path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn resource_paths_resolve_scope_name_and_subresource() {
        let r = res("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(r.rt.plural, "pods");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource, Some(Subresource::Status));

        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(r.rt.plural, "namespaces");
        assert_eq!(r.name.as_deref(), Some("kube-system"));

        let r = res("/api/v1/namespaces/x/finalize");
        assert_eq!(r.subresource, Some(Subresource::Finalize));

        let r = res("/apis/apps/v1/deployments");
        assert!(r.namespace.is_none() && r.name.is_none());

        let r = res("/api/v1/watch/namespaces/default/pods");
        assert!(r.watch);
    }

    #[test]
    fn unknown_resources_and_groups_are_not_found() {
        for p in [
            "/api/v1/widgets",
            "/apis/example.com/v1/things",
            "/api/v1/pods/x/bogus",
            "/nope",
        ] {
            assert!(
                matches!(route(Catalog::global(), p), Route::NotFound(_)),
                "{p}"
            );
        }
        assert!(matches!(
            route(Catalog::global(), "/apis/apps/v1"),
            Route::GroupVersion("apps", "v1")
        ));
    }
}
