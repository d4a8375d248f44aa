//! The node's own API, which the API server proxies `pods/log`,
//! `pods/exec`, `pods/attach`, `pods/portforward` and `pods/proxy` to (as the kubelet's port 10250):
//! HTTPS with a certificate the cluster CA signs for the node's name (the
//! API server trusts no other), and the cluster's node token as
//! the shared secret that proves a caller is the control plane.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use peapod_common::wire::{
    SERVING_CERTIFICATE_PATH, ServingCertificate, ServingCertificateRequest,
};
use tokio::net::TcpListener;

use super::NodeCtx;
use super::config::AgentConfig;
use super::pod_proxy;
use super::streaming::attach;
use super::streaming::exec::{self, ExecRequest};
use super::streaming::logs::{self, LogOptions};
use super::streaming::portforward::{self, WsStream};

/// Binds the node API's port (0 picks a free one).
pub async fn bind(config: &AgentConfig) -> std::io::Result<(TcpListener, u16)> {
    let listener = TcpListener::bind(("0.0.0.0", config.kubelet_port)).await?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

/// The node API's certificate, signed by the cluster CA for this node's
/// name and address (the API server trusts no other); asked of the API
/// server until it answers.
async fn serving_certificate(node: &NodeCtx) -> ServingCertificate {
    let body = ServingCertificateRequest {
        node_name: node.config.name.clone(),
        addresses: vec![node.config.node_ip.to_string(), "127.0.0.1".into()],
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mut wait = Duration::from_millis(500);
    loop {
        let request = http::Request::post(SERVING_CERTIFICATE_PATH)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        match request {
            Ok(r) => match node.client.request::<ServingCertificate>(r).await {
                Ok(cert) => return cert,
                Err(e) => tracing::warn!("asking for the node API's certificate: {e}"),
            },
            Err(e) => tracing::error!("the node API's certificate request: {e}"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

pub async fn serve(listener: TcpListener, node: Arc<NodeCtx>) {
    let cert = serving_certificate(&node).await;
    let tls = match peapod_common::tls::server_config(&cert.certificate, &cert.key) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("node API TLS: {e}");
            return;
        }
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/stats/functions", get(function_stats))
        .route("/stats/metrics", get(resource_metrics))
        .route("/metrics", get(prometheus))
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route(
            "/exec/{ns}/{pod}/{container}",
            get(exec_session).post(exec_session),
        )
        .route(
            "/attach/{ns}/{pod}/{container}",
            get(attach_session).post(attach_session),
        )
        .route(
            "/portForward/{ns}/{pod}",
            get(port_forward).post(port_forward),
        )
        .route("/podProxy/{ns}/{pod}/{port}", any(proxy_root))
        .route("/podProxy/{ns}/{pod}/{port}/{*rest}", any(proxy))
        .with_state(node);
    if let Err(e) = peapod_common::tls::serve(listener, tls, app).await {
        tracing::error!("node API stopped: {e}");
    }
}

/// Requests per Service through this node's Ingress and activator.
async fn function_stats(State(node): State<Arc<NodeCtx>>, headers: HeaderMap) -> Response {
    if !authorized(&node, &headers) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    axum::Json(node.traffic.snapshot()).into_response()
}

/// CPU and memory of the node and its containers (for `metrics.k8s.io`).
async fn resource_metrics(State(node): State<Arc<NodeCtx>>, headers: HeaderMap) -> Response {
    if !authorized(&node, &headers) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    axum::Json(node.metrics.current()).into_response()
}

/// The process's Prometheus metrics.
async fn prometheus(State(node): State<Arc<NodeCtx>>, headers: HeaderMap) -> Response {
    if !authorized(&node, &headers) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        peapod_common::telemetry::Telemetry::global().render(),
    )
        .into_response()
}

fn authorized(node: &NodeCtx, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(peapod_common::token::bearer)
        .is_some_and(|t| peapod_common::token::matches(&node.config.token, t))
}

fn error(code: StatusCode, message: &str) -> Response {
    (code, message.to_string()).into_response()
}

/// Query parameters as (key, value) pairs, decoded.
fn query_pairs(query: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn flag(pairs: &[(String, String)], key: &str) -> bool {
    pairs
        .iter()
        .any(|(k, v)| k == key && (v == "true" || v == "1"))
}

fn value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

async fn container_logs(
    State(node): State<Arc<NodeCtx>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if !authorized(&node, &headers) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let q = query_pairs(&query);
    let since = match (value(&q, "sinceTime"), value(&q, "sinceSeconds")) {
        (Some(t), _) => t.parse::<jiff::Timestamp>().ok(),
        (None, Some(s)) => s.parse::<i64>().ok().and_then(|s| {
            jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(s))
                .ok()
        }),
        _ => None,
    };
    let opts = LogOptions {
        follow: flag(&q, "follow"),
        previous: flag(&q, "previous"),
        tail_lines: value(&q, "tailLines").and_then(|n| n.parse().ok()),
        since,
        timestamps: flag(&q, "timestamps"),
        limit_bytes: value(&q, "limitBytes").and_then(|n| n.parse().ok()),
    };
    match logs::stream(node, &ns, &pod, &container, opts) {
        Ok(rx) => {
            let body = Body::from_stream(
                tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::io::Error>),
            );
            Response::builder()
                .header(header::CONTENT_TYPE, "text/plain")
                .body(body)
                .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
        }
        Err(e) => error(
            StatusCode::from_u16(e.code).unwrap_or(StatusCode::BAD_REQUEST),
            &e.message,
        ),
    }
}

type Upgrade = Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>;

/// The running OCI container an exec or attach session (`verb`) is for,
/// and the WebSocket it comes on; else the error to answer with.
fn session(
    node: &NodeCtx,
    ns: &str,
    pod: &str,
    container: &str,
    verb: &str,
    ws: Upgrade,
) -> Result<(String, WebSocketUpgrade), (StatusCode, String)> {
    let run = {
        let table = node.table.lock().expect("lock");
        table
            .get(&(ns.to_string(), pod.to_string()))
            .and_then(|e| e.runs.get(container).cloned())
    };
    let Some(run) = run else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("container {container} is not valid for pod {pod}"),
        ));
    };
    if run.wasm {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "container {container} is a WebAssembly container: {verb} is not supported in it"
            ),
        ));
    }
    let (Some(id), true) = (run.id, run.running) else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("unable to upgrade connection: container not found (\"{container}\")"),
        ));
    };
    let Ok(ws) = ws else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("this node serves {verb} over WebSocket (v5.channel.k8s.io) only"),
        ));
    };
    Ok((id, ws))
}

