//! Cluster DNS (Peapod's CoreDNS): every node answers the cluster domain
//! (`cluster.local` unless configured) from a snapshot of the Services and
//! Endpoints it watches, and forwards every other name to the host's
//! nameservers.
//!
//! - [`records`]: the snapshot and its lookups (pure): Service, headless,
//!   StatefulSet pod, SRV and pod names; NXDOMAIN and NODATA.
//! - [`server`]: hickory's UDP and TCP listeners and the request handler.
//! - [`forward`]: the upstreams, over UDP then TCP for truncated answers.
//! - [`resolv`]: the upstreams the host's `/etc/resolv.conf` names.
//! - [`watch`]: keeping the snapshot current from watches.
//!
//! ```no_run
//! # async fn run(client: kube::Client) -> Result<(), peapod_node::dns::DnsError> {
//! use std::path::Path;
//! use peapod_node::dns::{self, ClusterDns};
//!
//! let upstreams = dns::read_upstreams(Path::new(dns::HOST_RESOLV_CONF))?;
//! let cluster_dns = ClusterDns::new("cluster.local");
//! cluster_dns.run(client, "10.244.0.1:53".parse().unwrap(), upstreams).await
//! # }
//! ```

pub mod forward;
pub mod records;
pub mod resolv;
pub mod server;
pub mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

pub use self::forward::Forwarder;
pub use self::records::{Answer, DEFAULT_DOMAIN, Records, Rr, RrData, TTL, build};
pub use self::resolv::{HOST_RESOLV_CONF, read_upstreams, upstreams};
pub use self::server::serve;
pub use self::watch::watch;

/// The records snapshot the server reads and the watcher replaces.
pub type SharedRecords = Arc<RwLock<Records>>;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cluster DNS cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cluster DNS server: {0}")]
    Server(String),
    #[error("reading {path}: {source}")]
    ResolvConf {
        path: String,
        source: std::io::Error,
    },
}

/// A node's cluster DNS: the records, their watcher and the server.
pub struct ClusterDns {
    records: SharedRecords,
}

impl ClusterDns {
    /// Cluster DNS for `domain` (e.g. `cluster.local`); it answers
    /// SERVFAIL for the domain until the watcher has listed Services and
    /// Endpoints.
    pub fn new(domain: &str) -> Self {
        ClusterDns {
            records: Arc::new(RwLock::new(Records::unsynced(domain))),
        }
    }

    /// The snapshot, shared.
    pub fn records(&self) -> SharedRecords {
        self.records.clone()
    }

    /// Serves DNS on `addr` (UDP and TCP) until its sockets fail.
    pub async fn serve(
        &self,
        addr: SocketAddr,
        upstreams: Vec<SocketAddr>,
    ) -> Result<(), DnsError> {
        serve(addr, self.records.clone(), upstreams).await
    }

    /// Keeps the snapshot current; runs for ever.
    pub async fn watch(&self, client: kube::Client) {
        watch(client, self.records.clone()).await
    }

    /// Watches and serves until serving fails (e.g. `addr` cannot be bound).
    pub async fn run(
        &self,
        client: kube::Client,
        addr: SocketAddr,
        upstreams: Vec<SocketAddr>,
    ) -> Result<(), DnsError> {
        tokio::select! {
            result = self.serve(addr, upstreams) => result,
            () = self.watch(client) => Ok(()),
        }
    }
}
