//! The node agent (Peapod's kubelet): registers the node, runs a worker
//! per pod bound to it, serves logs and exec to the API server, and keeps
//! its containers running across its own restarts.

mod atomic_dir;
pub mod config;
mod container;
mod env;
mod eviction;
mod hooks;
mod launch;
mod metrics;
mod peers;
mod plan;
mod pod_proxy;
mod probes;
mod registration;
mod run;
mod rundir;
mod runtime;
mod sa_token;
pub mod sandbox;
mod seccomp;
mod server;
mod service_env;
pub mod standby;
mod static_pods;
mod status;
mod storage;
mod streaming;
mod subpath;
mod volumes;
mod wasm;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::ResourceExt;
use kube::api::Api;
use peapod_common::events::{Kind, Recorder, reference};
use peapod_common::watch::{self, Change, Config, Key, key};
use peapod_runtimes::image::{Credentials, ImageStore};
use peapod_runtimes::oci::Oci;
use tokio::sync::mpsc;

use self::config::AgentConfig;
use self::env::{Data, Sources};
use self::sandbox::PodDir;
use self::worker::{Msg, Worker};
use crate::network::{Network, NetworkConfig};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("API: {0}")]
    Kube(#[from] kube::Error),
    #[error("network: {0}")]
    Network(#[from] crate::network::NetworkError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A container's current run, as the node's API needs it.
#[derive(Clone, Debug)]
pub struct PodRun {
    pub id: Option<String>,
    pub restart_count: u32,
    pub running: bool,
    /// A Wasm container (no exec into it).
    pub wasm: bool,
    /// A running Wasm container's meters (OCI ones are read from cgroups).
    pub usage: Option<Arc<peapod_runtimes::wasm::Usage>>,
    /// A running Wasm HTTP function's request counters.
    pub http: Option<Arc<peapod_runtimes::wasm::HttpStats>>,
}

/// A pod as the node's API sees it.
#[derive(Clone, Debug)]
pub struct PodEntry {
    pub uid: String,
    pub dir: PodDir,
    pub runs: HashMap<String, PodRun>,
    /// Where `kubectl port-forward` connects; `None` until the sandbox exists.
    pub pod_ip: Option<std::net::Ipv4Addr>,
}

/// Pods by (namespace, name).
pub type PodTable = Mutex<HashMap<(String, String), PodEntry>>;

/// What every part of the agent shares.
pub struct NodeCtx {
    pub client: kube::Client,
    pub config: AgentConfig,
    pub network: Network,
    pub images: ImageStore,
    pub oci: Oci,
    /// The Wasm runtime, when this node offers one.
    pub wasm: Option<peapod_runtimes::wasm::WasmRuntime>,
    pub recorder: Recorder,
    pub http: reqwest::Client,
    pub table: PodTable,
    /// Service traffic the proxy sends somewhere other than endpoints.
    pub redirects: Arc<std::sync::RwLock<crate::proxy::Redirects>>,
    /// Asks the proxy to sync (after `redirects` changed).
    pub proxy_poke: mpsc::UnboundedSender<()>,
    /// Where the Ingress proxy sends a Service's requests while it has no
    /// ready endpoint.
    pub fallbacks: Arc<std::sync::RwLock<HashMap<(String, String), std::net::SocketAddr>>>,
    /// Requests per Service through this node's Ingress and activator.
    pub traffic: crate::traffic::Traffic,
    /// CPU and memory of the node and its containers, sampled.
    pub metrics: metrics::Metrics,
}

impl NodeCtx {
    pub fn event(&self, pod: &Pod, kind: &str, reason: &str, message: &str) {
        let kind = if kind == "Warning" {
            Kind::Warning
        } else {
            Kind::Normal
        };
        self.event_kind(pod, kind, reason, message);
    }

    pub fn event_kind(&self, pod: &Pod, kind: Kind, reason: &str, message: &str) {
        self.recorder
            .publish(&reference(pod), kind, reason, message);
    }

    /// The data of the ConfigMaps and Secrets a pod uses.
    async fn fetch_sources(&self, ns: &str, maps: &[String], secrets: &[String]) -> Sources {
        let mut sources = Sources::default();
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        for name in maps {
            let data = cms.get_opt(name).await.ok().flatten().map(|cm| {
                let mut d: Data = cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                d.extend(
                    cm.binary_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0)),
                );
                d
            });
            sources.config_maps.insert(name.clone(), data);
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        for name in secrets {
            let data = api.get_opt(name).await.ok().flatten().map(|s| {
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect::<Data>()
            });
            sources.secrets.insert(name.clone(), data);
        }
        sources
    }

    /// Registry credentials from the pod's `imagePullSecrets`.
    async fn pull_credentials(&self, pod: &Pod) -> Vec<Credentials> {
        let names: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect();
        if names.is_empty() {
            return Vec::new();
        }
        let sources = self
            .fetch_sources(&pod.namespace().unwrap_or_default(), &[], &names)
            .await;
        sources
            .secrets
            .values()
            .flatten()
            .flat_map(storage::docker_credentials)
            .collect()
    }

    async fn claim_paths(&self, pod: &Pod) -> volumes::ClaimPaths {
        storage::claim_paths(self, pod).await
    }

    /// Service environment variables for a pod's containers: the Services
    /// of its namespace (unless `enableServiceLinks: false`) and the API's.
    async fn service_env(&self, pod: &Pod) -> BTreeMap<String, String> {
        let ns = pod.namespace().unwrap_or_default();
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let mut services = Vec::new();
        if links {
            let api: Api<Service> = Api::namespaced(self.client.clone(), &ns);
            services.extend(
                api.list(&Default::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default(),
            );
        }
        if ns != "default" || !links {
            let api: Api<Service> = Api::namespaced(self.client.clone(), "default");
            if let Ok(Some(k)) = api.get_opt("kubernetes").await {
                services.push(k);
            }
        }
        service_env::variables(&services)
    }
}

/// The node's Wasm runtime, with its instance pool; where the pool's
/// address space cannot be reserved (a memory rlimit, say), one that
/// allocates instances on demand.
fn wasm_runtime(
    config: &AgentConfig,
) -> Result<peapod_runtimes::wasm::WasmRuntime, peapod_runtimes::wasm::WasmError> {
    use peapod_runtimes::wasm::{RuntimeOptions, WasmRuntime};
    let cache = config.data_dir.join("wasm-cache");
    if config.wasm_instance_pool > 0 {
        let pooled = RuntimeOptions {
            pool_instances: Some(config.wasm_instance_pool),
        };
        match WasmRuntime::with_options(&cache, pooled) {
            Ok(runtime) => return Ok(runtime),
            Err(e) => tracing::warn!(
                "no Wasm instance pool of {} ({e}); instances are allocated on demand",
                config.wasm_instance_pool
            ),
        }
    }
    WasmRuntime::new(cache)
}

/// Runs the agent until `stop` resolves.
pub async fn run(
    client: kube::Client,
    config: AgentConfig,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    // Pods' volumes (Secrets among them) and images live here.
    peapod_common::private::dir(&config.data_dir)?;
    rundir::ensure_in_memory(&config.run_dir)?;
    // The Wasm runtime comes first: the node advertises whether it has one.
    let mut config = config;
    let wasm = match wasm_runtime(&config) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("this node offers no Wasm runtime: {e}");
            None
        }
    };
    config.wasm = wasm.is_some();
    let (server, kubelet_port) = server::bind(&config).await?;
    let pod_cidr = registration::register(&client, &config, kubelet_port).await?;
    tracing::info!("node {} registered with pod CIDR {pod_cidr}", config.name);
    let network = Network::start(network_config(&config, pod_cidr)).await?;
    let redirects = Arc::new(std::sync::RwLock::new(crate::proxy::Redirects::default()));
    start_dns(&client, &mut config, network.gateway(), &redirects).await;
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::limited(10))
        .build()
        .map_err(std::io::Error::other)?;
    let (proxy_poke, poked) = mpsc::unbounded_channel();
    let node = Arc::new(NodeCtx {
        images: ImageStore::new(
            &config.data_dir.join("images"),
            config.insecure_registries.clone(),
        ),
        oci: Oci::new(&config.run_dir.join("oci"), &config.exe),
        wasm,
        recorder: Recorder::new(client.clone(), "kubelet"),
        client: client.clone(),
        network,
        http,
        table: Mutex::default(),
        redirects: redirects.clone(),
        proxy_poke,
        fallbacks: Arc::default(),
        traffic: Default::default(),
        metrics: Default::default(),
        config: config.clone(),
    });
    tokio::spawn(server::serve(server, node.clone()));
    tokio::spawn(registration::heartbeat(
        client.clone(),
        config.clone(),
        kubelet_port,
    ));
    tokio::spawn(static_pods::run(client.clone(), config.clone()));
    tokio::spawn(peers::run(node.clone()));
    let warm = node.clone();
    tokio::spawn(async move { warm.network.keep_warm().await });
    tokio::spawn(node.metrics.clone().run(node.clone()));
    let activator = crate::activator::Activator::new(
        client.clone(),
        node.network.gateway(),
        crate::activator::Steering {
            redirects: node.redirects.clone(),
            fallbacks: node.fallbacks.clone(),
            poke: node.proxy_poke.clone(),
        },
        node.traffic.clone(),
        standby::Standbys::new(node.clone()),
    );
    tokio::spawn(activator.run());
    let ingress = start_ingress(
        &client,
        &config,
        node.fallbacks.clone(),
        node.traffic.clone(),
    )
    .await?;
    tokio::spawn(crate::proxy::run(
        client.clone(),
        crate::proxy::ProxyConfig {
            prefix: config.chain_prefix(),
            cluster_cidr: config.cluster_cidr,
            redirects,
            ingress,
        },
        poked,
    ));
    tokio::select! {
        r = watch_pods(node.clone()) => r,
        () = stop => {
            tracing::info!("node agent stopping; containers keep running");
            Ok(())
        }
    }
}

