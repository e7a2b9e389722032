//! The lab's addressing plan: which namespaces exist, which veth joins what, and which address
//! every host gets. Pure and deterministic (the same topology always gives the same plan), so
//! the plan can be saved as JSON when the lab goes up and `lab down` removes exactly that.
//!
//! Shape of a lab:
//!
//! ```text
//!  mwl-ctl-<c>  [<interface> A/32] ──veth── [ulN gateway/32] ┐
//!  mwl-cl-<c>   [eth0 A/32]        ──veth── [ulN gateway/32] ├ mwl-underlay (routes A/32 dev ulN)
//!  mwl-outside  [eth0 X/32 ...]    ──veth── [ul-out gateway/32] ┘
//!  mwl-ctl-<c>  [lab-lan LAN gateways] ──veth── [eth0 LAN hosts] mwl-lan-<c>
//! ```
//!
//! Every host reaches the underlay through one gateway address (the same on every underlay-side
//! veth), so hosts need no per-peer routes and the underlay needs only one /32 per host.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use meshwork_compiler::model::{Endpoint, Expect, Host};
use meshwork_compiler::network::{Network, PLUGIN_BRIDGE, TUN_DEVICE};
use serde::{Deserialize, Serialize};

/// The namespace that routes between every underlay address.
pub const UNDERLAY_NETNS: &str = "mwl-underlay";
/// The namespace for addresses that are neither overlay nor LAN (e.g. an admin's public IP).
pub const OUTSIDE_NETNS: &str = "mwl-outside";
/// Underlay-side name of the outside namespace's veth.
pub const OUTSIDE_UNDERLAY_LINK: &str = "ul-out";
/// A client's underlay interface (and the outside and LAN namespaces' only interface).
pub const HOST_INTERFACE: &str = "eth0";
/// The controller-side end of the veth to its LAN namespace.
pub const LAN_CONTROLLER_LINK: &str = "lab-lan";
/// Prefix of every namespace the lab makes (never `mw-`: that one belongs to the runtime).
pub const NETNS_PREFIX: &str = "mwl-";

/// Candidate pools, in order of preference: private /16s that real topologies rarely use at the
/// top of their ranges.
fn pool_candidates() -> impl Iterator<Item = Ipv4Net> {
    let rfc1918_172 = (16..=31u8).rev().map(|b| Ipv4Net::new_assert(Ipv4Addr::new(172, b, 0, 0), 16));
    let rfc1918_10 = [255u8, 254].into_iter().map(|b| Ipv4Net::new_assert(Ipv4Addr::new(10, b, 0, 0), 16));
    rfc1918_172.chain(rfc1918_10)
}

/// Hosts per third octet of the pool (.1 ... .254), so no lab address ends in .0 or .255.
const HOSTS_PER_ROW: u32 = 254;
/// Pool row of DNS-named controllers (x.x.0.N).
const CONTROLLER_ROW: u32 = 0;
/// First pool row of clients (x.x.1.N, then x.x.2.N, ...).
const FIRST_CLIENT_ROW: u32 = 1;
/// Last row clients may use: row 255 holds the gateway.
const LAST_CLIENT_ROW: u32 = 254;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabLayout {
    pub topology: String,
    pub underlay_ns: String,
    /// The lab's own /16, for addresses the file does not give.
    pub pool: Ipv4Net,
    /// The underlay-side address on every underlay veth: the pool's last usable host.
    pub gateway: Ipv4Addr,
    /// By controller id.
    pub controllers: Vec<LabHost>,
    /// In declaration order; revoked clients are left out.
    pub clients: Vec<LabHost>,
    /// One per controller that has LANs, by controller id.
    pub lans: Vec<LanSite>,
    pub outside: Option<Outside>,
    /// DNS name in the file -> its lab address.
    pub names: BTreeMap<String, Ipv4Addr>,
}

/// A controller or client: a namespace with one interface on the underlay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabHost {
    pub name: String,
    pub netns: String,
    /// Its underlay interface inside `netns`.
    pub interface: String,
    pub address: Ipv4Addr,
    /// The peer of `interface`, in the underlay namespace.
    pub underlay_link: String,
}

