//! Command-line interface: the subcommands and their flags.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "peapod",
    version,
    about = "A Kubernetes-compatible orchestrator for OCI and WebAssembly containers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the control plane (API server, store, controllers).
    Server(ServerArgs),
    /// Run a whole cluster on this host: control plane and one node, with
    /// the embedded store.
    Up(UpArgs),
    /// Run a node agent that joins a cluster.
    Node(NodeArgs),
    /// Work with images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Print a kubeconfig for a user, with a client certificate the
    /// cluster CA signs (bind roles to the user or group with RBAC).
    Kubeconfig(KubeconfigArgs),
    /// (internal) Own one OCI container for the node agent.
    #[command(name = "oci-shim", hide = true)]
    OciShim(ShimArgs),
    /// (internal) Run a process in a running OCI container.
    #[command(name = "oci-exec", hide = true)]
    OciExec(ExecArgs),
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Push a Wasm component (`.wasm`) to a registry as an OCI artifact.
    Push {
        /// The component file.
        file: PathBuf,
        /// Where to push it, e.g. `127.0.0.1:5000/samples/hello:v1`.
        reference: String,
        /// Use plain HTTP for this registry (`host:port`); repeatable.
        #[arg(long = "insecure-registry")]
        insecure_registries: Vec<String>,
        /// `user:password` for the registry.
        #[arg(long)]
        creds: Option<String>,
    },
}

#[derive(Args, Clone)]
pub struct KubeconfigArgs {
    /// The server's data directory (where the cluster CA is).
    #[arg(long, default_value = "/var/lib/peapod")]
    pub data_dir: PathBuf,
    /// The user name (the certificate's common name).
    #[arg(long)]
    pub user: String,
    /// A group of the user (the certificate's organization); up to two.
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// The API server URL (default: the one in the admin kubeconfig).
    #[arg(long)]
    pub server: Option<String>,
}

#[derive(Args, Clone)]
pub struct ShimArgs {
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub state: PathBuf,
    #[arg(long)]
    pub root: PathBuf,
    #[arg(long)]
    pub log: PathBuf,
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub log_max_size: u64,
    #[arg(long, default_value_t = 5)]
    pub log_max_files: u32,
    #[arg(long)]
    pub cgroup: String,
    #[arg(long)]
    pub sockets: PathBuf,
    #[arg(long)]
    pub tty: bool,
    #[arg(long)]
    pub stdin: bool,
    #[arg(long)]
    pub stdin_once: bool,
}

#[derive(Args, Clone)]
pub struct ExecArgs {
    #[arg(long)]
    pub root: PathBuf,
    #[arg(long)]
    pub id: String,
    #[arg(last = true, required = true)]
    pub args: Vec<String>,
}

