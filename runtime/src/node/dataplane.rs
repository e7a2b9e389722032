//! A node's VXLAN data plane from its `network.json`, through netlink: the VTEP address on `lo`
//! (what the IPsec child's selectors name), then per overlay the VXLAN device (nolearning, proxy),
//! its bridge, their MTU, and the static FDB and permanent neighbour entries. Every step is
//! idempotent, so applying twice, or after a partial failure, converges.

use std::io;

use ipnet::Ipv4Net;
use meshwork_compiler::emit::node::network::NodeNetwork;

use crate::netlink::{Fdb, Neighbour, Netlink, VxlanParams};

/// Where the VTEP address lives: always up, never tied to a physical link.
pub const VTEP_LINK: &str = "lo";

pub async fn apply(nl: &Netlink, node: &NodeNetwork) -> io::Result<()> {
    if let Some(vtep) = node.vtep {
        let addr = Ipv4Net::from(vtep);
        if !nl.addresses(VTEP_LINK).await?.contains(&addr) {
            nl.add_address(VTEP_LINK, addr).await?;
        }
    }
    for o in &node.overlays {
        let d = &o.device;
        nl.add_vxlan(
            &d.name,
            VxlanParams { vni: d.vni, port: d.port, local: d.local, learning: d.learning, proxy: d.proxy },
        )
        .await?;
        nl.add_bridge(&o.bridge.name).await?;
        nl.set_mtu(&d.name, d.mtu).await?;
        nl.set_mtu(&o.bridge.name, o.bridge.mtu).await?;
        nl.set_master(&d.name, &o.bridge.name).await?;
        nl.set_up(&o.bridge.name).await?;
        nl.set_up(&d.name).await?;
        let fdb: Vec<Fdb> = o.fdb.iter().map(|f| Fdb { mac: f.mac, dst: f.dst }).collect();
        let neighbours: Vec<Neighbour> = o.neighbours.iter().map(|n| Neighbour { ip: n.ip, mac: n.mac }).collect();
        nl.replace_fdb(&d.name, &fdb).await?;
        nl.replace_neighbours(&d.name, &neighbours).await?;
    }
    Ok(())
}
