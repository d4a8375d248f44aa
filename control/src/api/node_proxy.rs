//! Pod subresources served by the node the pod runs on (`log`, `exec`,
//! `attach`, `portforward`, `proxy`), proxied as kube-apiserver does: the request goes to the
//! node's API over HTTPS with the node token as credential; a streaming
//! reply streams back, and a protocol upgrade (the WebSocket of `kubectl
//! exec`, the SPDY/3.1 session of `kubectl port-forward`) is spliced
//! through byte for byte.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use super::Api;
use super::path::ResourcePath;
use crate::error::{ApiError, ApiResult};
use crate::objects::Target;
use crate::resources::Subresource;

/// Headers that carry a protocol upgrade through (WebSocket, and SPDY with
/// its stream protocol negotiation).
const UPGRADE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
];

/// A TLS connector to nodes' APIs trusting the cluster CA alone: a node's
/// certificate must be one the CA signed for the Node's name (`node_cert.rs`
/// issues them), so the node token goes to no other host a Node object
/// points at (as `--kubelet-certificate-authority` makes kube-apiserver).
pub fn tls_connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()).flatten() {
        if let Err(e) = roots.add(cert) {
            tracing::error!("the cluster CA cannot verify nodes: {e}");
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// The address of the node's API, from its Node object.
fn node_endpoint(node: &Value) -> Option<String> {
    let status = node.get("status")?;
    let ip = status
        .get("addresses")?
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .or_else(|| status["addresses"].as_array()?.first())?["address"]
        .as_str()?
        .to_string();
    let port = status["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap_or(10250);
    Some(format!("{ip}:{port}"))
}

/// The container a request names, or the pod's only one.
fn container(pod: &Value, query: &[(String, String)]) -> ApiResult<String> {
    if let Some((_, c)) = query.iter().find(|(k, _)| k == "container") {
        return Ok(c.clone());
    }
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match names.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {}, choose one of: [{}]",
            pod["metadata"]["name"].as_str().unwrap_or_default(),
            names.join(" ")
        ))),
    }
}

/// `nodes/<name>/proxy/<path>`: the node's own API, as kube-apiserver
/// proxies to the kubelet (statistics, for the autoscaler).
async fn node_api(api: &Arc<Api>, node_name: &str, req: Request) -> ApiResult<Response> {
    let nodes = api
        .catalog
        .lookup("", "v1", "nodes")
        .expect("nodes are served");
    let node = api
        .objects
        .get(Target {
            rt: nodes,
            namespace: None,
            name: node_name,
        })
        .await?;
    let endpoint = node_endpoint(&node)
        .ok_or_else(|| ApiError::service_unavailable(format!("node {node_name} has no address")))?;
    let marker = format!("/nodes/{node_name}/proxy");
    let path = req.uri().path();
    let rest = path
        .find(&marker)
        .map_or("/", |i| &path[i + marker.len()..]);
    let rest = if rest.is_empty() { "/" } else { rest };
    let uri = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    forward(api, &endpoint, node_name, &uri, req, false).await
}

