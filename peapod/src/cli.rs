//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use peapod_control::server::{ControlPlane, ServerConfig};

#[derive(Parser)]
#[command(name = "peapod", version, about = "A Kubernetes-compatible orchestrator for OCI and WebAssembly containers")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server, store, controllers).
    Server(ServerArgs),
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
            Command::Server(args) => {
                let plane = ControlPlane::start(args.config()).await?;
                eprintln!(
                    "Peapod API server at {}\nexport KUBECONFIG={}",
                    plane.url,
                    plane.kubeconfig.display()
                );
                plane.wait().await?;
                Ok(())
            }
        }
    }
}
