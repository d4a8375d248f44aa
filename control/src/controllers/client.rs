//! The API client the control plane's own loops use: a `kube::Client`
//! whose transport is the API router itself, in process. Controllers and
//! the scheduler therefore speak the Kubernetes API exactly as remote
//! clients do (and could run elsewhere with an HTTPS client instead),
//! without paying for TCP and TLS inside one process.

use std::sync::Arc;

use axum::http::{HeaderValue, Request, header};
use tower::ServiceBuilder;

use crate::api::Api;

/// A client authenticated with `token` against the in-process API.
pub fn in_process(api: Arc<Api>, token: &str) -> kube::Client {
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).expect("token is ASCII");
    let service = ServiceBuilder::new()
        .map_request(move |mut req: Request<kube::client::Body>| {
            req.headers_mut()
                .insert(header::AUTHORIZATION, bearer.clone());
            req
        })
        .service(api.router());
    kube::Client::new(service, "default")
}
