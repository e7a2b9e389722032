//! The SmartOS form of a node's overlays, as Danube Cloud writes it: per overlay rule a virtual
//! ARP table for the `files` search plugin (overlay_files(5): `{"<mac>": {"ip": …, "port": …,
//! "arp": …}}`, every vNIC on the rule except the node's own, reached at the peer node's
//! external address across PDCs and its admin address within one), and the `usbkey-config`
//! lines that create the rules (`overlay_rule_<name>="-e vxlan …"`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::vxlan::Listen;
use crate::vxlan::{NodeNet, VxlanNet};

/// Where a SmartOS node keeps the rules' files (the `files/config` property points here).
pub const OVERLAY_FILES_ON_NODE: &str = "/opt/custom/networking";

#[derive(Serialize)]
struct Destination {
    ip: std::net::Ipv4Addr,
    port: u16,
    arp: std::net::Ipv4Addr,
}

/// The indices (into `vx.rules`) of the rules `node` carries, in order.
fn rules_of(vx: &VxlanNet, node: &NodeNet) -> BTreeSet<usize> {
    vx.overlays_on(&node.name).map(|o| o.rule).collect()
}

/// `(rule name, file content)` for each rule the node carries.
pub fn overlay_files(vx: &VxlanNet, node: &NodeNet) -> Vec<(String, String)> {
    rules_of(vx, node)
        .into_iter()
        .map(|r| {
            let rule = &vx.rules[r];
            let mut table: BTreeMap<String, Destination> = BTreeMap::new();
            for o in vx.overlays.iter().filter(|o| o.rule == r) {
                for v in o.vnics.iter().filter(|v| v.node != node.name) {
                    let Some(peer) = vx.node(&v.node) else { continue };
                    // SmartOS protects whole node pairs with IPsec policy on their external
                    // addresses (esdc-overlay), so across PDCs the peer's external address.
                    let ip = match (peer.pdc == node.pdc, peer.external) {
                        (false, Some(e)) => e.ip,
                        _ => peer.admin.ip,
                    };
                    table.insert(v.mac.to_string(), Destination { ip, port: rule.port, arp: v.ip });
                }
            }
            let mut s = serde_json::to_string_pretty(&table).expect("overlay file serialises");
            s.push('\n');
            (rule.name.clone(), s)
        })
        .collect()
}

pub fn usbkey_config(vx: &VxlanNet, node: &NodeNet) -> String {
    let mut s =
        format!("# meshwork: SmartOS overlay rules of node {} (/usbkey/config); generated, do not edit.\n", node.name);
    for r in rules_of(vx, node) {
        let rule = &vx.rules[r];
        let listen = match rule.listen {
            Listen::Admin => node.admin.ip.to_string(),
            Listen::Any => "0.0.0.0".to_string(),
        };
        s += &format!(
            "overlay_rule_{name}=\"-e vxlan -p vxlan/listen_ip={listen} -p vxlan/listen_port={port} -s files \
             -p files/config={OVERLAY_FILES_ON_NODE}/{name}_overlay.json -p mtu={mtu}\"\n",
            name = rule.name,
            port = rule.port,
            mtu = rule.mtu,
        );
    }
    s
}