/// The networks behind one controller, hosted in a namespace of their own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanSite {
    pub controller: String,
    pub netns: String,
    /// Link in the controller's namespace.
    pub controller_link: String,
    /// Link in the LAN namespace.
    pub lan_link: String,
    /// On `controller_link`: each LAN's first host, with the LAN's prefix.
    pub gateways: Vec<Ipv4Net>,
    /// On `lan_link`: each LAN's second host and every expect address inside a LAN, with the
    /// LAN's prefix; sorted, no duplicates.
    pub hosts: Vec<Ipv4Net>,
}

/// Addresses outside the overlay and every LAN, reachable over the underlay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outside {
    pub netns: String,
    pub underlay_link: String,
    /// Sorted, no duplicates.
    pub addresses: Vec<Ipv4Addr>,
}

impl LabLayout {
    /// Every namespace the lab makes, the underlay last (so deleting in this order removes the
    /// hosts before the router they hang off).
    pub fn namespaces(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        all.extend(self.lans.iter().map(|l| l.netns.as_str()));
        all.extend(self.outside.iter().map(|o| o.netns.as_str()));
        all.extend(self.clients.iter().map(|c| c.netns.as_str()));
        all.extend(self.controllers.iter().map(|c| c.netns.as_str()));
        all.push(&self.underlay_ns);
        all
    }

    /// Whether the lab has controllers or clients, and so an underlay (a topology of compute
    /// nodes only has neither, and leaves `mwl-underlay` to other labs).
    pub fn has_hosts(&self) -> bool {
        !self.controllers.is_empty() || !self.clients.is_empty()
    }

    /// Controllers then clients: every namespace with an interface on the underlay.
    pub fn hosts(&self) -> impl Iterator<Item = &LabHost> {
        self.controllers.iter().chain(&self.clients)
    }

    pub fn controller(&self, name: &str) -> Option<&LabHost> {
        self.controllers.iter().find(|c| c.name == name)
    }

    pub fn client(&self, name: &str) -> Option<&LabHost> {
        self.clients.iter().find(|c| c.name == name)
    }
}

pub fn controller_netns(name: &str) -> String {
    format!("{NETNS_PREFIX}ctl-{name}")
}

pub fn client_netns(name: &str) -> String {
    format!("{NETNS_PREFIX}cl-{name}")
}

pub fn lan_netns(controller: &str) -> String {
    format!("{NETNS_PREFIX}lan-{controller}")
}

/// Plans the lab for a valid topology and its `expect` checks.
pub fn plan(net: &Network, expects: &[Expect]) -> Result<LabLayout, String> {
    let expect_ips = expect_addresses(expects);
    let pool = choose_pool(net, &expect_ips)?;
    let gateway = last_host(pool);
    let (controllers, names) = controller_hosts(net, pool)?;
    check_interfaces(&controllers)?;
    check_unique_addresses(&controllers)?;
    let clients = client_hosts(net, pool, controllers.len())?;

    let lans = net
        .controllers
        .iter()
        .filter(|c| !c.lans.is_empty())
        .map(|c| lan_site(&c.name, &c.lans, &expect_ips))
        .collect();
    let outside = outside(net, &controllers, &expect_ips);
    Ok(LabLayout {
        topology: net.name.clone(),
        underlay_ns: UNDERLAY_NETNS.to_owned(),
        pool,
        gateway,
        controllers,
        clients,
        lans,
        outside,
        names,
    })
}

/// The underlay-side veth of the `n`-th host (controllers first, then clients).
fn underlay_link(n: usize) -> String {
    format!("ul{n}")
}

