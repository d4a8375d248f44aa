//! Pod networking: a network namespace per pod held by a bind mount, a
//! veth pair to the node bridge, an address from the node's pod CIDR
//! (recorded so that it survives agent restarts), a default route, IP
//! forwarding, and masquerading of traffic leaving the cluster.
//!
//! A few sandboxes are kept ready ahead of pods (network and IPC
//! namespaces, veth on the bridge, address, route: the slow part of a pod
//! start); a new pod takes one and only gets its UTS namespace (its
//! hostname) made. The agent refills the pool in the background.

pub mod ipam;
pub mod links;
pub mod masquerade;
pub mod netns;
pub mod routes;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

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

/// How long a sandbox's netlink work may take before it is given up (and
/// the pod's start retried) rather than waited on for ever.
const NETLINK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn bounded<T>(what: &str, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(NETLINK_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(NetworkError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{what} took longer than {NETLINK_TIMEOUT:?}"),
            )))
        })
}

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

/// A `hostNetwork` pod's sandbox around its own IPC namespace at `ipc`.
fn host_sandbox(ipc: PathBuf, ip: Ipv4Addr) -> Sandbox {
    let own = |kind: &str| PathBuf::from(format!("/proc/{}/ns/{kind}", std::process::id()));
    Sandbox {
        net: own("net"),
        ipc,
        uts: own("uts"),
        ip,
    }
}

/// Network sandboxes kept ready for new pods.
pub const WARM_SANDBOXES: usize = 3;
/// How long after a take the pool starts refilling.
const REFILL_DELAY: std::time::Duration = std::time::Duration::from_millis(5);
/// The prefix of a warm sandbox's name, in place of a pod uid.
const WARM: &str = "warm-";

pub struct Network {
    config: NetworkConfig,
    ipam: Ipam,
    host: rtnetlink::Handle,
    bridge: u32,
    /// Names (in place of pod uids) of the ready warm sandboxes.
    warm: Mutex<Vec<String>>,
    /// Told when a warm sandbox was taken.
    taken: tokio::sync::Notify,
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
        let network = Network {
            config,
            ipam,
            host,
            bridge,
            warm: Mutex::default(),
            taken: tokio::sync::Notify::new(),
        };
        // Warm sandboxes left by an earlier run go; the pool is made afresh.
        for owner in network.ipam.owners() {
            if owner.starts_with(WARM) {
                network.remove(&owner).await;
            }
        }
        Ok(network)
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

    /// The sandbox of a `hostNetwork` pod if it already exists.
    pub fn existing_host(&self, uid: &str, node_ip: Ipv4Addr) -> Option<Sandbox> {
        let (_, ipc, _) = self.paths(uid);
        ipc.exists().then(|| host_sandbox(ipc, node_ip))
    }

    /// The sandbox of a `hostNetwork` pod: the host's network and UTS
    /// namespaces (the agent's), an IPC namespace of its own, and the
    /// node's address. Nothing of the pod network is made for it.
    pub async fn create_host(&self, uid: &str, node_ip: Ipv4Addr) -> Result<Sandbox> {
        if let Some(s) = self.existing_host(uid, node_ip) {
            return Ok(s);
        }
        let (_, ipc, _) = self.paths(uid);
        netns::create(netns::Kind::Ipc, &ipc, None).await?;
        Ok(host_sandbox(ipc, node_ip))
    }

    /// Creates a pod's namespaces and plumbs its network, from a warm
    /// sandbox when one is ready.
    pub async fn create(&self, uid: &str, hostname: &str) -> Result<Sandbox> {
        if let Some(s) = self.existing(uid) {
            return Ok(s);
        }
        let taken = self
            .warm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(warm) = taken {
            self.taken.notify_one();
            match self.adopt(&warm, uid, hostname).await {
                Ok(s) => {
                    tracing::debug!("pod {uid} took warm sandbox {warm}");
                    return Ok(s);
                }
                Err(e) => {
                    tracing::debug!("a warm sandbox failed to become pod {uid}'s: {e}");
                    self.remove(&warm).await;
                    self.remove(uid).await;
                }
            }
        }
        tracing::debug!("pod {uid}: no warm sandbox, making one");
        let (net, ipc, uts) = self.paths(uid);
        netns::create(netns::Kind::Net, &net, None).await?;
        netns::create(netns::Kind::Ipc, &ipc, None).await?;
        netns::create(netns::Kind::Uts, &uts, Some(hostname)).await?;
        let ip = self.ipam.allocate(uid)?;
        let plumbed = bounded("plumbing the pod's network", self.plumb(&net, uid, ip)).await;
        if let Err(e) = plumbed {
            self.remove(uid).await;
            return Err(e);
        }
        Ok(Sandbox { net, ipc, uts, ip })
    }

