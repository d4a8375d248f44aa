//! The activator: where a scale-to-zero function's traffic goes while it
//! has no ready pod. For each Service marked `peapod.dev/activator: "true"`
//! it listens on a port of its own on the node's bridge address; the
//! Service proxy (cluster IP, node ports) and the Ingress send the
//! Service's requests there whenever the Service has no endpoint. A request
//! that arrives asks at once for the function's Deployment to go from zero
//! to one replica, is held (bounded queue, timeout) until an endpoint is
//! ready, and is then forwarded; once the endpoints are programmed the
//! traffic bypasses the activator again. No request is dropped across the
//! switch: whatever reaches the activator is forwarded. A Wasm function
//! with a standby on this node (see `agent::standby`) is not held: the
//! standby answers while the pod starts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Body as _, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use peapod_common::knative::{ACTIVATOR_ANNOTATION, SCALE_TARGET_ANNOTATION};
use peapod_common::telemetry::Telemetry;
use peapod_common::watch::{self, Change, Config, Key, key};

use crate::agent::standby::Standbys;
use crate::proxy::Redirects;
use crate::traffic::Traffic;

/// Requests held per function at most; more get a 503.
const QUEUE: usize = 1000;
/// A held request waits this long for a pod before a 504.
const HOLD: Duration = Duration::from_secs(60);
/// Bodies up to this size are buffered, so that a request can be retried
/// on another pod when the first refuses the connection.
const BUFFERED_BODY: usize = 1 << 20;
/// How long refused connections to a new pod are retried.
const CONNECT_RETRY: Duration = Duration::from_secs(10);

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// Where redirected traffic is steered: the Service proxy's redirects and
/// the Ingress's fallbacks, and a way to make the proxy sync.
#[derive(Clone)]
pub struct Steering {
    pub redirects: Arc<RwLock<Redirects>>,
    pub fallbacks: Arc<RwLock<HashMap<Key, SocketAddr>>>,
    pub poke: tokio::sync::mpsc::UnboundedSender<()>,
}

/// One function as the activator holds it.
struct Function {
    key: Key,
    /// The Deployment scaled up from zero.
    target: Mutex<String>,
    /// Ready endpoints of the Service.
    endpoints: tokio::sync::watch::Sender<Vec<SocketAddr>>,
    next: AtomicUsize,
    queue: Semaphore,
    listener: tokio::task::AbortHandle,
    /// When a scale-up was last asked for in this spell without pods
    /// (asked at most once a second).
    asked: Mutex<Option<Instant>>,
}

