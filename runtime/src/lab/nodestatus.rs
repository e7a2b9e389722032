//! `lab status` for compute nodes: each node's state, charon and agent, its IPsec child SAs per
//! peer (from charon, by `swanctl --list-sas`), its FDB entries (from the kernel) and the
//! plaintext VXLAN its own table dropped (from its nft counters); each vNIC's VM; the wire.

use meshwork_compiler::emit::node::network as node_network;
use meshwork_compiler::emit::node::nftables::{PLAINTEXT_IN, PLAINTEXT_OUT};
use meshwork_compiler::network::Network;
use serde::Serialize;

use super::nodes::LabNode;
use super::wire::{self, Wire};
use super::{Lab, Record, noderun};
use crate::netlink::Netlink;
use crate::{daemon, netns, nft};

#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub pdc: String,
    pub netns: String,
    /// `up`, `ipsec down` (charon not running), `killed` (by `lab kill`), or `missing` (no
    /// namespace).
    pub state: String,
    pub charon_pid: Option<u32>,
    pub agent_pid: Option<u32>,
    /// IPsec peers whose child SA is installed, and those whose is not.
    pub sas_up: Vec<String>,
    pub sas_down: Vec<String>,
    /// Static FDB entries on the node's VXLAN devices.
    pub fdb_entries: Option<usize>,
    /// Plaintext VXLAN the node's own table dropped on its external interface (in and out).
    pub plaintext_dropped: Option<u64>,
    /// The node agent's last status (`status.json`), as it wrote it.
    pub agent_status: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VnicStatus {
    pub name: String,
    pub overlay: String,
    pub node: String,
    pub netns: String,
    pub address: String,
    pub mac: String,
    pub mtu: u32,
    pub vlan: Option<u16>,
    /// The lab's VM sends untagged frames (no 802.1Q in these kernels).
    pub untagged: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct NodesStatus {
    pub nodes: Vec<NodeStatus>,
    pub vnics: Vec<VnicStatus>,
    pub wire: Option<Wire>,
}

fn fdb_entries(net: &Network, n: &LabNode) -> Option<usize> {
    let node = net.vxlan.node(&n.name)?;
    let devices: Vec<String> = node_network::build(net, node).overlays.into_iter().map(|o| o.device.name).collect();
    let rt = super::run::netlink_runtime().ok()?;
    rt.block_on(async {
        let nl = Netlink::connect_in(&n.netns).await.ok()?;
        let mut total = 0;
        for d in &devices {
            total += nl.fdb_entries(d).await.ok()?.len();
        }
        Some(total)
    })
}

fn plaintext_dropped(n: &LabNode) -> Option<u64> {
    let listing = netns::run_in(&n.netns, nft::list_table_json).ok()?.ok()??;
    let c = wire::counters_of(&listing);
    Some(c.get(PLAINTEXT_IN).copied().unwrap_or(0) + c.get(PLAINTEXT_OUT).copied().unwrap_or(0))
}

pub fn status(lab: &Lab, record: &Record, net: &Network) -> NodesStatus {
    let mut out = NodesStatus::default();
    for n in &record.nodes.nodes {
        let charon_pid =
            daemon::status(&noderun::charon_pidfile(lab, &n.name)).ok().flatten().map(|r: daemon::ProcessRecord| r.pid);
        let killed = record.killed_nodes.contains(&n.name);
        let present = netns::exists(&n.netns);
        let state = if killed {
            "killed"
        } else if !present {
            "missing"
        } else if charon_pid.is_none() && !net.vxlan.ipsec.pairs.is_empty() && n.external.is_some() {
            "ipsec down"
        } else {
            "up"
        };
        let (sas_up, sas_down) =
            if present && charon_pid.is_some() { noderun::sa_state(lab, net, n) } else { (Vec::new(), peers(net, n)) };
        out.nodes.push(NodeStatus {
            name: n.name.clone(),
            pdc: n.pdc.clone(),
            netns: n.netns.clone(),
            state: state.into(),
            charon_pid,
            agent_pid: noderun::agent_pid(lab, &n.name),
            sas_up,
            sas_down,
            fdb_entries: if present { fdb_entries(net, n) } else { None },
            plaintext_dropped: if present { plaintext_dropped(n) } else { None },
            agent_status: noderun::agent_status(lab, &n.name),
        });
    }
    out.vnics = record
        .nodes
        .vms
        .iter()
        .map(|v| VnicStatus {
            name: v.vnic.clone(),
            overlay: v.overlay.clone(),
            node: v.node.clone(),
            netns: v.netns.clone(),
            address: v.address.to_string(),
            mac: v.mac.to_string(),
            mtu: v.mtu,
            vlan: v.vlan,
            untagged: v.vlan.is_some(),
        })
        .collect();
    out.wire = wire::read(&record.nodes).ok().flatten();
    out
}

fn peers(net: &Network, n: &LabNode) -> Vec<String> {
    net.vxlan
        .node(&n.name)
        .map_or_else(Vec::new, |node| net.vxlan.ipsec_peers(node).map(|(_, p)| p.name.clone()).collect())
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

pub fn text(s: &NodesStatus) -> String {
    let mut out = String::from("nodes:\n");
    let rows: Vec<Vec<String>> = s
        .nodes
        .iter()
        .map(|n| {
            let mut sas: Vec<String> = n.sas_up.iter().map(|p| format!("{p} up")).collect();
            sas.extend(n.sas_down.iter().map(|p| format!("{p} DOWN")));
            vec![
                n.name.clone(),
                n.pdc.clone(),
                n.state.clone(),
                or_dash(n.charon_pid),
                or_dash(n.agent_pid),
                if sas.is_empty() { "-".into() } else { sas.join(", ") },
                or_dash(n.fdb_entries),
                or_dash(n.plaintext_dropped),
            ]
        })
        .collect();
    out += &super::report::table(
        &["NAME", "PDC", "STATE", "CHARON", "AGENT", "IPSEC SAS", "FDB", "PLAINTEXT DROPPED"],
        &rows,
    );
    out += "\nvNICs:\n";
    let rows: Vec<Vec<String>> = s
        .vnics
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.overlay.clone(),
                v.node.clone(),
                v.address.clone(),
                v.mac.clone(),
                v.mtu.to_string(),
                v.vlan.map_or("-".into(), |t| format!("{t} (untagged here)")),
            ]
        })
        .collect();
    out += &super::report::table(&["NAME", "OVERLAY", "NODE", "ADDRESS", "MAC", "MTU", "VLAN"], &rows);
    if let Some(w) = &s.wire {
        out += &format!("\n{}", wire_text(w));
    }
    out
}

pub fn wire_text(w: &Wire) -> String {
    let clear: Vec<String> = w.clear_on_admin.iter().map(|(pdc, n)| format!("{pdc} {n}")).collect();
    format!(
        "wire: internet {} ESP in UDP, {} IKE, {} plaintext VXLAN, {} bare ESP, {} fragments; VXLAN in clear on admin segments: {}\n",
        w.esp_in_udp,
        w.ike,
        w.plaintext_vxlan,
        w.esp,
        w.fragments,
        clear.join(", ")
    )
}
