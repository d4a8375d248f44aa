//! The routing table: which backend answers a request, built from the
//! class's Ingresses, the Services they name and those Services' Endpoints.
//! Pure: made from objects, asked with a host and a path, no I/O.
//!
//! Precedence, as Kubernetes defines it and as users expect it:
//! - host tiers: an exact host rule, then a `*.example.com` rule (one
//!   label), then rules without a host; a tier without a matching path
//!   falls through to the next, so a host-less `/` still catches what a
//!   host's own rules leave out;
//! - within a tier, across all Ingresses: the longest path wins, `Exact`
//!   beats `Prefix` of the same length, and on a full tie the older
//!   Ingress (creation time, then namespace/name) wins;
//! - nothing matched: the oldest Ingress's `spec.defaultBackend`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::{Endpoints, Service, ServicePort};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, Ingress, IngressBackend, IngressClass, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// (namespace, name).
pub type Key = (String, String);

/// Objects of one kind by (namespace, name), as the watches keep them.
pub type Objects<K> = BTreeMap<Key, std::sync::Arc<K>>;

/// Marks the cluster's default IngressClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The class annotation from before `spec.ingressClassName`; old
/// manifests still carry it.
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Whether Ingresses without a class are ours: our IngressClass is marked
/// default, or there is no such object at all (a cluster where nobody made
/// one still gets its class-less Ingresses served).
pub fn class_is_default(class: Option<&IngressClass>) -> bool {
    class.is_none_or(|c| {
        c.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
            .is_some_and(|v| v == "true")
    })
}

/// Whether `ingress` belongs to `class`.
pub fn in_class(ingress: &Ingress, class: &str, class_is_default: bool) -> bool {
    let named = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ingress
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                .map(String::as_str)
        });
    match named {
        Some(name) => name == class,
        None => class_is_default,
    }
}

/// The Ingresses in precedence order: oldest first, then by
/// namespace/name, so ties resolve the same way on every node.
pub fn ordered<'a>(ingresses: impl IntoIterator<Item = &'a Ingress>) -> Vec<&'a Ingress> {
    let mut list: Vec<&Ingress> = ingresses.into_iter().collect();
    list.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    list
}

fn order_key(ingress: &Ingress) -> (Option<&Time>, &str, &str) {
    let meta = &ingress.metadata;
    (
        meta.creation_timestamp.as_ref(),
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or(""),
    )
}

/// A request's host as rules compare it: lowercase, without port or
/// trailing dot (`Example.COM:8080` → `example.com`, `[::1]:80` → `[::1]`).
pub fn normalize_host(raw: &str) -> String {
    let raw = raw.trim();
    let without_port = if let Some(rest) = raw.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => &raw[..end + 2],
            None => raw,
        }
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => raw,
        }
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// Where a matched request goes: a Service port's ready endpoints.
#[derive(Debug)]
pub struct Backend {
    pub namespace: String,
    pub service: String,
    /// Ready pod addresses, sorted.
    pub endpoints: Vec<SocketAddr>,
    /// Round-robin position, shared by every route to this Service port.
    next: AtomicUsize,
}

