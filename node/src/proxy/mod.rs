//! The node's Service proxy (Peapod's kube-proxy): watches Services and
//! Endpoints and programs iptables to match, one `iptables-restore`
//! transaction per table per sync. Changes arriving together are synced
//! together, so a thousand Services cost one transaction, not a thousand.

pub mod iptables;
pub mod rules;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::Api;

use self::rules::{Chains, ServicePort};

use peapod_common::pace::Pacer;
use peapod_common::watch::{self, Change, Config, Key, snapshot};

/// The least time between two syncs (see `Pacer`).
const BATCH: Duration = Duration::from_millis(30);

/// Service traffic that goes somewhere other than the Service's endpoints
/// on this node: (namespace, name) → address, used while the Service has no
/// ready endpoint (the activator), or always (`override_all`, the node's
/// own DNS server for `kube-dns`).
#[derive(Clone, Debug, Default)]
pub struct Redirects {
    pub when_empty: HashMap<(String, String), SocketAddrV4>,
    pub always: HashMap<(String, String), SocketAddrV4>,
}

/// The node's Ingress ports and the local ports the Ingress proxy listens
/// on: (node port, local port) for HTTP and HTTPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngressPorts {
    pub http: (u16, u16),
    pub https: (u16, u16),
}

#[derive(Clone)]
pub struct ProxyConfig {
    /// Chain name prefix (`PEAPOD`).
    pub prefix: String,
    pub cluster_cidr: Ipv4Net,
    pub redirects: Arc<RwLock<Redirects>>,
    pub ingress: IngressPorts,
}

/// The Services and Endpoints at one sync.
#[derive(Default)]
struct State {
    services: BTreeMap<Key, Arc<Service>>,
    endpoints: BTreeMap<Key, Arc<Endpoints>>,
}

impl State {
    /// The model the rules are rendered from.
    fn ports(&self, redirects: &Redirects) -> Vec<ServicePort> {
        let mut out = Vec::new();
        for (k, svc) in &self.services {
            let spec = svc.spec.clone().unwrap_or_default();
            if spec.type_.as_deref() == Some("ExternalName") {
                continue;
            }
            let cluster_ip = spec
                .cluster_ip
                .as_deref()
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
            let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
                spec.session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds)
                    .unwrap_or(10800) as u32
            });
            let eps = self.endpoints.get(k);
            for p in spec.ports.iter().flatten() {
                let name = p.name.clone().unwrap_or_default();
                let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                let mut endpoints: Vec<SocketAddrV4> = match redirects.always.get(k) {
                    Some(to) => vec![SocketAddrV4::new(*to.ip(), to.port())],
                    None => eps
                        .and_then(|e| e.subsets.as_ref())
                        .into_iter()
                        .flatten()
                        .flat_map(|subset| {
                            let port = subset
                                .ports
                                .iter()
                                .flatten()
                                .find(|ep| {
                                    ep.name.clone().unwrap_or_default() == name
                                        && ep.protocol.clone().unwrap_or_else(|| "TCP".into())
                                            == protocol
                                })
                                .map(|ep| ep.port);
                            subset.addresses.iter().flatten().filter_map(move |a| {
                                Some(SocketAddrV4::new(
                                    a.ip.parse().ok()?,
                                    u16::try_from(port?).ok()?,
                                ))
                            })
                        })
                        .collect(),
                };
                endpoints.sort();
                endpoints.dedup();
                out.push(ServicePort {
                    namespace: k.0.clone(),
                    name: k.1.clone(),
                    port_name: name,
                    protocol: protocol.to_ascii_lowercase(),
                    cluster_ip,
                    port: u16::try_from(p.port).unwrap_or(0),
                    node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
                    affinity_seconds: affinity,
                    endpoints,
                    fallback: redirects.when_empty.get(k).copied(),
                });
            }
        }
        out
    }
}

/// Programs the rules for `ports`, deleting chains no longer needed.
fn sync(config: &ProxyConfig, ports: &[ServicePort]) -> Result<(), iptables::IptablesError> {
    let chains = Chains::new(&config.prefix);
    let existing = iptables::chains("nat", &chains.per_object_prefixes())?;
    let ingress = [config.ingress.http, config.ingress.https];
    let rendered = rules::render(&chains, config.cluster_cidr, ports, &ingress, &existing);
    iptables::restore(&format!("{}{}", rendered.nat, rendered.filter))
}

/// Runs the proxy until the agent stops; `poke` asks for a sync (after a
/// change of redirects).
pub async fn run(
    client: kube::Client,
    config: ProxyConfig,
    poke: tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    // NodePorts answer on 127.0.0.1 too.
    let _ = std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1");
    let chains = Chains::new(&config.prefix);
    if let Err(e) = sync(&config, &[]) {
        tracing::error!("service proxy: {e}");
    }
    iptables::ensure_hooks(&chains);
    let services = watch::watch(
        Api::<Service>::all(client.clone()),
        Config::default(),
        "services",
    );
    let endpoints = watch::watch(
        Api::<Endpoints>::all(client),
        Config::default(),
        "endpoints",
    );
    // What a change is about (0 Services, 1 Endpoints, 2 redirects) and
    // whether it completed a list.
    let pokes = tokio_stream::wrappers::UnboundedReceiverStream::new(poke).map(|()| (2, false));
    let mut changes = futures::stream::select_all([
        services
            .changes
            .map(|c| (0, matches!(c, Change::Synced)))
            .boxed(),
        endpoints
            .changes
            .map(|c| (1, matches!(c, Change::Synced)))
            .boxed(),
        pokes.boxed(),
    ]);
    let mut synced = [false, false, true];
    let mut last: Option<Vec<ServicePort>> = None;
    let mut pacer = Pacer::new(BATCH);
    while let Some((kind, done)) = changes.next().await {
        synced[kind] |= done;
        pacer
            .gather(&mut changes, |(kind, done)| synced[kind] |= done)
            .await;
        if !synced.iter().all(|s| *s) {
            // Until both are listed a sync would drop the rules of Services
            // not seen yet.
            continue;
        }
        let state = State {
            services: snapshot(&services.store),
            endpoints: snapshot(&endpoints.store),
        };
        let redirects = config.redirects.read().expect("lock").clone();
        let ports = state.ports(&redirects);
        if last.as_ref() == Some(&ports) {
            continue;
        }
        let started = Instant::now();
        let cfg = config.clone();
        let model = ports.clone();
        match tokio::task::spawn_blocking(move || sync(&cfg, &model)).await {
            Ok(Ok(())) => {
                tracing::debug!(
                    "service proxy: {} ports synced in {:?}",
                    ports.len(),
                    started.elapsed()
                );
                last = Some(ports);
            }
            Ok(Err(e)) => tracing::warn!("service proxy sync failed: {e}"),
            Err(e) => tracing::warn!("service proxy sync panicked: {e}"),
        }
    }
}

/// Removes every rule and chain of the proxy (`--cleanup`).
pub fn cleanup(prefix: &str) {
    iptables::remove_all(&Chains::new(prefix));
}