/// Controllers by id, and the lab address of every DNS name among their addresses.
fn controller_hosts(net: &Network, pool: Ipv4Net) -> Result<(Vec<LabHost>, BTreeMap<String, Ipv4Addr>), String> {
    let mut names = BTreeMap::new();
    let mut controllers = Vec::new();
    for (n, c) in net.controllers.iter().enumerate() {
        let address = match &c.address {
            Host::Ip(ip) => *ip,
            Host::Dns(name) => {
                if names.contains_key(name) {
                    return Err(format!("two controllers have the address {name}: the lab gives each its own host"));
                }
                let index = u32::try_from(names.len()).unwrap_or(u32::MAX);
                let ip = pool_host(pool, CONTROLLER_ROW, index).ok_or_else(|| {
                    format!("the lab has addresses for at most {HOSTS_PER_ROW} controllers with DNS names")
                })?;
                names.insert(name.clone(), ip);
                ip
            }
        };
        controllers.push(LabHost {
            name: c.name.clone(),
            netns: controller_netns(&c.name),
            interface: c.interface.clone(),
            address,
            underlay_link: underlay_link(n),
        });
    }
    Ok((controllers, names))
}

/// Clients in declaration order, revoked ones left out (they could not connect anyway); their
/// underlay links are numbered after the `first_link` controllers'.
fn client_hosts(net: &Network, pool: Ipv4Net, first_link: usize) -> Result<Vec<LabHost>, String> {
    net.clients
        .iter()
        .filter(|c| !c.revoked)
        .enumerate()
        .map(|(i, c)| {
            Ok(LabHost {
                name: c.name.clone(),
                netns: client_netns(&c.name),
                interface: HOST_INTERFACE.to_owned(),
                address: client_address(pool, i)?,
                underlay_link: underlay_link(first_link + i),
            })
        })
        .collect()
}

/// Every address an expect names (clients are named, not addressed, and are left out).
fn expect_addresses(expects: &[Expect]) -> BTreeSet<Ipv4Addr> {
    expects
        .iter()
        .flat_map(|e| [&e.from.value, &e.to.value])
        .filter_map(|end| match end {
            Endpoint::Ip(ip) => Some(*ip),
            Endpoint::Named(_) => None,
        })
        .collect()
}

/// Every network the topology uses, so the pool can stay clear of them.
fn used_networks(net: &Network, expect_ips: &BTreeSet<Ipv4Addr>) -> Vec<Ipv4Net> {
    let mut used: Vec<Ipv4Net> = net.overlay.into_iter().collect();
    for c in &net.controllers {
        used.extend(&c.lans);
        used.extend(c.engines.as_ref().map(|e| e.subnet));
        if let Host::Ip(ip) = c.address {
            used.push(Ipv4Net::from(ip));
        }
    }
    used.extend(net.firewall.net_sets.values().flatten());
    // Rules name networks directly too (a CIDR selector), not only through fwsets.
    for rule in &net.firewall.rules {
        used.extend(&rule.from.nets);
        used.extend(&rule.to.nets);
        used.extend(rule.from.hosts.iter().chain(&rule.to.hosts).map(|ip| Ipv4Net::from(*ip)));
    }
    used.extend(expect_ips.iter().map(|ip| Ipv4Net::from(*ip)));
    used
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b) || b.contains(a)
}

fn choose_pool(net: &Network, expect_ips: &BTreeSet<Ipv4Addr>) -> Result<Ipv4Net, String> {
    let used = used_networks(net, expect_ips);
    pool_candidates().find(|pool| !used.iter().any(|u| overlaps(pool, u))).ok_or_else(|| {
        let tried: Vec<String> = pool_candidates().map(|p| p.to_string()).collect();
        format!("the lab needs a free /16 for its own addresses, but the topology uses all of {}", tried.join(", "))
    })
}

/// The pool's last usable host (x.x.255.254).
fn last_host(pool: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(pool.broadcast()) - 1)
}

/// Host `index` (0-based) of pool row `row`: x.x.ROW.(index+1); None past the row's end.
fn pool_host(pool: Ipv4Net, row: u32, index: u32) -> Option<Ipv4Addr> {
    (index < HOSTS_PER_ROW).then(|| Ipv4Addr::from(u32::from(pool.network()) + (row << 8) + index + 1))
}