async fn exec_session(
    State(node): State<Arc<NodeCtx>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: Upgrade,
) -> Response {
    if !authorized(&node, &headers) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let q = query_pairs(&query);
    let request = ExecRequest {
        command: q
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect(),
        stdin: flag(&q, "stdin"),
        stdout: flag(&q, "stdout"),
        stderr: flag(&q, "stderr"),
        tty: flag(&q, "tty"),
    };
    if request.command.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command for the container",
        );
    }
    let (id, ws) = match session(&node, &ns, &pod, &container, "exec", ws) {
        Ok(found) => found,
        Err((code, message)) => return error(code, &message),
    };
    let oci = node.oci.clone();
    ws.protocols(exec::PROTOCOLS)
        .on_upgrade(move |socket| exec::serve(socket, oci, id, request))
}

/// `kubectl attach`: the container's output, and its stdin if it has one,
/// over the remote-command WebSocket.
async fn attach_session(
    State(node): State<Arc<NodeCtx>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    headers: HeaderMap,
    ws: Upgrade,
) -> Response {
    if !authorized(&node, &headers) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let (id, ws) = match session(&node, &ns, &pod, &container, "attach", ws) {
        Ok(found) => found,
        Err((code, message)) => return error(code, &message),
    };
    let shim = node.oci.attach_socket(&id);
    ws.protocols(exec::PROTOCOLS)
        .on_upgrade(move |socket| attach::serve(socket, shim))
}

