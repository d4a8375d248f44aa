//! Links and addresses through netlink (rtnetlink), in the host namespace
//! and inside pod namespaces: the node bridge, and per pod a veth pair with
//! `eth0` in the pod.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("link {0} not found")]
    Missing(String),
}

type Result<T> = std::result::Result<T, LinkError>;

/// A netlink handle whose socket lives in the current thread's namespace.
fn connect() -> std::io::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

/// A handle in the host network namespace.
pub fn host() -> std::io::Result<Handle> {
    connect()
}

/// A handle in the network namespace at `path`: the socket is made on a
/// thread inside it, and driven by this runtime.
pub fn in_namespace(path: &Path) -> std::io::Result<Handle> {
    let runtime = tokio::runtime::Handle::current();
    super::netns::in_net(path, move || {
        let _entered = runtime.enter();
        connect()
    })?
}

pub async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        // The kernel answers "No such device" for an unknown name.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn has_address(handle: &Handle, index: u32, ip: Ipv4Addr) -> Result<bool> {
    let mut addrs = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(a) = addrs.try_next().await? {
        let found = a.attributes.iter().any(|attr| {
            matches!(attr, rtnetlink::packet_route::address::AddressAttribute::Address(IpAddr::V4(x)) if *x == ip)
        });
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Makes sure the bridge exists, is up and has the gateway address.
pub async fn ensure_bridge(
    handle: &Handle,
    name: &str,
    gateway: Ipv4Addr,
    prefix: u8,
) -> Result<u32> {
    let index = match index_of(handle, name).await? {
        Some(i) => i,
        None => {
            handle
                .link()
                .add(LinkBridge::new(name).build())
                .execute()
                .await?;
            index_of(handle, name)
                .await?
                .ok_or_else(|| LinkError::Missing(name.into()))?
        }
    };
    if !has_address(handle, index, gateway).await? {
        handle
            .address()
            .add(index, IpAddr::V4(gateway), prefix)
            .execute()
            .await?;
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await?;
    Ok(index)
}

/// Deletes a link by name if it exists.
pub async fn delete(handle: &Handle, name: &str) -> Result<()> {
    if let Some(i) = index_of(handle, name).await? {
        match handle.link().del(i).execute().await {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Forgets the host's neighbour (ARP) entry for `ip` on the bridge. A new
/// pod often gets the address of one just removed; the entry still holds
/// the old pod's MAC and stays "reachable" for seconds, dropping the new
/// pod's traffic until it expires.
pub async fn forget_neighbour(handle: &Handle, bridge: u32, ip: Ipv4Addr) -> Result<()> {
    use rtnetlink::packet_route::AddressFamily;
    use rtnetlink::packet_route::neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourMessage,
    };
    // Deleted by address, not found by a dump: dumps on a shared netlink
    // socket collide (EBUSY) when pods start side by side.
    let mut entry = NeighbourMessage::default();
    entry.header.family = AddressFamily::Inet;
    entry.header.ifindex = bridge;
    entry
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    match handle.neighbours().del(entry).execute().await {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENOENT => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Plumbs a pod: a veth pair whose host end joins the bridge and whose
/// other end becomes `eth0` in the pod's namespace, with `ip/prefix`, a
/// default route via `gateway`, and `lo` up.
pub async fn plumb_pod(
    host: &Handle,
    bridge: u32,
    netns: &Path,
    host_if: &str,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<()> {
    delete(host, host_if).await?;
    // One request makes the pair: the host end on the bridge and up, the
    // peer made straight in the pod's namespace as `eth0` (no temporary
    // name, move and rename, each a round trip under the kernel's
    // network lock).
    let ns = std::fs::File::open(netns)?;
    let peer = LinkUnspec::new_with_name("eth0")
        .setns_by_fd(ns.as_raw_fd())
        .build();
    let mut pair = LinkVeth::new(host_if, "eth0")
        .controller(bridge)
        .up()
        .build();
    for attribute in &mut pair.attributes {
        if let LinkAttribute::LinkInfo(infos) = attribute {
            for info in infos {
                if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) = info {
                    *p = peer.clone();
                }
            }
        }
    }
    host.link().add(pair).execute().await?;

    let pod = in_namespace(netns)?;
    let eth0 = index_of(&pod, "eth0")
        .await?
        .ok_or_else(|| LinkError::Missing("eth0".into()))?;
    pod.address()
        .add(eth0, IpAddr::V4(ip), prefix)
        .execute()
        .await?;
    pod.link()
        .set(LinkUnspec::new_with_index(eth0).up().build())
        .execute()
        .await?;
    if let Some(lo) = index_of(&pod, "lo").await? {
        pod.link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await?;
    }
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(eth0)
        .build();
    pod.route().add(route).execute().await?;
    Ok(())
}

/// The host-side interface name of a pod's veth (at most 15 bytes).
pub fn host_interface(pod_uid: &str) -> String {
    let id: String = pod_uid.chars().filter(|c| *c != '-').take(11).collect();
    format!("pp{id}")
}