/// The `index`-th (0-based) client's address: x.x.1.1 ... x.x.1.254, x.x.2.1, ...
fn client_address(pool: Ipv4Net, index: usize) -> Result<Ipv4Addr, String> {
    let too_many = || {
        let most = (LAST_CLIENT_ROW - FIRST_CLIENT_ROW + 1) * HOSTS_PER_ROW;
        format!("the lab has underlay addresses for at most {most} clients")
    };
    let index = u32::try_from(index).map_err(|_| too_many())?;
    let row = FIRST_CLIENT_ROW + index / HOSTS_PER_ROW;
    if row > LAST_CLIENT_ROW {
        return Err(too_many());
    }
    pool_host(pool, row, index % HOSTS_PER_ROW).ok_or_else(too_many)
}

/// A controller's interface shares its namespace with the lab's LAN link and the runtime's own
/// links; a clash would make the lab or the runtime fail halfway.
fn check_interfaces(controllers: &[LabHost]) -> Result<(), String> {
    for c in controllers {
        let name = c.interface.as_str();
        let reserved =
            [LAN_CONTROLLER_LINK, "lo", PLUGIN_BRIDGE, TUN_DEVICE].contains(&name) || name.starts_with("mw-");
        if reserved || name.is_empty() || name.len() > 15 {
            return Err(format!("controller {}: the lab cannot use `{name}` as its underlay interface", c.name));
        }
    }
    Ok(())
}

/// The underlay routes one /32 per host: two controllers on one address cannot both get it.
fn check_unique_addresses(controllers: &[LabHost]) -> Result<(), String> {
    let mut seen: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
    for c in controllers {
        if let Some(first) = seen.insert(c.address, &c.name) {
            return Err(format!("controllers {first} and {} share the address {}", c.name, c.address));
        }
    }
    Ok(())
}

/// A LAN's `n`-th host (0-based) with the LAN's prefix; None if the LAN is too small.
fn lan_host(lan: &Ipv4Net, n: usize) -> Option<Ipv4Net> {
    let ip = lan.hosts().nth(n)?;
    Ipv4Net::new(ip, lan.prefix_len()).ok()
}

fn lan_site(controller: &str, lans: &[Ipv4Net], expect_ips: &BTreeSet<Ipv4Addr>) -> LanSite {
    let gateways: Vec<Ipv4Net> = lans.iter().filter_map(|lan| lan_host(lan, 0)).collect();
    let mut hosts: BTreeSet<Ipv4Net> = lans.iter().filter_map(|lan| lan_host(lan, 1)).collect();
    for lan in lans {
        for ip in expect_ips.iter().filter(|ip| lan.contains(*ip)) {
            hosts.extend(Ipv4Net::new(*ip, lan.prefix_len()));
        }
    }
    // An expect aimed at a gateway is answered by the controller itself: the address must not
    // be on both ends of the link.
    hosts.retain(|h| !gateways.iter().any(|g| g.addr() == h.addr()));
    LanSite {
        controller: controller.to_owned(),
        netns: lan_netns(controller),
        controller_link: LAN_CONTROLLER_LINK.to_owned(),
        lan_link: HOST_INTERFACE.to_owned(),
        gateways,
        hosts: hosts.into_iter().collect(),
    }
}

/// Expect addresses that no other lab host holds: not in the overlay or a LAN (those are
/// served elsewhere), not a controller's address and not inside an engine subnet (the runtime
/// puts those inside the controller's namespace).
fn outside(net: &Network, controllers: &[LabHost], expect_ips: &BTreeSet<Ipv4Addr>) -> Option<Outside> {
    let elsewhere: Vec<Ipv4Net> = net
        .overlay
        .into_iter()
        .chain(net.controllers.iter().flat_map(|c| c.lans.iter().copied()))
        .chain(net.controllers.iter().filter_map(|c| c.engines.as_ref().map(|e| e.subnet)))
        .chain(controllers.iter().map(|c| Ipv4Net::from(c.address)))
        .collect();
    let addresses: Vec<Ipv4Addr> =
        expect_ips.iter().copied().filter(|ip| !elsewhere.iter().any(|n| n.contains(ip))).collect();
    (!addresses.is_empty()).then(|| Outside {
        netns: OUTSIDE_NETNS.to_owned(),
        underlay_link: OUTSIDE_UNDERLAY_LINK.to_owned(),
        addresses,
    })
}

#[cfg(test)]
mod tests {
    use meshwork_compiler::source::SourceFile;

    use super::*;