/// `pods/proxy` to the root of the pod's port.
async fn proxy_root(
    State(node): State<Arc<NodeCtx>>,
    Path((ns, pod, port)): Path<(String, String, u16)>,
    req: Request,
) -> Response {
    proxy(State(node), Path((ns, pod, port, String::new())), req).await
}

/// `pods/proxy`: an HTTP request to one of the pod's ports.
async fn proxy(
    State(node): State<Arc<NodeCtx>>,
    Path((ns, pod, port, rest)): Path<(String, String, u16, String)>,
    req: Request,
) -> Response {
    if !authorized(&node, req.headers()) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let pod_ip = {
        let table = node.table.lock().expect("lock");
        table.get(&(ns, pod.clone())).map(|e| e.pod_ip)
    };
    match pod_ip {
        None => error(StatusCode::NOT_FOUND, "pod does not exist"),
        Some(None) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("pod {pod} does not have an IP address yet"),
        ),
        Some(Some(ip)) => pod_proxy::serve(ip, port, &rest, req).await,
    }
}

/// `kubectl port-forward`: a SPDY/3.1 session, tunnelled in a WebSocket
/// (kubectl's first try) or on a plain `Upgrade: SPDY/3.1` connection.
async fn port_forward(
    State(node): State<Arc<NodeCtx>>,
    Path((ns, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    if !authorized(&node, req.headers()) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let entry = {
        let table = node.table.lock().expect("lock");
        table.get(&(ns, pod.clone())).map(|e| e.pod_ip)
    };
    let Some(pod_ip) = entry else {
        return error(StatusCode::NOT_FOUND, "pod does not exist");
    };
    let Some(pod_ip) = pod_ip else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("pod {pod} does not have an IP address yet"),
        );
    };
    if portforward::is_websocket(req.headers()) {
        port_forward_websocket(req, pod_ip).await
    } else {
        port_forward_spdy(req, pod_ip)
    }
}

/// The WebSocket tunnel, negotiated as kube-apiserver's tunnelling handler
/// does: the client must offer `SPDY/3.1+portforward.k8s.io`, else it gets
/// a 400 and falls back to plain SPDY.
async fn port_forward_websocket(req: Request, pod_ip: Ipv4Addr) -> Response {
    let (mut parts, _body) = req.into_parts();
    let ws = match <WebSocketUpgrade as FromRequestParts<()>>::from_request_parts(&mut parts, &())
        .await
    {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    if !ws
        .requested_protocols()
        .any(|p| p == portforward::TUNNEL_PROTOCOL)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: no tunneling spdy protocols provided",
        );
    }
    ws.protocols([portforward::TUNNEL_PROTOCOL])
        .on_upgrade(move |socket| portforward::serve(WsStream::new(socket), pod_ip))
}

/// Plain SPDY: the stream protocol negotiated and the connection upgraded
/// with the headers kubelet answers with.
fn port_forward_spdy(mut req: Request, pod_ip: Ipv4Addr) -> Response {
    let offered = portforward::offered_protocols(req.headers());
    if offered.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: X-Stream-Protocol-Version is required",
        );
    }
    if !offered.iter().any(|p| p == portforward::PROTOCOL) {
        let message = format!(
            "unable to upgrade: unable to negotiate protocol: client supports [{}], server accepts [{}]",
            offered.join(" "),
            portforward::PROTOCOL
        );
        return Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header(
                portforward::ACCEPTED_PROTOCOLS_HEADER,
                portforward::PROTOCOL,
            )
            .body(Body::from(message))
            .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"));
    }
    if !portforward::is_spdy_upgrade(req.headers()) {
        return error(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request",
        );
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => portforward::serve(TokioIo::new(upgraded), pod_ip).await,
            Err(e) => tracing::debug!("port-forward upgrade failed: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, portforward::SPDY_UPGRADE)
        .header(portforward::PROTOCOL_HEADER, portforward::PROTOCOL)
        .body(Body::empty())
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}
