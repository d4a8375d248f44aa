//! `pods/proxy` on the node: an HTTP request the API server passes on is
//! sent to the pod's address and port, and the pod's answer (status,
//! headers, body, streamed) goes back as it is. The node reaches its own
//! pods wherever the API server runs.

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Headers of one hop only (RFC 9110), and the node's own credential.
const NOT_FORWARDED: &[HeaderName] = &[
    header::CONNECTION,
    header::HOST,
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn forwarded(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for name in NOT_FORWARDED {
        out.remove(name);
    }
    out.remove("keep-alive");
    out
}

/// Redirects go back to the caller, as kube-apiserver's proxy leaves them.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain HTTP client builds")
    })
}

/// Sends `req` to `http://<pod_ip>:<port>/<rest>` and returns the answer.
pub async fn serve(pod_ip: Ipv4Addr, port: u16, rest: &str, req: Request) -> Response {
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let url = format!("http://{pod_ip}:{port}/{rest}{query}");
    let (parts, body) = req.into_parts();
    let sent = client()
        .request(parts.method, &url)
        .headers(forwarded(&parts.headers))
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    let answer = match sent {
        Ok(a) => a,
        Err(e) => {
            let message = format!("error trying to reach service: {e}");
            return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
        }
    };
    let mut reply = Response::builder().status(answer.status().as_u16());
    for (k, v) in forwarded(answer.headers()).iter() {
        reply = reply.header(k, v);
    }
    reply
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_headers_and_the_node_credential_stay_behind() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer node-token".parse().unwrap());
        h.insert(header::CONNECTION, "keep-alive".parse().unwrap());
        h.insert(header::ACCEPT, "text/html".parse().unwrap());
        let out = forwarded(&h);
        assert_eq!(out.len(), 1);
        assert_eq!(out[header::ACCEPT], "text/html");
    }
}