/// Serves Ingress on two local ports of the node's choosing; the proxy
/// steers the node's Ingress ports to them.
async fn start_ingress(
    client: &kube::Client,
    config: &AgentConfig,
    fallbacks: Arc<std::sync::RwLock<HashMap<(String, String), std::net::SocketAddr>>>,
    traffic: crate::traffic::Traffic,
) -> Result<crate::proxy::IngressPorts, AgentError> {
    let http = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await?;
    let https = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await?;
    let ports = crate::proxy::IngressPorts {
        http: (config.ingress_port, http.local_addr()?.port()),
        https: (config.ingress_tls_port, https.local_addr()?.port()),
    };
    let ingress = crate::ingress::IngressConfig {
        node_ip: config.node_ip,
        http: http.local_addr()?,
        https: https.local_addr()?,
        class: "peapod".into(),
        threads: config.ingress_threads,
    };
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(e) =
            crate::ingress::serve(client, ingress, fallbacks, http, https, traffic).await
        {
            tracing::error!("ingress: {e}");
        }
    });
    Ok(ports)
}

/// The cluster DNS Service, answered on every node by the node itself.
const DNS_SERVICE: (&str, &str) = ("kube-system", "kube-dns");

/// Serves cluster DNS on the bridge's address, steers the `kube-dns`
/// Service there, and points pods at that Service (unless `--cluster-dns`
/// says otherwise).
async fn start_dns(
    client: &kube::Client,
    config: &mut AgentConfig,
    gateway: std::net::Ipv4Addr,
    redirects: &Arc<std::sync::RwLock<crate::proxy::Redirects>>,
) {
    let listen = std::net::SocketAddr::from((gateway, 53));
    let upstreams = crate::dns::read_upstreams(std::path::Path::new(crate::dns::HOST_RESOLV_CONF))
        .unwrap_or_else(|e| {
            tracing::warn!("cluster DNS forwards nothing: {e}");
            Vec::new()
        });
    let dns = crate::dns::ClusterDns::new(&config.cluster_domain);
    let dns_client = client.clone();
    tokio::spawn(async move {
        if let Err(e) = dns.run(dns_client, listen, upstreams).await {
            tracing::error!("cluster DNS on {listen}: {e}");
        }
    });
    redirects.write().expect("lock").always.insert(
        (DNS_SERVICE.0.to_string(), DNS_SERVICE.1.to_string()),
        std::net::SocketAddrV4::new(gateway, 53),
    );
    if config.cluster_dns.is_none() {
        let services: Api<Service> = Api::namespaced(client.clone(), DNS_SERVICE.0);
        config.cluster_dns = services
            .get_opt(DNS_SERVICE.1)
            .await
            .ok()
            .flatten()
            .and_then(|s| s.spec?.cluster_ip?.parse().ok());
    }
}