    fn example(file: &str) -> LabLayout {
        let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let analysis = meshwork_compiler::analyze(SourceFile::new(file, text));
        let net = analysis.network.as_ref().unwrap_or_else(|| panic!("{file} does not validate"));
        let expects = &analysis.topology.as_ref().expect("a topology").expects;
        plan(net, expects).unwrap_or_else(|e| panic!("plan {file}: {e}"))
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("an IPv4 address")
    }

    fn cidr(s: &str) -> Ipv4Net {
        s.parse().expect("a CIDR")
    }

    #[test]
    fn three_controllers_hosts() {
        let l = example("three-controllers.kdl");
        assert_eq!(l.topology, "three-controllers");
        assert_eq!(l.underlay_ns, "mwl-underlay");
        assert_eq!(l.pool, cidr("172.31.0.0/16"));
        assert_eq!(l.gateway, ip("172.31.255.254"));
        let summary: Vec<(&str, &str, &str, Ipv4Addr, &str)> = l
            .controllers
            .iter()
            .map(|c| (c.name.as_str(), c.netns.as_str(), c.interface.as_str(), c.address, c.underlay_link.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("east", "mwl-ctl-east", "eth0", ip("192.0.2.10"), "ul0"),
                ("west", "mwl-ctl-west", "eth0", ip("172.31.0.1"), "ul1"),
                ("north", "mwl-ctl-north", "ens3", ip("192.0.2.30"), "ul2"),
            ]
        );
        assert_eq!(l.names, BTreeMap::from([("west.example.net".to_owned(), ip("172.31.0.1"))]));
        let clients: Vec<(&str, &str, Ipv4Addr, &str)> = l
            .clients
            .iter()
            .map(|c| (c.name.as_str(), c.interface.as_str(), c.address, c.underlay_link.as_str()))
            .collect();
        assert_eq!(clients.len(), 8);
        assert_eq!(clients[0], ("web-1", "eth0", ip("172.31.1.1"), "ul3"));
        assert_eq!(clients[2], ("db-1", "eth0", ip("172.31.1.3"), "ul5"));
        assert_eq!(clients[7], ("worker-5", "eth0", ip("172.31.1.8"), "ul10"));
        assert_eq!(l.client("web-1").map(|c| c.netns.as_str()), Some("mwl-cl-web-1"));
    }

    #[test]
    fn three_controllers_lans_and_outside() {
        let l = example("three-controllers.kdl");
        let sites: Vec<&str> = l.lans.iter().map(|s| s.controller.as_str()).collect();
        assert_eq!(sites, ["east", "west", "north"]);
        let north = &l.lans[2];
        assert_eq!(north.netns, "mwl-lan-north");
        assert_eq!(north.controller_link, "lab-lan");
        assert_eq!(north.lan_link, "eth0");
        assert_eq!(north.gateways, [cidr("10.30.0.1/16"), cidr("10.31.0.1/16")]);
        assert_eq!(north.hosts, [cidr("10.30.0.2/16"), cidr("10.31.0.2/16"), cidr("10.31.2.2/16")]);
        assert_eq!(l.lans[0].gateways, [cidr("10.10.0.1/16")]);
        assert_eq!(l.lans[0].hosts, [cidr("10.10.0.2/16")]);
        let outside = l.outside.as_ref().expect("an outside namespace");
        assert_eq!(outside.netns, "mwl-outside");
        assert_eq!(outside.underlay_link, "ul-out");
        assert_eq!(outside.addresses, [ip("203.0.113.9")]);
    }

