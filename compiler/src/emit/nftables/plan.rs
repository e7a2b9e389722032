//! Decides a controller's ruleset: the one place that knows what the dataplane needs. The
//! renderers in `json` and `text` only spell out what this returns.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::ir::{
    BaseChain, Chain, ChainKind, Elem, Hook, Key, MAX_COMMENT, NamedSet, Priority, Rule, Ruleset, SetKind, Stmt, Value,
    Verdict,
};
use super::names::SetNames;
use super::{CHAIN_FIREWALL, CHAIN_FORWARD, CHAIN_INPUT, CHAIN_PREROUTING};
use crate::firewall::{AddrMatch, CompiledRule, PortMatch};
use crate::model::{Action, Host, PortRange, PortSpec, Proto, Selector};
use crate::network::{CLIENT_PORT, ControllerNet, EngineSet, MESH_API_PORT, Network, PLUGIN_BRIDGE, TUN_DEVICE};
use crate::peering::{self, PEER_PORT_BASE};

/// The whole ruleset of controller `c`: the [`shared`] sets, its [`local`] base chains, then the
/// shared `firewall` chain.
pub fn build(net: &Network, c: &ControllerNet) -> Ruleset {
    let Shared { sets, firewall } = shared(net);
    let mut chains = local(net, c);
    chains.push(firewall);
    Ruleset { sets, chains }
}

/// The part of the ruleset that is the same on every controller of the topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shared {
    /// The named sets, first in the table.
    pub sets: Vec<NamedSet>,
    /// The regular `firewall` chain, created after the base chains; its rules come last.
    pub firewall: Chain,
}

/// The named sets and the `firewall` chain: they depend on the topology's firewall only.
pub fn shared(net: &Network) -> Shared {
    let names = SetNames::new(&net.firewall);
    Shared { sets: sets(net, &names), firewall: firewall(net, &names) }
}

/// The base chains of controller `c`, in order: `prerouting` (only with engines), `input`,
/// `forward`.
pub fn local(net: &Network, c: &ControllerNet) -> Vec<Chain> {
    let mut chains = Vec::with_capacity(4);
    if let Some(engines) = &c.engines {
        chains.push(prerouting(c, engines));
    }
    chains.push(input(net, c));
    chains.push(forward(net, c));
    chains
}

/// The overlay interfaces of `c`, whose traffic the firewall filters: tun0, plugin0 when it has
/// engines, and the tunnel to each peer (`mw-p<id>`), in that order (peers by id).
pub fn overlay_interfaces(net: &Network, c: &ControllerNet) -> Vec<String> {
    let mut out = vec![TUN_DEVICE.to_string()];
    if c.engines.is_some() {
        out.push(PLUGIN_BRIDGE.to_string());
    }
    out.extend(net.mesh.neighbours(&c.name).iter().filter_map(|n| net.mesh.id(n)).map(peering::tunnel_device));
    out
}

pub(crate) fn rule(stmts: Vec<Stmt>, comment: impl Into<String>) -> Rule {
    Rule { stmts, comment: Some(comment_text(comment.into())), note: None }
}

