//! Serving certificates for nodes: a node presents its credential and
//! gets a certificate for its name and addresses signed by the cluster CA
//! (as k3s's supervisor issues kubelet serving certificates). The API
//! server then verifies a node's certificate against the CA and the Node's
//! name before it sends the node token to it (`node_proxy.rs`).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use peapod_common::wire::{ServingCertificate, ServingCertificateRequest};
use serde_json::json;

use super::auth::User;
use super::{Api, error_response, json_response};
use crate::error::ApiError;
use crate::resources::validation::names;

pub use peapod_common::wire::SERVING_CERTIFICATE_PATH as PATH;

/// A request names one node and a few addresses.
const MAX_BODY: usize = 4096;
const MAX_ADDRESSES: usize = 8;

/// What signs the certificates: the cluster CA.
pub struct Issuer {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
}

pub async fn handle(api: &Arc<Api>, user: &User, req: Request) -> Response {
    match issue(api, user, req).await {
        Ok(c) => json_response(StatusCode::OK, &json!(c)),
        Err(e) => error_response(&e),
    }
}

async fn issue(api: &Arc<Api>, user: &User, req: Request) -> Result<ServingCertificate, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    if !user
        .groups
        .iter()
        .any(|g| g == "system:nodes" || g == "system:masters")
    {
        return Err(ApiError::forbidden(format!(
            "User {:?} cannot create node serving certificates",
            user.name
        )));
    }
    let Some(issuer) = &api.node_issuer else {
        return Err(ApiError::service_unavailable(
            "this server does not issue node certificates",
        ));
    };
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| ApiError::bad_request(format!("the request is over {MAX_BODY} bytes")))?;
    let body: ServingCertificateRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let name = body.node_name.as_str();
    let problems = names::dns1123_subdomain(name);
    if name.is_empty() || !problems.is_empty() {
        return Err(ApiError::bad_request(format!(
            "nodeName {name:?}: {}",
            problems.join("; ")
        )));
    }
    if body.addresses.len() > MAX_ADDRESSES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_ADDRESSES} addresses"
        )));
    }
    let ips = body
        .addresses
        .iter()
        .map(|a| a.parse::<IpAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ApiError::bad_request("addresses must be IP addresses"))?;
    let (cert, key) = crate::pki::node_serving(&issuer.ca_cert_pem, &issuer.ca_key_pem, name, &ips)
        .map_err(ApiError::internal)?;
    Ok(ServingCertificate {
        certificate: cert,
        key,
    })
}
