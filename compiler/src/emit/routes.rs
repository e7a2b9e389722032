//! `routes.json`: the static routes of one controller, with next hops from the peering graph.
//!
//! For every other controller reachable through the mesh: a route to each of its LANs, to its
//! overlay address (/32) and to each of its engines' overlay addresses (/32), through the peer
//! tunnel to the next hop on the cheapest path. Client /32s are not here: where a client is
//! connected is learnt at run time. The file also records this controller's own networks
//! (`local`), so the runtime needs nothing else to program plugin0 and the engines.
//!
//! The structs are the file's schema: the runtime reads the file back with [`from_json`].

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::emit::openvpn::engine_netns;
use crate::network::{ControllerNet, Network, PLUGIN_BRIDGE, TUN_DEVICE};
use crate::peering::{tunnel_addresses, tunnel_device};

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    /// What the file is, for a human reading it.
    pub about: String,
    pub topology: String,
    pub controller: String,
    pub id: u32,
    pub local: Local,
    /// Sorted by destination, then kind.
    pub routes: Vec<Route>,
}

/// This controller's own networks, for the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Local {
    /// The overlay subnet, on-link on `dev` (and on each engine's tun, in its namespace).
    pub overlay: Ipv4Net,
    pub overlay_ip: Ipv4Addr,
    /// The tun device of the controller's own server.
    pub dev: String,
    pub lans: Vec<Ipv4Net>,
    /// Present when the controller has engines.
    #[serde(default)]
    pub plugin: Option<Plugin>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plugin {
    pub subnet: Ipv4Net,
    /// The bridge the engines hang off, and the controller's address on it (host 1).
    pub bridge: String,
    pub bridge_ip: Ipv4Addr,
    pub engines: Vec<LocalEngine>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalEngine {
    pub index: u32,
    pub name: String,
    pub netns: String,
    pub overlay_ip: Ipv4Addr,
    /// Host 1+k of the plugin subnet; clients on this engine are routed to it on plugin0.
    pub plugin_ip: Ipv4Addr,
    pub mark: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// A LAN behind another controller.
    Lan,
    /// Another controller's overlay address.
    Controller,
    /// One of another controller's engines' overlay address.
    Engine,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub destination: Ipv4Net,
    pub kind: RouteKind,
    /// The controller the destination lives on.
    pub owner: String,
    /// The neighbour the traffic goes to first.
    pub next_hop: String,
    /// The peer tunnel to the next hop: `mw-p<next hop id>`.
    pub dev: String,
    /// The next hop's address on that tunnel.
    pub gateway: Ipv4Addr,
    /// Total cost of the path.
    pub cost: u32,
    /// Controllers on the path, from this one to the owner, both included.
    pub path: Vec<String>,
}

/// The route table of controller `c`.
pub fn table(net: &Network, c: &ControllerNet) -> RouteTable {
    let hops = net.mesh.routes_from(&c.name);
    let mut routes = Vec::new();
    for other in net.controllers.iter().filter(|o| o.name != c.name) {
        // Unreachable: a valid topology has a connected mesh, so this does not happen.
        let Some(hop) = hops.get(&other.name) else {
            continue;
        };
        let Some(next_id) = net.mesh.id(&hop.next) else {
            continue;
        };
        let route = |destination: Ipv4Net, kind: RouteKind| Route {
            destination,
            kind,
            owner: other.name.clone(),
            next_hop: hop.next.clone(),
            dev: tunnel_device(next_id),
            gateway: tunnel_addresses(c.id, next_id).1,
            cost: hop.cost,
            path: hop.path.clone(),
        };
        routes.extend(other.lans.iter().map(|lan| route(lan.trunc(), RouteKind::Lan)));
        routes.push(route(Ipv4Net::from(other.overlay_ip), RouteKind::Controller));
        if let Some(set) = &other.engines {
            routes.extend(set.engines.iter().map(|e| route(Ipv4Net::from(e.overlay_ip), RouteKind::Engine)));
        }
    }
    routes.sort_by(|a, b| (a.destination, a.kind, &a.owner).cmp(&(b.destination, b.kind, &b.owner)));
    RouteTable {
        about: format!("meshwork: static routes for controller {} of topology {}", c.name, net.name),
        topology: net.name.clone(),
        controller: c.name.clone(),
        id: c.id,
        local: Local {
            overlay: c.overlay,
            overlay_ip: c.overlay_ip,
            dev: TUN_DEVICE.to_string(),
            lans: c.lans.iter().map(Ipv4Net::trunc).collect(),
            plugin: c.engines.as_ref().map(|set| Plugin {
                subnet: set.subnet,
                bridge: PLUGIN_BRIDGE.to_string(),
                bridge_ip: set.bridge_ip,
                engines: set
                    .engines
                    .iter()
                    .map(|e| LocalEngine {
                        index: e.index,
                        name: e.name.clone(),
                        netns: engine_netns(&e.name),
                        overlay_ip: e.overlay_ip,
                        plugin_ip: e.plugin_ip,
                        mark: e.mark,
                    })
                    .collect(),
            }),
        },
        routes,
    }
}

pub fn to_json(net: &Network, c: &ControllerNet) -> String {
    let mut s = serde_json::to_string_pretty(&table(net, c)).expect("route table serialises");
    s.push('\n');
    s
}

/// Reads a `routes.json` back.
pub fn from_json(text: &str) -> Result<RouteTable, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::network as net;

    const CHAIN: &str = r#"
topology "t"
overlay "100.127.255.192/26"
controller "a" id=1 {
    address "192.0.2.1"
    lan "10.1.0.0/16"
}
controller "b" id=2 {
    address "192.0.2.2"
    engines 2 subnet="198.51.100.0/28"
}
controller "c" id=3 {
    address "192.0.2.3"
    lan "10.3.0.0/16"
    lan "10.33.0.0/24"
}
peering {
    link "a" "b" cost=1
    link "b" "c" cost=1
    link "a" "c" cost=5
}
"#;

    fn find(t: &RouteTable, dst: &str) -> Route {
        let dst: Ipv4Net = dst.parse().unwrap();
        t.routes.iter().find(|r| r.destination == dst).unwrap_or_else(|| panic!("no route to {dst}")).clone()
    }

    #[test]
    fn multi_hop_goes_through_the_cheaper_path() {
        let n = net(CHAIN);
        let t = table(&n, n.controller("a").unwrap());
        let r = find(&t, "10.3.0.0/16");
        assert_eq!(r.kind, RouteKind::Lan);
        assert_eq!(r.owner, "c");
        assert_eq!(r.next_hop, "b");
        assert_eq!(r.dev, "mw-p2");
        // b's address on the a-b tunnel, as seen from a.
        assert_eq!(r.gateway, Ipv4Addr::new(169, 254, 2, 1));
        assert_eq!(r.cost, 2);
        assert_eq!(r.path, ["a", "b", "c"]);
        let c_ip = n.controller("c").unwrap().overlay_ip;
        let r = find(&t, &format!("{c_ip}/32"));
        assert_eq!((r.kind, r.next_hop.as_str()), (RouteKind::Controller, "b"));

        // Direct neighbour.
        let b = n.controller("b").unwrap();
        let r = find(&t, &format!("{}/32", b.overlay_ip));
        assert_eq!((r.next_hop.as_str(), r.cost, r.path.len()), ("b", 1, 2));
        for e in &b.engines.as_ref().unwrap().engines {
            let r = find(&t, &format!("{}/32", e.overlay_ip));
            assert_eq!((r.kind, r.owner.as_str(), r.dev.as_str()), (RouteKind::Engine, "b", "mw-p2"));
        }

        // From c, a's LAN also goes via b, whose address on the b-c tunnel is 169.254.2.3.
        let t = table(&n, n.controller("c").unwrap());
        let r = find(&t, "10.1.0.0/16");
        assert_eq!((r.next_hop.as_str(), r.dev.as_str(), r.gateway), ("b", "mw-p2", Ipv4Addr::new(169, 254, 2, 3)));
    }

    #[test]
    fn complete_and_sorted_without_own_networks() {
        let n = net(CHAIN);
        let a = n.controller("a").unwrap();
        let t = table(&n, a);
        // c: 2 LANs + 1 controller; b: 1 controller + 2 engines.
        assert_eq!(t.routes.len(), 6);
        assert!(t.routes.iter().all(|r| r.owner != "a"));
        assert!(t.routes.windows(2).all(|w| (w[0].destination, w[0].kind) <= (w[1].destination, w[1].kind)));
        assert_eq!(t.local.lans, a.lans);
        assert!(t.local.plugin.is_none());
        let p = table(&n, n.controller("b").unwrap()).local.plugin.unwrap();
        assert_eq!(p.bridge_ip, Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(p.engines[1].plugin_ip, Ipv4Addr::new(198, 51, 100, 3));
        assert_eq!(p.engines[1].netns, "mw-b-e2");
    }

    #[test]
    fn json_round_trips_and_is_deterministic() {
        let n = net(CHAIN);
        for c in &n.controllers {
            let s = to_json(&n, c);
            assert!(s.ends_with("}\n"));
            assert_eq!(s, to_json(&n, c));
            assert_eq!(from_json(&s).unwrap(), table(&n, c));
        }
        let s = to_json(&n, n.controller("a").unwrap());
        assert!(s.contains("\"destination\": \"10.3.0.0/16\""), "{s}");
        assert!(s.contains("\"kind\": \"lan\""));
        assert!(s.contains("\"gateway\": \"169.254.2.1\""));
        assert!(s.contains("\"plugin\": null"));
    }

    #[test]
    fn single_controller_has_no_routes() {
        let n = net(r#"
topology "solo"
overlay "100.127.255.192/26"
controller "east" id=1 {
    address "192.0.2.10"
    lan "10.10.0.0/16"
}
"#);
        let t = table(&n, &n.controllers[0]);
        assert!(t.routes.is_empty());
        assert_eq!(t.local.lans, ["10.10.0.0/16".parse::<Ipv4Net>().unwrap()]);
    }
}
