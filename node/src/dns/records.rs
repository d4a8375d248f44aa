//! The cluster domain's records: a snapshot built from Services and
//! Endpoints, and the lookups CoreDNS's `kubernetes` plugin answers. Pure:
//! objects in, answers out; the wire format is the server's business.
//!
//! | name | answers |
//! |---|---|
//! | `<svc>.<ns>.svc.<domain>` | A/AAAA: the cluster IP; headless: every ready endpoint. SRV: every port |
//! | `<host>.<svc>.<ns>.svc.<domain>` | the endpoint whose `hostname` (else dashed IP) is `<host>` |
//! | `_<port>._<proto>.<svc>.<ns>.svc.<domain>` | SRV: to the Service, or to each endpoint when headless |
//! | `<a-b-c-d>.<ns>.pod.<domain>` | A: a.b.c.d |
//! | `<svc>.<ns>.svc.<domain>` of an ExternalName Service | CNAME to `externalName` |
//!
//! Other names in the domain do not exist (NXDOMAIN); a name that exists
//! without records of the asked type answers empty (NODATA). Names outside
//! the domain are not ours: they are forwarded.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_server::proto::rr::RecordType;
use k8s_openapi::api::core::v1::{EndpointPort, Endpoints, Service, ServicePort, ServiceSpec};

/// Time to live of every record of the cluster domain, in seconds.
pub const TTL: u32 = 30;

/// The cluster domain when none is configured.
pub const DEFAULT_DOMAIN: &str = "cluster.local";

/// One resource record. Names are lower-case and fully qualified (with
/// the trailing dot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rr {
    pub name: String,
    pub data: RrData,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RrData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Cname(String),
    /// The zone's start of authority (refresh, retry and expire are the
    /// server's constants; the minimum is [`TTL`]).
    Soa {
        mname: String,
        rname: String,
        serial: u32,
    },
}

impl RrData {
    pub fn record_type(&self) -> RecordType {
        match self {
            RrData::A(_) => RecordType::A,
            RrData::Aaaa(_) => RecordType::AAAA,
            RrData::Srv { .. } => RecordType::SRV,
            RrData::Cname(_) => RecordType::CNAME,
            RrData::Soa { .. } => RecordType::SOA,
        }
    }
}

/// What the cluster domain says about a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The name is outside the cluster domain: ask the upstreams.
    Forward,
    /// The name is in the cluster domain but no snapshot has been built
    /// yet: fail (SERVFAIL) rather than deny, so nothing caches a wrong
    /// NXDOMAIN.
    NotReady,
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The name exists; `answers` is empty when it has no record of the
    /// asked type (NODATA). `additionals` are the addresses of SRV targets.
    Found {
        answers: Vec<Rr>,
        additionals: Vec<Rr>,
    },
}

/// A port of a Service or of an endpoint. Names and protocols lower-case.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Port {
    name: String,
    protocol: String,
    port: u16,
}

/// A ready endpoint address with the ports it serves.
#[derive(Clone, Debug)]
struct Backend {
    ip: IpAddr,
    hostname: Option<String>,
    ports: Vec<Port>,
}

impl Backend {
    /// The label naming this endpoint under its Service: its hostname,
    /// else its dashed IP.
    fn label(&self) -> String {
        self.hostname.clone().unwrap_or_else(|| dashed(self.ip))
    }
}

#[derive(Clone, Debug)]
enum Kind {
    /// The cluster IPs (none while unallocated).
    ClusterIp(Vec<IpAddr>),
    Headless,
    /// An ExternalName Service: the fully qualified target.
    External(String),
}

#[derive(Clone, Debug)]
struct ServiceEntry {
    kind: Kind,
    ports: Vec<Port>,
    backends: Vec<Backend>,
}

/// The records at one name, of every type, with the addresses of the
/// targets of its SRV records.
#[derive(Default)]
struct Node {
    records: Vec<Rr>,
    glue: Vec<Rr>,
}

/// A snapshot of the cluster domain.
#[derive(Clone, Debug)]
pub struct Records {
    /// Lower-case, without the trailing dot: `cluster.local`.
    domain: String,
    labels: Vec<String>,
    synced: bool,
    serial: u32,
    /// Services by namespace, then name.
    namespaces: HashMap<String, HashMap<String, ServiceEntry>>,
}

