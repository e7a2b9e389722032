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
/// An IKE SA still connecting after this long is waiting out IKE's retransmission backoff
/// (after a long outage, the next try can be a minute away): it is dropped and started afresh.
const STUCK_CONNECTING: Duration = Duration::from_secs(10);

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
    /// Since when a connection's IKE SA has been seen connecting (not established).
    connecting_since: BTreeMap<String, Instant>,
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
        let now = Instant::now();
        for (connection, peer) in &peers.by_connection {
            let ike = sas.iter().find(|sa| sa.name == *connection).map(|sa| sa.established);
            let up = ike == Some(true) && children.contains(connection);
            status.sas.insert(peer.node.clone(), up);
            let connecting_for = match ike {
                Some(false) => Some(now - *self.connecting_since.entry(connection.clone()).or_insert(now)),
                _ => {
                    self.connecting_since.remove(connection);
                    None
                }
            };
            let since_initiated = self.last_initiated.get(connection).map(|t| now - *t);
            let what = step(peer.initiates, ike, connecting_for, since_initiated);
            if what == Step::Restart {
                eprintln!("meshwork agent: the SA with {} is stuck connecting; starting it afresh", peer.node);
                let _ = strongswan::terminate_ike(dir, None, connection);
                self.connecting_since.remove(connection);
            }
            if what != Step::Nothing {
                self.last_initiated.insert(connection.clone(), now);
                self.restarts += 1;
                match strongswan::initiate_detached(dir, None, connection) {
                    Err(e) => eprintln!("meshwork agent: cannot start the SA with {}: {e}", peer.node),
                    Ok(()) if what == Step::Initiate => {
                        eprintln!("meshwork agent: the SA with {} is down; starting it again", peer.node)
                    }
                    Ok(()) => {}
                }
            }
        }
        status.sa_restarts = self.restarts;
        status
    }
}

/// What the agent does about one peer's SA in a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Nothing,
    /// Start it: charon holds none.
    Initiate,
    /// Drop the one that is stuck connecting and start afresh.
    Restart,
}

/// `ike`: the connection's IKE SA in charon (Some(true) established, Some(false) connecting,
/// None none); how long it has been connecting, and since the agent last started it. Only the
/// initiating side acts, so two SAs never race.
fn step(
    initiates: bool,
    ike: Option<bool>,
    connecting_for: Option<Duration>,
    since_initiated: Option<Duration>,
) -> Step {
    match (initiates, ike) {
        (false, _) | (true, Some(true)) => Step::Nothing,
        (true, Some(false)) if connecting_for.is_some_and(|d| d >= STUCK_CONNECTING) => Step::Restart,
        (true, Some(false)) => Step::Nothing,
        (true, None) if since_initiated.is_some_and(|d| d < REINITIATE_EVERY) => Step::Nothing,
        (true, None) => Step::Initiate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Option<Duration> = |s| Some(Duration::from_secs(s));

    #[test]
    fn only_the_initiator_starts_a_missing_sa_and_not_twice_in_a_row() {
        assert_eq!(step(true, None, None, None), Step::Initiate);
        assert_eq!(step(true, None, None, S(1)), Step::Nothing, "started a second ago");
        assert_eq!(step(true, None, None, S(5)), Step::Initiate);
        assert_eq!(step(false, None, None, None), Step::Nothing, "the responder waits");
        assert_eq!(step(true, Some(true), None, None), Step::Nothing);
    }

    #[test]
    fn an_sa_stuck_connecting_is_started_afresh() {
        assert_eq!(step(true, Some(false), S(2), None), Step::Nothing, "still in its first tries");
        assert_eq!(step(true, Some(false), S(10), None), Step::Restart, "waiting out IKE's backoff");
        assert_eq!(step(false, Some(false), S(60), None), Step::Nothing);
    }
}
