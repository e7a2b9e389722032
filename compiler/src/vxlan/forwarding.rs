//! What one node programs for each overlay it carries: the VXLAN device and its bridge, a
//! static FDB entry per remote vNIC (its MAC -> the address its node is reached at: the admin
//! address in clear within a PDC, the VTEP through IPsec across PDCs) and a permanent neighbour
//! entry per remote vNIC (its IP -> MAC, answered by the device's proxy ARP), with no learning
//! and no flooding. `network.json` renders this; the runtime applies it.

use std::net::Ipv4Addr;

use super::names;
use super::net::{NodeNet, OverlayKind, OverlayNet, Path, VxlanNet};
use crate::model::vxlan::{Listen, Mac};

#[derive(Clone, Debug)]
pub struct NodeOverlay<'a> {
    pub overlay: &'a OverlayNet,
    pub device: String,
    pub bridge: String,
    pub port: u16,
    /// The rule's listen address: the node's admin address for `listen="admin"`, else none.
    pub local: Option<Ipv4Addr>,
    pub mtu: u32,
    /// This node's own vNICs on the overlay.
    pub local_vnics: Vec<&'a super::VnicNet>,
    pub fdb: Vec<FdbEntry>,
    pub neighbours: Vec<Neighbour>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: Mac,
    pub dst: Ipv4Addr,
    pub path: Path,
    /// The vNIC behind it, and its node.
    pub vnic: String,
    pub node: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

impl VxlanNet {
    /// The overlays `node` carries (those with a vNIC on it; the admin overlay on every node),
    /// admin overlay first, then in declaration order.
    pub fn node_overlays<'a>(&'a self, node: &'a NodeNet) -> Vec<NodeOverlay<'a>> {
        self.overlays
            .iter()
            .filter(|o| o.vnics.iter().any(|v| v.node == node.name))
            .map(|o| {
                let rule = self.rule_of(o);
                let mut fdb = Vec::new();
                let mut neighbours = Vec::new();
                for v in o.vnics.iter().filter(|v| v.node != node.name) {
                    let Some(peer) = self.node(&v.node) else { continue };
                    let Some(path) = self.path(node, peer) else { continue };
                    fdb.push(FdbEntry {
                        mac: v.mac,
                        dst: path.destination(),
                        path,
                        vnic: v.name.clone(),
                        node: v.node.clone(),
                    });
                    neighbours.push(Neighbour { ip: v.ip, mac: v.mac });
                }
                NodeOverlay {
                    overlay: o,
                    device: names::vxlan_device(rule.port, o.vni),
                    bridge: names::bridge(rule.port, o.vni),
                    port: rule.port,
                    local: (rule.listen == Listen::Admin).then_some(node.admin.ip),
                    mtu: rule.mtu,
                    local_vnics: o
                        .vnics
                        .iter()
                        .filter(|v| v.node == node.name && o.kind == OverlayKind::Tenant)
                        .collect(),
                    fdb,
                    neighbours,
                }
            })
            .collect()
    }
}
