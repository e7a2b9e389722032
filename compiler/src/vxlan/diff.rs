//! The VXLAN part of `meshwork diff`: nodes, overlay rules, overlays, vNICs and IPsec pairs,
//! each by name, each with the attributes that change (a vNIC moved to another node, an MTU
//! recomputed, an address or MAC that moves). Every object is flattened to named attribute
//! strings once, so one generic comparison serves every kind and stays deterministic.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::net::{OverlayKind, VxlanNet};
use crate::diff::{AttrChange, Op};

/// Kinds in the order they are shown.
const KINDS: [&str; 5] = ["node", "overlay rule", "overlay", "vnic", "ipsec pair"];

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectChange {
    pub op: Op,
    pub kind: &'static str,
    pub name: String,
    /// For a change: what changes; for an addition or removal: what it is.
    pub attributes: Vec<AttrChange>,
}

type Attrs = BTreeMap<&'static str, String>;

fn objects(vx: &VxlanNet) -> BTreeMap<(usize, String), Attrs> {
    let mut out = BTreeMap::new();
    for n in &vx.nodes {
        let mut a = Attrs::new();
        a.insert("pdc", n.pdc.clone());
        a.insert("admin", n.admin.to_string());
        if let Some(e) = n.external {
            a.insert("external", e.to_string());
        }
        a.insert("underlay mtu", n.underlay_mtu.to_string());
        if let Some(v) = n.vtep {
            a.insert("vtep", v.to_string());
        }
        if let Some(v) = n.admin_vnic {
            a.insert("admin overlay address", v.ip.to_string());
        }
        out.insert((0, n.name.clone()), a);
    }
    for r in &vx.rules {
        let mut a = Attrs::new();
        a.insert("port", r.port.to_string());
        a.insert("mtu", if r.mtu_computed { format!("{} (computed)", r.mtu) } else { r.mtu.to_string() });
        a.insert("spans pdcs", r.spans_pdcs.to_string());
        out.insert((1, r.name.clone()), a);
    }
    for o in &vx.overlays {
        let mut a = Attrs::new();
        a.insert("rule", vx.rule_of(o).name.clone());
        a.insert("vni", o.vni.to_string());
        a.insert("subnet", o.subnet.to_string());
        if let Some(v) = o.vlan {
            a.insert("vlan", v.to_string());
        }
        out.insert((2, o.name.clone()), a);
        if o.kind == OverlayKind::Admin {
            continue; // its vNICs are the nodes' `admin overlay address`
        }
        for v in &o.vnics {
            let mut a = Attrs::new();
            a.insert("overlay", o.name.clone());
            a.insert("node", v.node.clone());
            a.insert("ip", v.ip.to_string());
            a.insert("mac", v.mac.to_string());
            out.insert((3, v.name.clone()), a);
        }
    }
    for p in &vx.ipsec.pairs {
        out.insert((4, p.to_string()), Attrs::new());
    }
    out
}

fn listing(attrs: &Attrs, op: Op) -> Vec<AttrChange> {
    attrs
        .iter()
        .map(|(k, v)| AttrChange {
            op,
            attribute: (*k).to_string(),
            old: (op == Op::Remove).then(|| v.clone()),
            new: (op == Op::Add).then(|| v.clone()),
        })
        .collect()
}

pub fn diff(old: &VxlanNet, new: &VxlanNet) -> Vec<ObjectChange> {
    let (old, new) = (objects(old), objects(new));
    let mut keys: Vec<&(usize, String)> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let (kind, name) = (KINDS[key.0], key.1.clone());
        match (old.get(key), new.get(key)) {
            (None, Some(n)) => out.push(ObjectChange { op: Op::Add, kind, name, attributes: listing(n, Op::Add) }),
            (Some(o), None) => {
                out.push(ObjectChange { op: Op::Remove, kind, name, attributes: listing(o, Op::Remove) })
            }
            (Some(o), Some(n)) if o != n => {
                let mut names: Vec<&&str> = o.keys().chain(n.keys()).collect();
                names.sort();
                names.dedup();
                let attributes = names
                    .into_iter()
                    .filter_map(|k| {
                        let (a, b) = (o.get(*k), n.get(*k));
                        let op = match (a, b) {
                            (None, Some(_)) => Op::Add,
                            (Some(_), None) => Op::Remove,
                            (Some(x), Some(y)) if x != y => Op::Change,
                            _ => return None,
                        };
                        Some(AttrChange { op, attribute: (*k).to_string(), old: a.cloned(), new: b.cloned() })
                    })
                    .collect();
                out.push(ObjectChange { op: Op::Change, kind, name, attributes });
            }
            _ => {}
        }
    }
    out
}

/// The section of the text diff: one line per object, its attributes below a change.
pub fn render(out: &mut String, changes: &[ObjectChange]) {
    if changes.is_empty() {
        return;
    }
    out.push_str("\nnodes and overlays\n");
    for c in changes {
        let marker = c.op.marker();
        match c.op {
            Op::Change => {
                let _ = writeln!(out, "  {marker} {} {}", c.kind, c.name);
                for a in &c.attributes {
                    let (m, old, new) = (a.op.marker(), a.old.as_deref(), a.new.as_deref());
                    let _ = match (old, new) {
                        (Some(x), Some(y)) => writeln!(out, "      {m} {}: {x} → {y}", a.attribute),
                        (Some(x), None) | (None, Some(x)) => writeln!(out, "      {m} {}: {x}", a.attribute),
                        (None, None) => writeln!(out, "      {m} {}", a.attribute),
                    };
                }
            }
            Op::Add | Op::Remove => {
                let what: Vec<String> = c
                    .attributes
                    .iter()
                    .filter_map(|a| a.old.as_ref().or(a.new.as_ref()).map(|v| format!("{} {v}", a.attribute)))
                    .collect();
                let detail = if what.is_empty() { String::new() } else { format!(" ({})", what.join(", ")) };
                let _ = writeln!(out, "  {marker} {} {}{detail}", c.kind, c.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::network as net;

    const OLD: &str = r#"
topology "t"
node "cn-1" pdc="a" admin="10.100.0.11/24" external="198.18.0.11/24"
node "cn-2" pdc="b" admin="10.100.1.12/24" external="198.18.1.12/24"
node "cn-3" pdc="b" admin="10.100.1.13/24" external="198.18.1.13/24"
overlay-rule "tenants"
vxlan "x" rule="tenants" vni=5 subnet="10.44.0.0/24" {
    vnic "v1" node="cn-1"
    vnic "v2" node="cn-2"
}
"#;

    #[test]
    fn a_moved_vnic_is_one_change_and_nothing_else_moves() {
        let new = OLD.replace("vnic \"v2\" node=\"cn-2\"", "vnic \"v2\" node=\"cn-3\"\n    vnic \"v3\" node=\"cn-3\"");
        let d = super::diff(&net(OLD).vxlan, &net(&new).vxlan);
        let text = {
            let mut s = String::new();
            super::render(&mut s, &d);
            s
        };
        assert!(text.contains("  ~ vnic v2\n      ~ node: cn-2 → cn-3\n"), "{text}");
        assert!(text.contains("  + vnic v3 (ip 10.44.0.3,"), "{text}");
        // Nothing else moved: v1 keeps its address and MAC, the nodes their VTEPs.
        assert!(!text.contains("vnic v1") && !text.contains("node cn-1"), "{text}");
        assert!(super::diff(&net(OLD).vxlan, &net(OLD).vxlan).is_empty());
    }
}
