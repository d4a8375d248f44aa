//! HTTP functions (`wasi:http/incoming-handler`), served like `wasmtime
//! serve`: hyper accepts HTTP/1.1 on the listener the caller gives, and
//! every request gets a fresh store and instance of the pre-instantiated
//! component. The guest runs in its own task, so it can keep streaming the
//! body after it has sent the response head.
//!
//! Dropping the [`WasmRuntime::serve_http`] future stops everything: the
//! connection tasks are aborted with it and the request tasks notice that
//! the server is gone.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use super::limits::CpuQuota;
use super::output::LogFile;
use super::store::{self, Host, StoreSpec};
use super::{HttpConfig, Loaded, WasmError, WasmRuntime, io};
use crate::logs::Stream;

/// Counters of one served function.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Requests received.
    pub requests: AtomicU64,
    /// Requests answered with 500 because the guest or the host failed.
    pub failures: AtomicU64,
    /// Request instances that grew past the memory limit.
    pub oom_kills: AtomicU64,
    /// Requests cancelled by the request timeout.
    pub timeouts: AtomicU64,
    /// Requests turned away with 503 because too many were waiting.
    pub rejected: AtomicU64,
}

/// Requests that may wait for a running one to finish, per request the
/// function may run at once (Knative's queue-proxy allows as many).
const QUEUE_PER_SLOT: usize = 10;

impl WasmRuntime {
    /// Serves an HTTP function on `listener` until the future is dropped.
    /// Returns early only if serving cannot start (not an HTTP handler,
    /// the log cannot be opened).
    pub async fn serve_http(
        &self,
        loaded: &Loaded,
        listener: TcpListener,
        config: HttpConfig,
    ) -> Result<(), WasmError> {
        let proxy = loaded.proxy.clone().ok_or(WasmError::NotAnHttpHandler)?;
        let log = LogFile::open(&config.log, config.log_rotation)
            .map_err(io(format!("opening the log {}", config.log.display())))?;
        // Never sent to: request tasks watch for it being dropped with
        // this future.
        let (_stopped, stop) = watch::channel(());
        let server = Arc::new(Server {
            runtime: self.clone(),
            proxy,
            log,
            cpu: config.cpu_millis.map(CpuQuota::new),
            requests: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
            admitted: Arc::new(Semaphore::new(
                config.max_concurrent_requests.max(1) * (1 + QUEUE_PER_SLOT),
            )),
            stop,
            config,
        });
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        // Small response chunks should not wait for Nagle.
                        let _ = stream.set_nodelay(true);
                        connections.spawn(serve_connection(server.clone(), stream));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off.
                        tracing::warn!(error = %e, "accepting an HTTP connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
}

struct Server {
    runtime: WasmRuntime,
    proxy: ProxyPre<Host>,
    config: HttpConfig,
    log: Arc<LogFile>,
    cpu: Option<Arc<CpuQuota>>,
    /// Requests running at once.
    requests: Arc<Semaphore>,
    /// Requests running or waiting: beyond it, 503 at once.
    admitted: Arc<Semaphore>,
    stop: watch::Receiver<()>,
}

/// Why a request got no response from the guest.
enum Failure {
    /// The guest failed; already logged.
    Guest,
    /// The host failed before the guest ran.
    Host(wasmtime::Error),
    /// Too many requests are waiting already.
    Overloaded,
}

async fn serve_connection(server: Arc<Server>, stream: TcpStream) {
    let service = hyper::service::service_fn(move |req| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(server.handle(req).await) }
    });
    if let Err(e) = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "serving an HTTP connection");
    }
}

impl Server {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<HyperOutgoingBody> {
        let stats = self.config.stats.clone();
        let log = self.log.clone();
        stats.requests.fetch_add(1, Ordering::Relaxed);
        match self.dispatch(req).await {
            Ok(response) => response,
            Err(Failure::Overloaded) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded: too many requests are waiting for this function".into(),
                )
            }
            Err(Failure::Guest) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the function failed; see its log".into(),
                )
            }
            Err(Failure::Host(e)) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                let text = format!("serving the request failed: {e:#}");
                log.message(Stream::Stderr, &format!("wasm: {text}"));
                text_response(StatusCode::INTERNAL_SERVER_ERROR, text)
            }
        }
    }

    async fn dispatch(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<HyperOutgoingBody>, Failure> {
        let _admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Failure::Overloaded)?;
        let permit = self
            .requests
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Failure::Host(e.into()))?;
        // A full pool makes the request wait, as the function's own
        // concurrency limit does.
        let slot = self.runtime.instance_slot().await;
        let mut store = store::new_store(
            self.runtime.engine(),
            StoreSpec {
                args: &[],
                env: &self.config.env,
                preopens: &self.config.preopens,
                log: &self.log,
                memory_limit: self.config.memory_limit,
                cpu: self.cpu.clone(),
                network: self.config.network,
                usage: &self.config.usage,
            },
        )
        .map_err(|e| Failure::Host(wasmtime::Error::new(e)))?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .map_err(Failure::Host)?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(Failure::Host)?;
        let server = self.clone();
        let task = tokio::spawn(async move {
            let result = server.run_guest(&mut store, req, out).await;
            if let Err(e) = &result {
                server.record_failure(&store, e);
            }
            drop(store);
            drop(slot);
            drop(permit);
            result
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => {
                self.log.message(
                    Stream::Stderr,
                    &format!("wasm: the function answered with an error: {code:?}"),
                );
                Err(Failure::Guest)
            }
            // The guest dropped the response outparam without setting it.
            Err(_) => match task.await {
                Ok(Ok(())) => {
                    self.log.message(
                        Stream::Stderr,
                        "wasm: the function returned without setting a response",
                    );
                    Err(Failure::Guest)
                }
                Ok(Err(_)) => Err(Failure::Guest),
                Err(e) => Err(Failure::Host(wasmtime::format_err!(
                    "the request task failed: {e}"
                ))),
            },
        }
    }

    /// Instantiates the component in `store` and calls its handler, within
    /// the request timeout and while the server runs.
    async fn run_guest(
        &self,
        store: &mut Store<Host>,
        req: Resource<HostIncomingRequest>,
        out: Resource<HostResponseOutparam>,
    ) -> wasmtime::Result<()> {
        let call = async {
            let proxy = self.proxy.instantiate_async(&mut *store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut *store, req, out)
                .await
        };
        let bounded = async {
            match self.config.request_timeout {
                Some(limit) => match tokio::time::timeout(limit, call).await {
                    Ok(result) => result,
                    Err(_) => {
                        self.config.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                        Err(wasmtime::format_err!(
                            "the request was still running after {limit:?}"
                        ))
                    }
                },
                None => call.await,
            }
        };
        let mut stop = self.stop.clone();
        tokio::select! {
            result = bounded => result,
            _ = stop.changed() => Err(wasmtime::format_err!("the server stopped")),
        }
    }

    fn record_failure(&self, store: &Store<Host>, error: &wasmtime::Error) {
        let oom = store.data().limiter.oom();
        if oom {
            self.config.stats.oom_kills.fetch_add(1, Ordering::Relaxed);
        }
        let what = if oom {
            "wasm: request instance out of memory"
        } else {
            "wasm: request failed"
        };
        self.log
            .message(Stream::Stderr, &format!("{what}: {error:#}"));
    }
}

fn text_response(status: StatusCode, text: String) -> Response<HyperOutgoingBody> {
    let body: HyperOutgoingBody = Full::new(Bytes::from(text))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
