//! What the agent does for a compute node besides reconciling it: keeps the IPsec mesh up
//! (charon gives up on a peer that was not configured when it first tried, so the agent starts
//! the SAs this node initiates again when none exists) and reports SAs per peer, forwarding
//! entries and the plaintext VXLAN the node's table dropped.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use meshwork_compiler::emit::node::nftables::{PLAINTEXT_IN, PLAINTEXT_OUT};
use meshwork_compiler::network::Network;
use meshwork_compiler::vxlan::names::ike_connection;
use serde::Serialize;

use crate::host::desired::Desired;
use crate::host::resource::{Kind, Spec};
use crate::node::strongswan;

/// How often one peer's SA is started again while it stays down.
const REINITIATE_EVERY: Duration = Duration::from_secs(3);

/// A node's IPsec peers, from the topology: connection name -> whether this node initiates.
#[derive(Clone, Debug, Default)]
pub struct Peers {
    pub by_connection: BTreeMap<String, Peer>,
}

#[derive(Clone, Debug)]
pub struct Peer {
    pub node: String,
    pub initiates: bool,
}

impl Peers {
    pub fn of(net: &Network, node: &str) -> Peers {
        let Some(me) = net.vxlan.node(node) else { return Peers::default() };
        let by_connection = net
            .vxlan
            .ipsec_peers(me)
            .map(|(pair, peer)| {
                (ike_connection(&peer.name), Peer { node: peer.name.clone(), initiates: pair.low == me.name })
            })
            .collect();
        Peers { by_connection }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeStatus {
    pub node: String,
    /// Peer node -> whether an IKE SA with it is established and its child installed.
    pub sas: BTreeMap<String, bool>,
    /// VXLAN device -> static FDB entries the topology wants there.
    pub fdb_entries: BTreeMap<String, usize>,
    /// VXLAN device -> permanent neighbour entries the topology wants there.
    pub neighbour_entries: BTreeMap<String, usize>,
    /// Plaintext VXLAN dropped by the node's table, by direction ("in", "out"), in packets.
    pub plaintext_drops: BTreeMap<String, u64>,
    /// Times the agent started an SA that was down.
    pub sa_restarts: u64,
}

/// Remembers when each peer's SA was last started again.
#[derive(Default)]
pub struct Tracker {
    last_initiated: BTreeMap<String, Instant>,
    restarts: u64,
}

impl Tracker {
    /// Reads the node's SAs and counters, and starts again the SAs this node initiates that are
    /// gone. `dir` is charon's working directory (None: the node has no IPsec peers).
    pub fn track(&mut self, node: &str, desired: &Desired, peers: &Peers, dir: Option<&Path>) -> NodeStatus {
        let mut status = NodeStatus { node: node.to_string(), ..NodeStatus::default() };
        for r in &desired.resources {
            match &r.spec {
                Spec::Fdb { device, entries } if r.id.kind == Kind::Fdb => {
                    status.fdb_entries.insert(device.clone(), entries.len());
                }
                Spec::Neighbours { device, entries } => {
                    status.neighbour_entries.insert(device.clone(), entries.len());
                }
                _ => {}
            }
        }
        if let Ok(counters) = crate::nft::counters_by_comment() {
            for (direction, comment) in [("in", PLAINTEXT_IN), ("out", PLAINTEXT_OUT)] {
                status.plaintext_drops.insert(direction.into(), counters.get(comment).copied().unwrap_or(0));
            }
        }
        let Some(dir) = dir.filter(|_| !peers.by_connection.is_empty()) else { return status };
        // charon not answering (dead, or starting): nothing to start SAs with; the reconcile
        // brings it back.
        let Ok(sas) = strongswan::ike_sas(dir, None) else {
            status.sas = peers.by_connection.values().map(|p| (p.node.clone(), false)).collect();
            return status;
        };
        let children: Vec<String> =
            strongswan::installed_children(dir, None).unwrap_or_default().into_iter().map(|c| c.name).collect();
        for (connection, peer) in &peers.by_connection {
            let up = sas.iter().any(|sa| sa.name == *connection && sa.established) && children.contains(connection);
            status.sas.insert(peer.node.clone(), up);
            let trying = sas.iter().any(|sa| sa.name == *connection);
            let recently = self.last_initiated.get(connection).is_some_and(|t| t.elapsed() < REINITIATE_EVERY);
            if peer.initiates && !trying && !recently {
                self.last_initiated.insert(connection.clone(), Instant::now());
                self.restarts += 1;
                if let Err(e) = strongswan::initiate_detached(dir, None, connection) {
                    eprintln!("meshwork agent: cannot start the SA with {}: {e}", peer.node);
                } else {
                    eprintln!("meshwork agent: the SA with {} is down; starting it again", peer.node);
                }
            }
        }
        status.sa_restarts = self.restarts;
        status
    }
}