/// A kernel comment: no double quotes or control characters, at most [`MAX_COMMENT`] bytes.
fn comment_text(s: String) -> String {
    let mut out: String = s.chars().map(|c| if c == '"' || c.is_control() { '\'' } else { c }).collect();
    if out.len() > MAX_COMMENT {
        let mut end = MAX_COMMENT;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

pub(crate) fn is(key: Key, value: Value) -> Stmt {
    Stmt::Match(key, value)
}

fn udp_dport(port: u16) -> Stmt {
    is(Key::UdpDport, Value::Elem(Elem::Port(port)))
}

pub(crate) fn accept() -> Stmt {
    Stmt::Verdict(Verdict::Accept)
}

pub(crate) fn drop() -> Stmt {
    Stmt::Verdict(Verdict::Drop)
}

/// Spreads client flows on UDP 1194 over the controller's own server and its engines: a jhash
/// of (source address, source port) picks a mark, and each engine's mark is DNATed to it.
fn prerouting(c: &ControllerNet, e: &EngineSet) -> Chain {
    let mut rules = Vec::with_capacity(e.engines.len() + 2);
    rules.push(rule(
        vec![
            is(Key::IifName, Value::Name(c.interface.clone())),
            udp_dport(CLIENT_PORT),
            Stmt::MarkJhash { modulus: e.modulus(), seed: e.seed, offset: e.offset },
        ],
        format!("spread clients over the server and {} engines", e.engines.len()),
    ));
    rules.push(rule(
        vec![udp_dport(CLIENT_PORT), is(Key::Mark, Value::Mark(e.offset)), accept()],
        format!("{}: own server", c.name),
    ));
    for engine in &e.engines {
        rules.push(rule(
            vec![
                udp_dport(CLIENT_PORT),
                is(Key::Mark, Value::Mark(engine.mark)),
                Stmt::DnatIp(engine.plugin_ip, CLIENT_PORT),
            ],
            format!("engine {}: {}", engine.index, engine.name),
        ));
    }
    Chain {
        name: CHAIN_PREROUTING,
        base: Some(BaseChain {
            kind: ChainKind::Nat,
            hook: Hook::Prerouting,
            priority: Priority::DstNat,
            policy: Verdict::Accept,
        }),
        rules,
    }
}

/// Admits clients on the underlay interface and peers on this controller's listen ports.
fn input(net: &Network, c: &ControllerNet) -> Chain {
    let mut rules = vec![rule(
        vec![is(Key::IifName, Value::Name(c.interface.clone())), udp_dport(CLIENT_PORT), accept()],
        "clients",
    )];
    // For controllers i < j, i listens on BASE + j: peers with a known address are the only
    // ones admitted; a peer known by DNS name can only be admitted by port.
    let mut guarded = Vec::new();
    for t in net.tunnels.iter().filter(|t| t.low == c.name) {
        let Some(peer) = net.controller(&t.high) else { continue };
        let Some(port) = u16::try_from(peer.id).ok().and_then(|id| PEER_PORT_BASE.checked_add(id)) else { continue };
        match &peer.address {
            Host::Ip(ip) => {
                rules.push(rule(
                    vec![is(Key::IpSaddr, Value::Elem(Elem::Addr(*ip))), udp_dport(port), accept()],
                    format!("peer {}", peer.name),
                ));
                guarded.push(Elem::Port(port));
            }
            Host::Dns(_) => {
                rules.push(rule(vec![udp_dport(port), accept()], format!("peer {} (DNS address)", peer.name)));
            }
        }
    }
    if !guarded.is_empty() {
        let ports = if guarded.len() == 1 { Value::Elem(guarded[0]) } else { Value::Set(guarded) };
        rules.push(rule(vec![is(Key::UdpDport, ports), drop()], "peering ports: known peers only"));
    }
    Chain {
        name: CHAIN_INPUT,
        base: Some(BaseChain {
            kind: ChainKind::Filter,
            hook: Hook::Input,
            priority: Priority::Filter,
            policy: Verdict::Accept,
        }),
        rules,
    }
}

/// Sends every flow entering or leaving the overlay through the `firewall` chain; replies of
/// allowed flows and the engines' own OpenVPN traffic pass first.
fn forward(net: &Network, c: &ControllerNet) -> Chain {
    let mut rules =
        vec![rule(vec![is(Key::CtState, Value::CtStates(vec!["established", "related"])), accept()], "replies")];
    if c.engines.is_some() {
        rules.push(rule(
            vec![
                is(Key::IifName, Value::Name(PLUGIN_BRIDGE.into())),
                is(Key::UdpSport, Value::Elem(Elem::Port(CLIENT_PORT))),
                accept(),
            ],
            "engines' OpenVPN, out",
        ));
        rules.push(rule(
            vec![is(Key::OifName, Value::Name(PLUGIN_BRIDGE.into())), udp_dport(CLIENT_PORT), accept()],
            "engines' OpenVPN, in",
        ));
    }
    if net.controllers.len() > 1 {
        // Agents poll each other on their overlay addresses; in a partial mesh that traffic
        // crosses intermediate controllers, whose firewall policy must not stop it.
        let agents: Vec<Elem> = net.controllers.iter().map(|o| Elem::Addr(o.overlay_ip)).collect();
        rules.push(rule(
            vec![
                is(Key::IpSaddr, Value::Set(agents.clone())),
                is(Key::IpDaddr, Value::Set(agents)),
                is(Key::TcpDport, Value::Elem(Elem::Port(MESH_API_PORT))),
                accept(),
            ],
            "agents' mesh API",
        ));
    }
    let ifaces = overlay_interfaces(net, c);
    let names = |ifaces: &[String]| {
        if ifaces.len() == 1 { Value::Name(ifaces[0].clone()) } else { Value::Names(ifaces.to_vec()) }
    };
    rules.push(rule(
        vec![is(Key::IifName, names(&ifaces)), Stmt::Verdict(Verdict::Jump(CHAIN_FIREWALL))],
        "from the overlay",
    ));
    rules.push(rule(
        vec![is(Key::OifName, names(&ifaces)), Stmt::Verdict(Verdict::Jump(CHAIN_FIREWALL))],
        "to the overlay",
    ));
    Chain {
        name: CHAIN_FORWARD,
        base: Some(BaseChain {
            kind: ChainKind::Filter,
            hook: Hook::Forward,
            priority: Priority::Filter,
            policy: Verdict::Accept,
        }),
        rules,
    }
}

/// The firewall rules in order (first match wins), then the policy.
fn firewall(net: &Network, names: &SetNames) -> Chain {
    let fw = &net.firewall;
    let mut rules = Vec::with_capacity(fw.rules.len() + 1);
    for r in &fw.rules {
        let Some(stmts) = firewall_rule(r, names) else { continue };
        let mut out = rule(stmts, format!("rule {}", r.number));
        out.note = Some(format!("rule {}: {}", r.number, r.describe()).replace(|c: char| c.is_control(), " "));
        rules.push(out);
    }
    let (verdict, comment) = match fw.policy {
        Action::Accept => (accept(), "policy accept"),
        Action::Drop => (drop(), "policy drop"),
    };
    rules.push(rule(vec![Stmt::Counter, verdict], comment));
    Chain { name: CHAIN_FIREWALL, base: None, rules }
}

/// The statements of one firewall rule; None when an address side can match nothing (a name
/// that resolved to no address), so the rule can never apply.
fn firewall_rule(r: &CompiledRule, names: &SetNames) -> Option<Vec<Stmt>> {
    let mut stmts = Vec::with_capacity(5);
    stmts.extend(address(Key::IpSaddr, &r.from, names)?);
    stmts.extend(address(Key::IpDaddr, &r.to, names)?);
    stmts.extend(protocol(r.proto, r.port.as_ref(), names));
    stmts.push(Stmt::Counter);
    stmts.push(match r.action {
        Action::Accept => accept(),
        Action::Drop => drop(),
    });
    Some(stmts)
}

/// Outer None: the selector matches no address. Inner None: it matches every address.
fn address(key: Key, m: &AddrMatch, names: &SetNames) -> Option<Option<Stmt>> {
    let value = match &m.selector {
        _ if m.any => return Some(None),
        Selector::Any => return Some(None),
        Selector::Tag(tag) => Value::SetRef(names.tag(tag).to_string()),
        Selector::FwSet(set) => Value::SetRef(names.net(set).to_string()),
        Selector::Overlay | Selector::Client(_) | Selector::Controller(_) | Selector::Net(_) => {
            let mut elems = net_elems(m.hosts.iter().map(|h| Ipv4Net::from(*h)).chain(m.nets.iter().copied()));
            match elems.len() {
                0 => return None,
                1 => Value::Elem(elems.remove(0)),
                _ => Value::Set(elems),
            }
        }
    };
    Some(Some(is(key, value)))
}

fn protocol(proto: Option<Proto>, port: Option<&PortMatch>, names: &SetNames) -> Vec<Stmt> {
    let Some(port) = port else {
        return proto.map(|p| is(Key::L4Proto, Value::Protos(vec![p.name()]))).into_iter().collect();
    };
    let value = match &port.spec {
        PortSpec::FwSet(set) => Value::SetRef(names.port(set).to_string()),
        PortSpec::Range(_) => {
            let mut elems = port_elems(&port.ranges);
            if elems.len() == 1 { Value::Elem(elems.remove(0)) } else { Value::Set(elems) }
        }
    };
    match proto {
        Some(Proto::Tcp) => vec![is(Key::TcpDport, value)],
        Some(Proto::Udp) => vec![is(Key::UdpDport, value)],
        // Validation requires tcp or udp with a port; keep the meaning if it ever did not.
        None => vec![is(Key::L4Proto, Value::Protos(vec!["tcp", "udp"])), is(Key::ThDport, value)],
        Some(Proto::Icmp) => vec![is(Key::L4Proto, Value::Protos(vec!["icmp"])), is(Key::ThDport, value)],
    }
}

/// The named sets the firewall chain refers to, with their contents.
fn sets(net: &Network, names: &SetNames) -> Vec<NamedSet> {
    let fw = &net.firewall;
    let mut out = Vec::with_capacity(fw.tags.len() + fw.net_sets.len() + fw.port_sets.len());
    for (tag, hosts) in &fw.tags {
        out.push(NamedSet {
            name: names.tag(tag).to_string(),
            kind: SetKind::Addr,
            interval: false,
            elements: addr_elems(hosts),
        });
    }
    for (set, nets) in &fw.net_sets {
        out.push(NamedSet {
            name: names.net(set).to_string(),
            kind: SetKind::Addr,
            interval: true,
            elements: net_elems(nets.iter().copied()),
        });
    }
    for (set, ranges) in &fw.port_sets {
        out.push(NamedSet {
            name: names.port(set).to_string(),
            kind: SetKind::Service,
            interval: true,
            elements: port_elems(ranges),
        });
    }
    out
}

/// Distinct addresses, sorted.
pub(crate) fn addr_elems(hosts: &[Ipv4Addr]) -> Vec<Elem> {
    let mut hosts = hosts.to_vec();
    hosts.sort_unstable();
    hosts.dedup();
    hosts.into_iter().map(Elem::Addr).collect()
}

/// Networks merged so none overlaps (nft refuses overlapping intervals), sorted; /32s as
/// addresses.
pub(crate) fn net_elems(nets: impl Iterator<Item = Ipv4Net>) -> Vec<Elem> {
    let nets: Vec<Ipv4Net> = nets.collect();
    Ipv4Net::aggregate(&nets)
        .into_iter()
        .map(|n| if n.prefix_len() == 32 { Elem::Addr(n.addr()) } else { Elem::Net(n) })
        .collect()
}

/// Port ranges merged where they overlap or touch, sorted.
pub(crate) fn port_elems(ranges: &[PortRange]) -> Vec<Elem> {
    let mut rs: Vec<(u16, u16)> = ranges.iter().map(|r| (r.low.min(r.high), r.low.max(r.high))).collect();
    rs.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::with_capacity(rs.len());
    for (lo, hi) in rs {
        match merged.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged.into_iter().map(|(lo, hi)| if lo == hi { Elem::Port(lo) } else { Elem::Ports(lo, hi) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_merge() {
        let r = |low, high| PortRange { low, high };
        assert_eq!(
            port_elems(&[r(443, 443), r(80, 80), r(8000, 8080), r(8080, 8090), r(81, 81)]),
            vec![Elem::Ports(80, 81), Elem::Port(443), Elem::Ports(8000, 8090)]
        );
    }

    #[test]
    fn nets_merge_without_overlap() {
        let n = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert_eq!(
            net_elems([n("10.0.0.0/8"), n("10.1.0.0/16"), n("192.0.2.7/32")].into_iter()),
            vec![Elem::Net(n("10.0.0.0/8")), Elem::Addr("192.0.2.7".parse().unwrap())]
        );
    }

    #[test]
    fn comments_are_safe() {
        let long = "x".repeat(300);
        assert_eq!(comment_text(long).len(), MAX_COMMENT);
        assert_eq!(comment_text("a\"b\nc".into()), "a'b'c");
    }
}
