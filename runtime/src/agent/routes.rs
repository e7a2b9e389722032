//! The routes the agent keeps in the main table, all with route protocol 78: they follow
//! things only known at run time (which tunnels are up, which peers are heard, where clients
//! sit), so `plan` leaves them alone.
//!
//! - Each other controller's overlay address and its engines' (`routes.json`, kinds
//!   `controller` and `engine`), through the peer tunnel to the next hop, as soon as that
//!   tunnel is up: the agents' own exchange runs over these.
//! - The LANs each believed peer announces, through the tunnel to its next hop.
//! - A /32 per client: on one of this controller's engines, via that engine on plugin0; on a
//!   peer, through the tunnel to that peer's next hop. A client on this controller's own server
//!   needs none (the overlay subnet is on tun0). When several controllers claim a client, the
//!   newest connection wins.
//!
//! Routes through tunnels carry this controller's overlay address as their preferred source,
//! so what the controller itself sends (the agents' exchange) can be answered across
//! several hops, where the tunnel's link address would mean nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use meshwork_compiler::emit::routes::{RouteKind, RouteTable};
use meshwork_compiler::network::PLUGIN_BRIDGE;

use super::mesh::Announcement;
use super::status::Location;
use crate::host::ROUTE_PROTO_AGENT;
use crate::host::desired::MAIN_TABLE;
use crate::netlink::{Netlink, RouteInfo};

/// The way to one peer: its tunnel device and next hop address.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Way {
    dev: String,
    gateway: Ipv4Addr,
}

fn via_tunnel(dst: Ipv4Net, way: &Way, source: Ipv4Addr) -> RouteInfo {
    RouteInfo {
        dst,
        gateway: Some(way.gateway),
        dev: Some(way.dev.clone()),
        table: MAIN_TABLE,
        protocol: ROUTE_PROTO_AGENT,
        source: Some(source),
    }
}

fn via_engine(client: Ipv4Addr, engine: Ipv4Addr) -> RouteInfo {
    RouteInfo {
        dst: Ipv4Net::from(client),
        gateway: Some(engine),
        dev: Some(PLUGIN_BRIDGE.into()),
        table: MAIN_TABLE,
        protocol: ROUTE_PROTO_AGENT,
        source: None,
    }
}

