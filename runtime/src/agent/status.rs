//! What the agent knows and tells: `/status` (JSON) and `/metrics` (Prometheus text).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

/// Where a connected client sits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    /// `server` or `engine-<k>`.
    pub unit: String,
    pub address: Option<std::net::Ipv4Addr>,
    /// When the client connected there (seconds since the epoch, OpenVPN's "Connected Since"):
    /// when two controllers claim a client, the newer connection wins.
    pub since: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Reconcile {
    /// Seconds since the epoch.
    pub at: f64,
    pub duration_ms: f64,
    pub ok: bool,
    pub error: Option<String>,
    /// What started it: `event: ...` (what changed), `tick`, `resync`, `reload` or `start`.
    pub trigger: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// The controller this agent keeps (empty on a node).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub controller: String,
    /// On a node: its SAs, forwarding entries and plaintext drops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<super::node::NodeStatus>,
    pub topology: String,
    pub checksum: String,
    /// Problem with the topology file on disk (the agent keeps the last good one).
    pub topology_error: Option<String>,
    pub last_reconcile: Option<Reconcile>,
    pub reconciles: u64,
    pub reconcile_errors: u64,
    /// Resources put back after they changed outside meshwork, by kind.
    pub drift_repairs: BTreeMap<String, u64>,
    /// Units (`server`, `engine-<k>`): running or not.
    pub units: BTreeMap<String, bool>,
    /// Client name -> where it sits.
    pub clients: BTreeMap<String, Location>,
    /// Clients on other controllers, as believed peers tell: client name -> controller.
    pub remote_clients: BTreeMap<String, String>,
    /// Every other controller: heard or silent, agreeing on the checksum or not.
    pub peers: BTreeMap<String, super::mesh::PeerStatus>,
    /// Routes the agent keeps (protocol 78): clients', peers' LANs and overlay addresses.
    pub agent_routes: usize,
    /// Heartbeats sent to the clients this controller holds, since the agent started.
    pub heartbeats_sent: u64,
    /// Subsystems in backoff after an error: name -> (error, seconds until the next try).
    pub backoff: BTreeMap<String, String>,
}

impl Status {
    pub fn json(&self) -> serde_json::Value {
        let mut engines: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for unit in self.units.keys() {
            engines.entry(unit).or_default();
        }
        for (name, loc) in &self.clients {
            engines.entry(&loc.unit).or_default().push(name);
        }
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["units_clients"] = serde_json::json!(engines);
        v
    }

    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP meshwork_info Topology and checksum this agent applies.");
        let _ = writeln!(out, "# TYPE meshwork_info gauge");
        let host = match &self.node {
            Some(n) => format!("node=\"{}\"", n.node),
            None => format!("controller=\"{}\"", self.controller),
        };
        let _ =
            writeln!(out, "meshwork_info{{{host},topology=\"{}\",checksum=\"{}\"}} 1", self.topology, self.checksum);
        let _ = writeln!(out, "# HELP meshwork_reconciles_total Reconcile passes.");
        let _ = writeln!(out, "# TYPE meshwork_reconciles_total counter");
        let _ = writeln!(out, "meshwork_reconciles_total {}", self.reconciles);
        let _ = writeln!(out, "# HELP meshwork_reconcile_errors_total Reconcile passes that failed.");
        let _ = writeln!(out, "# TYPE meshwork_reconcile_errors_total counter");
        let _ = writeln!(out, "meshwork_reconcile_errors_total {}", self.reconcile_errors);
        let _ =
            writeln!(out, "# HELP meshwork_drift_repairs_total Resources repaired after a change outside meshwork.");
        let _ = writeln!(out, "# TYPE meshwork_drift_repairs_total counter");
        for (kind, n) in &self.drift_repairs {
            let _ = writeln!(out, "meshwork_drift_repairs_total{{kind=\"{kind}\"}} {n}");
        }
        if let Some(r) = &self.last_reconcile {
            let _ = writeln!(out, "# HELP meshwork_last_reconcile_timestamp_seconds When the last reconcile finished.");
            let _ = writeln!(out, "# TYPE meshwork_last_reconcile_timestamp_seconds gauge");
            let _ = writeln!(out, "meshwork_last_reconcile_timestamp_seconds {:.3}", r.at);
            let _ = writeln!(out, "# HELP meshwork_last_reconcile_duration_seconds How long the last reconcile took.");
            let _ = writeln!(out, "# TYPE meshwork_last_reconcile_duration_seconds gauge");
            let _ = writeln!(out, "meshwork_last_reconcile_duration_seconds {:.6}", r.duration_ms / 1000.0);
        }
        let _ = writeln!(out, "# HELP meshwork_unit_up Whether an OpenVPN unit runs.");
        let _ = writeln!(out, "# TYPE meshwork_unit_up gauge");
        for (unit, up) in &self.units {
            let _ = writeln!(out, "meshwork_unit_up{{unit=\"{unit}\"}} {}", u8::from(*up));
        }
        let _ = writeln!(out, "# HELP meshwork_clients Connected clients per unit.");
        let _ = writeln!(out, "# TYPE meshwork_clients gauge");
        let mut per_unit: BTreeMap<&str, usize> = self.units.keys().map(|u| (u.as_str(), 0)).collect();
        for loc in self.clients.values() {
            *per_unit.entry(&loc.unit).or_default() += 1;
        }
        for (unit, n) in per_unit {
            let _ = writeln!(out, "meshwork_clients{{unit=\"{unit}\"}} {n}");
        }
        if !self.peers.is_empty() {
            let _ =
                writeln!(out, "# HELP meshwork_peer_up Whether a peer controller answered within the silence limit.");
            let _ = writeln!(out, "# TYPE meshwork_peer_up gauge");
            for (peer, p) in &self.peers {
                let _ = writeln!(out, "meshwork_peer_up{{peer=\"{peer}\"}} {}", u8::from(p.live));
            }
            let _ = writeln!(
                out,
                "# HELP meshwork_peer_checksum_match Whether a peer runs the same topology checksum and CA (1), another (0); absent until heard."
            );
            let _ = writeln!(out, "# TYPE meshwork_peer_checksum_match gauge");
            for (peer, p) in &self.peers {
                if let Some(agrees) = p.agrees {
                    let _ = writeln!(out, "meshwork_peer_checksum_match{{peer=\"{peer}\"}} {}", u8::from(agrees));
                }
            }
            let _ = writeln!(out, "# HELP meshwork_peer_clients Clients a peer says it holds.");
            let _ = writeln!(out, "# TYPE meshwork_peer_clients gauge");
            for (peer, p) in &self.peers {
                let _ = writeln!(out, "meshwork_peer_clients{{peer=\"{peer}\"}} {}", p.clients);
            }
        }
        if let Some(n) = &self.node {
            node_metrics(&mut out, n);
        }
        let _ = writeln!(out, "# HELP meshwork_agent_routes Routes the agent keeps (protocol 78).");
        let _ = writeln!(out, "# TYPE meshwork_agent_routes gauge");
        let _ = writeln!(out, "meshwork_agent_routes {}", self.agent_routes);
        let _ = writeln!(out, "# HELP meshwork_heartbeats_sent_total Heartbeats sent to held clients.");
        let _ = writeln!(out, "# TYPE meshwork_heartbeats_sent_total counter");
        let _ = writeln!(out, "meshwork_heartbeats_sent_total {}", self.heartbeats_sent);
        out
    }
}