#[derive(Args, Clone)]
pub struct NodeArgs {
    /// URL of the API server, e.g. https://10.0.0.1:6443.
    #[arg(long)]
    pub server: String,
    /// File holding the node token that `peapod server` wrote (`D/node-token`).
    #[arg(long)]
    pub token_file: PathBuf,
    /// Where images, pod volumes and logs live.
    #[arg(long, default_value = "/var/lib/peapod")]
    pub data_dir: PathBuf,
    /// The cluster's pod network (traffic to it is not masqueraded).
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: ipnet::Ipv4Net,
    /// Register simulated nodes that run nothing (like kubemark).
    #[arg(long)]
    pub hollow: bool,
    /// How many hollow nodes to register.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// CPU capacity of each hollow node.
    #[arg(long, default_value = "4")]
    pub hollow_cpu: String,
    /// Memory capacity of each hollow node.
    #[arg(long, default_value = "16Gi")]
    pub hollow_memory: String,
    /// Pod capacity of each hollow node.
    #[arg(long, default_value_t = 110)]
    pub hollow_pods: u32,
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// Flags of the node agent, shared by `node` and `up`.
#[derive(Args, Clone)]
pub struct AgentArgs {
    /// Node name (for hollow nodes: the prefix of `<name>-<i>`); the host
    /// name by default.
    #[arg(long)]
    pub name: Option<String>,
    /// The address the node is reached at (default: the address of the
    /// default route's interface).
    #[arg(long)]
    pub node_ip: Option<Ipv4Addr>,
    /// Runtime state: namespaces and container state.
    #[arg(long, default_value = "/run/peapod")]
    pub run_dir: PathBuf,
    /// Names the node's bridge (`<name>0`) and iptables chains.
    #[arg(long, default_value = "peapod")]
    pub network_name: String,
    /// Port of the node's API (logs, exec) that the API server calls; 0 picks one.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// A registry (`host:port`) that may be used over plain HTTP; repeatable.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Extra node labels, `key=value`; repeatable.
    #[arg(long = "node-label")]
    pub labels: Vec<String>,
    /// Most pods this node takes.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// The cluster DNS server pods resolve through.
    #[arg(long)]
    pub cluster_dns: Option<Ipv4Addr>,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The port Ingress answers on, on every node address.
    #[arg(long, default_value_t = 80)]
    pub ingress_port: u16,
    /// The port Ingress answers HTTPS on.
    #[arg(long, default_value_t = 443)]
    pub ingress_tls_port: u16,
    /// Threads that serve the Ingress; 0: half the cores (at least one),
    /// leaving the rest to the pods it proxies to.
    #[arg(long, default_value_t = 0)]
    pub ingress_threads: usize,
    /// Wasm instances (running commands plus requests being served) the
    /// node's instance pool holds; 0 allocates every instance on demand.
    #[arg(long, default_value_t = 1000)]
    pub wasm_instance_pool: u32,
    /// Most processes and threads one pod may run, set on its cgroup (the
    /// kubelet's `podPidsLimit`); -1 for no limit. The kubelet has none by
    /// default; Peapod keeps a fork bomb in one pod from starving the node.
    #[arg(long, default_value_t = 4096, allow_negative_numbers = true)]
    pub pod_max_pids: i64,
    /// Size at which a container's log is rotated, as a quantity (the
    /// kubelet's `containerLogMaxSize`).
    #[arg(long, default_value = "10Mi", value_parser = parse_size)]
    pub container_log_max_size: u64,
    /// Files of a container's log kept, the current one included (the
    /// kubelet's `containerLogMaxFiles`; at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..))]
    pub container_log_max_files: u32,
    /// Seconds between refreshes of running pods' ConfigMap, Secret,
    /// projected and downward API volumes (the kubelet's sync frequency).
    #[arg(long, default_value_t = 60)]
    pub sync_frequency: u64,
    /// Seconds between measurements of the local storage of pods with
    /// `emptyDir.sizeLimit` or `ephemeral-storage` limits (the kubelet's
    /// `--eviction-monitoring-interval`).
    #[arg(long, default_value_t = 10)]
    pub eviction_monitoring_interval: u64,
    /// Remove every container, network and file of this node's, then exit.
    #[arg(long)]
    pub cleanup: bool,
}

#[derive(Args, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Port of the API server on the listen address (overrides --listen's port).
    #[arg(long)]
    pub api_port: Option<u16>,
}

#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Where the store, credentials and kubeconfig live.
    #[arg(long, default_value = "/var/lib/peapod")]
    pub data_dir: PathBuf,
    /// Address and port the API server listens on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// `redb` (embedded) or `etcd://host:port,...`.
    #[arg(long, default_value = "redb")]
    pub store: String,
    /// Extra names or addresses for the serving certificate.
    #[arg(long = "tls-san")]
    pub tls_sans: Vec<String>,
    /// Seconds a node may go without renewing its lease before it is marked Unknown.
    #[arg(long, default_value_t = 40)]
    pub node_monitor_grace_period: u64,
    /// Seconds pods stay on an unreachable node before they are deleted.
    #[arg(long, default_value_t = 300)]
    pub pod_eviction_timeout: u64,
    /// The range nodes' pod CIDRs are taken from.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: ipnet::Ipv4Net,
    /// Prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// The range Services' cluster IPs are taken from.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: ipnet::Ipv4Net,
    /// The range of node ports, `first-last`.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// Knative Services answer at `<name>.<namespace>.<domain>`.
    #[arg(long, default_value = "example.com")]
    pub domain: String,
    /// Seconds a function goes without requests before it scales to zero.
    #[arg(long, default_value_t = 30)]
    pub scale_to_zero_grace_period: u64,
    /// A control-plane loop not to run here (scheduler, deployment,
    /// replicaset, statefulset, daemonset, job, cronjob, garbagecollector,
    /// nodeipam, nodelifecycle, clusterrole-aggregation); repeatable.
    #[arg(long = "disable-controller")]
    pub disable_controllers: Vec<String>,
    /// Watches one client address may hold open; more get 429.
    #[arg(long, default_value_t = peapod_control::api::MAX_WATCHES_PER_CLIENT)]
    pub max_watches_per_client: usize,
}

impl Cli {
    pub fn is_exec_helper(&self) -> bool {
        matches!(self.command, Command::OciExec(_))
    }

    pub fn is_shim(&self) -> bool {
        matches!(self.command, Command::OciShim(_))
    }
}

/// A byte size written as a Kubernetes quantity (`10Mi`, `500k`, `1048576`).
fn parse_size(s: &str) -> Result<u64, String> {
    peapod_common::quantity::value(s)
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?} is not a positive size (e.g. 10Mi)"))
}
