//! Lowering of the VXLAN part: nodes, overlay rules, the admin overlay, overlays with their
//! vNICs, IPsec settings and the node firewall. Defaults are filled in here, each pointing at
//! the node it belongs to, so later rules always have a span to show.

use super::{arg_str, bounded, choice, name_arg, policy_of, port_of, proto_of, read, rule_action};
use crate::grammar;
use crate::model::Sp;
use crate::model::vxlan::*;
use crate::syntax::RawNode;
use crate::values;

fn interface(n: &RawNode, key: &str, default: &str) -> Sp<String> {
    n.prop(key)
        .and_then(|v| {
            values::as_str(v).filter(|s| values::interface(s).is_ok()).map(|s| Sp::new(s.to_string(), v.span))
        })
        .unwrap_or_else(|| Sp::new(default.to_string(), n.name_span))
}

pub fn node(n: &RawNode) -> Option<Node> {
    let name = name_arg(n)?;
    let mtu = bounded(n, &grammar::NODE, "mtu").unwrap_or_else(|| Sp::new(DEFAULT_UNDERLAY_MTU, name.span));
    Some(Node {
        pdc: n.prop("pdc").and_then(|v| {
            values::as_str(v).filter(|s| values::name(s).is_ok()).map(|s| Sp::new(s.to_string(), v.span))
        }),
        admin: n.prop("admin").and_then(|v| read(v, values::if_addr)),
        external: n.prop("external").and_then(|v| read(v, values::if_addr)),
        admin_interface: interface(n, "admin-interface", DEFAULT_ADMIN_INTERFACE),
        external_interface: interface(n, "external-interface", DEFAULT_EXTERNAL_INTERFACE),
        mtu,
        name,
        span: n.span,
    })
}

fn port(n: &RawNode, spec: &grammar::NodeSpec) -> Option<Sp<u16>> {
    bounded(n, spec, "port").and_then(|p| u16::try_from(p.value).ok().map(|v| Sp::new(v, p.span)))
}

pub fn overlay_rule(n: &RawNode) -> Option<OverlayRule> {
    let name = arg_str(n, 0).filter(|s| values::rule_name(s).is_ok())?;
    let listen = choice(n, "listen");
    Some(OverlayRule {
        name,
        port: port(n, &grammar::OVERLAY_RULE),
        mtu: bounded(n, &grammar::OVERLAY_RULE, "mtu"),
        listen: match listen {
            Some(("admin", _)) => Listen::Admin,
            _ => Listen::Any,
        },
        listen_span: listen.map(|(_, v)| v.span),
        span: n.span,
    })
}

fn vni(n: &RawNode) -> Option<Sp<u32>> {
    n.prop("vni").and_then(|v| values::vni(v).ok().map(|x| Sp::new(x, v.span)))
}

fn vlan(n: &RawNode, spec: &grammar::NodeSpec) -> Option<Sp<u16>> {
    bounded(n, spec, "vlan").and_then(|p| u16::try_from(p.value).ok().map(|v| Sp::new(v, p.span)))
}

pub fn admin_overlay(n: &RawNode) -> AdminOverlay {
    let here = n.name_span;
    AdminOverlay {
        subnet: n.prop("subnet").and_then(|v| read(v, values::cidr)),
        vni: vni(n).unwrap_or_else(|| Sp::new(ADMIN_OVERLAY_VNI, here)),
        vlan: vlan(n, &grammar::ADMIN_OVERLAY).unwrap_or_else(|| Sp::new(ADMIN_OVERLAY_VLAN, here)),
        port: port(n, &grammar::ADMIN_OVERLAY).unwrap_or_else(|| Sp::new(ADMIN_OVERLAY_PORT, here)),
        mtu: bounded(n, &grammar::ADMIN_OVERLAY, "mtu").unwrap_or_else(|| Sp::new(ADMIN_OVERLAY_MTU, here)),
        span: n.span,
    }
}

pub fn vxlan(n: &RawNode) -> Option<Vxlan> {
    Some(Vxlan {
        name: name_arg(n)?,
        rule: n.prop("rule").and_then(|v| read(v, |s| values::rule_name(s).map(|()| s.to_string()))),
        vni: vni(n),
        subnet: n.prop("subnet").and_then(|v| read(v, values::cidr)),
        vlan: vlan(n, &grammar::VXLAN),
        vnics: n.children_named("vnic").filter_map(vnic).collect(),
        span: n.span,
    })
}

fn vnic(n: &RawNode) -> Option<Vnic> {
    Some(Vnic {
        name: name_arg(n)?,
        node: n.prop("node").and_then(|v| read(v, |s| values::name(s).map(|()| s.to_string()))),
        ip: n.prop("ip").and_then(|v| read(v, values::ip)),
        mac: n.prop("mac").and_then(|v| read(v, values::mac)),
        span: n.span,
    })
}

pub fn ipsec(n: &RawNode) -> Ipsec {
    let mut ipsec = Ipsec::default();
    if let Some((s, _)) = choice(n, "proposals") {
        ipsec.proposals = s.to_string();
    }
    if let Some((s, _)) = choice(n, "esp") {
        ipsec.esp = s.to_string();
    }
    if let Some(pool) = n.prop("vtep-pool").and_then(|v| read(v, values::cidr)) {
        ipsec.vtep_pool = pool.value;
        ipsec.vtep_pool_span = Some(pool.span);
    }
    ipsec.datapath = match choice(n, "datapath") {
        Some(("kernel", _)) => Datapath::Kernel,
        Some(("userspace", _)) => Datapath::Userspace,
        _ => Datapath::Auto,
    };
    ipsec
}

pub fn node_firewall(n: &RawNode) -> NodeFirewall {
    let rules = n
        .children
        .iter()
        .filter_map(|r| {
            Some(NodeRule {
                action: rule_action(r)?,
                from: r.prop("from").and_then(|v| read(v, values::selector)),
                proto: proto_of(r),
                port: port_of(r),
                span: r.span,
            })
        })
        .collect();
    NodeFirewall { policy: policy_of(n), rules, span: Some(n.span) }
}
