//! `lab test` for compute nodes: every `expect` between vNICs (or nodes, for their admin-overlay
//! vNIC) with real packets that prove whom they reached ([`ident`]); a DF packet of exactly the
//! vNIC MTU on every path of every overlay, and one byte more; and the wire: across PDCs, ESP in
//! UDP only (no plaintext VXLAN, no bare ESP, no fragments, by the internet's counters).

use std::net::Ipv4Addr;
use std::time::Duration;

use meshwork_compiler::emit::node::network as node_network;
use meshwork_compiler::model::{Action, Endpoint, Expect, Proto as FileProto};
use meshwork_compiler::network::Network;
use meshwork_compiler::vxlan::reach;
use meshwork_compiler::vxlan::{OverlayKind, Path};
use serde::Serialize;

use super::Record;
use super::expects::Row;
use super::ident::{self, Answer, IDENT_PORT, Named};
use super::probe::{self, DfOutcome, Flow, Proto};
use super::wire::{self, Wire};

/// How long a vNIC probe waits for an answer.
pub const WAIT: Duration = Duration::from_secs(2);
/// How long a DF probe one byte over the MTU waits (it is refused at once, or lost).
const OVER_WAIT: Duration = Duration::from_millis(500);

/// A vNIC (or a node's admin-overlay vNIC) placed in the lab.
#[derive(Clone, Debug)]
pub struct Place {
    pub name: String,
    pub netns: String,
    pub address: Ipv4Addr,
    pub node: String,
}

/// Where the vNIC `name` lives: a VM's namespace, or for a node's name its own namespace (its
/// `adminoverlay_0`).
pub fn place(record: &Record, net: &Network, name: &str) -> Option<Place> {
    let (overlay, vnic) = reach::vnic(&net.vxlan, name)?;
    let netns = match overlay.kind {
        OverlayKind::Admin => record.nodes.node(&vnic.node)?.netns.clone(),
        OverlayKind::Tenant => record.nodes.vm(&vnic.name)?.netns.clone(),
    };
    Some(Place { name: vnic.name.clone(), netns, address: vnic.ip, node: vnic.node.clone() })
}

/// Whether an expect names a vNIC or a node at either end (the overlays decide it, not the
/// firewall).
pub fn concerns(net: &Network, e: &Expect) -> bool {
    let named = |end: &Endpoint| matches!(end, Endpoint::Named(n) if reach::vnic(&net.vxlan, n).is_some());
    named(&e.from.value) || named(&e.to.value)
}

/// "Who is there" responders in every VM and node namespace, for as long as this lives.
pub fn who_is_there(record: &Record, net: &Network) -> Vec<Named> {
    let mut out = Vec::new();
    for o in &net.vxlan.overlays {
        for v in &o.vnics {
            if let Some(p) = place(record, net, &v.name)
                && let Ok(Some(named)) = ident::respond(&p.netns, Proto::Udp, IDENT_PORT, &p.name)
            {
                out.push(named);
            }
        }
    }
    out
}

fn endpoint_name(e: &Endpoint) -> String {
    match e {
        Endpoint::Named(name) => name.clone(),
        Endpoint::Ip(ip) => ip.to_string(),
    }
}

