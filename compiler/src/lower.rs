//! Gives the raw document its meaning: builds the model. Runs after the shape checker, so it
//! quietly skips anything invalid (already reported) and never reports itself.

use std::net::Ipv4Addr;

use crate::grammar;
use crate::model::*;
use crate::syntax::{RawDoc, RawNode, RawValue, Scalar};
use crate::values;

mod vxlan;

pub fn lower(doc: &RawDoc) -> Topology {
    let mut t = Topology::default();
    for n in &doc.nodes {
        match n.name.as_str() {
            "topology" if t.name.is_none() => t.name = arg_str(n, 0),
            "overlay" if !t.overlay_given => {
                t.overlay_given = true;
                t.overlay = arg(n, 0).and_then(|v| read(v, values::cidr));
            }
            "license" => {
                t.license.controllers = bounded(n, &grammar::LICENSE, "controllers");
                t.license.clients = bounded(n, &grammar::LICENSE, "clients");
            }
            "controller" => t.controllers.extend(controller(n)),
            "peering" => t.peering = peering(n),
            "client" => t.clients.extend(client(n)),
            "clients" => t.clients.extend(client_group(n)),
            "fwset" => t.fwsets.extend(fwset(n)),
            "firewall" => t.firewall = firewall(n),
            "expect" => t.expects.extend(expect(n)),
            "node" => t.nodes.extend(vxlan::node(n)),
            "overlay-rule" => t.overlay_rules.extend(vxlan::overlay_rule(n)),
            "admin-overlay" if t.admin_overlay.is_none() => t.admin_overlay = Some(vxlan::admin_overlay(n)),
            "vxlan" => t.vxlans.extend(vxlan::vxlan(n)),
            "ipsec" => t.ipsec = vxlan::ipsec(n),
            "node-firewall" => t.node_firewall = vxlan::node_firewall(n),
            _ => {}
        }
    }
    t
}

pub(super) fn arg(n: &RawNode, i: usize) -> Option<&RawValue> {
    n.arg(i)
}

pub(super) fn arg_str(n: &RawNode, i: usize) -> Option<Sp<String>> {
    n.arg(i).and_then(|v| values::as_str(v).map(|s| Sp::new(s.to_string(), v.span)))
}

/// A name argument, if present and valid.
pub(super) fn name_arg(n: &RawNode) -> Option<Sp<String>> {
    arg_str(n, 0).filter(|s| values::name(s).is_ok())
}

pub(super) fn read<T>(v: &RawValue, parse: impl Fn(&str) -> Result<T, values::Refusal>) -> Option<Sp<T>> {
    values::as_str(v).and_then(|s| parse(s).ok()).map(|x| Sp::new(x, v.span))
}

/// An integer within the grammar's bounds for `key` on `spec`; out-of-range values were
/// reported by the shape checker and must not reach the model (a huge count or cost would
/// exhaust memory or overflow path costs).
pub(super) fn bounded(n: &RawNode, spec: &grammar::NodeSpec, key: &str) -> Option<Sp<u32>> {
    let v = n.prop(key)?;
    let grammar::Ty::Integer { min, max } = spec.value(key)?.ty else { return None };
    values::integer(v, min, max).ok().and_then(|x| u32::try_from(x).ok()).map(|x| Sp::new(x, v.span))
}

pub(super) fn bool_of(v: &RawValue) -> Option<bool> {
    match v.value {
        Scalar::Bool(b) => Some(b),
        _ => None,
    }
}

pub(super) fn choice<'a>(n: &'a RawNode, key: &str) -> Option<(&'a str, &'a RawValue)> {
    n.prop(key).and_then(|v| values::as_str(v).map(|s| (s, v)))
}

fn controller(n: &RawNode) -> Option<Controller> {
    let name = name_arg(n)?;
    let id = n.prop("id").and_then(|v| values::integer(v, 1, 255).ok().map(|i| Sp::new(i as u32, v.span)));
    let address = n.child("address").and_then(|c| arg(c, 0)).and_then(|v| read(v, values::host));
    let interface = n
        .child("interface")
        .and_then(|c| arg_str(c, 0))
        .filter(|s| values::interface(s).is_ok())
        .unwrap_or_else(|| Sp::new(DEFAULT_INTERFACE.to_string(), name.span));
    let cores = n
        .child("cores")
        .and_then(|c| arg(c, 0))
        .and_then(|v| values::integer(v, 1, 4096).ok().map(|c| Sp::new(c as u32, v.span)));
    let engines = n.child("engines").and_then(|e| {
        let count = arg(e, 0).and_then(|v| values::integer(v, 1, 254).ok().map(|c| Sp::new(c as u32, v.span)))?;
        Some(Engines {
            count,
            subnet: e.prop("subnet").and_then(|v| read(v, values::cidr)),
            seed: bounded(e, &grammar::ENGINES, "seed").map_or(DEFAULT_SEED, |s| s.value),
            offset: bounded(e, &grammar::ENGINES, "offset").map_or(DEFAULT_MARK_OFFSET, |s| s.value),
            span: e.span,
        })
    });
    let lans = n.children_named("lan").filter_map(|l| arg(l, 0)).filter_map(|v| read(v, values::cidr)).collect();
    Some(Controller { name, id, address, interface, cores, engines, lans, span: n.span })
}