/// Removes everything this agent ever made on the host (`--cleanup`).
pub async fn cleanup(config: &AgentConfig) -> Result<(), AgentError> {
    let state = config.data_dir.join("network");
    let cidrs: Vec<ipnet::Ipv4Net> = std::fs::read_dir(&state)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .replace('_', "/")
                .parse()
                .ok()
        })
        .collect();
    let oci = Oci::new(&config.run_dir.join("oci"), &config.exe);
    for id in oci.ids() {
        if let Some(r) = oci.running(&id) {
            oci.signal(&r, nix::sys::signal::Signal::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(5), oci.wait(&r)).await;
        }
        oci.remove(&id);
    }
    let pods = config.data_dir.join("pods");
    for entry in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
        let uid = entry.file_name().to_string_lossy().into_owned();
        volumes::unmount_all_under(&entry.path());
        sandbox::remove_cgroup(&uid);
    }
    let _ = std::fs::remove_dir_all(&pods);
    for cidr in cidrs {
        let network = Network::start(network_config(config, cidr)).await?;
        network.teardown().await?;
    }
    peapod_runtimes::cgroups::Hierarchies::host().remove_if_empty(sandbox::CGROUP_ROOT);
    let _ = std::fs::remove_dir_all(config.run_dir.join("oci"));
    rundir::release(&config.run_dir);
    crate::proxy::cleanup(&config.chain_prefix());
    Ok(())
}

