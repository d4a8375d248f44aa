//! The scheduler's view of the cluster: nodes with their capacity and the
//! pods placed on them (including pods assumed bound while their binding
//! is in flight).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use peapod_common::quantity;

/// What a pod asks of a node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    pub cpu_milli: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// (protocol, hostPort) pairs the pod binds on the node.
    pub host_ports: Vec<(String, i32)>,
}

/// Defaults the scorer assumes for containers without requests, as
/// kube-scheduler does, so that such pods still spread.
const DEFAULT_CPU_MILLI: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// CPU (milli), memory and ephemeral storage a container asks for: its
/// requests, or its limits where it has no request.
fn container_requests(c: &k8s_openapi::api::core::v1::Container) -> [i64; 3] {
    let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let lim = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    let get = |k: &str, f: fn(&str) -> Option<i64>| {
        req.and_then(|r| r.get(k))
            .or_else(|| lim.and_then(|l| l.get(k)))
            .and_then(|q| f(&q.0))
            .unwrap_or(0)
    };
    [
        get("cpu", quantity::milli),
        get("memory", quantity::value),
        get("ephemeral-storage", quantity::value),
    ]
}

impl Request {
    /// Sum of the containers, or the largest init container if that is more.
    pub fn of(pod: &Pod) -> Request {
        let Some(spec) = pod.spec.as_ref() else {
            return Request::default();
        };
        let [mut cpu, mut mem, mut storage] = [0i64; 3];
        for c in &spec.containers {
            // Saturating: quantities are the user's, up to 8Ei each.
            let [c, m, s] = container_requests(c);
            cpu = cpu.saturating_add(c);
            mem = mem.saturating_add(m);
            storage = storage.saturating_add(s);
        }
        for c in spec.init_containers.iter().flatten() {
            let [c, m, s] = container_requests(c);
            cpu = cpu.max(c);
            mem = mem.max(m);
            storage = storage.max(s);
        }
        if let Some(overhead) = spec.overhead.as_ref() {
            let get = |k: &str, f: fn(&str) -> Option<i64>| {
                overhead.get(k).and_then(|q| f(&q.0)).unwrap_or(0)
            };
            cpu = cpu.saturating_add(get("cpu", quantity::milli));
            mem = mem.saturating_add(get("memory", quantity::value));
        }
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                p.host_port
                    .filter(|h| *h > 0)
                    .map(|h| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), h))
            })
            .collect();
        Request {
            cpu_milli: cpu,
            memory: mem,
            ephemeral_storage: storage,
            host_ports,
        }
    }

    /// The request with defaults for the scorer.
    pub fn non_zero(&self) -> (i64, i64) {
        (
            if self.cpu_milli == 0 {
                DEFAULT_CPU_MILLI
            } else {
                self.cpu_milli
            },
            if self.memory == 0 {
                DEFAULT_MEMORY
            } else {
                self.memory
            },
        )
    }
}

/// A pod placed on a node, as the filters and scorers need it.
#[derive(Clone, Debug)]
pub struct Placed {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub request: Request,
    pub owner: Option<String>,
}