fn peering(n: &RawNode) -> Peering {
    let links: Vec<Link> = n
        .children_named("link")
        .filter_map(|l| {
            Some(Link {
                a: arg_str(l, 0)?,
                b: arg_str(l, 1)?,
                cost: bounded(l, &grammar::LINK, "cost").map_or(DEFAULT_LINK_COST, |c| c.value),
                span: l.span,
            })
        })
        .collect();
    let mode = n.arg(0).and_then(values::as_str);
    if mode == Some("partial") || (mode.is_none() && n.children_named("link").next().is_some()) {
        Peering::Partial(links)
    } else {
        Peering::Full
    }
}

fn tags_of(n: &RawNode) -> Vec<Sp<String>> {
    n.prop("tags")
        .and_then(|v| values::as_str(v).and_then(|s| values::tags(s).ok()).map(|ts| (ts, v.span)))
        .map(|(ts, span)| ts.into_iter().map(|t| Sp::new(t, span)).collect())
        .unwrap_or_default()
}

fn client(n: &RawNode) -> Option<Client> {
    Some(Client {
        name: name_arg(n)?,
        ip: n.prop("ip").and_then(|v| read(v, values::ip)),
        tags: tags_of(n),
        revoked: n.prop("revoked").and_then(bool_of).unwrap_or(false),
        redirect_gateway: n.prop("redirect-gateway").and_then(bool_of),
        group: None,
    })
}

fn client_group(n: &RawNode) -> Vec<Client> {
    let (Some(prefix), Some(count)) = (name_arg(n), bounded(n, &grammar::CLIENTS, "count")) else {
        return Vec::new();
    };
    let tags = tags_of(n);
    let redirect_gateway = n.prop("redirect-gateway").and_then(bool_of);
    (1..=count.value)
        .map(|i| Client {
            name: Sp::new(format!("{}-{i}", prefix.value), prefix.span),
            ip: None,
            tags: tags.clone(),
            revoked: false,
            redirect_gateway,
            group: Some(prefix.value.clone()),
        })
        .collect()
}

fn fwset(n: &RawNode) -> Option<FwSet> {
    let kind = choice(n, "type").and_then(|(s, v)| match s {
        "net" => Some(Sp::new(FwSetKind::Net, v.span)),
        "port" => Some(Sp::new(FwSetKind::Port, v.span)),
        _ => None,
    });
    Some(FwSet {
        name: name_arg(n)?,
        kind,
        nets: n.children_named("net").filter_map(|c| arg(c, 0)).filter_map(|v| read(v, values::net)).collect(),
        ports: n
            .children_named("port")
            .filter_map(|c| arg(c, 0))
            .filter_map(|v| values::port(v).ok().map(|p| Sp::new(p, v.span)))
            .collect(),
        span: n.span,
    })
}

pub(super) fn proto_of(n: &RawNode) -> Option<Sp<Proto>> {
    choice(n, "proto").and_then(|(s, v)| {
        let p = match s {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "icmp" => Proto::Icmp,
            _ => return None,
        };
        Some(Sp::new(p, v.span))
    })
}

/// A firewall's `policy=` (the controllers' and the nodes'): accept unless it says drop.
pub(super) fn policy_of(n: &RawNode) -> Action {
    match choice(n, "policy") {
        Some(("drop", _)) => Action::Drop,
        _ => Action::Accept,
    }
}

/// A firewall rule's action from its node name (`allow`, `deny`); None for anything else.
pub(super) fn rule_action(r: &RawNode) -> Option<Action> {
    match r.name.as_str() {
        "allow" => Some(Action::Accept),
        "deny" => Some(Action::Drop),
        _ => None,
    }
}

/// A rule's `port=` (a port, a range or `fwset:S`).
pub(super) fn port_of(r: &RawNode) -> Option<Sp<PortSpec>> {
    r.prop("port").and_then(|v| values::port(v).ok().map(|p| Sp::new(p, v.span)))
}

fn firewall(n: &RawNode) -> Firewall {
    let policy = policy_of(n);
    let rules = n
        .children
        .iter()
        .filter_map(|r| {
            let action = rule_action(r)?;
            let sel = |key| r.prop(key).and_then(|v| read(v, values::selector));
            Some(Rule { action, from: sel("from"), to: sel("to"), proto: proto_of(r), port: port_of(r), span: r.span })
        })
        .collect();
    Firewall { policy, rules }
}

fn endpoint(n: &RawNode, key: &str) -> Option<Sp<Endpoint>> {
    let v = n.prop(key)?;
    let s = values::as_str(v)?;
    let e = match s.parse::<Ipv4Addr>() {
        Ok(ip) => Endpoint::Ip(ip),
        Err(_) => Endpoint::Named(s.to_string()),
    };
    Some(Sp::new(e, v.span))
}

fn expect(n: &RawNode) -> Option<Expect> {
    Some(Expect {
        name: arg_str(n, 0).map(|s| s.value),
        from: endpoint(n, "from")?,
        to: endpoint(n, "to")?,
        proto: proto_of(n),
        port: n.prop("port").and_then(|v| values::integer(v, 1, 65535).ok().map(|p| Sp::new(p as u16, v.span))),
        verdict: choice(n, "verdict").and_then(|(s, v)| match s {
            "allow" => Some(Sp::new(Action::Accept, v.span)),
            "drop" => Some(Sp::new(Action::Drop, v.span)),
            _ => None,
        }),
        span: n.span,
    })
}