fn network_config(config: &AgentConfig, pod_cidr: ipnet::Ipv4Net) -> NetworkConfig {
    NetworkConfig {
        run_dir: config.run_dir.clone(),
        state_dir: config.data_dir.join("network"),
        bridge: config.bridge(),
        pod_cidr,
        cluster_cidr: config.cluster_cidr,
        chain: format!("{}-POSTROUTING", config.chain_prefix()),
    }
}

/// Watches the pods bound to this node and hands each to its worker.
/// A pod deleted while the watch was down comes out of the relist as
/// deleted, and one replaced meanwhile by a pod of the same name as the
/// new pod: either way its worker is told it is gone.
async fn watch_pods(node: Arc<NodeCtx>) -> Result<(), AgentError> {
    let pods: Api<Pod> = Api::all(node.client.clone());
    let selector = format!("spec.nodeName={}", node.config.name);
    let watched = watch::watch(pods, Config::default().fields(&selector), "pods");
    let mut changes = watched.changes;
    let mut workers: HashMap<String, mpsc::UnboundedSender<Msg>> = HashMap::new();
    // The uid of each pod by (namespace, name).
    let mut uids: HashMap<Key, String> = HashMap::new();
    let mut first_list = true;
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(pod) => {
                let uid = pod.uid().unwrap_or_default();
                if let Some(before) = uids.insert(key(&*pod), uid.clone())
                    && before != uid
                {
                    stop_worker(&mut workers, &before);
                }
                dispatch(&node, &mut workers, Arc::unwrap_or_clone(pod));
            }
            Change::Deleted(pod) => {
                let uid = pod.uid().unwrap_or_default();
                if uids.get(&key(&*pod)) == Some(&uid) {
                    uids.remove(&key(&*pod));
                }
                stop_worker(&mut workers, &uid);
            }
            Change::Synced if first_list => {
                // Pods deleted while the agent was away: remove their
                // remains (later relists reach the workers, above).
                first_list = false;
                let live: Vec<String> = watched
                    .store
                    .state()
                    .iter()
                    .filter_map(|p| p.uid())
                    .collect();
                remove_orphans(&node, &live).await;
            }
            Change::Synced => {}
        }
        workers.retain(|_, tx| !tx.is_closed());
    }
    Ok(())
}

fn stop_worker(workers: &mut HashMap<String, mpsc::UnboundedSender<Msg>>, uid: &str) {
    if let Some(tx) = workers.remove(uid) {
        let _ = tx.send(Msg::Deleted);
    }
}

fn dispatch(
    node: &Arc<NodeCtx>,
    workers: &mut HashMap<String, mpsc::UnboundedSender<Msg>>,
    pod: Pod,
) {
    let uid = pod.uid().unwrap_or_default();
    if let Some(tx) = workers.get(&uid)
        && tx.send(Msg::Pod(Box::new(pod.clone()))).is_ok()
    {
        return;
    }
    let (worker, tx) = Worker::new(node.clone(), pod);
    workers.insert(uid, tx);
    tokio::spawn(worker.run());
}

async fn remove_orphans(node: &NodeCtx, live: &[String]) {
    let mut known: Vec<String> = node.network.known_pods();
    known.extend(
        std::fs::read_dir(node.config.data_dir.join("pods"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned()),
    );
    known.sort();
    known.dedup();
    known.retain(|uid| uid != standby::SANDBOX_ID);
    for uid in known {
        if !live.contains(&uid) {
            tracing::info!("removing the remains of pod {uid}, deleted while the agent was away");
            worker::remove_pod(node, &uid).await;
        }
    }
}