impl Placed {
    pub fn of(pod: &Pod) -> Placed {
        Placed {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            request: Request::of(pod),
            owner: super::owner_uid(pod),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: bool,
    pub allocatable_cpu_milli: i64,
    pub allocatable_memory: i64,
    pub allocatable_pods: i64,
    pub allocatable_ephemeral_storage: i64,
    pub requested_cpu_milli: i64,
    pub requested_memory: i64,
    pub requested_ephemeral_storage: i64,
    /// Requests with scorer defaults applied.
    pub nonzero_cpu_milli: i64,
    pub nonzero_memory: i64,
    pub pods: HashMap<String, Placed>,
    /// How many pods of each controller (owner uid) run here.
    pub owners: HashMap<String, usize>,
}

impl NodeInfo {
    pub fn update_from(&mut self, node: &Node) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.clone().unwrap_or_default();
        self.taints = spec.taints.unwrap_or_default();
        self.unschedulable = spec.unschedulable == Some(true);
        let status = node.status.clone().unwrap_or_default();
        self.ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let alloc = status.allocatable.or(status.capacity).unwrap_or_default();
        self.allocatable_cpu_milli = alloc
            .get("cpu")
            .and_then(|q| quantity::milli(&q.0))
            .unwrap_or(0);
        self.allocatable_memory = alloc
            .get("memory")
            .and_then(|q| quantity::value(&q.0))
            .unwrap_or(0);
        self.allocatable_pods = alloc
            .get("pods")
            .and_then(|q| quantity::value(&q.0))
            .unwrap_or(0);
        self.allocatable_ephemeral_storage = alloc
            .get("ephemeral-storage")
            .and_then(|q| quantity::value(&q.0))
            .unwrap_or(0);
    }

    pub fn add(&mut self, key: String, placed: Placed) {
        self.remove(&key);
        let (cpu, mem) = placed.request.non_zero();
        self.requested_cpu_milli = self
            .requested_cpu_milli
            .saturating_add(placed.request.cpu_milli);
        self.requested_memory = self.requested_memory.saturating_add(placed.request.memory);
        self.requested_ephemeral_storage = self
            .requested_ephemeral_storage
            .saturating_add(placed.request.ephemeral_storage);
        self.nonzero_cpu_milli = self.nonzero_cpu_milli.saturating_add(cpu);
        self.nonzero_memory = self.nonzero_memory.saturating_add(mem);
        if let Some(o) = &placed.owner {
            *self.owners.entry(o.clone()).or_default() += 1;
        }
        self.pods.insert(key, placed);
    }

    pub fn remove(&mut self, key: &str) {
        let Some(placed) = self.pods.remove(key) else {
            return;
        };
        let (cpu, mem) = placed.request.non_zero();
        self.requested_cpu_milli = self
            .requested_cpu_milli
            .saturating_sub(placed.request.cpu_milli);
        self.requested_memory = self.requested_memory.saturating_sub(placed.request.memory);
        self.requested_ephemeral_storage = self
            .requested_ephemeral_storage
            .saturating_sub(placed.request.ephemeral_storage);
        self.nonzero_cpu_milli = self.nonzero_cpu_milli.saturating_sub(cpu);
        self.nonzero_memory = self.nonzero_memory.saturating_sub(mem);
        if let Some(o) = &placed.owner
            && let Some(n) = self.owners.get_mut(o)
        {
            *n -= 1;
            if *n == 0 {
                self.owners.remove(o);
            }
        }
    }
}

/// Nodes by name, and where each placed pod is.
#[derive(Default)]
pub struct Cache {
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Pod key (`ns/name`) → node it is on (or assumed on).
    pub placement: HashMap<String, String>,
}

impl Cache {
    pub fn set_node(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.nodes
            .entry(name.clone())
            .or_insert_with(|| NodeInfo {
                name,
                ..Default::default()
            })
            .update_from(node);
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.remove(name) {
            for key in info.pods.keys() {
                self.placement.remove(key);
            }
        }
    }

    /// Records a pod on a node (bound, or assumed while binding).
    pub fn place(&mut self, key: &str, node: &str, placed: Placed) {
        self.unplace(key);
        // A pod may be seen before its node; the node fills in when it arrives.
        self.nodes
            .entry(node.to_string())
            .or_insert_with(|| NodeInfo {
                name: node.to_string(),
                ..Default::default()
            })
            .add(key.to_string(), placed);
        self.placement.insert(key.to_string(), node.to_string());
    }

    pub fn unplace(&mut self, key: &str) {
        if let Some(node) = self.placement.remove(key)
            && let Some(info) = self.nodes.get_mut(&node)
        {
            info.remove(key);
        }
    }
}