/// Who holds a client: this controller (on a unit) or a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder<'a> {
    Here(&'a str),
    Peer(&'a str),
}

/// The routes this controller should have, by destination, with `claims` the winning claim on
/// every client ([`claims`]). `tunnels` are the peer tunnel devices that are up; routes through
/// others are left out until they come up.
pub fn wanted(
    table: &RouteTable,
    claims: &Claims,
    believed: &BTreeMap<String, Announcement>,
    tunnels: &BTreeSet<String>,
) -> BTreeMap<Ipv4Net, RouteInfo> {
    let source = table.local.overlay_ip;
    let mut ways: BTreeMap<&str, Way> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for r in &table.routes {
        let way = Way { dev: r.dev.clone(), gateway: r.gateway };
        if r.kind == RouteKind::Controller {
            ways.insert(&r.owner, way.clone());
        }
        if matches!(r.kind, RouteKind::Controller | RouteKind::Engine) && tunnels.contains(&r.dev) {
            out.insert(r.destination, via_tunnel(r.destination, &way, source));
        }
    }
    let usable = |peer: &str| ways.get(peer).filter(|w| tunnels.contains(&w.dev));

    for (peer, a) in believed {
        let Some(way) = usable(peer) else { continue };
        for lan in &a.lans {
            out.insert(lan.trunc(), via_tunnel(lan.trunc(), way, source));
        }
    }

    let engines: BTreeMap<u32, Ipv4Addr> =
        table.local.plugin.iter().flat_map(|p| p.engines.iter().map(|e| (e.index, e.plugin_ip))).collect();
    for (address, holder) in claims.values().map(|(_, a, h)| (*a, h)) {
        let route = match holder {
            Holder::Here(unit) => {
                let Some(k) = unit.strip_prefix("engine-").and_then(|k| k.parse::<u32>().ok()) else { continue };
                let Some(engine) = engines.get(&k) else { continue };
                via_engine(address, *engine)
            }
            Holder::Peer(peer) => {
                let Some(way) = usable(peer) else { continue };
                via_tunnel(Ipv4Net::from(address), way, source)
            }
        };
        out.insert(route.dst, route);
    }
    out
}

/// The winning claim on every client, by name: (connected since, address, holder).
pub type Claims<'a> = BTreeMap<&'a str, (u64, Ipv4Addr, Holder<'a>)>;

/// Weighs every claim on every client: the newest wins; on a tie this controller's own claim
/// wins, then peers in name order (the map's order), so every pass decides the same way.
pub fn claims<'a>(local: &'a BTreeMap<String, Location>, believed: &'a BTreeMap<String, Announcement>) -> Claims<'a> {
    let mut claims: BTreeMap<&str, (u64, Ipv4Addr, Holder)> = BTreeMap::new();
    for (name, loc) in local {
        let Some(address) = loc.address else { continue };
        claims.insert(name, (loc.since.unwrap_or(0), address, Holder::Here(&loc.unit)));
    }
    for (peer, a) in believed {
        for (name, held) in &a.clients {
            let newer = claims.get(name.as_str()).is_none_or(|(since, _, _)| held.since > *since);
            if newer {
                claims.insert(name, (held.since, held.address, Holder::Peer(peer)));
            }
        }
    }
    claims
}

/// The addresses of the clients this controller holds by the winning claim: not one that has
/// moved to a peer while the unit here still lists its old connection.
pub fn held_here(claims: &Claims) -> Vec<Ipv4Addr> {
    claims.values().filter(|(_, _, holder)| matches!(holder, Holder::Here(_))).map(|(_, address, _)| *address).collect()
}

/// The peer tunnel devices that exist and are up.
pub async fn tunnels_up(nl: &Netlink) -> io::Result<BTreeSet<String>> {
    Ok(nl.links().await?.into_iter().filter(|l| l.up && l.name.starts_with("mw-p")).map(|l| l.name).collect())
}

/// Makes the kernel's protocol-78 routes in the main table exactly `wanted`; returns
/// (added or replaced, removed).
pub async fn sync(nl: &Netlink, wanted: &BTreeMap<Ipv4Net, RouteInfo>) -> io::Result<(usize, usize)> {
    let live = nl.routes(Some(ROUTE_PROTO_AGENT), Some(MAIN_TABLE)).await?;
    let mut removed = 0;
    for r in &live {
        if wanted.get(&r.dst) != Some(r) {
            nl.delete_route(r).await?;
            removed += 1;
        }
    }
    let mut added = 0;
    for route in wanted.values() {
        if !live.contains(route) {
            nl.replace_route(route).await?;
            added += 1;
        }
    }
    Ok((added, removed))
}

#[cfg(test)]
mod tests {
    use super::super::mesh::Held;
    use super::*;
    use meshwork_compiler::source::SourceFile;

    const TOPOLOGY: &str = r#"
topology "t"
overlay "100.127.0.0/24"
controller "a" id=1 { address "192.0.2.1"; engines 1 subnet="198.51.100.0/29"; lan "10.1.0.0/16"; }
controller "b" id=2 { address "192.0.2.2"; lan "10.2.0.0/16"; }
controller "c" id=3 { address "192.0.2.3"; }
peering { link "a" "b"; link "b" "c"; }
client "x"
client "y"
client "z"
"#;

    fn table(of: &str) -> RouteTable {
        let analysis = meshwork_compiler::analyze(SourceFile::new("t.kdl", TOPOLOGY));
        let net = analysis.network.expect("valid topology");
        meshwork_compiler::emit::routes::table(&net, net.controller(of).expect("controller"))
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn announced(controller: &str, lans: &[&str], clients: &[(&str, &str, u64)]) -> Announcement {
        Announcement {
            controller: controller.into(),
            topology: "t".into(),
            checksum: "k".into(),
            ca: "ca".into(),
            lans: lans.iter().map(|l| l.parse().unwrap()).collect(),
            clients: clients
                .iter()
                .map(|(n, a, since)| (n.to_string(), Held { address: ip(a), unit: "server".into(), since: *since }))
                .collect(),
        }
    }

    fn here(unit: &str, address: &str, since: u64) -> Location {
        Location { unit: unit.into(), address: Some(ip(address)), since: Some(since) }
    }

    #[test]
    fn clients_and_lans_follow_the_next_hop_and_the_newest_claim() {
        let t = table("a");
        let tunnels = BTreeSet::from(["mw-p2".to_string()]);
        let local = BTreeMap::from([
            ("x".to_string(), here("engine-1", "100.127.0.1", 100)),
            ("y".to_string(), here("server", "100.127.0.2", 100)),
            // z reconnected elsewhere later: the peer's newer claim wins.
            ("z".to_string(), here("server", "100.127.0.3", 100)),
        ]);
        let believed = BTreeMap::from([
            ("b".to_string(), announced("b", &["10.2.0.0/16"], &[("y", "100.127.0.2", 50)])),
            ("c".to_string(), announced("c", &[], &[("z", "100.127.0.3", 200)])),
        ]);
        let routes = wanted(&t, &claims(&local, &believed), &believed, &tunnels);
        let show: Vec<String> = routes.values().map(ToString::to_string).collect();
        assert_eq!(
            show,
            [
                "10.2.0.0/16 via 169.254.2.1 dev mw-p2 src 100.127.0.253 table 254 proto 78",
                "100.127.0.1/32 via 198.51.100.2 dev plugin0 table 254 proto 78",
                // c is reached through b (no a-c link).
                "100.127.0.3/32 via 169.254.2.1 dev mw-p2 src 100.127.0.253 table 254 proto 78",
                "100.127.0.251/32 via 169.254.2.1 dev mw-p2 src 100.127.0.253 table 254 proto 78",
                "100.127.0.252/32 via 169.254.2.1 dev mw-p2 src 100.127.0.253 table 254 proto 78",
            ]
        );
    }

    #[test]
    fn heartbeats_go_to_the_clients_held_here_by_the_winning_claim() {
        let local = BTreeMap::from([
            ("x".to_string(), here("engine-1", "100.127.0.1", 100)),
            ("y".to_string(), here("server", "100.127.0.2", 100)),
            // z reconnected to c later; the server here still lists its old connection.
            ("z".to_string(), here("server", "100.127.0.3", 100)),
        ]);
        let believed = BTreeMap::from([
            ("b".to_string(), announced("b", &[], &[("y", "100.127.0.2", 50)])),
            ("c".to_string(), announced("c", &[], &[("z", "100.127.0.3", 200)])),
        ]);
        assert_eq!(held_here(&claims(&local, &believed)), [ip("100.127.0.1"), ip("100.127.0.2")]);
    }

    #[test]
    fn nothing_goes_through_a_tunnel_that_is_down() {
        let t = table("a");
        let believed =
            BTreeMap::from([("b".to_string(), announced("b", &["10.2.0.0/16"], &[("y", "100.127.0.2", 50)]))]);
        let local = BTreeMap::from([("x".to_string(), here("engine-1", "100.127.0.1", 1))]);
        let routes = wanted(&t, &claims(&local, &believed), &believed, &BTreeSet::new());
        let show: Vec<String> = routes.values().map(ToString::to_string).collect();
        assert_eq!(show, ["100.127.0.1/32 via 198.51.100.2 dev plugin0 table 254 proto 78"]);
    }
}
