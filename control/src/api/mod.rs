//! The HTTP edge: Kubernetes REST paths, discovery, OpenAPI, watch,
//! authentication, served over TLS. Everything object-related is delegated
//! to `objects`; this layer only speaks HTTP and the Kubernetes wire forms.

pub mod auth;
mod authorize;
pub mod codec;
mod discovery;
mod encoded;
mod hpa_v1;
mod impersonate;
mod metrics;
pub mod node_cert;
mod node_proxy;
mod params;
mod path;
mod protobuf;
mod resource;
mod review;
mod scale;
mod service_account_token;
mod service_proxy;
mod watch;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use self::auth::{Auth, User};
use self::codec::{bytes_response, error_response, json_response};
use self::path::Route;
use crate::error::ApiError;
use crate::objects::Objects;
use crate::openapi::Schemas;
use crate::resources::Catalog;

/// Everything a request handler needs.
pub struct Api {
    pub objects: Objects,
    pub catalog: &'static Catalog,
    pub schemas: &'static Schemas,
    pub auth: Auth,
    /// Signs and checks ServiceAccount tokens, when this server issues them.
    pub tokens: Option<Arc<crate::tokens::Signer>>,
    /// Who may do what (RBAC; `system:masters` anything).
    pub authorizer: crate::authz::Authorizer,
    /// `host:port` clients reach this server at, for `/api` discovery.
    pub server_address: String,
    /// The cluster CA, served at `/cacerts` for nodes to verify against their join token.
    pub ca_pem: String,
    /// What the server presents to nodes' APIs (logs, exec).
    pub node_token: String,
    /// Connects to nodes' APIs, trusting only certificates the cluster CA
    /// signed for the Node's name.
    pub node_tls: tokio_rustls::TlsConnector,
    /// Signs nodes' serving certificates (`node_cert.rs`), when this server
    /// holds the CA key.
    pub node_issuer: Option<node_cert::Issuer>,
    pub encoded: encoded::EncodedCache,
    /// Open watches per client address.
    pub watches: peapod_common::conn::Clients,
}

/// Watches one client address may hold open at once: each holds a task
/// and up to a few MiB of events; a node or kubectl holds a handful.
pub const MAX_WATCHES_PER_CLIENT: usize = 1000;

impl Api {
    pub fn new(
        objects: Objects,
        auth: Auth,
        server_address: String,
        ca_pem: String,
        node_token: String,
    ) -> Api {
        Api {
            objects,
            catalog: Catalog::global(),
            schemas: Schemas::global(),
            auth,
            authorizer: crate::authz::Authorizer::masters_only(),
            tokens: None,
            server_address,
            node_tls: node_proxy::tls_connector(&ca_pem),
            ca_pem,
            node_token,
            node_issuer: None,
            encoded: encoded::EncodedCache::new(32 * 1024),
            watches: peapod_common::conn::Clients::with_limit(MAX_WATCHES_PER_CLIENT),
        }
    }

    /// The same, issuing nodes' serving certificates with the cluster CA.
    pub fn with_node_issuer(mut self, issuer: node_cert::Issuer) -> Api {
        self.node_issuer = Some(issuer);
        self
    }

    /// The same, authorizing requests with `authorizer`.
    pub fn with_authorizer(mut self, authorizer: crate::authz::Authorizer) -> Api {
        self.authorizer = authorizer;
        self
    }

    /// The same, issuing and accepting ServiceAccount tokens `signer` signs.
    pub fn with_tokens(mut self, signer: crate::tokens::Signer) -> Api {
        self.tokens = Some(Arc::new(signer));
        self
    }

    /// The same, allowing `limit` open watches per client address.
    pub fn with_watch_limit(mut self, limit: usize) -> Api {
        self.watches = peapod_common::conn::Clients::with_limit(limit);
        self
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new().fallback(handle).with_state(self)
    }
}

async fn handle(State(api): State<Arc<Api>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let response = match public(&path, &api.ca_pem) {
        Some(r) => r,
        None => {
            let certificate = req
                .extensions()
                .get::<Option<peapod_common::tls::ClientCertificate>>()
                .and_then(Option::as_ref);
            let found = match api.auth.authenticate(req.headers(), certificate) {
                Some(user) => Some(user),
                None => service_account_token::user(&api, req.headers()).await,
            };
            match found {
                None => error_response(&ApiError::unauthorized()),
                Some(caller) => match impersonate::user(&api.authorizer, caller, req.headers()) {
                    Ok(user) => dispatch(&api, user, req).await,
                    Err(e) => error_response(&e),
                },
            }
        }
    };
    let took = started.elapsed();
    peapod_common::telemetry::Telemetry::global().api_request(
        method.as_str(),
        response.status().as_u16(),
        took,
    );
    tracing::debug!("{method} {path} {} {took:?}", response.status().as_u16());
    response
}

