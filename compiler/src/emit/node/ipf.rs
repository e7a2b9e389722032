//! `ipf.conf`: the node's firewall for SmartOS ipfilter, the same intent as its nftables
//! ruleset in the form of the Danube manual's sample. On illumos ipfilter sees the encrypted
//! packet on the external interface, so blocking the overlay ports there in and out keeps VXLAN
//! from ever crossing it in clear (as esdc-overlay does), while IKE and ESP from peer nodes pass.

use std::fmt::Write;

use crate::model::{Action, Proto};
use crate::vxlan::{NodeNet, VxlanNet};

/// SmartOS's name for the external NIC tag's interface.
pub const EXTERNAL_INTERFACE: &str = "external0";

pub fn conf(vx: &VxlanNet, node: &NodeNet) -> String {
    let ext = EXTERNAL_INTERFACE;
    let mut s = format!("# meshwork: ipfilter rules of node {} (SmartOS); generated, do not edit.\n", node.name);
    if node.external.is_none() {
        s += "# no external address: nothing leaves the PDC, nothing to filter here.\n";
        return s;
    }
    let mut ports: Vec<u16> = vx.rules.iter().map(|r| r.port).collect();
    ports.sort_unstable();
    ports.dedup();
    s += "\n# Plaintext VXLAN never crosses the external interface: across PDCs it rides in IPsec.\n";
    for p in &ports {
        let _ = writeln!(s, "block in quick on {ext} proto udp from any to any port = {p}");
        let _ = writeln!(s, "block out quick on {ext} proto udp from any to any port = {p}");
    }
    s += "\n# Replies to the node's own connections.\npass out quick on ";
    let _ = writeln!(s, "{ext} all keep state");
    s += "\n# Other nodes' external addresses (IKE, ESP and ESP in UDP from IPsec peers among them).\n";
    for n in vx.nodes.iter().filter(|n| n.name != node.name) {
        if let Some(e) = n.external {
            let _ = writeln!(s, "pass in quick on {ext} from {} to any keep state", e.ip);
        }
    }
    let fw = &vx.firewall;
    if !fw.rules.is_empty() || fw.policy == Action::Drop {
        s += "\n# node-firewall\n";
    }
    for r in &fw.rules {
        let verb = match r.action {
            Action::Accept => "pass",
            Action::Drop => "block",
        };
        let sources: Vec<String> = match &r.from {
            None => vec!["any".into()],
            Some(nets) => nets.iter().map(ToString::to_string).collect(),
        };
        let protos: Vec<&str> = match (r.proto, &r.ports) {
            (Some(p), _) => vec![p.name()],
            (None, Some(_)) => vec![Proto::Tcp.name(), Proto::Udp.name()],
            (None, None) => vec![],
        };
        let ports: Vec<String> = match &r.ports {
            None => vec![String::new()],
            Some(ranges) => ranges
                .iter()
                .map(|r| {
                    if r.low == r.high {
                        format!(" port = {}", r.low)
                    } else {
                        format!(" port {} >< {}", r.low.saturating_sub(1), r.high.saturating_add(1))
                    }
                })
                .collect(),
        };
        let _ = writeln!(s, "# {}", r.text);
        for src in &sources {
            for port in &ports {
                if protos.is_empty() {
                    let _ = writeln!(s, "{verb} in quick on {ext} from {src} to any{port}");
                }
                for proto in &protos {
                    let _ = writeln!(s, "{verb} in quick on {ext} proto {proto} from {src} to any{port}");
                }
            }
        }
    }
    if fw.policy == Action::Drop {
        let _ = writeln!(s, "block in on {ext} all");
    }
    s
}