/// A JSON document from a node's API (`node` is its Node object), for
/// what the API server assembles itself (`metrics.k8s.io`).
pub async fn node_json(api: &Arc<Api>, node: &Value, path: &str) -> ApiResult<Value> {
    let name = node["metadata"]["name"].as_str().unwrap_or_default();
    let endpoint = node_endpoint(node)
        .ok_or_else(|| ApiError::service_unavailable(format!("node {name} has no address")))?;
    let req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .body(Body::empty())
        .map_err(ApiError::internal)?;
    let resp = forward(api, &endpoint, name, path, req, false).await?;
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::service_unavailable(format!("reading from node {name}: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(ApiError::internal)
}

/// Serves `pods/log`, `pods/exec` and the other node-served subresources.
pub async fn proxy(api: &Arc<Api>, rp: ResourcePath, req: Request) -> ApiResult<Response> {
    let sub = rp.subresource.expect("a subresource");
    if rp.rt.plural == "nodes" && rp.rt.group.is_empty() {
        return node_api(api, rp.name.as_deref().unwrap_or_default(), req).await;
    }
    if rp.rt.plural == "services" && sub == Subresource::Proxy {
        let ns = rp.namespace.clone().unwrap_or_default();
        let requested = rp.name.clone().unwrap_or_default();
        let to = super::service_proxy::target(api, &ns, &requested).await?;
        let rest = after_marker(req.uri().path(), &format!("/{requested}/proxy"));
        let mut uri = format!("/podProxy/{ns}/{}/{}/{rest}", to.pod, to.port);
        if let Some(q) = req.uri().query() {
            uri = format!("{uri}?{q}");
        }
        return to_node(api, &to.node, &uri, req, true).await;
    }
    if rp.rt.plural != "pods" {
        return Err(ApiError::not_implemented(format!(
            "{}/{} is not served by Peapod yet",
            rp.rt.plural,
            sub.name()
        )));
    }
    let (ns, requested) = (
        rp.namespace.clone().unwrap_or_default(),
        rp.name.clone().unwrap_or_default(),
    );
    // `pods/[scheme:]name[:port]/proxy/...` names a port beside the pod.
    let (name, port) = match sub {
        Subresource::Proxy => proxy_target(&requested),
        _ => (requested.clone(), String::new()),
    };
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let pod = api
        .objects
        .get(Target {
            rt: rp.rt,
            namespace: Some(&ns),
            name: &name,
        })
        .await?;
    let node_name = pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let path = match (sub, req.method()) {
        (Subresource::Log, &Method::GET) => {
            let container = container(&pod, &query)?;
            format!("/containerLogs/{ns}/{name}/{container}")
        }
        (Subresource::Exec, &Method::GET | &Method::POST) => {
            let container = container(&pod, &query)?;
            format!("/exec/{ns}/{name}/{container}")
        }
        // WebSocket (GET) first, then plain SPDY (POST); no container.
        (Subresource::PortForward, &Method::GET | &Method::POST) => {
            format!("/portForward/{ns}/{name}")
        }
        (Subresource::Proxy, _) => {
            let port = pod_port(&pod, &port)?;
            let rest = after_marker(req.uri().path(), &format!("/{requested}/proxy"));
            format!("/podProxy/{ns}/{name}/{port}/{rest}")
        }
        (Subresource::Attach, &Method::GET | &Method::POST) => {
            let container = container(&pod, &query)?;
            format!("/attach/{ns}/{name}/{container}")
        }
        _ => {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
    };
    let passthrough = sub == Subresource::Proxy;
    let rest: String = if passthrough {
        req.uri().query().unwrap_or_default().to_string()
    } else {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query.iter().filter(|(k, _)| k != "container"))
            .finish()
    };
    let uri = if rest.is_empty() {
        path
    } else {
        format!("{path}?{rest}")
    };
    to_node(api, &node_name, &uri, req, passthrough).await
}

/// What follows `marker` in `path`, without its leading slash.
fn after_marker<'a>(path: &'a str, marker: &str) -> &'a str {
    let rest = path.find(marker).map_or("", |i| &path[i + marker.len()..]);
    rest.strip_prefix('/').unwrap_or(rest)
}

/// Sends `req` to `uri` on the API of node `node_name`.
async fn to_node(
    api: &Arc<Api>,
    node_name: &str,
    uri: &str,
    req: Request,
    passthrough: bool,
) -> ApiResult<Response> {
    let nodes = api
        .catalog
        .lookup("", "v1", "nodes")
        .expect("nodes are served");
    let node = api
        .objects
        .get(Target {
            rt: nodes,
            namespace: None,
            name: node_name,
        })
        .await?;
    let endpoint = node_endpoint(&node)
        .ok_or_else(|| ApiError::service_unavailable(format!("node {node_name} has no address")))?;
    forward(api, &endpoint, node_name, uri, req, passthrough).await
}

