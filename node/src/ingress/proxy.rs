//! The L7 proxy: serves clients over HTTP/1.1 (keep-alive) and, on the TLS
//! listener, HTTP/2 by ALPN; routes each request by the current table and
//! forwards it over pooled HTTP/1.1 connections to a backend endpoint
//! chosen round robin. An endpoint that refuses the connection costs a
//! retry on the next one, which is why small bodies are read in full
//! before sending: a request whose body has gone out cannot be sent again.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use peapod_common::conn::Clients;

use super::headers;
use super::pool::{Backends, Lease, SendError};
use super::routes::{Backend, RouteTable};

/// Bodies both ways: the client's or backend's stream, or one made here.
pub type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// The current routing table, swapped after each batch of changes.
pub type SharedRoutes = Arc<RwLock<Arc<RouteTable>>>;

/// Where a Service's traffic goes while it has no ready endpoint (the
/// scale-from-zero activator): (namespace, name) → address.
pub type Fallbacks = Arc<RwLock<HashMap<(String, String), SocketAddr>>>;

/// Request bodies up to this size are read before sending, so the request
/// can be retried on another endpoint; larger or unsized ones stream.
const RETRY_BODY_LIMIT: u64 = 1 << 20;

/// A client that connects but never finishes the TLS handshake is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most worker threads a proxy starts.
const MAX_WORKERS: usize = 64;

/// The Ingress's proxy: threads that each serve their share of the
/// client connections, as nginx's worker processes do. Every thread runs a
/// single-threaded runtime with its own pool of backend connections, so a
/// client connection and the backend connections its requests use are
/// driven on one thread: a proxied request crosses no thread. And the
/// proxy has as many threads as it is given, not the node runtime's one
/// per core, which compete with the pods it forwards to.
#[derive(Clone)]
pub struct Proxy {
    workers: Arc<Workers>,
}

struct Workers {
    threads: Vec<Worker>,
    /// Round-robin position for the next connection.
    next: AtomicUsize,
}

struct Worker {
    runtime: Handle,
    handler: Handler,
    /// Dropped with the proxy, which ends the thread and its connections.
    _stop: oneshot::Sender<()>,
}

/// Answers requests; one per worker thread, each with its own backend
/// connection pool.
#[derive(Clone)]
struct Handler {
    routes: SharedRoutes,
    fallbacks: Fallbacks,
    backends: Backends,
    traffic: crate::traffic::Traffic,
}

/// A request body ready to send: in memory (can be sent again) or
/// streaming from the client (once only).
enum Outgoing {
    Buffered(Bytes),
    Streaming(Incoming),
}

impl Proxy {
    pub fn new(routes: SharedRoutes, fallbacks: Fallbacks) -> std::io::Result<Proxy> {
        Proxy::with_traffic(routes, fallbacks, Default::default(), 0)
    }

    /// A proxy that counts its requests per backend Service in `traffic`,
    /// on `threads` worker threads (0: half the cores, at least one).
    ///
    /// Half, because the proxy shares the node with the pods it forwards
    /// to: on two cores, with the backend and the load generator on the
    /// same machine, one thread served more requests than two (nginx
    /// behaves the same: one worker process beat two there).
    pub fn with_traffic(
        routes: SharedRoutes,
        fallbacks: Fallbacks,
        traffic: crate::traffic::Traffic,
        threads: usize,
    ) -> std::io::Result<Proxy> {
        let count = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            n => n,
        }
        .min(MAX_WORKERS);
        let threads = (0..count)
            .map(|i| {
                let handler = Handler {
                    routes: routes.clone(),
                    fallbacks: fallbacks.clone(),
                    backends: Backends::default(),
                    traffic: traffic.clone(),
                };
                start_worker(i, handler)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Proxy {
            workers: Arc::new(Workers {
                threads,
                next: AtomicUsize::new(0),
            }),
        })
    }

    /// Serves plain HTTP on `listener` until the process ends.
    pub async fn serve_plain(self, listener: TcpListener) {
        let clients = Clients::default();
        loop {
            let (tcp, peer) = accept(&listener).await;
            let Some(counted) = clients.admit(peer.ip()) else {
                continue;
            };
            self.hand_over(tcp, move |handler, tcp| async move {
                let _counted = counted;
                handler.serve_connection(tcp, peer, false).await
            });
        }
    }