    #[test]
    fn partial_mesh() {
        let l = example("partial-mesh.kdl");
        assert_eq!(l.pool, cidr("172.31.0.0/16"));
        assert!(l.names.is_empty());
        let addresses: Vec<Ipv4Addr> = l.controllers.iter().map(|c| c.address).collect();
        assert_eq!(addresses, [ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3"), ip("192.0.2.4")]);
        let clients: Vec<(&str, Ipv4Addr)> = l.clients.iter().map(|c| (c.name.as_str(), c.address)).collect();
        assert_eq!(
            clients,
            [
                ("laptop", ip("172.31.1.1")),
                ("build", ip("172.31.1.2")),
                ("edge-1", ip("172.31.1.3")),
                ("edge-2", ip("172.31.1.4"))
            ]
        );
        assert_eq!(l.lans.len(), 4);
        assert_eq!(l.lans[0].hosts, [cidr("10.1.0.2/16"), cidr("10.1.0.5/16")]);
        assert_eq!(l.lans[3].hosts, [cidr("10.4.0.2/16"), cidr("10.4.3.3/16")]);
        assert_eq!(l.outside, None);
        assert_eq!(
            l.namespaces(),
            [
                "mwl-lan-a",
                "mwl-lan-b",
                "mwl-lan-c",
                "mwl-lan-d",
                "mwl-cl-laptop",
                "mwl-cl-build",
                "mwl-cl-edge-1",
                "mwl-cl-edge-2",
                "mwl-ctl-a",
                "mwl-ctl-b",
                "mwl-ctl-c",
                "mwl-ctl-d",
                "mwl-underlay"
            ]
        );
    }

    #[test]
    fn quickstart_has_no_outside_and_one_lan() {
        let l = example("quickstart.kdl");
        assert_eq!(l.controllers.len(), 1);
        assert_eq!(l.lans.len(), 1);
        assert_eq!(l.outside, None);
        assert_eq!(l.clients.len(), 7);
    }

    #[test]
    fn pool_skips_used_networks() {
        let text = r#"
            topology "t"
            overlay "172.31.0.0/24"
            controller "a" id=1 { address "172.30.9.9"; lan "172.29.0.0/16"; }
            client "c"
            expect from="c" to="172.28.0.7" proto="tcp" port=1 verdict="allow"
        "#;
        let analysis = meshwork_compiler::analyze(SourceFile::new("t.kdl", text));
        let net = analysis.network.as_ref().expect("valid");
        let expects = &analysis.topology.as_ref().expect("a topology").expects;
        let l = plan(net, expects).expect("a plan");
        assert_eq!(l.pool, cidr("172.27.0.0/16"));
        assert_eq!(l.gateway, ip("172.27.255.254"));
        assert_eq!(l.outside.map(|o| o.addresses), Some(vec![ip("172.28.0.7")]));
    }

    #[test]
    fn no_free_pool_is_an_error() {
        let text = r#"
            topology "t"
            overlay "10.0.0.0/8"
            controller "a" id=1 { address "192.0.2.1"; lan "172.16.0.0/12"; }
        "#;
        let analysis = meshwork_compiler::analyze(SourceFile::new("t.kdl", text));
        let net = analysis.network.as_ref().expect("valid");
        let err = plan(net, &[]).expect_err("no pool is free");
        assert!(err.contains("free /16"), "{err}");
    }

    #[test]
    fn reserved_interface_is_an_error() {
        let text = r#"
            topology "t"
            overlay "100.127.0.0/24"
            controller "a" id=1 { address "192.0.2.1"; interface "lab-lan"; }
        "#;
        let analysis = meshwork_compiler::analyze(SourceFile::new("t.kdl", text));
        let net = analysis.network.as_ref().expect("valid");
        let err = plan(net, &[]).expect_err("lab-lan is the lab's");
        assert!(err.contains("`lab-lan`"), "{err}");
    }

    #[test]
    fn client_rows() {
        let pool = cidr("172.31.0.0/16");
        assert_eq!(client_address(pool, 0), Ok(ip("172.31.1.1")));
        assert_eq!(client_address(pool, 253), Ok(ip("172.31.1.254")));
        assert_eq!(client_address(pool, 254), Ok(ip("172.31.2.1")));
        assert_eq!(client_address(pool, 254 * 254 - 1), Ok(ip("172.31.254.254")));
        assert!(client_address(pool, 254 * 254).is_err());
    }

    #[test]
    fn layout_round_trips_through_json() {
        let l = example("three-controllers.kdl");
        let json = serde_json::to_string(&l).expect("serialise");
        let back: LabLayout = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, l);
    }

    #[test]
    fn planning_is_deterministic() {
        assert_eq!(example("partial-mesh.kdl"), example("partial-mesh.kdl"));
    }
}