/// The snapshot of `services` and their `endpoints` for `domain`.
pub fn build(services: &[Service], endpoints: &[Endpoints], domain: &str) -> Records {
    Records::from_objects(services, endpoints, domain)
}

impl Records {
    /// The records of `domain` before the first list of Services and
    /// Endpoints: every name in it answers SERVFAIL.
    pub fn unsynced(domain: &str) -> Self {
        let domain = normalize_domain(domain);
        Records {
            labels: domain.split('.').map(String::from).collect(),
            domain,
            synced: false,
            serial: 1,
            namespaces: HashMap::new(),
        }
    }

    /// Like [`build`], from any iterators of objects (the watcher's caches).
    pub fn from_objects<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        endpoints: impl IntoIterator<Item = &'a Endpoints>,
        domain: &str,
    ) -> Self {
        let mut records = Records::unsynced(domain);
        records.synced = true;
        let mut backends: HashMap<(String, String), Vec<Backend>> = HashMap::new();
        for eps in endpoints {
            let Some(name) = eps.metadata.name.as_deref() else {
                continue;
            };
            let ns = eps.metadata.namespace.as_deref().unwrap_or("default");
            backends.insert(
                (ns.to_ascii_lowercase(), name.to_ascii_lowercase()),
                backends_of(eps),
            );
        }
        let no_spec = ServiceSpec::default();
        for svc in services {
            let Some(name) = svc.metadata.name.as_deref() else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            let ns = svc
                .metadata
                .namespace
                .as_deref()
                .unwrap_or("default")
                .to_ascii_lowercase();
            let spec = svc.spec.as_ref().unwrap_or(&no_spec);
            let entry = ServiceEntry {
                kind: kind_of(spec),
                ports: spec
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(service_port)
                    .collect(),
                backends: backends
                    .remove(&(ns.clone(), name.clone()))
                    .unwrap_or_default(),
            };
            records
                .namespaces
                .entry(ns)
                .or_default()
                .insert(name, entry);
        }
        records
    }

    /// The same records with another SOA serial.
    pub fn with_serial(mut self, serial: u32) -> Self {
        self.serial = serial;
        self
    }

    /// The cluster domain, lower-case, without the trailing dot.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether the snapshot was built from listed objects.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Whether `name` is the cluster domain or below it.
    pub fn in_domain(&self, name: &str) -> bool {
        self.relative(&labels(name)).is_some()
    }

    /// The zone's SOA record, for the authority section of negative answers.
    pub fn soa(&self) -> Rr {
        Rr {
            name: format!("{}.", self.domain),
            data: RrData::Soa {
                mname: format!("ns.dns.{}.", self.domain),
                rname: format!("hostmaster.{}.", self.domain),
                serial: self.serial,
            },
        }
    }

    /// What the cluster domain answers to `name` (any case, with or
    /// without the trailing dot) for `qtype`.
    pub fn lookup(&self, name: &str, qtype: RecordType) -> Answer {
        self.lookup_at(name, qtype, true)
    }

    fn lookup_at(&self, name: &str, qtype: RecordType, follow: bool) -> Answer {
        let labels = labels(name);
        let Some(rest) = self.relative(&labels) else {
            return Answer::Forward;
        };
        if !self.synced {
            return Answer::NotReady;
        }
        let fqdn = format!("{}.", labels.join("."));
        match self.node(rest, &fqdn) {
            Some(node) => self.select(node, qtype, follow),
            None => Answer::NxDomain,
        }
    }

    /// The labels of `labels` before the cluster domain, if it ends with it.
    fn relative<'l>(&self, labels: &'l [String]) -> Option<&'l [String]> {
        let keep = labels.len().checked_sub(self.labels.len())?;
        (labels[keep..] == self.labels[..]).then_some(&labels[..keep])
    }

    fn service(&self, ns: &str, name: &str) -> Option<&ServiceEntry> {
        self.namespaces.get(ns)?.get(name)
    }

    /// The records at a name, given its labels before the domain; `None`
    /// when the name does not exist.
    fn node(&self, rest: &[String], fqdn: &str) -> Option<Node> {
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        match rest.as_slice() {
            [] => Some(Node {
                records: vec![self.soa()],
                glue: Vec::new(),
            }),
            ["svc"] | ["pod"] | [_, "pod"] => Some(Node::default()),
            [ns, "svc"] => self.namespaces.contains_key(*ns).then(Node::default),
            [name, ns, "svc"] => {
                let svc = self.service(ns, name)?;
                Some(service_node(svc, fqdn, None))
            }
            [first, name, ns, "svc"] => {
                let svc = self.service(ns, name)?;
                let svc_fqdn = fqdn.split_once('.').map_or(fqdn, |(_, rest)| rest);
                match first.strip_prefix('_') {
                    // `_<proto>.<svc>...`: there only as the parent of SRV names.
                    Some(proto) => svc
                        .ports
                        .iter()
                        .any(|p| p.protocol == proto)
                        .then(Node::default),
                    None => endpoint_node(svc, first, svc_fqdn),
                }
            }
            [port, proto, name, ns, "svc"] => {
                let port = port.strip_prefix('_')?;
                let proto = proto.strip_prefix('_')?;
                let svc = self.service(ns, name)?;
                if !svc
                    .ports
                    .iter()
                    .any(|p| p.name == port && p.protocol == proto)
                {
                    return None;
                }
                let svc_fqdn = fqdn.splitn(3, '.').nth(2).unwrap_or(fqdn);
                Some(service_node(svc, svc_fqdn, Some((port, proto))))
            }
            [ip, _, "pod"] => {
                let ip = undashed(ip)?;
                Some(Node {
                    records: vec![address(fqdn, ip)],
                    glue: Vec::new(),
                })
            }
            _ => None,
        }
    }

    /// The records of `node` that answer `qtype`.
    fn select(&self, node: Node, qtype: RecordType, follow: bool) -> Answer {
        // An ExternalName Service's name is an alias: its CNAME answers
        // every type, followed once when the target is in the cluster.
        if let Some(cname) = node
            .records
            .iter()
            .find(|r| matches!(r.data, RrData::Cname(_)))
            .cloned()
        {
            let mut answers = vec![cname.clone()];
            if let RrData::Cname(target) = &cname.data
                && follow
                && qtype != RecordType::CNAME
                && let Answer::Found { answers: more, .. } = self.lookup_at(target, qtype, false)
            {
                answers.extend(more);
            }
            return Answer::Found {
                answers,
                additionals: Vec::new(),
            };
        }
        let answers: Vec<Rr> = node
            .records
            .into_iter()
            .filter(|r| qtype == RecordType::ANY || r.data.record_type() == qtype)
            .collect();
        let additionals = if answers.iter().any(|r| matches!(r.data, RrData::Srv { .. })) {
            node.glue
        } else {
            Vec::new()
        };
        Answer::Found {
            answers,
            additionals,
        }
    }
}

