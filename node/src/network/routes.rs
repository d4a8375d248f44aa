//! Routes to the other nodes' pods without an overlay (host-gw, as
//! flannel's backend of that name): one route per node, its pod CIDR via
//! its address. Peapod's routes carry their own protocol number, so that
//! stale ones are found and removed without touching anyone else's.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::links::LinkError;

/// The routing protocol number Peapod's routes are tagged with.
const PROTOCOL: u8 = 0x5e;

/// The routes Peapod has in the main table: pod CIDR → gateway.
async fn ours(handle: &Handle) -> Result<BTreeMap<Ipv4Net, Ipv4Addr>, LinkError> {
    let mut out = BTreeMap::new();
    let mut routes = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(r) = routes.try_next().await? {
        if r.header.protocol != RouteProtocol::Other(PROTOCOL) {
            continue;
        }
        let mut dest = None;
        let mut via = None;
        for a in &r.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => dest = Some(*ip),
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => via = Some(*ip),
                _ => {}
            }
        }
        if let (Some(d), Some(v)) = (dest, via)
            && let Ok(net) = Ipv4Net::new(d, r.header.destination_prefix_length)
        {
            out.insert(net, v);
        }
    }
    Ok(out)
}

fn message(net: Ipv4Net, via: Ipv4Addr) -> rtnetlink::packet_route::route::RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(net.addr(), net.prefix_len())
        .gateway(via)
        .protocol(RouteProtocol::Other(PROTOCOL))
        .build()
}

/// Makes Peapod's routes exactly `want` (pod CIDR → node address).
pub async fn sync(handle: &Handle, want: &BTreeMap<Ipv4Net, Ipv4Addr>) -> Result<(), LinkError> {
    let have = ours(handle).await?;
    for (net, via) in &have {
        if want.get(net) != Some(via) {
            handle.route().del(message(*net, *via)).execute().await?;
        }
    }
    for (net, via) in want {
        if have.get(net) != Some(via) {
            handle
                .route()
                .add(message(*net, *via))
                .replace()
                .execute()
                .await?;
            tracing::info!("route to pods {net} via {via}");
        }
    }
    Ok(())
}
