//! A node's nftables ruleset, `table inet meshwork` like a controller's, replaced atomically:
//!
//! - `input` (filter): on the external interface, plaintext VXLAN (any rule's port, not
//!   arrived through an SA: `meta ipsec missing`) is counted and dropped; replies pass; the
//!   other nodes' external addresses are admitted (IKE on UDP 500/4500 from IPsec peers among
//!   them); then the node firewall's rules and policy.
//! - `output` (filter): plaintext VXLAN leaving by the external interface (`rt ipsec missing`)
//!   is counted and dropped, so a tunnel that is down never leaks a frame in clear.
//! - `node-firewall` (regular): the topology's node-firewall rules, first match wins, then a
//!   final drop when the policy is drop.
//!
//! The userspace data path keeps the same meaning: decrypted packets arrive on libipsec's own
//! TUN device and are sent through it, never in clear on the external interface.

use std::fmt::Write;

use crate::emit::nftables::ir::{
    BaseChain, Chain, ChainKind, Elem, Hook, Key, Priority, Rule, Ruleset, Stmt, Value, Verdict,
};
use crate::emit::nftables::plan::{accept, drop, is, net_elems, port_elems, rule};
use crate::model::{Action, Proto};
use crate::network::Network;
use crate::vxlan::net::NodeRuleNet;
use crate::vxlan::{NodeNet, VxlanNet};

pub const CHAIN_INPUT: &str = "input";
pub const CHAIN_OUTPUT: &str = "output";
pub const CHAIN_NODE_FIREWALL: &str = "node-firewall";
/// The comments of the two drop rules; the runtime reads their counters for `/metrics`.
pub const PLAINTEXT_IN: &str = "plaintext VXLAN in: dropped";
pub const PLAINTEXT_OUT: &str = "plaintext VXLAN out: dropped";
/// IKE and NAT-T (ESP in UDP).
pub const IKE_PORTS: [u16; 2] = [500, 4500];

fn base(hook: Hook) -> Option<BaseChain> {
    Some(BaseChain { kind: ChainKind::Filter, hook, priority: Priority::Filter, policy: Verdict::Accept })
}

fn one_or_set(mut elems: Vec<Elem>) -> Value {
    if elems.len() == 1 { Value::Elem(elems.remove(0)) } else { Value::Set(elems) }
}

/// The ruleset of `node`: empty chains when it has no external address (nothing leaves its PDC).
pub fn plan(vx: &VxlanNet, node: &NodeNet) -> Ruleset {
    if node.external.is_none() {
        return Ruleset::default();
    }
    let ext = || is(Key::IifName, Value::Name(node.external_interface.clone()));
    let mut ports: Vec<u16> = vx.rules.iter().map(|r| r.port).collect();
    ports.sort_unstable();
    ports.dedup();
    let vxlan_ports = || is(Key::UdpDport, one_or_set(ports.iter().map(|p| Elem::Port(*p)).collect()));
    let others: Vec<std::net::Ipv4Addr> =
        vx.nodes.iter().filter(|n| n.name != node.name).filter_map(|n| n.external.map(|e| e.ip)).collect();
    let peers: Vec<std::net::Ipv4Addr> = vx.ipsec_peers(node).filter_map(|(_, p)| p.external.map(|e| e.ip)).collect();

    let mut input = vec![
        rule(vec![ext(), vxlan_ports(), is(Key::IpsecIn, Value::Exists(false)), Stmt::Counter, drop()], PLAINTEXT_IN),
        rule(vec![ext(), is(Key::CtState, Value::CtStates(vec!["established", "related"])), accept()], "replies"),
    ];
    if !peers.is_empty() {
        input.push(rule(
            vec![
                ext(),
                is(Key::IpSaddr, one_or_set(net_elems(peers.iter().map(|a| (*a).into())))),
                is(Key::UdpDport, Value::Set(IKE_PORTS.iter().map(|p| Elem::Port(*p)).collect())),
                accept(),
            ],
            "IKE and ESP in UDP from IPsec peers",
        ));
    }
    if !others.is_empty() {
        input.push(rule(
            vec![ext(), is(Key::IpSaddr, one_or_set(net_elems(others.iter().map(|a| (*a).into())))), accept()],
            "other nodes' external addresses",
        ));
    }
    let firewall = node_firewall(vx);
    if !firewall.rules.is_empty() {
        input.push(rule(vec![ext(), Stmt::Verdict(Verdict::Jump(CHAIN_NODE_FIREWALL))], "node firewall"));
    }
    let output = vec![rule(
        vec![
            is(Key::OifName, Value::Name(node.external_interface.clone())),
            vxlan_ports(),
            is(Key::IpsecOut, Value::Exists(false)),
            Stmt::Counter,
            drop(),
        ],
        PLAINTEXT_OUT,
    )];
    Ruleset {
        sets: Vec::new(),
        chains: vec![
            Chain { name: CHAIN_INPUT, base: base(Hook::Input), rules: input },
            Chain { name: CHAIN_OUTPUT, base: base(Hook::Output), rules: output },
            firewall,
        ],
    }
}

fn node_firewall(vx: &VxlanNet) -> Chain {
    let fw = &vx.firewall;
    let mut rules: Vec<Rule> = fw.rules.iter().enumerate().filter_map(|(i, r)| firewall_rule(i + 1, r)).collect();
    if fw.policy == Action::Drop {
        rules.push(rule(vec![drop()], "policy: drop"));
    }
    Chain { name: CHAIN_NODE_FIREWALL, base: None, rules }
}

/// None when the rule can match nothing (an empty fwset).
fn firewall_rule(number: usize, r: &NodeRuleNet) -> Option<Rule> {
    let mut stmts = Vec::new();
    if let Some(from) = &r.from {
        let elems = net_elems(from.iter().copied());
        if elems.is_empty() {
            return None;
        }
        stmts.push(is(Key::IpSaddr, one_or_set(elems)));
    }
    match (&r.ports, r.proto) {
        (Some(ports), proto) => {
            let elems = port_elems(ports);
            if elems.is_empty() {
                return None;
            }
            let key = match proto {
                Some(Proto::Tcp) => Key::TcpDport,
                Some(Proto::Udp) => Key::UdpDport,
                _ => {
                    stmts.push(is(Key::L4Proto, Value::Protos(vec!["tcp", "udp"])));
                    Key::ThDport
                }
            };
            stmts.push(is(key, one_or_set(elems)));
        }
        (None, Some(p)) => stmts.push(is(Key::L4Proto, Value::Protos(vec![p.name()]))),
        (None, None) => {}
    }
    stmts.push(match r.action {
        Action::Accept => accept(),
        Action::Drop => drop(),
    });
    let mut out = rule(stmts, format!("node-firewall rule {number}"));
    out.note = Some(r.text.clone());
    Some(out)
}

/// The same ruleset in nft syntax, with a header saying whose it is.
pub fn text(net: &Network, node: &NodeNet, rs: &Ruleset) -> String {
    let mut header = vec![format!("meshwork: nftables ruleset of node {} (topology {})", node.name, net.name)];
    if rs.chains.is_empty() {
        let mut line = String::new();
        let _ = write!(line, "no external address: nothing leaves PDC {}, so the table is empty", node.pdc);
        header.push(line);
    }
    header.push("generated; do not edit".into());
    crate::emit::nftables::text::render(rs, &header)
}