/// The records of a Service's name (`port` is `None`), or of one of its
/// `_<port>._<proto>` names, whose SRV records are the only ones.
fn service_node(svc: &ServiceEntry, svc_fqdn: &str, port: Option<(&str, &str)>) -> Node {
    let mut node = Node::default();
    let wanted = |p: &Port| port.is_none_or(|(name, proto)| p.name == name && p.protocol == proto);
    let owner = match port {
        Some((name, proto)) => format!("_{name}._{proto}.{svc_fqdn}"),
        None => svc_fqdn.to_string(),
    };
    let mut srv: Vec<(u16, String)> = Vec::new();
    match &svc.kind {
        Kind::External(target) => {
            if port.is_none() {
                node.records.push(Rr {
                    name: owner,
                    data: RrData::Cname(target.clone()),
                });
            }
            return node;
        }
        Kind::ClusterIp(ips) => {
            let addresses: Vec<Rr> = ips.iter().map(|ip| address(svc_fqdn, *ip)).collect();
            for p in svc.ports.iter().filter(|&p| wanted(p)) {
                srv.push((p.port, svc_fqdn.to_string()));
            }
            if !srv.is_empty() {
                node.glue.extend(addresses.iter().cloned());
            }
            if port.is_none() {
                node.records.extend(addresses);
            }
        }
        Kind::Headless => {
            let mut seen: Vec<IpAddr> = Vec::new();
            for b in &svc.backends {
                let target = format!("{}.{svc_fqdn}", b.label());
                let before = srv.len();
                for p in b.ports.iter().filter(|&p| wanted(p)) {
                    srv.push((p.port, target.clone()));
                }
                if srv.len() > before {
                    node.glue.push(address(&target, b.ip));
                }
                if port.is_none() && !seen.contains(&b.ip) {
                    seen.push(b.ip);
                    node.records.push(address(svc_fqdn, b.ip));
                }
            }
        }
    }
    let weight = u16::try_from(100 / srv.len().max(1)).unwrap_or(100).max(1);
    node.records
        .extend(srv.into_iter().map(|(port, target)| Rr {
            name: owner.clone(),
            data: RrData::Srv {
                priority: 0,
                weight,
                port,
                target,
            },
        }));
    node
}