/// One vNIC expect, sent for real.
pub fn expect_row(record: &Record, net: &Network, index: usize, e: &Expect) -> Row {
    let proto = match (e.proto.as_ref().map(|p| p.value), e.port.is_some()) {
        (Some(FileProto::Tcp), _) | (None, true) => Proto::Tcp,
        (Some(FileProto::Udp), _) => Proto::Udp,
        (Some(FileProto::Icmp), _) | (None, false) => Proto::Icmp,
    };
    let port = e.port.as_ref().map(|p| p.value);
    let service = match (proto, port) {
        (Proto::Icmp, _) | (_, None) => proto.to_string(),
        (_, Some(p)) => format!("{proto}/{p}"),
    };
    let (from, to) = (endpoint_name(&e.from.value), endpoint_name(&e.to.value));
    let ends = (reach::vnic(&net.vxlan, &from), reach::vnic(&net.vxlan, &to));
    let static_verdict = match ends {
        (Some(a), Some(b)) => {
            Some(if reach::reach(&net.vxlan, a, b).reachable { Action::Accept } else { Action::Drop })
        }
        _ => Some(Action::Drop),
    };
    let mut row = Row {
        name: e.name.clone().unwrap_or_else(|| format!("expect {}", index + 1)),
        flow: format!("{from} -> {to} {service}"),
        expected: e.verdict.as_ref().map(|v| v.value.verb()),
        static_verdict: static_verdict.map(|a| a.verb()),
        observed: None,
        note: None,
        skipped: false,
    };
    let (Some(src), Some(dst)) = (place(record, net, &from), place(record, net, &to)) else {
        row.skipped = true;
        row.note = Some("not sent: a VXLAN overlay and the controllers' overlay share no network".into());
        return row;
    };
    if let Some(down) = [&src.node, &dst.node].into_iter().find(|n| record.killed_nodes.contains(*n)) {
        row.skipped = true;
        row.note = Some(format!("skipped: node {down} is down (lab kill)"));
        return row;
    }
    let responder = match port {
        Some(p) if proto != Proto::Icmp => match ident::respond(&dst.netns, proto, p, &dst.name) {
            Ok(r) => r,
            Err(e) => {
                row.note = Some(format!("cannot listen at {}: {e}", dst.name));
                return row;
            }
        },
        _ => None,
    };
    let flow = Flow { netns: src.netns.clone(), source: Some(src.address), destination: dst.address, proto, port };
    let answer = ident::probe(&flow, WAIT);
    drop(responder);
    match answer {
        Ok(Answer::Named(name)) if name == dst.name => row.observed = Some(Action::Accept.verb()),
        Ok(Answer::Named(name)) => {
            row.observed = Some(Action::Drop.verb());
            row.note =
                Some(format!("{} answered by {name}, not {}: its overlay holds that address", dst.address, dst.name));
        }
        Ok(Answer::Anonymous) => {
            row.observed = Some(Action::Drop.verb());
            row.note = Some(format!("{} answered by a host that is not {}", dst.address, dst.name));
        }
        Ok(Answer::Nobody) => row.observed = Some(Action::Drop.verb()),
        Err(e) => row.note = Some(format!("cannot send {flow}: {e}")),
    }
    row
}

/// A path between two vNICs of one overlay, probed with DF packets.
#[derive(Clone, Debug, Serialize)]
pub struct MtuRow {
    pub overlay: String,
    pub from: String,
    pub to: String,
    /// `same node`, `clear` (within a PDC, over the admin network) or `ipsec` (across PDCs).
    pub path: String,
    pub mtu: u32,
    /// A DF packet of exactly `mtu` bytes: must cross.
    pub at_mtu: Option<DfOutcome>,
    /// One byte more: must not (refused by the sender's stack, or lost on the way).
    pub over_mtu: Option<DfOutcome>,
    pub note: Option<String>,
    pub skipped: bool,
}

impl MtuRow {
    pub fn holds(&self) -> bool {
        self.skipped
            || (self.at_mtu == Some(DfOutcome::Crossed)
                && matches!(self.over_mtu, Some(DfOutcome::Refused | DfOutcome::Lost)))
    }
}

/// What `lab test` checks of the nodes besides the expects.
#[derive(Clone, Debug, Serialize)]
pub struct NodeChecks {
    pub mtu: Vec<MtuRow>,
    /// The internet's counters after every probe (None: one PDC, no internet).
    pub wire: Option<Wire>,
    /// Why the wire does not hold, if it does not.
    pub wire_problems: Vec<String>,
    /// Overlays with an inner VLAN, carried untagged in the lab (no 802.1Q in these kernels).
    pub untagged: Vec<String>,
}

impl NodeChecks {
    pub fn holds(&self) -> bool {
        self.mtu.iter().all(MtuRow::holds) && self.wire_problems.is_empty()
    }
}

fn path_word(net: &Network, from: &str, to: &str) -> String {
    match (net.vxlan.node(from), net.vxlan.node(to)) {
        _ if from == to => "same node".into(),
        (Some(a), Some(b)) => match net.vxlan.path(a, b) {
            Some(Path::Clear(_)) => "clear".into(),
            Some(Path::Ipsec(_)) => "ipsec".into(),
            None => "none".into(),
        },
        _ => "none".into(),
    }
}

/// The vNIC MTU of `overlay` on `node` (network.json).
fn mtu_on(net: &Network, node: &str, overlay: &str) -> Option<u32> {
    let n = net.vxlan.node(node)?;
    node_network::build(net, n).overlays.into_iter().find(|o| o.name == overlay).map(|o| o.device.mtu)
}

