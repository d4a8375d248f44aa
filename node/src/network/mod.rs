//! Pod networking: a network namespace per pod held by a bind mount, a
//! veth pair to the node bridge, an address from the node's pod CIDR
//! (recorded so that it survives agent restarts), a default route, IP
//! forwarding, and masquerading of traffic leaving the cluster.

pub mod ipam;
pub mod links;
pub mod masquerade;
pub mod netns;
pub mod routes;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

use self::ipam::Ipam;

/// The IPv4 address of the interface the default route leaves through
/// (the node's address unless told otherwise).
pub fn default_ipv4() -> Option<Ipv4Addr> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let iface = routes.lines().skip(1).find_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        (fields.get(1) == Some(&"00000000")).then(|| fields[0].to_string())
    })?;
    nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        if a.interface_name != iface {
            return None;
        }
        let addr = a.address?;
        addr.as_sockaddr_in().map(|s| s.ip())
    })
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Link(#[from] links::LinkError),
}

type Result<T> = std::result::Result<T, NetworkError>;

#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Where namespace bind mounts live (`/run/peapod/netns`).
    pub run_dir: PathBuf,
    /// Where address leases are kept.
    pub state_dir: PathBuf,
    pub bridge: String,
    pub pod_cidr: Ipv4Net,
    pub cluster_cidr: Ipv4Net,
    /// The nat chain for masquerading (`PEAPOD-POSTROUTING`).
    pub chain: String,
}

/// A pod's namespaces and address.
#[derive(Clone, Debug)]
pub struct Sandbox {
    pub net: PathBuf,
    pub ipc: PathBuf,
    pub uts: PathBuf,
    pub ip: Ipv4Addr,
}

pub struct Network {
    config: NetworkConfig,
    ipam: Ipam,
    host: rtnetlink::Handle,
    bridge: u32,
}

impl Network {
    /// Brings up the bridge, IP forwarding and masquerading.
    pub async fn start(config: NetworkConfig) -> Result<Network> {
        let ipam = Ipam::new(&config.state_dir, config.pod_cidr)?;
        let host = links::host()?;
        let bridge =
            links::ensure_bridge(&host, &config.bridge, ipam.gateway(), ipam.prefix_len()).await?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
        masquerade::install(&config.chain, config.pod_cidr, config.cluster_cidr)?;
        Ok(Network {
            config,
            ipam,
            host,
            bridge,
        })
    }

    fn paths(&self, uid: &str) -> (PathBuf, PathBuf, PathBuf) {
        let dir = &self.config.run_dir;
        (
            dir.join("netns").join(uid),
            dir.join("ipcns").join(uid),
            dir.join("utsns").join(uid),
        )
    }

    /// The sandbox of a pod if it already exists (after an agent restart).
    pub fn existing(&self, uid: &str) -> Option<Sandbox> {
        let (net, ipc, uts) = self.paths(uid);
        let ip = self.ipam.lookup(uid)?;
        (net.exists() && ipc.exists() && uts.exists()).then_some(Sandbox { net, ipc, uts, ip })
    }

    /// Creates a pod's namespaces and plumbs its network.
    pub async fn create(&self, uid: &str, hostname: &str) -> Result<Sandbox> {
        if let Some(s) = self.existing(uid) {
            return Ok(s);
        }
        let (net, ipc, uts) = self.paths(uid);
        netns::create(netns::Kind::Net, &net, None)?;
        netns::create(netns::Kind::Ipc, &ipc, None)?;
        netns::create(netns::Kind::Uts, &uts, Some(hostname))?;
        let ip = self.ipam.allocate(uid)?;
        // The address may have been another pod's a moment ago.
        if let Err(e) = links::forget_neighbour(&self.host, self.bridge, ip).await {
            tracing::debug!("forgetting the neighbour entry of {ip}: {e}");
        }
        let plumbed = links::plumb_pod(
            &self.host,
            self.bridge,
            &net,
            &links::host_interface(uid),
            ip,
            self.ipam.prefix_len(),
            self.ipam.gateway(),
        )
        .await;
        if let Err(e) = plumbed {
            self.remove(uid).await;
            return Err(e.into());
        }
        Ok(Sandbox { net, ipc, uts, ip })
    }

    /// Removes everything of a pod's sandbox; safe to call repeatedly.
    pub async fn remove(&self, uid: &str) {
        let _ = links::delete(&self.host, &links::host_interface(uid)).await;
        let (net, ipc, uts) = self.paths(uid);
        for path in [net, ipc, uts] {
            if let Err(e) = netns::remove(&path) {
                tracing::warn!("removing {}: {e}", path.display());
            }
        }
        self.ipam.release(uid);
    }

    /// Pods holding addresses (for cleanup of pods deleted while down).
    pub fn known_pods(&self) -> Vec<String> {
        self.ipam.owners()
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.ipam.gateway()
    }

    /// Routes the other nodes' pod CIDRs via their addresses.
    pub async fn sync_routes(
        &self,
        want: &std::collections::BTreeMap<Ipv4Net, Ipv4Addr>,
    ) -> Result<()> {
        Ok(routes::sync(&self.host, want).await?)
    }

    /// Tears the node's network down (`--cleanup`).
    pub async fn teardown(&self) -> Result<()> {
        for uid in self.known_pods() {
            self.remove(&uid).await;
        }
        routes::sync(&self.host, &Default::default()).await?;
        links::delete(&self.host, &self.config.bridge).await?;
        masquerade::remove(&self.config.chain)?;
        Ok(())
    }

    pub fn state_dir(&self) -> &Path {
        &self.config.state_dir
    }
}