impl Function {
    fn target(&self) -> String {
        self.target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_endpoints(&self, addresses: Vec<SocketAddr>) {
        if !addresses.is_empty() {
            // The next spell without pods asks at once, however soon it comes.
            *self.asked.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        self.endpoints.send_replace(addresses);
    }
}

pub struct Activator {
    client: kube::Client,
    address: Ipv4Addr,
    steering: Steering,
    traffic: Traffic,
    http: Client<HttpConnector, Body>,
    functions: Mutex<HashMap<Key, Arc<Function>>>,
    /// Answer held requests of Wasm functions while their pods start.
    standbys: Arc<Standbys>,
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body.into()))
            .map_err(|n| match n {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

impl Activator {
    pub fn new(
        client: kube::Client,
        address: Ipv4Addr,
        steering: Steering,
        traffic: Traffic,
        standbys: Arc<Standbys>,
    ) -> Arc<Activator> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Arc::new(Activator {
            client,
            address,
            steering,
            traffic,
            // No pooled connections: a new pod often has the address of
            // the one scaled away, and a kept connection to it is dead.
            http: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connector),
            functions: Mutex::new(HashMap::new()),
            standbys,
        })
    }

    /// Follows the marked Services and their Endpoints until the agent stops.
    pub async fn run(self: Arc<Self>) {
        let services = watch::watch(
            Api::<Service>::all(self.client.clone()),
            Config::default(),
            "services",
        )
        .changes
        .map(Followed::Service);
        let endpoints = watch::watch(
            Api::<Endpoints>::all(self.client.clone()),
            Config::default(),
            "endpoints",
        )
        .changes
        .map(Followed::Endpoints);
        let mut changes = futures::stream::select(services, endpoints).boxed();
        let mut ready: HashMap<Key, Vec<SocketAddr>> = HashMap::new();
        while let Some(change) = changes.next().await {
            match change {
                Followed::Service(Change::Applied(s)) => self.service(&s, &ready).await,
                Followed::Service(Change::Deleted(s)) => self.forget(&key(&*s)),
                Followed::Endpoints(Change::Applied(e)) => {
                    let addrs = ready_addresses(&e);
                    let k = key(&*e);
                    if let Some(f) = self.function(&k) {
                        if !addrs.is_empty() {
                            // A pod ran: its image may be on this node now.
                            self.standbys.prepare(&k, &f.target());
                        }
                        f.set_endpoints(addrs.clone());
                    }
                    ready.insert(k, addrs);
                }
                Followed::Endpoints(Change::Deleted(e)) => {
                    if let Some(f) = self.function(&key(&*e)) {
                        f.set_endpoints(Vec::new());
                    }
                    ready.remove(&key(&*e));
                }
                Followed::Service(Change::Synced) | Followed::Endpoints(Change::Synced) => {}
            }
        }
    }

    fn function(&self, k: &Key) -> Option<Arc<Function>> {
        self.functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(k)
            .cloned()
    }

    async fn service(self: &Arc<Self>, svc: &Service, ready: &HashMap<Key, Vec<SocketAddr>>) {
        let k = key(svc);
        let marked = svc
            .annotations()
            .get(ACTIVATOR_ANNOTATION)
            .is_some_and(|v| v == "true");
        if !marked {
            self.forget(&k);
            return;
        }
        let target = svc
            .annotations()
            .get(SCALE_TARGET_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        self.standbys.prepare(&k, &target);
        if let Some(f) = self.function(&k) {
            *f.target.lock().unwrap_or_else(PoisonError::into_inner) = target;
            return;
        }
        let listener = match TcpListener::bind((self.address, 0)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("activator for {}/{}: {e}", k.0, k.1);
                return;
            }
        };
        let Ok(local) = listener.local_addr() else {
            return;
        };
        let (endpoints, _) =
            tokio::sync::watch::channel(ready.get(&k).cloned().unwrap_or_default());
        let me = self.clone();
        let serving_key = k.clone();
        let task = tokio::spawn(async move { me.serve(listener, serving_key).await });
        let function = Arc::new(Function {
            key: k.clone(),
            target: Mutex::new(target),
            endpoints,
            next: AtomicUsize::new(0),
            queue: Semaphore::new(QUEUE),
            listener: task.abort_handle(),
            asked: Mutex::new(None),
        });
        self.functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(k.clone(), function);
        let SocketAddr::V4(v4) = local else { return };
        self.steering
            .redirects
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .when_empty
            .insert(k.clone(), v4);
        self.steering
            .fallbacks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(k.clone(), local);
        let _ = self.steering.poke.send(());
        tracing::info!(
            "activator: {}/{} is held on {local} while it has no pod",
            k.0,
            k.1
        );
    }

    fn forget(&self, k: &Key) {
        let Some(f) = self
            .functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(k)
        else {
            return;
        };
        f.listener.abort();
        self.standbys.forget(k);
        self.steering
            .redirects
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .when_empty
            .remove(k);
        self.steering
            .fallbacks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(k);
        let _ = self.steering.poke.send(());
    }

    async fn serve(self: Arc<Self>, listener: TcpListener, k: Key) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let me = self.clone();
            let k = k.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    let k = k.clone();
                    async move { Ok::<_, Infallible>(me.handle(&k, req).await) }
                });
                let _ = peapod_common::conn::builder()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(&self, k: &Key, req: Request<Incoming>) -> Response<Body> {
        let Some(f) = self.function(k) else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "the function is gone\n");
        };
        let _counted = self.traffic.begin(&k.0, &k.1);
        let Ok(_held) = f.queue.try_acquire() else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "too many requests held for {}/{} while it starts\n",
                    k.0, k.1
                ),
            );
        };
        let arrived = Instant::now();
        let cold = f.endpoints.borrow().is_empty();
        let standby = if cold {
            let target = f.target();
            // Ready for the next cold request if not for this one.
            self.standbys.prepare(k, &target);
            self.standbys.address(k, &target)
        } else {
            None
        };
        let endpoints = match standby {
            Some(address) => {
                // Answered at once; the pod is asked for meanwhile.
                let (client, function) = (self.client.clone(), f.clone());
                tokio::spawn(async move { scale_up(&client, &function).await });
                vec![address]
            }
            None => {
                let _held = cold.then(|| Telemetry::global().hold(&k.0, &k.1));
                match self.ready(&f).await {
                    Some(e) => e,
                    None => {
                        return text(
                            StatusCode::GATEWAY_TIMEOUT,
                            format!("{}/{} did not start within {}s\n", k.0, k.1, HOLD.as_secs()),
                        );
                    }
                }
            }
        };
        let response = self.forward(&f, endpoints, req).await;
        if cold && response.status().is_success() {
            Telemetry::global().cold_start(&k.0, &k.1, arrived.elapsed());
        }
        response
    }

    /// The function's ready endpoints, after asking for a pod if there is
    /// none; `None` when none came in time.
    async fn ready(&self, f: &Function) -> Option<Vec<SocketAddr>> {
        let mut rx = f.endpoints.subscribe();
        let deadline = tokio::time::Instant::now() + HOLD;
        loop {
            let now: Vec<SocketAddr> = rx.borrow_and_update().clone();
            if !now.is_empty() {
                return Some(now);
            }
            scale_up(&self.client, f).await;
            // Ask again now and then: the first ask may have raced a scale down.
            let wait = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_secs(2)),
                rx.changed(),
            );
            if wait.await.is_err() && tokio::time::Instant::now() >= deadline {
                return None;
            }
        }
    }

    async fn forward(
        &self,
        f: &Function,
        endpoints: Vec<SocketAddr>,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let small = body
            .size_hint()
            .upper()
            .is_some_and(|n| n as usize <= BUFFERED_BODY);
        let (buffered, mut streaming) = if small {
            match body.collect().await {
                Ok(b) => (Some(b.to_bytes()), None),
                Err(_) => {
                    return text(StatusCode::BAD_REQUEST, "could not read the request body\n");
                }
            }
        } else {
            (None, Some(body))
        };
        let deadline = tokio::time::Instant::now() + CONNECT_RETRY;
        let mut endpoints = endpoints;
        loop {
            let start = f.next.fetch_add(1, Ordering::Relaxed);
            for i in 0..endpoints.len() {
                let target = endpoints[(start + i) % endpoints.len()];
                let body: Body = match (&buffered, streaming.take()) {
                    (Some(b), _) => Full::new(b.clone()).map_err(|n| match n {}).boxed_unsync(),
                    (None, Some(s)) => s.boxed_unsync(),
                    (None, None) => break,
                };
                let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let Ok(uri) = format!("http://{target}{path}").parse::<hyper::Uri>() else {
                    break;
                };
                let mut out = Request::new(body);
                *out.method_mut() = parts.method.clone();
                *out.uri_mut() = uri;
                *out.headers_mut() = parts.headers.clone();
                match self.http.request(out).await {
                    Ok(resp) => return resp.map(|b| b.boxed_unsync()),
                    Err(e) if e.is_connect() => continue,
                    Err(e) => {
                        tracing::debug!("activator: forwarding to {target}: {e}");
                        return text(
                            StatusCode::BAD_GATEWAY,
                            "the function's pod failed the request\n",
                        );
                    }
                }
            }
            // A pod is ready before its server listens: retry refused
            // connections a while (only a buffered body can be resent).
            if buffered.is_none() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            let current = f.endpoints.borrow().clone();
            if !current.is_empty() {
                endpoints = current;
            }
        }
        text(StatusCode::BAD_GATEWAY, "no pod of the function answered\n")
    }
}