/// DF probes on every path of every overlay (each pair of its vNICs, one way).
pub fn mtu_rows(record: &Record, net: &Network) -> Vec<MtuRow> {
    let mut rows = Vec::new();
    for o in &net.vxlan.overlays {
        for (i, a) in o.vnics.iter().enumerate() {
            for b in &o.vnics[i + 1..] {
                let mtu = mtu_on(net, &a.node, &o.name).unwrap_or(0);
                let mut row = MtuRow {
                    overlay: o.name.clone(),
                    from: a.name.clone(),
                    to: b.name.clone(),
                    path: path_word(net, &a.node, &b.node),
                    mtu,
                    at_mtu: None,
                    over_mtu: None,
                    note: None,
                    skipped: false,
                };
                if let Some(down) = [&a.node, &b.node].into_iter().find(|n| record.killed_nodes.contains(*n)) {
                    row.skipped = true;
                    row.note = Some(format!("skipped: node {down} is down (lab kill)"));
                    rows.push(row);
                    continue;
                }
                let (Some(src), Some(dst)) = (place(record, net, &a.name), place(record, net, &b.name)) else {
                    row.note = Some("not placed in the lab".into());
                    rows.push(row);
                    continue;
                };
                let len = mtu as usize;
                let df = |len: usize, wait: Duration| {
                    probe::probe_df(&src.netns, Some(src.address), dst.address, len, wait).map_err(|e| e.to_string())
                };
                match (df(len, WAIT), df(len + 1, OVER_WAIT)) {
                    (Ok(at), Ok(over)) => {
                        row.at_mtu = Some(at);
                        row.over_mtu = Some(over);
                    }
                    (Err(e), _) | (_, Err(e)) => row.note = Some(e),
                }
                rows.push(row);
            }
        }
    }
    rows
}

/// The MTU paths, then the wire as the internet counted it.
pub fn checks(record: &Record, net: &Network) -> NodeChecks {
    let mtu = mtu_rows(record, net);
    let untagged = net
        .vxlan
        .overlays
        .iter()
        .filter_map(|o| o.vlan.map(|v| (o, v)))
        .map(|(o, v)| {
            let what = if o.kind == OverlayKind::Admin { "the admin overlay" } else { "overlay" };
            format!("{what} {} (VLAN {v}) runs untagged: these kernels have no 802.1Q", o.name)
        })
        .collect();
    let (wire, wire_problems) = match wire::read(&record.nodes) {
        Ok(w) => {
            let problems = w.as_ref().map(|w| wire_problems(w, !net.vxlan.ipsec.pairs.is_empty())).unwrap_or_default();
            (w, problems)
        }
        Err(e) => (None, vec![e]),
    };
    NodeChecks { mtu, wire, wire_problems, untagged }
}

/// What must hold of the internet's counters: plaintext VXLAN, bare ESP and fragments 0, and
/// ESP in UDP seen when there are IPsec pairs.
pub fn wire_problems(w: &Wire, ipsec: bool) -> Vec<String> {
    let mut out = Vec::new();
    if w.plaintext_vxlan > 0 {
        out.push(format!("{} plaintext VXLAN packet(s) crossed the internet", w.plaintext_vxlan));
    }
    if w.esp > 0 {
        out.push(format!("{} ESP packet(s) not in UDP crossed the internet", w.esp));
    }
    if w.fragments > 0 {
        out.push(format!("{} IP fragment(s) crossed the internet", w.fragments));
    }
    if ipsec && w.esp_in_udp == 0 {
        out.push("no ESP in UDP crossed the internet: cross-PDC traffic was not seen at all".into());
    }
    out
}

/// Whether `lab` has a node part to test.
pub fn has_nodes(record: &Record) -> bool {
    !record.nodes.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_holds_only_with_esp_in_udp_alone() {
        let good = Wire { esp_in_udp: 40, ike: 4, ..Wire::default() };
        assert!(wire_problems(&good, true).is_empty());
        assert_eq!(wire_problems(&Wire::default(), false), Vec::<String>::new());
        assert!(wire_problems(&Wire::default(), true)[0].contains("no ESP in UDP"));
        let bad = Wire { plaintext_vxlan: 1, esp: 2, fragments: 3, esp_in_udp: 1, ..Wire::default() };
        let problems = wire_problems(&bad, true);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("1 plaintext VXLAN"));
    }

    #[test]
    fn an_mtu_row_holds_when_the_mtu_crosses_and_one_more_does_not() {
        let mut row = MtuRow {
            overlay: "o".into(),
            from: "a".into(),
            to: "b".into(),
            path: "ipsec".into(),
            mtu: 1350,
            at_mtu: Some(DfOutcome::Crossed),
            over_mtu: Some(DfOutcome::Refused),
            note: None,
            skipped: false,
        };
        assert!(row.holds());
        row.over_mtu = Some(DfOutcome::Crossed);
        assert!(!row.holds());
        row.over_mtu = Some(DfOutcome::Lost);
        row.at_mtu = Some(DfOutcome::Lost);
        assert!(!row.holds());
        row.skipped = true;
        assert!(row.holds());
    }
}