    /// Serves HTTPS on `listener` until the process ends.
    pub async fn serve_tls(self, listener: TcpListener, tls: Arc<ServerConfig>) {
        let acceptor = TlsAcceptor::from(tls);
        let clients = Clients::default();
        loop {
            let (tcp, peer) = accept(&listener).await;
            let Some(counted) = clients.admit(peer.ip()) else {
                continue;
            };
            let acceptor = acceptor.clone();
            self.hand_over(tcp, move |handler, tcp| async move {
                let _counted = counted;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => handler.serve_connection(stream, peer, true).await,
                    Ok(Err(e)) => tracing::debug!("ingress: TLS handshake with {peer}: {e}"),
                    Err(_) => tracing::debug!("ingress: TLS handshake with {peer} timed out"),
                }
            });
        }
    }

    /// Moves an accepted connection to the next worker thread, which
    /// serves it with `serve`.
    fn hand_over<F, Fut>(&self, tcp: TcpStream, serve: F)
    where
        F: FnOnce(Handler, TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let workers = &self.workers;
        let worker =
            &workers.threads[workers.next.fetch_add(1, Ordering::Relaxed) % workers.threads.len()];
        // Out of the accepting runtime's reactor, into the worker's.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::debug!("ingress: handing over a connection: {e}");
                return;
            }
        };
        let handler = worker.handler.clone();
        worker.runtime.spawn(async move {
            match TcpStream::from_std(tcp) {
                Ok(tcp) => serve(handler, tcp).await,
                Err(e) => tracing::debug!("ingress: taking over a connection: {e}"),
            }
        });
    }
}

/// Starts worker thread `i`: a single-threaded runtime that runs until
/// the returned worker is dropped.
fn start_worker(i: usize, handler: Handler) -> std::io::Result<Worker> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("ingress-{i}"))
        .spawn(move || {
            // Ends when the sender is dropped; the runtime's tasks go with it.
            let _ = runtime.block_on(stopped);
        })?;
    Ok(Worker {
        runtime: handle,
        handler,
        _stop: stop,
    })
}

impl Handler {
    async fn serve_connection<I>(self, io: I, peer: SocketAddr, https: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = service_fn(move |request: Request<Incoming>| {
            let handler = self.clone();
            async move { Ok::<_, Infallible>(handler.handle(request, peer, https).await) }
        });
        if let Err(e) = peapod_common::conn::builder()
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .await
        {
            tracing::debug!("ingress: connection from {peer}: {e}");
        }
    }