/// Endpoints any client may read without credentials, as Kubernetes' default
/// `system:public-info-viewer` role allows.
fn public(path: &str, ca_pem: &str) -> Option<Response> {
    let root = path.trim_end_matches('/');
    match root {
        // The CA is public; a joining node checks it against the hash in its token.
        "/cacerts" => Some(bytes_response(
            StatusCode::OK,
            "application/x-pem-file",
            ca_pem.as_bytes().to_vec(),
        )),
        "/version" => Some(json_response(
            StatusCode::OK,
            &json!({
                "major": crate::version::MAJOR,
                "minor": crate::version::MINOR,
                "gitVersion": crate::version::GIT_VERSION,
                "gitCommit": "",
                "gitTreeState": "clean",
                "buildDate": "",
                "goVersion": "",
                "compiler": "rustc",
                "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
            }),
        )),
        _ if ["/healthz", "/livez", "/readyz"]
            .iter()
            .any(|p| root == *p || root.starts_with(&format!("{p}/"))) =>
        {
            Some(bytes_response(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                b"ok".to_vec(),
            ))
        }
        _ => None,
    }
}

/// The architecture as Go names it (`amd64`, `arm64`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

async fn dispatch(api: &Arc<Api>, user: User, req: Request) -> Response {
    if req.uri().path() == node_cert::PATH {
        return node_cert::handle(api, &user, req).await;
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let get = req.method() == Method::GET;
    let route = path::route(api.catalog, req.uri().path());
    // `system:masters` is never evaluated: its requests skip naming their attributes.
    if !crate::authz::is_master(&user) {
        let wanted = authorize::of(&route, req.method(), req.uri().path(), req.uri().query());
        if let Err(e) = api.authorizer.check(&user, &wanted) {
            return error_response(&e);
        }
    }
    let not_get = || {
        error_response(&ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ))
    };
    match route {
        Route::CoreGroups | Route::Groups if !get => not_get(),
        Route::CoreGroups if discovery::wants_aggregated(&accept) => aggregated(api, true),
        Route::Groups if discovery::wants_aggregated(&accept) => aggregated(api, false),
        Route::CoreGroups => json_response(
            StatusCode::OK,
            &discovery::core_versions(&api.server_address),
        ),
        Route::Groups => json_response(StatusCode::OK, &discovery::groups(api.catalog)),
        Route::Group(g) => json_response(StatusCode::OK, &discovery::group(api.catalog, g)),
        Route::GroupVersion(g, v) => {
            json_response(StatusCode::OK, &discovery::resource_list(api.catalog, g, v))
        }
        Route::OpenApiIndex => json_response(StatusCode::OK, &api.schemas.index()),
        Route::OpenApiV2 => bytes_response(
            StatusCode::OK,
            crate::openapi::v2::CONTENT_TYPE,
            crate::openapi::v2::document(),
        ),
        Route::OpenApiDocument(doc) => match api.schemas.document(&doc) {
            Some((body, hash)) => {
                let mut r = bytes_response(StatusCode::OK, "application/json", body.to_vec());
                if let Ok(etag) = format!("\"{hash}\"").parse() {
                    r.headers_mut().insert(header::ETAG, etag);
                }
                r
            }
            None => error_response(&ApiError::not_found_path(format!(
                "the server could not find the OpenAPI document {doc}"
            ))),
        },
        Route::NotFound(_)
            if get
                && matches!(
                    req.uri().path().trim_end_matches('/'),
                    "/.well-known/openid-configuration" | "/openid/v1/jwks"
                )
                && api.tokens.is_some() =>
        {
            let signer = api.tokens.as_ref().expect("checked");
            if req.uri().path().starts_with("/openid") {
                json_response(StatusCode::OK, &signer.jwks())
            } else {
                json_response(StatusCode::OK, &signer.openid_configuration())
            }
        }
        Route::NotFound(_) if get && req.uri().path() == "/metrics" => bytes_response(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            peapod_common::telemetry::Telemetry::global()
                .render()
                .into_bytes(),
        ),
        Route::NotFound(message) => error_response(&ApiError::not_found_path(message)),
        Route::Resource(rp) if rp.rt.group == crate::resources::metrics::GROUP => {
            match metrics::handle(api, rp, req).await {
                Ok(r) => r,
                Err(e) => error_response(&e),
            }
        }
        Route::Resource(rp) if review::is_review(&rp) => {
            match review::handle(api, &user, rp, req).await {
                Ok(r) => r,
                Err(e) => error_response(&e),
            }
        }
        Route::Resource(rp) if hpa_v1::is_v1_hpa(&rp) => {
            match hpa_v1::handle(api, &user, rp, req).await {
                Ok(r) => r,
                Err(e) => error_response(&e),
            }
        }
        Route::Resource(rp) => match resource::handle(api, &user, rp, req).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        },
    }
}

fn aggregated(api: &Api, core: bool) -> Response {
    let body = serde_json::to_vec(&discovery::aggregated(api.catalog, core)).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    if let Ok(ct) = discovery::AGGREGATED_CONTENT_TYPE.parse() {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}