fn node_metrics(out: &mut String, n: &super::node::NodeStatus) {
    let _ = writeln!(
        out,
        "# HELP meshwork_ipsec_sa_up Whether the IPsec SA with a peer node is established (child installed)."
    );
    let _ = writeln!(out, "# TYPE meshwork_ipsec_sa_up gauge");
    for (peer, up) in &n.sas {
        let _ = writeln!(out, "meshwork_ipsec_sa_up{{peer=\"{peer}\"}} {}", u8::from(*up));
    }
    let _ = writeln!(out, "# HELP meshwork_ipsec_sa_restarts_total SAs the agent started again after they went down.");
    let _ = writeln!(out, "# TYPE meshwork_ipsec_sa_restarts_total counter");
    let _ = writeln!(out, "meshwork_ipsec_sa_restarts_total {}", n.sa_restarts);
    let _ = writeln!(out, "# HELP meshwork_fdb_entries Static FDB entries on a VXLAN device.");
    let _ = writeln!(out, "# TYPE meshwork_fdb_entries gauge");
    for (device, count) in &n.fdb_entries {
        let _ = writeln!(out, "meshwork_fdb_entries{{device=\"{device}\"}} {count}");
    }
    let _ = writeln!(out, "# HELP meshwork_neighbour_entries Permanent neighbour entries on a VXLAN device.");
    let _ = writeln!(out, "# TYPE meshwork_neighbour_entries gauge");
    for (device, count) in &n.neighbour_entries {
        let _ = writeln!(out, "meshwork_neighbour_entries{{device=\"{device}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "# HELP meshwork_plaintext_vxlan_dropped_packets_total Plaintext VXLAN dropped on the external interface."
    );
    let _ = writeln!(out, "# TYPE meshwork_plaintext_vxlan_dropped_packets_total counter");
    for (direction, packets) in &n.plaintext_drops {
        let _ = writeln!(out, "meshwork_plaintext_vxlan_dropped_packets_total{{direction=\"{direction}\"}} {packets}");
    }
}

#[cfg(test)]
mod tests {
    use super::super::node::NodeStatus;
    use super::*;

    #[test]
    fn a_nodes_metrics_name_the_node_its_sas_tables_and_plaintext_drops() {
        let node = NodeStatus {
            node: "cn-2".into(),
            sas: [("cn-3".to_string(), true), ("cn-4".to_string(), false)].into(),
            fdb_entries: [("mw-vx12b600007c".to_string(), 2)].into(),
            neighbour_entries: [("mw-vx12b600007c".to_string(), 2)].into(),
            plaintext_drops: [("in".to_string(), 0), ("out".to_string(), 7)].into(),
            sa_restarts: 1,
        };
        let s = Status { topology: "two-pdc".into(), node: Some(node), ..Status::default() };
        let m = s.metrics();
        for line in [
            "meshwork_info{node=\"cn-2\",topology=\"two-pdc\",checksum=\"\"} 1",
            "meshwork_ipsec_sa_up{peer=\"cn-3\"} 1",
            "meshwork_ipsec_sa_up{peer=\"cn-4\"} 0",
            "meshwork_ipsec_sa_restarts_total 1",
            "meshwork_fdb_entries{device=\"mw-vx12b600007c\"} 2",
            "meshwork_neighbour_entries{device=\"mw-vx12b600007c\"} 2",
            "meshwork_plaintext_vxlan_dropped_packets_total{direction=\"out\"} 7",
        ] {
            assert!(m.lines().any(|l| l == line), "no {line:?} in\n{m}");
        }
        let json = s.json();
        assert!(json.get("controller").is_none(), "a node's status names no controller");
        assert_eq!(json["node"]["sas"]["cn-3"], true);
    }
}
