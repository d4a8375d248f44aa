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
}

impl ServerArgs {
    fn config(&self) -> ServerConfig {
        ServerConfig {
            data_dir: self.data_dir.clone(),
            listen: self.listen,
            store: self.store.clone(),
            tls_sans: self.tls_sans.clone(),
        }
    }
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Server(args) => serve(args.config()).await,
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
