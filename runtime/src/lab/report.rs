//! `meshwork lab status` and the table of `meshwork lab test`, for people and (as JSON) for
//! programs.

use std::fmt::Write as _;

use meshwork_compiler::network::Network;
use serde::Serialize;

use super::expects::Row;
use super::nodestatus::{self, NodesStatus};
use super::vnics::NodeChecks;
use super::{Lab, Record, locations};

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub topology: String,
    pub file: String,
    /// The lab's state directory, absolute.
    pub state_dir: String,
    pub controllers: Vec<ControllerStatus>,
    pub clients: Vec<ClientStatus>,
    /// Compute nodes, their vNICs and the wire (absent without nodes).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodesStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ControllerStatus {
    pub name: String,
    pub netns: String,
    pub address: std::net::Ipv4Addr,
    /// `up`, `killed` (by `lab kill`), or `no agent` (no status yet).
    pub state: String,
    pub checksum: Option<String>,
    /// Peer -> "ok", "silent" or "disagrees".
    pub peers: Vec<(String, String)>,
    pub clients: usize,
    pub agent_routes: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClientStatus {
    pub name: String,
    pub overlay_ip: std::net::Ipv4Addr,
    /// `controller/unit`, or None while it is not connected.
    pub sits_on: Option<String>,
    /// Live controllers that route to it.
    pub routed_by: Vec<String>,
}

/// What keeps a lab from being whole: controllers not up or not hearing a peer, clients not
/// connected or not routed by every live controller. Empty when whole.
pub fn not_whole(s: &Status) -> Vec<String> {
    let live: Vec<&str> = s.controllers.iter().filter(|c| c.state != "killed").map(|c| c.name.as_str()).collect();
    let mut missing = Vec::new();
    for c in s.controllers.iter().filter(|c| c.state != "killed") {
        if c.state != "up" {
            missing.push(format!("controller {} ({})", c.name, c.state));
        }
        for (peer, word) in c.peers.iter().filter(|(p, w)| w != "ok" && live.contains(&p.as_str())) {
            missing.push(format!("{} -> {peer} {word}", c.name));
        }
    }
    for c in &s.clients {
        if c.sits_on.is_none() {
            missing.push(format!("{} (not connected)", c.name));
        } else if c.routed_by.len() < live.len() {
            missing.push(format!("{} (routed by {}/{})", c.name, c.routed_by.len(), live.len()));
        }
    }
    missing
}

pub fn status(lab: &Lab, record: &Record, net: &Network) -> Status {
    let located = locations(lab, record);
    let mut controllers = Vec::new();
    let mut statuses = Vec::new();
    for c in &record.layout.controllers {
        let agent = if record.killed.contains(&c.name) { None } else { lab.agent_status(&c.name) };
        let state = if record.killed.contains(&c.name) {
            "killed"
        } else if agent.is_some() {
            "up"
        } else {
            "no agent"
        };
        let peers = agent
            .as_ref()
            .and_then(|s| s["peers"].as_object().cloned())
            .unwrap_or_default()
            .into_iter()
            .map(|(name, p)| {
                let word = match (p["live"].as_bool(), p["agrees"].as_bool()) {
                    (Some(true), Some(true)) => "ok",
                    (Some(true), Some(false)) => "disagrees",
                    _ => "silent",
                };
                (name, word.to_string())
            })
            .collect();
        controllers.push(ControllerStatus {
            name: c.name.clone(),
            netns: c.netns.clone(),
            address: c.address,
            state: state.into(),
            checksum: agent.as_ref().and_then(|s| s["checksum"].as_str().map(String::from)),
            peers,
            clients: located.values().filter(|(on, _)| on == &c.name).count(),
            agent_routes: agent.as_ref().and_then(|s| s["agent_routes"].as_u64()),
        });
        statuses.push((c.name.clone(), agent));
    }
    let clients = record
        .layout
        .clients
        .iter()
        .map(|c| ClientStatus {
            name: c.name.clone(),
            overlay_ip: net.clients.iter().find(|n| n.name == c.name).map_or(std::net::Ipv4Addr::UNSPECIFIED, |n| n.ip),
            sits_on: located.get(&c.name).map(|(on, unit)| format!("{on}/{unit}")),
            routed_by: statuses
                .iter()
                .filter(|(_, s)| s.as_ref().is_some_and(|s| super::routes_to(s, &c.name)))
                .map(|(n, _)| n.clone())
                .collect(),
        })
        .collect();
    Status {
        topology: record.layout.topology.clone(),
        file: record.file.display().to_string(),
        state_dir: lab.state_dir().display().to_string(),
        controllers,
        clients,
        nodes: (!record.nodes.is_empty()).then(|| nodestatus::status(lab, record, net)),
    }
}