/// The records of `<label>.<svc>...`: the endpoints named `label`.
fn endpoint_node(svc: &ServiceEntry, label: &str, svc_fqdn: &str) -> Option<Node> {
    let owner = format!("{label}.{svc_fqdn}");
    let records: Vec<Rr> = svc
        .backends
        .iter()
        .filter(|b| b.label() == label)
        .map(|b| address(&owner, b.ip))
        .collect();
    (!records.is_empty()).then_some(Node {
        records,
        glue: Vec::new(),
    })
}

fn address(name: &str, ip: IpAddr) -> Rr {
    Rr {
        name: name.to_string(),
        data: match ip {
            IpAddr::V4(v4) => RrData::A(v4),
            IpAddr::V6(v6) => RrData::Aaaa(v6),
        },
    }
}

fn kind_of(spec: &ServiceSpec) -> Kind {
    if spec.type_.as_deref() == Some("ExternalName")
        && let Some(target) = spec.external_name.as_deref().filter(|t| !t.is_empty())
    {
        return Kind::External(format!(
            "{}.",
            target.trim_end_matches('.').to_ascii_lowercase()
        ));
    }
    let ips: Vec<&str> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.iter().map(String::as_str).collect(),
    };
    if ips.contains(&"None") {
        return Kind::Headless;
    }
    Kind::ClusterIp(ips.iter().filter_map(|ip| ip.parse().ok()).collect())
}

fn service_port(p: &ServicePort) -> Option<Port> {
    Some(Port {
        name: p.name.as_deref().unwrap_or_default().to_ascii_lowercase(),
        protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
        port: u16::try_from(p.port).ok()?,
    })
}

fn endpoint_port(p: &EndpointPort) -> Option<Port> {
    Some(Port {
        name: p.name.as_deref().unwrap_or_default().to_ascii_lowercase(),
        protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
        port: u16::try_from(p.port).ok()?,
    })
}

/// The ready addresses of `eps`, one per IP, with the ports of every
/// subset it is ready in; sorted by IP.
fn backends_of(eps: &Endpoints) -> Vec<Backend> {
    let mut by_ip: BTreeMap<IpAddr, Backend> = BTreeMap::new();
    for subset in eps.subsets.iter().flatten() {
        let ports: Vec<Port> = subset
            .ports
            .iter()
            .flatten()
            .filter_map(endpoint_port)
            .collect();
        for a in subset.addresses.iter().flatten() {
            let Ok(ip) = a.ip.parse::<IpAddr>() else {
                continue;
            };
            let hostname = a
                .hostname
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase);
            let backend = by_ip.entry(ip).or_insert_with(|| Backend {
                ip,
                hostname: None,
                ports: Vec::new(),
            });
            if backend.hostname.is_none() {
                backend.hostname = hostname;
            }
            for p in &ports {
                if !backend.ports.contains(p) {
                    backend.ports.push(p.clone());
                }
            }
        }
    }
    by_ip.into_values().collect()
}

/// `10.244.1.5` → `10-244-1-5`; `fd00::1` → `fd00--1`.
fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The address a dashed label names.
fn undashed(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// The lower-case labels of a name; the root has none.
fn labels(name: &str) -> Vec<String> {
    let name = name.trim_end_matches('.');
    if name.is_empty() {
        return Vec::new();
    }
    name.split('.').map(str::to_ascii_lowercase).collect()
}

fn normalize_domain(domain: &str) -> String {
    let domain = domain.trim().trim_matches('.').to_ascii_lowercase();
    if domain.is_empty() {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    }
}

#[cfg(test)]
mod tests;
