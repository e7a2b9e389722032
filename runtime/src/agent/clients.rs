//! Which client sits where, learned from every OpenVPN unit's management interface, and the
//! /32 routes that send traffic for a client on an engine to that engine over plugin0.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use meshwork_compiler::network::{ControllerNet, PLUGIN_BRIDGE};

use super::status::Location;
use crate::host::ROUTE_PROTO_CLIENT;
use crate::host::desired::MAIN_TABLE;
use crate::host::layout::Layout;
use crate::netlink::{Netlink, RouteInfo};
use crate::openvpn::management;

/// Every connected client by name, from the units in `units` (those that run).
pub async fn learn(layout: &Layout, units: &[String]) -> BTreeMap<String, Location> {
    let mut out = BTreeMap::new();
    for unit in units {
        let Ok(clients) = management::status(&layout.socket(unit)).await else { continue };
        for c in clients {
            out.insert(c.common_name.clone(), Location { unit: unit.clone(), address: c.virtual_address });
        }
    }
    out
}

/// The client routes the controller should have: clients on an engine, via that engine.
pub fn wanted_routes(
    controller: &ControllerNet,
    clients: &BTreeMap<String, Location>,
) -> BTreeSet<(Ipv4Addr, Ipv4Addr)> {
    let Some(set) = &controller.engines else { return BTreeSet::new() };
    let mut out = BTreeSet::new();
    for loc in clients.values() {
        let Some(address) = loc.address else { continue };
        let Some(k) = loc.unit.strip_prefix("engine-").and_then(|k| k.parse::<u32>().ok()) else { continue };
        if let Some(e) = set.engines.iter().find(|e| e.index == k) {
            out.insert((address, e.plugin_ip));
        }
    }
    out
}

fn route(client: Ipv4Addr, via: Ipv4Addr) -> RouteInfo {
    RouteInfo {
        dst: Ipv4Net::new(client, 32).expect("/32"),
        gateway: Some(via),
        dev: Some(PLUGIN_BRIDGE.into()),
        table: MAIN_TABLE,
        protocol: ROUTE_PROTO_CLIENT,
    }
}

/// Makes the kernel's client routes exactly `wanted`; returns (added, removed).
pub async fn sync_routes(nl: &Netlink, wanted: &BTreeSet<(Ipv4Addr, Ipv4Addr)>) -> io::Result<(usize, usize)> {
    let live = nl.routes(Some(ROUTE_PROTO_CLIENT), None).await?;
    let have: BTreeSet<(Ipv4Addr, Ipv4Addr)> =
        live.iter().filter_map(|r| r.gateway.map(|g| (r.dst.addr(), g))).collect();
    let mut removed = 0;
    for r in &live {
        let key = r.gateway.map(|g| (r.dst.addr(), g));
        if key.is_none_or(|k| !wanted.contains(&k)) {
            nl.delete_route(r).await?;
            removed += 1;
        }
    }
    let mut added = 0;
    for (client, via) in wanted {
        if !have.contains(&(*client, *via)) {
            nl.replace_route(&route(*client, *via)).await?;
            added += 1;
        }
    }
    Ok((added, removed))
}