/// The pod and port of a `pods/proxy` name: `name`, `name:port` or
/// `scheme:name:port` (only plain HTTP is served).
pub(super) fn proxy_target(requested: &str) -> (String, String) {
    let parts: Vec<&str> = requested.split(':').collect();
    match parts.as_slice() {
        [name] => (name.to_string(), String::new()),
        [name, port] => (name.to_string(), port.to_string()),
        [_, name, port, ..] => (name.to_string(), port.to_string()),
        [] => (String::new(), String::new()),
    }
}

/// The port number a `pods/proxy` request names: a number, a container
/// port's name, or none (80).
fn pod_port(pod: &Value, port: &str) -> ApiResult<u16> {
    if port.is_empty() {
        return Ok(80);
    }
    if let Ok(n) = port.parse() {
        return Ok(n);
    }
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .find(|p| p["name"] == port)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "no port named \"{port}\" in pod {}",
                pod["metadata"]["name"].as_str().unwrap_or_default()
            ))
        })
}

async fn forward(
    api: &Arc<Api>,
    endpoint: &str,
    node_name: &str,
    uri: &str,
    mut req: Request,
    passthrough: bool,
) -> ApiResult<Response> {
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::service_unavailable(format!("error dialing node {node_name} ({endpoint}): {e}"))
    };
    let tcp = tokio::net::TcpStream::connect(endpoint)
        .await
        .map_err(|e| unreachable(&e))?;
    // The certificate must name the Node, wherever its address points.
    let server_name = ServerName::try_from(node_name.to_string()).map_err(|e| unreachable(&e))?;
    let tls = api
        .node_tls
        .connect(server_name, tcp)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("node connection ended: {e}");
        }
    });
    let mut out = hyper::Request::builder()
        .method(req.method().clone())
        .uri(uri)
        .header(header::HOST, endpoint)
        .header(header::AUTHORIZATION, format!("Bearer {}", api.node_token));
    if passthrough {
        // The caller's request as it is, but for its credentials.
        for (k, v) in req.headers() {
            if !matches!(
                *k,
                header::HOST | header::AUTHORIZATION | header::CONNECTION | header::UPGRADE
            ) {
                out = out.header(k, v.clone());
            }
        }
    } else {
        for name in UPGRADE_HEADERS {
            for v in req.headers().get_all(*name) {
                out = out.header(*name, v.clone());
            }
        }
    }
    let upgrade = !passthrough && req.headers().contains_key(header::UPGRADE);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let body = if passthrough {
        std::mem::take(req.body_mut())
    } else {
        Body::empty()
    };
    let out = out.body(body).map_err(ApiError::internal)?;
    let mut resp = sender
        .send_request(out)
        .await
        .map_err(|e| unreachable(&e))?;
    let status = resp.status();
    if passthrough {
        // The pod's answer as it is: status, headers and body.
        let mut reply = Response::builder().status(status);
        for (k, v) in resp.headers() {
            if !matches!(*k, header::CONNECTION | header::TRANSFER_ENCODING) {
                reply = reply.header(k, v);
            }
        }
        return reply
            .body(Body::new(resp.into_body()))
            .map_err(ApiError::internal);
    }
    if status == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let node_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, node_upgrade) {
                Ok((client, node)) => {
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(client),
                        &mut TokioIo::new(node),
                    )
                    .await;
                }
                Err(e) => tracing::debug!("upgrade through the node proxy failed: {e}"),
            }
        });
        let mut reply = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in resp.headers() {
            reply = reply.header(k, v);
        }
        return reply.body(Body::empty()).map_err(ApiError::internal);
    }
    if !status.is_success() {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        let reason = match status.as_u16() {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            501 => "NotImplemented",
            503 => "ServiceUnavailable",
            _ => "InternalError",
        };
        return Err(ApiError::new(
            status.as_u16(),
            reason,
            body.trim().to_string(),
        ));
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("text/plain"));
    let body = Body::new(resp.into_body());
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .map_err(ApiError::internal)
}