impl Backend {
    pub fn new(namespace: &str, service: &str, endpoints: Vec<SocketAddr>) -> Backend {
        Backend {
            namespace: namespace.to_string(),
            service: service.to_string(),
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    /// The endpoints in the order to try them for one request: round robin
    /// picks the first, and the rest follow so a retry goes elsewhere.
    pub fn attempt_order(&self) -> Vec<SocketAddr> {
        let n = self.endpoints.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        self.endpoints[start..]
            .iter()
            .chain(&self.endpoints[..start])
            .copied()
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostRule {
    Any,
    Exact(String),
    /// `*.example.com`, kept as `example.com`.
    Wildcard(String),
}

impl HostRule {
    fn parse(host: Option<&str>) -> HostRule {
        let host = host
            .unwrap_or("")
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if host.is_empty() {
            return HostRule::Any;
        }
        match host.strip_prefix("*.") {
            Some(parent) => HostRule::Wildcard(parent.to_string()),
            None => HostRule::Exact(host.clone()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PathRule {
    Exact(String),
    /// The path's elements: `/foo/bar/` → `["foo", "bar"]`.
    Prefix(Vec<String>),
}

/// How strongly a path rule matched: longer first, then Exact over Prefix.
type Strength = (usize, bool);

impl PathRule {
    /// `ImplementationSpecific` (and anything unknown) is treated as Prefix.
    fn parse(path: &HTTPIngressPath) -> PathRule {
        let p = path
            .path
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        match path.path_type.as_str() {
            "Exact" => PathRule::Exact(p.to_string()),
            _ => PathRule::Prefix(segments(p).map(str::to_string).collect()),
        }
    }

    fn strength(&self, path: &str, request: &[&str]) -> Option<Strength> {
        match self {
            PathRule::Exact(p) => (p == path).then_some((p.len(), true)),
            PathRule::Prefix(rule) => {
                let matches = rule.len() <= request.len()
                    && rule.iter().zip(request).all(|(a, b)| a.as_str() == *b);
                // The length of the normalized path, `/` for the root, so
                // it compares with Exact paths on the same scale.
                let len = rule.iter().map(|s| s.len() + 1).sum::<usize>().max(1);
                matches.then_some((len, false))
            }
        }
    }
}

/// A path's non-empty elements; element-wise comparison is what makes
/// `/foo` match `/foo/bar` but not `/foobar`.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

#[derive(Debug)]
struct PathRoute {
    path: PathRule,
    backend: Arc<Backend>,
}

/// (namespace, service, port number, port name) of a backend.
type BackendKey = (String, String, Option<i32>, Option<String>);

/// The routes of one class, indexed by host so a lookup only scans the
/// paths of the hosts that can match.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<String, Vec<PathRoute>>,
    wildcard: HashMap<String, Vec<PathRoute>>,
    any: Vec<PathRoute>,
    default: Option<Arc<Backend>>,
}

impl RouteTable {
    /// Builds the table from the class's Ingresses in precedence order (see
    /// [`ordered`]). Backends that are not Services are skipped; a Service
    /// or port that does not exist gives a backend without endpoints.
    pub fn build(
        ingresses: &[&Ingress],
        services: &Objects<Service>,
        endpoints: &Objects<Endpoints>,
    ) -> RouteTable {
        let mut resolver = Resolver {
            services,
            endpoints,
            cache: HashMap::new(),
        };
        let mut table = RouteTable::default();
        for ingress in ingresses {
            let namespace = ingress.metadata.namespace.as_deref().unwrap_or("");
            let Some(spec) = ingress.spec.as_ref() else {
                continue;
            };
            if table.default.is_none()
                && let Some(backend) = spec.default_backend.as_ref()
            {
                table.default = resolver.backend(namespace, backend);
            }
            for rule in spec.rules.iter().flatten() {
                let host = HostRule::parse(rule.host.as_deref());
                for path in rule.http.iter().flat_map(|h| h.paths.iter()) {
                    let Some(backend) = resolver.backend(namespace, &path.backend) else {
                        continue;
                    };
                    let route = PathRoute {
                        path: PathRule::parse(path),
                        backend,
                    };
                    match &host {
                        HostRule::Any => table.any.push(route),
                        HostRule::Exact(h) => table.exact.entry(h.clone()).or_default().push(route),
                        HostRule::Wildcard(parent) => table
                            .wildcard
                            .entry(parent.clone())
                            .or_default()
                            .push(route),
                    }
                }
            }
        }
        table
    }

    /// The backend for a request's `Host` (raw, port allowed) and path;
    /// `None` means 404.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Backend>> {
        let host = normalize_host(host);
        let request: Vec<&str> = segments(path).collect();
        let wildcard = host
            .split_once('.')
            .filter(|(label, _)| !label.is_empty())
            .and_then(|(_, parent)| self.wildcard.get(parent));
        [self.exact.get(&host), wildcard, Some(&self.any)]
            .into_iter()
            .flatten()
            .find_map(|routes| best(routes, path, &request))
            .or(self.default.as_ref())
    }

    /// How many path routes the table holds (for logs).
    pub fn len(&self) -> usize {
        self.any.len()
            + self.exact.values().map(Vec::len).sum::<usize>()
            + self.wildcard.values().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.default.is_none()
    }
}

/// The strongest match among one tier's routes; the first wins ties, which
/// is the older Ingress's because the table was built in that order.
fn best<'a>(routes: &'a [PathRoute], path: &str, request: &[&str]) -> Option<&'a Arc<Backend>> {
    let mut best: Option<(Strength, &Arc<Backend>)> = None;
    for route in routes {
        if let Some(strength) = route.path.strength(path, request)
            && best.as_ref().is_none_or(|(b, _)| strength > *b)
        {
            best = Some((strength, &route.backend));
        }
    }
    best.map(|(_, backend)| backend)
}

/// Resolves backends once per Service port, so every route to the same
/// port shares one round-robin position.
struct Resolver<'a> {
    services: &'a Objects<Service>,
    endpoints: &'a Objects<Endpoints>,
    cache: HashMap<BackendKey, Arc<Backend>>,
}

impl Resolver<'_> {
    fn backend(&mut self, namespace: &str, backend: &IngressBackend) -> Option<Arc<Backend>> {
        let service = backend.service.as_ref()?;
        let port = service.port.as_ref();
        let key = (
            namespace.to_string(),
            service.name.clone(),
            port.and_then(|p| p.number),
            port.and_then(|p| p.name.clone()),
        );
        let resolved = self.cache.entry(key).or_insert_with(|| {
            let endpoints = resolve(
                namespace,
                &service.name,
                port,
                self.services,
                self.endpoints,
            );
            Arc::new(Backend::new(namespace, &service.name, endpoints))
        });
        Some(resolved.clone())
    }
}

/// The ready `ip:port`s behind a Service port named by number or name: the
/// Endpoints port carries the Service port's name (empty when unnamed).
pub fn resolve(
    namespace: &str,
    service: &str,
    port: Option<&ServiceBackendPort>,
    services: &Objects<Service>,
    endpoints: &Objects<Endpoints>,
) -> Vec<SocketAddr> {
    let key = (namespace.to_string(), service.to_string());
    let Some(service_port) = services
        .get(&key)
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| port_matches(p, port)))
    else {
        return Vec::new();
    };
    let port_name = service_port.name.as_deref().unwrap_or("");
    let mut out: Vec<SocketAddr> = endpoints
        .get(&key)
        .and_then(|e| e.subsets.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|subset| {
            let port = subset
                .ports
                .iter()
                .flatten()
                .find(|p| {
                    p.name.as_deref().unwrap_or("") == port_name && is_tcp(p.protocol.as_deref())
                })
                .and_then(|p| u16::try_from(p.port).ok());
            subset
                .addresses
                .iter()
                .flatten()
                .filter_map(move |a| Some(SocketAddr::new(a.ip.parse::<IpAddr>().ok()?, port?)))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn port_matches(port: &ServicePort, wanted: Option<&ServiceBackendPort>) -> bool {
    if !is_tcp(port.protocol.as_deref()) {
        return false;
    }
    let Some(wanted) = wanted else {
        return false;
    };
    match (wanted.number, wanted.name.as_deref()) {
        (Some(number), _) => port.port == number,
        (None, Some(name)) => port.name.as_deref() == Some(name),
        (None, None) => false,
    }
}

fn is_tcp(protocol: Option<&str>) -> bool {
    protocol.is_none_or(|p| p == "TCP")
}

#[cfg(test)]
mod tests;
