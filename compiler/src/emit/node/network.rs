//! `network.json`: what the runtime makes of a node's Linux network — the VXLAN devices
//! (`nolearning`, `proxy`, the rule's port, the listen address for `listen="admin"` rules),
//! a bridge per overlay, static FDB and permanent neighbour entries, MTUs, the admin-overlay
//! interface and the VTEP address. The structs are the file's schema: the runtime reads it back
//! with [`from_json`].

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::model::vxlan::{IfAddr, Mac};
use crate::network::Network;
use crate::vxlan::forwarding::NodeOverlay;
use crate::vxlan::names::ADMIN_OVERLAY_INTERFACE;
use crate::vxlan::{NodeNet, OverlayKind, Path, VxlanNet};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeNetwork {
    pub about: String,
    pub topology: String,
    pub node: String,
    pub pdc: String,
    pub admin: Interface,
    pub external: Option<Interface>,
    pub underlay_mtu: u32,
    /// This node's address inside the IPsec mesh (on `lo`), when it has peers in other PDCs.
    pub vtep: Option<Ipv4Addr>,
    pub admin_overlay: Option<AdminInterface>,
    /// Admin overlay first, then in declaration order.
    pub overlays: Vec<Overlay>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub interface: String,
    /// With the network's prefix (a bare address is a /32).
    pub address: String,
}

/// The node's own vNIC on the admin overlay (`adminoverlay_0`, as Danube names it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminInterface {
    pub name: String,
    /// The bridge of the admin overlay it hangs off.
    pub bridge: String,
    pub address: Ipv4Net,
    pub mac: Mac,
    /// Inner 802.1Q tag.
    pub vlan: u16,
    pub mtu: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlay {
    pub name: String,
    pub kind: String,
    pub rule: String,
    pub vni: u32,
    pub vlan: Option<u16>,
    pub subnet: Ipv4Net,
    pub device: VxlanDevice,
    pub bridge: Bridge,
    /// This node's vNICs (VMs) on the overlay: ports of the bridge.
    pub vnics: Vec<Vnic>,
    /// One per remote vNIC: its MAC -> where its node is reached.
    pub fdb: Vec<Fdb>,
    /// One per remote vNIC, on the VXLAN device: answered locally by proxy ARP.
    pub neighbours: Vec<Neighbour>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VxlanDevice {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    /// The source address; none lets the kernel source each packet by route (admin address in
    /// clear, the VTEP through the tunnel).
    pub local: Option<Ipv4Addr>,
    pub learning: bool,
    pub proxy: bool,
    pub mtu: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bridge {
    pub name: String,
    pub mtu: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vnic {
    pub name: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub mac: Mac,
    pub mtu: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fdb {
    pub mac: Mac,
    pub dst: Ipv4Addr,
    /// "clear" (same PDC, to the admin address) or "ipsec" (to the VTEP, through the tunnel).
    pub via: String,
    pub vnic: String,
    pub node: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

fn interface(name: &str, a: IfAddr) -> Interface {
    Interface { interface: name.to_string(), address: a.to_string() }
}

fn overlay(vx: &VxlanNet, o: &NodeOverlay<'_>) -> Overlay {
    let ov = o.overlay;
    Overlay {
        name: ov.name.clone(),
        kind: match ov.kind {
            OverlayKind::Admin => "admin",
            OverlayKind::Tenant => "tenant",
        }
        .to_string(),
        rule: vx.rule_of(ov).name.clone(),
        vni: ov.vni,
        vlan: ov.vlan,
        subnet: ov.subnet,
        device: VxlanDevice {
            name: o.device.clone(),
            vni: ov.vni,
            port: o.port,
            local: o.local,
            learning: false,
            proxy: true,
            mtu: o.mtu,
        },
        bridge: Bridge { name: o.bridge.clone(), mtu: o.mtu },
        vnics: o
            .local_vnics
            .iter()
            .map(|v| Vnic { name: v.name.clone(), ip: v.ip, prefix: ov.subnet.prefix_len(), mac: v.mac, mtu: o.mtu })
            .collect(),
        fdb: o
            .fdb
            .iter()
            .map(|f| Fdb {
                mac: f.mac,
                dst: f.dst,
                via: match f.path {
                    Path::Clear(_) => "clear",
                    Path::Ipsec(_) => "ipsec",
                }
                .to_string(),
                vnic: f.vnic.clone(),
                node: f.node.clone(),
            })
            .collect(),
        neighbours: o.neighbours.iter().map(|n| Neighbour { ip: n.ip, mac: n.mac }).collect(),
    }
}

pub fn build(net: &Network, node: &NodeNet) -> NodeNetwork {
    let vx = &net.vxlan;
    let overlays = vx.node_overlays(node);
    let admin_overlay = overlays.iter().find(|o| o.overlay.kind == OverlayKind::Admin).and_then(|o| {
        let v = node.admin_vnic?;
        Some(AdminInterface {
            name: ADMIN_OVERLAY_INTERFACE.to_string(),
            bridge: o.bridge.clone(),
            address: Ipv4Net::new(v.ip, o.overlay.subnet.prefix_len()).ok()?,
            mac: v.mac,
            vlan: o.overlay.vlan.unwrap_or_default(),
            mtu: o.mtu,
        })
    });
    let overlays: Vec<Overlay> = overlays.iter().map(|o| overlay(vx, o)).collect();
    NodeNetwork {
        about: format!(
            "meshwork: the Linux network of node {} (VXLAN devices, bridges, FDB and neighbour entries); \
             generated, do not edit",
            node.name
        ),
        topology: net.name.clone(),
        node: node.name.clone(),
        pdc: node.pdc.clone(),
        admin: interface(&node.admin_interface, node.admin),
        external: node.external.map(|e| interface(&node.external_interface, e)),
        underlay_mtu: node.underlay_mtu,
        vtep: node.vtep.filter(|_| vx.ipsec_peers(node).next().is_some()),
        admin_overlay,
        overlays,
    }
}

pub fn to_json(net: &Network, node: &NodeNet) -> String {
    let mut s = serde_json::to_string_pretty(&build(net, node)).expect("network.json serialises");
    s.push('\n');
    s
}

pub fn from_json(text: &str) -> Result<NodeNetwork, serde_json::Error> {
    serde_json::from_str(text)
}
