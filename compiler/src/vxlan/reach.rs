//! Whether two vNICs reach each other, and why: overlays are layer-2 segments of their own, so
//! two vNICs talk exactly when they are on the same overlay (one rule, one VNI, one inner VLAN),
//! whatever their addresses — tenants may reuse subnets and stay isolated. The path says how:
//! one node's bridge, VXLAN in clear within a PDC, or VXLAN through the IPsec tunnel across.

use super::net::{OverlayNet, Path, VnicNet, VxlanNet};

/// A vNIC by name; a node's name stands for its admin-overlay vNIC.
pub fn vnic<'a>(vx: &'a VxlanNet, name: &str) -> Option<(&'a OverlayNet, &'a VnicNet)> {
    // Names are one name space (nodes, vNICs, clients), so the first match is the only one.
    vx.overlays.iter().find_map(|o| o.vnics.iter().find(|v| v.name == name).map(|v| (o, v)))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach {
    pub reachable: bool,
    /// One sentence: the overlay(s) and, when reachable, the path.
    pub why: String,
}

fn overlay_text(vx: &VxlanNet, o: &OverlayNet) -> String {
    let vlan = o.vlan.map_or(String::new(), |v| format!(", VLAN {v}"));
    format!("`{}` (VNI {} on rule `{}`{vlan}, {})", o.name, o.vni, vx.rule_of(o).name, o.subnet)
}

pub fn reach(vx: &VxlanNet, from: (&OverlayNet, &VnicNet), to: (&OverlayNet, &VnicNet)) -> Reach {
    let ((fo, fv), (to_o, tv)) = (from, to);
    if !std::ptr::eq(fo, to_o) {
        let shared = if fo.subnet == to_o.subnet { " though they share a subnet" } else { "" };
        return Reach {
            reachable: false,
            why: format!(
                "isolated{shared}: {} is on overlay {}, {} on overlay {}; overlays are separate layer-2 segments",
                fv.name,
                overlay_text(vx, fo),
                tv.name,
                overlay_text(vx, to_o)
            ),
        };
    }
    let (Some(a), Some(b)) = (vx.node(&fv.node), vx.node(&tv.node)) else {
        return Reach { reachable: false, why: "a vNIC's node is unknown".into() };
    };
    let path = if a.name == b.name {
        format!("both on node {}, through its bridge", a.name)
    } else {
        match vx.path(a, b) {
            Some(Path::Clear(ip)) => {
                format!("VXLAN in clear within PDC {} from {} to {} ({ip})", a.pdc, a.name, b.name)
            }
            Some(Path::Ipsec(vtep)) => format!(
                "VXLAN across PDCs ({} -> {}) to {}'s VTEP {vtep}, inside the IPsec tunnel between their external addresses",
                a.pdc, b.pdc, b.name
            ),
            None => return Reach { reachable: false, why: format!("no path from {} to {}", a.name, b.name) },
        }
    };
    Reach { reachable: true, why: format!("same overlay {}: {path}", overlay_text(vx, fo)) }
}
