//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use peapod_control::server::{ControlPlane, ServerConfig};

#[derive(Parser)]
#[command(
    name = "peapod",
    version,
    about = "A Kubernetes-compatible orchestrator for OCI and WebAssembly containers"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server, store, controllers).
    Server(ServerArgs),
    /// Run a whole cluster on this host with the embedded store.
    Up(UpArgs),
    /// Run a node agent that joins a cluster.
    Node(NodeArgs),
    /// (internal) Own one OCI container for the node agent.
    #[command(name = "oci-shim", hide = true)]
    OciShim(ShimArgs),
    /// (internal) Run a process in a running OCI container.
    #[command(name = "oci-exec", hide = true)]
    OciExec(ExecArgs),
}

#[derive(Args, Clone)]
struct ShimArgs {
    #[arg(long)]
    id: String,
    #[arg(long)]
    state: PathBuf,
    #[arg(long)]
    root: PathBuf,
    #[arg(long)]
    log: PathBuf,
    #[arg(long)]
    cgroup: String,
}

#[derive(Args, Clone)]
struct ExecArgs {
    #[arg(long)]
    root: PathBuf,
    #[arg(long)]
    id: String,
    #[arg(last = true, required = true)]
    args: Vec<String>,
}

#[derive(Args, Clone)]
struct NodeArgs {
    /// URL of the API server, e.g. https://10.0.0.1:6443.
    #[arg(long)]
    server: String,
    /// File holding the node token that `peapod server` wrote (`D/node-token`).
    #[arg(long)]
    token_file: PathBuf,
    /// Node name (for hollow nodes: the prefix of `<name>-<i>`).
    #[arg(long)]
    name: Option<String>,
    /// Register simulated nodes that run nothing (like kubemark).
    #[arg(long)]
    hollow: bool,
    /// How many hollow nodes to register.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// CPU capacity of each hollow node.
    #[arg(long, default_value = "4")]
    hollow_cpu: String,
    /// Memory capacity of each hollow node.
    #[arg(long, default_value = "16Gi")]
    hollow_memory: String,
    /// Pod capacity of each hollow node.
    #[arg(long, default_value_t = 110)]
    hollow_pods: u32,
    /// Extra node labels, `key=value`.
    #[arg(long = "node-label")]
    labels: Vec<String>,
}

#[derive(Args, Clone)]
struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Port of the API server on the listen address (overrides --listen's port).
    #[arg(long)]
    api_port: Option<u16>,
}

#[derive(Args, Clone)]
struct ServerArgs {
    /// Where the store, credentials and kubeconfig live.
    #[arg(long, default_value = "/var/lib/peapod")]
    data_dir: PathBuf,
    /// Address and port the API server listens on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// `redb` (embedded) or `etcd://host:port,...`.
    #[arg(long, default_value = "redb")]
    store: String,
    /// Extra names or addresses for the serving certificate.
    #[arg(long = "tls-san")]
    tls_sans: Vec<String>,
    /// Seconds a node may go without renewing its lease before it is marked Unknown.
    #[arg(long, default_value_t = 40)]
    node_monitor_grace_period: u64,
    /// Seconds pods stay on an unreachable node before they are deleted.
    #[arg(long, default_value_t = 300)]
    pod_eviction_timeout: u64,
    /// A control-plane loop not to run here (scheduler, deployment,
    /// replicaset, statefulset, daemonset, job, cronjob, garbagecollector,
    /// nodelifecycle); repeatable.
    #[arg(long = "disable-controller")]
    disable_controllers: Vec<String>,
}

impl ServerArgs {
    fn config(&self) -> ServerConfig {
        ServerConfig {
            data_dir: self.data_dir.clone(),
            listen: self.listen,
            store: self.store.clone(),
            tls_sans: self.tls_sans.clone(),
            controllers: peapod_control::controllers::Settings {
                node_monitor_grace_period: std::time::Duration::from_secs(
                    self.node_monitor_grace_period,
                ),
                pod_eviction_timeout: std::time::Duration::from_secs(self.pod_eviction_timeout),
                disabled: self.disable_controllers.clone(),
            },
        }
    }
}

impl Cli {
    pub fn is_exec_helper(&self) -> bool {
        matches!(self.command, Command::OciExec(_))
    }

    /// Runs a single-threaded helper subcommand, if that is what was asked
    /// for, and returns its exit code.
    pub fn run_helper(&self) -> Option<i32> {
        use peapod_runtimes::oci;
        match &self.command {
            Command::OciShim(a) => Some(oci::shim::run(oci::shim::ShimArgs {
                id: a.id.clone(),
                state: a.state.clone(),
                root: a.root.clone(),
                log: a.log.clone(),
                cgroup: a.cgroup.clone(),
            })),
            Command::OciExec(a) => Some(oci::exec::run(oci::exec::ExecArgs {
                root: a.root.clone(),
                id: a.id.clone(),
                args: a.args.clone(),
            })),
            _ => None,
        }
    }

    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Server(args) => serve(args.config()).await,
            Command::Node(args) => node(args).await,
            Command::OciShim(_) | Command::OciExec(_) => unreachable!("run by run_helper"),
            Command::Up(args) => {
                let mut config = args.server.config();
                if let Some(port) = args.api_port {
                    config.listen.set_port(port);
                }
                // The node agent joins here once it exists; until then `up`
                // runs the control plane alone and pods stay Pending.
                serve(config).await
            }
        }
    }
}

async fn node(args: NodeArgs) -> anyhow::Result<()> {
    let token = peapod_node::join::read_token(&args.token_file)?;
    let client = peapod_node::join::client(&args.server, &token).await?;
    if !args.hollow {
        anyhow::bail!("only hollow nodes are available so far: pass --hollow");
    }
    let labels = args
        .labels
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--node-label {l:?} is not key=value"))
        })
        .collect::<anyhow::Result<_>>()?;
    let config = peapod_node::hollow::HollowConfig {
        prefix: args.name.unwrap_or_else(|| "hollow".into()),
        count: args.count,
        cpu: args.hollow_cpu,
        memory: args.hollow_memory,
        pods: args.hollow_pods,
        wasm: true,
        labels,
    };
    peapod_node::hollow::run(client, config).await?;
    Ok(())
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let plane = ControlPlane::start(config).await?;
    println!(
        "Peapod API server at {}\nexport KUBECONFIG={}",
        plane.url,
        plane.kubeconfig.display()
    );
    plane.wait().await?;
    Ok(())
}