    /// Answers one request: route, pick endpoints, forward, retry.
    async fn handle(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        https: bool,
    ) -> Response<Body> {
        let host = headers::original_host(request.headers(), request.uri());
        let table = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let host_name = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
        let Some(backend) = table.route(host_name, request.uri().path()).cloned() else {
            return text(StatusCode::NOT_FOUND, "404 page not found\n");
        };
        let _counted = self.traffic.begin(&backend.namespace, &backend.service);
        let targets = self.targets(&backend);
        if targets.is_empty() {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no endpoints available for service \"{}\"", backend.service),
            );
        }

        let upgrade = headers::is_upgrade(request.headers());
        let mut client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, upgrade);
        headers::add_forwarded(&mut parts.headers, peer.ip(), https, host);
        // The client got its `100 Continue` from this hop when its body was
        // read; the backend gets the body straight away.
        parts.headers.remove(header::EXPECT);
        // Pods get the origin form (`/path?query`), as from any client.
        let target_uri = parts
            .uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
        let (buffered, mut streaming) = match outgoing(body).await {
            Ok(Outgoing::Buffered(bytes)) => (Some(bytes), None),
            Ok(Outgoing::Streaming(body)) => (None, Some(body)),
            Err(e) => {
                tracing::debug!("ingress: reading a request body from {peer}: {e}");
                return text(StatusCode::BAD_REQUEST, "could not read the request body\n");
            }
        };

        // (address, whether on a new connection): the endpoints in order;
        // a kept-open connection that failed unanswered gets its
        // endpoint tried again on a new one (idempotent requests only).
        let mut order: VecDeque<(SocketAddr, bool)> = targets.iter().map(|t| (*t, false)).collect();
        let idempotent = parts.method.is_idempotent();
        while let Some((target, fresh)) = order.pop_front() {
            let body = match (&buffered, streaming.take()) {
                (Some(bytes), _) => full(bytes.clone()),
                (None, Some(stream)) => stream.boxed_unsync(),
                // The streamed body went with the first attempt.
                (None, None) => break,
            };
            let mut out = Request::new(body);
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = target_uri.clone();
            // Pods are spoken to in HTTP/1.1 whatever the client used.
            *out.version_mut() = Version::HTTP_11;
            // Copied only while another attempt may still need them.
            let may_retry = buffered.is_some() && (!order.is_empty() || (idempotent && !fresh));
            *out.headers_mut() = if may_retry {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            if !out.headers().contains_key(header::HOST)
                && let Ok(host) = HeaderValue::from_str(&target.to_string())
            {
                out.headers_mut().insert(header::HOST, host);
            }
            match self.backends.send(target, out, fresh).await {
                Ok((response, lease)) => return respond(response, lease, client_upgrade.take()),
                Err(e @ SendError::Stale(_)) if buffered.is_some() && idempotent => {
                    tracing::debug!("ingress: {target}: {e}; again on a new connection");
                    order.push_front((target, true));
                }
                Err(e @ SendError::Connect(_)) if buffered.is_some() && !order.is_empty() => {
                    tracing::debug!(
                        "ingress: {target} of {}/{} refused, trying the next: {e:?}",
                        backend.namespace,
                        backend.service
                    );
                }
                Err(e) => {
                    tracing::debug!(
                        "ingress: forwarding to {target} of {}/{}: {e:?}",
                        backend.namespace,
                        backend.service
                    );
                    break;
                }
            }
        }
        text(
            StatusCode::BAD_GATEWAY,
            format!("no endpoint of service \"{}\" answered\n", backend.service),
        )
    }

    /// The addresses to try, in order: the backend's endpoints round robin,
    /// then the fallback (activator), which holds the request while the
    /// Service has no endpoint and retries a new pod not yet listening.
    fn targets(&self, backend: &Backend) -> Vec<SocketAddr> {
        let mut order = backend.attempt_order();
        let fallbacks = self
            .fallbacks
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        // Most clusters have no scale-to-zero function: no key to build.
        if !fallbacks.is_empty() {
            let key = (backend.namespace.clone(), backend.service.clone());
            order.extend(fallbacks.get(&key).copied());
        }
        order
    }
}

