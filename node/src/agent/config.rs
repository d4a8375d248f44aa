//! What a node agent is told by its flags.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The Node's name.
    pub name: String,
    /// The address other nodes and the API server reach this node at.
    pub node_ip: Ipv4Addr,
    /// Persistent state: images, pod volumes and logs, address leases.
    pub data_dir: PathBuf,
    /// Runtime state: namespaces, container state (`/run/peapod`).
    pub run_dir: PathBuf,
    /// The `peapod` binary, re-executed as container shim.
    pub exe: PathBuf,
    /// Names host-wide objects: the bridge `<name>0` and iptables chains
    /// `<NAME>-...`, so that several agents can share a host in tests.
    pub network_name: String,
    /// The whole pod network (traffic to it is not masqueraded).
    pub cluster_cidr: Ipv4Net,
    /// Port of the node's API (logs, exec, port-forward); 0 picks one.
    pub kubelet_port: u16,
    /// The shared secret the API server presents to the node's API.
    pub token: String,
    /// Registries (`host:port`) that may be reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub max_pods: u32,
    /// The most processes and threads a pod may have; `None`: no limit.
    pub pod_pids_limit: Option<u64>,
    /// When container logs rotate and how many files of each are kept.
    pub container_log: peapod_runtimes::logs::Rotation,
    /// The cluster DNS server pods with `dnsPolicy: ClusterFirst` use;
    /// without one they get the host's resolver configuration.
    pub cluster_dns: Option<Ipv4Addr>,
    pub cluster_domain: String,
    /// The node ports the Ingress proxy answers on (HTTP, HTTPS).
    pub ingress_port: u16,
    pub ingress_tls_port: u16,
    /// Threads serving the Ingress; 0: half the cores, at least one.
    pub ingress_threads: usize,
    /// Size of the Wasm instance pool; 0: instances allocated on demand.
    pub wasm_instance_pool: u32,
    /// How often running pods' ConfigMap, Secret, projected and downward
    /// API volumes are brought up to date.
    pub sync_frequency: std::time::Duration,
    /// How often the local storage of pods with storage limits is measured.
    pub eviction_interval: std::time::Duration,
    /// Whether to offer the Wasm runtime.
    pub wasm: bool,
    /// Static pod manifests (`*.yaml`), run without the API server's say.
    pub manifests_dir: PathBuf,
}

impl AgentConfig {
    pub fn bridge(&self) -> String {
        format!("{}0", self.network_name)
    }

    /// Prefix of the iptables chains this agent owns.
    pub fn chain_prefix(&self) -> String {
        self.network_name.to_ascii_uppercase()
    }
}
