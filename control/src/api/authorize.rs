//! The authorization attributes of an HTTP request (kube-apiserver's
//! `RequestInfoFactory`): resource requests by their route and method,
//! everything else by its path.

use axum::http::Method;

use super::params::Params;
use super::path::Route;
use crate::authz::{Attributes, attributes};
use crate::resources::Subresource;

pub fn of(route: &Route, method: &Method, path: &str, query: Option<&str>) -> Attributes {
    let Route::Resource(rp) = route else {
        return Attributes::path(&attributes::path_verb(method), path);
    };
    let sub = rp.subresource.map(Subresource::name).unwrap_or_default();
    let verb = match rp.subresource {
        // Opening a stream into a pod is a create whatever the method
        // (a WebSocket upgrade is a GET), as kube-apiserver checks it.
        Some(Subresource::Exec | Subresource::Attach | Subresource::PortForward) => "create",
        _ => attributes::resource_verb(
            method,
            rp.name.is_some(),
            rp.watch || Params::parse(query).watch(),
        ),
    };
    Attributes::resource(
        verb,
        rp.rt.group,
        rp.rt.plural,
        sub,
        rp.namespace.as_deref().unwrap_or_default(),
        rp.name.as_deref().unwrap_or_default(),
    )
}