    /// The veth of sandbox `name` (a pod uid or a warm sandbox's name)
    /// with address `ip` in the network namespace at `net`.
    async fn plumb(&self, net: &Path, name: &str, ip: Ipv4Addr) -> Result<()> {
        // The address may have been another pod's a moment ago.
        if let Err(e) = links::forget_neighbour(&self.host, self.bridge, ip).await {
            tracing::debug!("forgetting the neighbour entry of {ip}: {e}");
        }
        links::plumb_pod(
            &self.host,
            self.bridge,
            net,
            &links::host_interface(name),
            ip,
            self.ipam.prefix_len(),
            self.ipam.gateway(),
        )
        .await?;
        Ok(())
    }

    /// Warm sandboxes ready now.
    pub fn warm_count(&self) -> usize {
        self.warm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Keeps `WARM_SANDBOXES` warm sandboxes ready, for as long as it runs.
    pub async fn keep_warm(&self) {
        loop {
            while self
                .warm
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
                < WARM_SANDBOXES
            {
                if let Err(e) = self.make_warm().await {
                    tracing::warn!("making a warm pod sandbox: {e}");
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
            }
            self.taken.notified().await;
            // Not in the same instant as the pod that took one, whose own
            // netlink work would wait on the kernel's network lock; but
            // soon, as pods often come in bursts (a sandbox takes 1-4 ms).
            tokio::time::sleep(REFILL_DELAY).await;
        }
    }

    /// Makes one more warm sandbox: network and IPC namespaces, the veth
    /// on the bridge, the address and route.
    async fn make_warm(&self) -> Result<()> {
        let name = format!("{WARM}{:08x}", rand::random::<u32>());
        let made = async {
            // The lease first: whatever is made under the name is found
            // through it when a stop cuts this short.
            let ip = self.ipam.allocate(&name)?;
            let (net, ipc, _) = self.paths(&name);
            let began = std::time::Instant::now();
            netns::create(netns::Kind::Net, &net, None).await?;
            netns::create(netns::Kind::Ipc, &ipc, None).await?;
            let namespaces = began.elapsed();
            bounded("plumbing a warm sandbox", self.plumb(&net, &name, ip)).await?;
            tracing::debug!(
                "warm sandbox {name}: namespaces in {namespaces:?}, plumbed in {:?}",
                began.elapsed() - namespaces
            );
            Ok(())
        };
        match made.await {
            Ok(()) => {
                self.warm
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(name);
                Ok(())
            }
            Err(e) => {
                self.remove(&name).await;
                Err(e)
            }
        }
    }

    /// Makes warm sandbox `warm` pod `uid`'s: its namespaces, address and
    /// veth change hands (the veth keeps its name, recorded for the pod);
    /// the UTS namespace is made with the pod's hostname.
    async fn adopt(&self, warm: &str, uid: &str, hostname: &str) -> Result<Sandbox> {
        let (warm_net, warm_ipc, _) = self.paths(warm);
        let (net, ipc, uts) = self.paths(uid);
        // Recorded first, so that a failure below removes the veth with the pod.
        std::fs::create_dir_all(self.interfaces_dir())?;
        std::fs::write(self.interfaces_dir().join(uid), links::host_interface(warm))?;
        netns::rebind(&warm_net, &net)?;
        netns::rebind(&warm_ipc, &ipc)?;
        netns::create(netns::Kind::Uts, &uts, Some(hostname)).await?;
        let ip = self.ipam.transfer(warm, uid)?;
        Ok(Sandbox { net, ipc, uts, ip })
    }

    /// Where the host ends of veths not named after their pod are recorded.
    fn interfaces_dir(&self) -> PathBuf {
        self.config.state_dir.join("interfaces")
    }

    /// Removes everything of a pod's sandbox; safe to call repeatedly.
    pub async fn remove(&self, uid: &str) {
        let record = self.interfaces_dir().join(uid);
        let host_if =
            std::fs::read_to_string(&record).unwrap_or_else(|_| links::host_interface(uid));
        let _ = links::delete(&self.host, &host_if).await;
        let _ = std::fs::remove_file(record);
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
        let mut owners = self.ipam.owners();
        owners.retain(|o| !o.starts_with(WARM));
        owners
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
        for uid in self.ipam.owners() {
            self.remove(&uid).await;
        }
        routes::sync(&self.host, &Default::default()).await?;
        links::delete(&self.host, &self.config.bridge).await?;
        masquerade::remove(&self.config.chain)?;
        Ok(())
    }

    /// This node's pod CIDR.
    pub fn pod_cidr(&self) -> Ipv4Net {
        self.config.pod_cidr
    }

    pub fn state_dir(&self) -> &Path {
        &self.config.state_dir
    }
}