/// Columns padded to their widest cell.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
        let mut s = String::from(" ");
        for (cell, w) in cells.zip(&widths) {
            let _ = write!(s, " {cell:<w$}");
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied(), &mut out);
    for row in rows {
        line(&mut row.iter().map(String::as_str), &mut out);
    }
    out
}

pub fn status_text(s: &Status) -> String {
    let mut out = format!("lab \"{}\" from {}\n\n", s.topology, s.file);
    if let Some(nodes) = &s.nodes {
        out += &nodestatus::text(nodes);
        if s.controllers.is_empty() && s.clients.is_empty() {
            return out;
        }
        out.push('\n');
    }
    out += "controllers:\n";
    let rows: Vec<Vec<String>> = s
        .controllers
        .iter()
        .map(|c| {
            let peers: Vec<String> = c.peers.iter().map(|(p, w)| format!("{p} {w}")).collect();
            vec![
                c.name.clone(),
                c.address.to_string(),
                c.state.clone(),
                if peers.is_empty() { "-".into() } else { peers.join(", ") },
                c.clients.to_string(),
                c.agent_routes.map_or("-".into(), |n| n.to_string()),
            ]
        })
        .collect();
    out.push_str(&table(&["NAME", "UNDERLAY", "STATE", "PEERS", "CLIENTS", "ROUTES"], &rows));
    out.push_str("\nclients:\n");
    let rows: Vec<Vec<String>> = s
        .clients
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.overlay_ip.to_string(),
                c.sits_on.clone().unwrap_or_else(|| "not connected".into()),
                if c.routed_by.is_empty() { "-".into() } else { c.routed_by.join(", ") },
            ]
        })
        .collect();
    out.push_str(&table(&["NAME", "OVERLAY", "ON", "ROUTED BY"], &rows));
    out
}

pub fn test_text(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                verdict(r.skipped, r.holds()).into(),
                r.name.clone(),
                r.flow.clone(),
                r.expected.unwrap_or("-").into(),
                r.static_verdict.unwrap_or("-").into(),
                r.observed.unwrap_or("-").into(),
                r.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = table(&["", "EXPECT", "FLOW", "EXPECTED", "STATIC", "OBSERVED", ""], &cells);
    let failed = rows.iter().filter(|r| !r.holds()).count();
    let skipped = rows.iter().filter(|r| r.skipped).count();
    let tested = rows.len() - skipped;
    let _ = write!(out, "\n{} of {tested} expectations hold with real packets", tested - failed);
    if skipped > 0 {
        let _ = write!(out, "; {skipped} skipped while a controller or node is down");
    }
    out.push_str(".\n");
    out
}

/// The nodes' part of `lab test`: DF probes on every path, the wire, untagged VLAN overlays.
pub fn node_checks_text(c: &NodeChecks) -> String {
    let word = |o: &Option<super::probe::DfOutcome>| match o {
        Some(super::probe::DfOutcome::Crossed) => "crossed",
        Some(super::probe::DfOutcome::Lost) => "lost",
        Some(super::probe::DfOutcome::Refused) => "refused",
        None => "-",
    };
    let cells: Vec<Vec<String>> = c
        .mtu
        .iter()
        .map(|r| {
            vec![
                verdict(r.skipped, r.holds()).into(),
                r.overlay.clone(),
                format!("{} -> {}", r.from, r.to),
                r.path.clone(),
                r.mtu.to_string(),
                word(&r.at_mtu).into(),
                word(&r.over_mtu).into(),
                r.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = String::from("\nvNIC MTU, DF packets on every path:\n");
    out += &table(&["", "OVERLAY", "PATH", "VIA", "MTU", "AT MTU", "MTU+1", ""], &cells);
    for u in &c.untagged {
        let _ = writeln!(out, "note: {u}");
    }
    if let Some(w) = &c.wire {
        out.push('\n');
        out += &nodestatus::wire_text(w);
    }
    for p in &c.wire_problems {
        let _ = writeln!(out, "FAIL: {p}");
    }
    let failed = c.mtu.iter().filter(|r| !r.holds()).count();
    let _ = writeln!(
        out,
        "\n{} of {} paths carry exactly their vNIC MTU; the wire {}.",
        c.mtu.len() - failed,
        c.mtu.len(),
        match (&c.wire, c.wire_problems.is_empty()) {
            (_, false) => "does NOT hold",
            (Some(_), true) => "holds (ESP in UDP only between PDCs)",
            (None, true) => "has no internet to check (one PDC)",
        }
    );
    out
}

/// A row's first column in `lab test`.
fn verdict(skipped: bool, holds: bool) -> &'static str {
    match (skipped, holds) {
        (true, _) => "skip",
        (false, true) => "ok",
        (false, false) => "FAIL",
    }
}