/// Asks for the function's Deployment to go from zero to one replica
/// (at most once a second while it has no pod).
async fn scale_up(client: &kube::Client, f: &Function) {
    {
        let mut asked = f.asked.lock().unwrap_or_else(PoisonError::into_inner);
        if asked.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *asked = Some(Instant::now());
    }
    let target = f.target();
    if target.is_empty() {
        return;
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &f.key.0);
    let current = deployments
        .get_scale(&target)
        .await
        .ok()
        .and_then(|s| s.spec?.replicas)
        .unwrap_or(0);
    if current > 0 {
        return;
    }
    let patch = json!({"spec": {"replicas": 1}});
    match deployments
        .patch_scale(&target, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => tracing::info!("activator: scaling {}/{} from zero", f.key.0, target),
        Err(e) => tracing::warn!("activator: scaling {}/{target} up: {e}", f.key.0),
    }
}

enum Followed {
    Service(Change<Service>),
    Endpoints(Change<Endpoints>),
}

/// Ready addresses and the (first) port of an Endpoints object.
fn ready_addresses(e: &Endpoints) -> Vec<SocketAddr> {
    e.subsets
        .iter()
        .flatten()
        .flat_map(|s| {
            let port = s.ports.as_ref().and_then(|p| p.first()).map(|p| p.port);
            s.addresses.iter().flatten().filter_map(move |a| {
                let ip: Ipv4Addr = a.ip.parse().ok()?;
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::try_from(port?).ok()?,
                )))
            })
        })
        .collect()
}