/// Accepts the next connection; a failure (out of file descriptors) is
/// waited out rather than ending the listener.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                return (tcp, peer);
            }
            Err(e) => {
                tracing::warn!("ingress: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads a small body in full (so it can be retried); leaves larger or
/// unsized ones streaming.
async fn outgoing(body: Incoming) -> Result<Outgoing, hyper::Error> {
    if body.is_end_stream() {
        return Ok(Outgoing::Buffered(Bytes::new()));
    }
    match body.size_hint().upper() {
        Some(len) if len <= RETRY_BODY_LIMIT => {
            Ok(Outgoing::Buffered(body.collect().await?.to_bytes()))
        }
        _ => Ok(Outgoing::Streaming(body)),
    }
}

/// The backend's response for the client, and on `101 Switching
/// Protocols` a tunnel between the two upgraded connections (whose
/// backend connection is then not pooled again).
fn respond(
    mut response: Response<Incoming>,
    lease: Lease,
    client_upgrade: Option<OnUpgrade>,
) -> Response<Body> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching && let Some(client) = client_upgrade {
        let backend = hyper::upgrade::on(&mut response);
        tokio::spawn(tunnel(client, backend));
    }
    headers::strip_hop_by_hop(response.headers_mut(), switching);
    if switching {
        return response.map(|body| body.boxed_unsync());
    }
    response.map(|body| lease.attach(body).boxed_unsync())
}

async fn tunnel(client: OnUpgrade, backend: OnUpgrade) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!("ingress: upgrading a connection: {e}");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
        tracing::debug!("ingress: upgraded connection ended: {e}");
    }
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A short plain-text answer made by the proxy itself.
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::super::testing::{self, backend, web_table};
    use super::*;

    async fn start(table: RouteTable, fallbacks: Fallbacks) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let routes = Arc::new(RwLock::new(Arc::new(table)));
        let proxy = Proxy::new(routes, fallbacks).expect("proxy threads");
        tokio::spawn(proxy.serve_plain(listener));
        addr
    }

    fn get(host: &str, path: &str) -> Request<Full<Bytes>> {
        Request::get(path)
            .header(header::HOST, host)
            .body(Full::new(Bytes::new()))
            .expect("request")
    }

    /// A closed port: bound, then released.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr").port()
    }

    #[tokio::test]
    async fn requests_are_spread_round_robin_over_the_endpoints() {
        let (a, b) = (backend("a").await, backend("b").await);
        let proxy = start(web_table(&[a.port(), b.port()]), Fallbacks::default()).await;
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (status, body) = testing::send(proxy, get("app.test", "/")).await;
            assert_eq!(status, StatusCode::OK);
            seen.push(body.split(' ').next().unwrap_or("").to_string());
        }
        seen.sort();
        assert_eq!(seen, ["a", "a", "b", "b"]);
    }

    #[tokio::test]
    async fn the_backend_sees_the_host_and_forwarded_headers() {
        let a = backend("a").await;
        let proxy = start(web_table(&[a.port()]), Fallbacks::default()).await;
        let mut request = get("App.Test:80", "/x?y=1");
        request
            .headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        request
            .headers_mut()
            .insert("x-secret", HeaderValue::from_static("1"));
        request
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("x-secret"));
        let (status, body) = testing::send(proxy, request).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("host=App.Test:80 "), "{body}");
        assert!(body.contains("xff=192.0.2.1, 127.0.0.1 "), "{body}");
        assert!(body.contains("proto=http "), "{body}");
        assert!(body.contains("xfh=App.Test:80 "), "{body}");
        assert!(body.contains("secret=- "), "{body}");
        assert!(body.contains("uri=/x?y=1 "), "{body}");
    }

    #[tokio::test]
    async fn a_refused_endpoint_is_retried_on_another() {
        let a = backend("a").await;
        let proxy = start(
            web_table(&[closed_port().await, a.port()]),
            Fallbacks::default(),
        )
        .await;
        for _ in 0..4 {
            let (status, body) = testing::send(proxy, get("app.test", "/")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert!(body.starts_with("a "), "{body}");
            let post = Request::post("/upload")
                .header(header::HOST, "app.test")
                .body(Full::new(Bytes::from_static(b"hello")))
                .expect("request");
            let (status, body) = testing::send(proxy, post).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert!(body.ends_with("body=5"), "{body}");
        }
    }

    /// One HTTP/1.1 connection to the proxy, for several requests.
    async fn keep_alive_client(
        proxy: SocketAddr,
    ) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
        let tcp = TcpStream::connect(proxy).await.expect("connect");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        sender
    }

    #[tokio::test]
    async fn a_request_lost_on_a_kept_open_connection_is_sent_again() {
        let a = testing::answers_once_per_connection().await;
        let proxy = start(web_table(&[a.port()]), Fallbacks::default()).await;
        let mut sender = keep_alive_client(proxy).await;
        for _ in 0..3 {
            sender.ready().await.expect("connection still open");
            let response = sender
                .send_request(get("app.test", "/"))
                .await
                .expect("response");
            assert_eq!(response.status(), StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn no_answering_endpoint_is_a_502() {
        let proxy = start(web_table(&[closed_port().await]), Fallbacks::default()).await;
        let (status, _) = testing::send(proxy, get("app.test", "/")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }

    #[tokio::test]
    async fn no_endpoints_is_a_503_unless_a_fallback_takes_the_traffic() {
        let a = backend("a").await;
        let fallbacks = Fallbacks::default();
        let proxy = start(web_table(&[]), fallbacks.clone()).await;
        let (status, body) = testing::send(proxy, get("app.test", "/")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "no endpoints available for service \"web\"");

        fallbacks
            .write()
            .expect("lock")
            .insert(("default".into(), "web".into()), a);
        let (status, body) = testing::send(proxy, get("app.test", "/")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("a "), "{body}");
    }

    #[tokio::test]
    async fn no_matching_rule_is_a_404() {
        let a = backend("a").await;
        let proxy = start(web_table(&[a.port()]), Fallbacks::default()).await;
        let (status, _) = testing::send(proxy, get("other.test", "/")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_connection_is_kept_alive_across_requests() {
        let a = backend("a").await;
        let proxy = start(web_table(&[a.port()]), Fallbacks::default()).await;
        let mut sender = keep_alive_client(proxy).await;
        for _ in 0..2 {
            sender.ready().await.expect("connection still open");
            let response = sender
                .send_request(get("app.test", "/"))
                .await
                .expect("response");
            assert_eq!(response.status(), StatusCode::OK);
            let body = response.into_body().collect().await.expect("body");
            assert!(body.to_bytes().starts_with(b"a "));
        }
    }
}
