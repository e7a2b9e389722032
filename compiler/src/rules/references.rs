//! `reference::unknown`, `reference::fwset-type` and `firewall::port-needs-protocol`: every name
//! a firewall rule or an expectation uses must exist and be of the right kind.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::Context;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::grammar::did_you_mean;
use crate::model::{Endpoint, FwSetKind, PortSpec, Proto, Selector, Sp};
use crate::source::Span;

pub fn check(ctx: &Context<'_>, out: &mut Diagnostics) {
    let t = ctx.topology;
    let clients: HashSet<&str> = t.clients.iter().map(|c| c.name.value.as_str()).collect();
    let tags: BTreeSet<&str> = t.clients.iter().flat_map(|c| c.tags.iter().map(|t| t.value.as_str())).collect();
    let controllers: Vec<&str> = t.controllers.iter().map(|c| c.name.value.as_str()).collect();
    let fwsets: BTreeMap<&str, Option<FwSetKind>> =
        t.fwsets.iter().map(|s| (s.name.value.as_str(), s.kind.as_ref().map(|k| k.value))).collect();

    let unknown = |what: &str, name: &str, span: Span, candidates: &mut dyn Iterator<Item = &str>| {
        let mut d = Diagnostic::error(
            Code::UnknownReference,
            format!("unknown {what} `{name}`"),
            span,
            format!("no such {what}"),
        );
        if let Some(m) = did_you_mean(name, candidates) {
            d = d.with_help(format!("did you mean `{m}`?"));
        }
        d
    };

    // A fwset holds entries of its own type only.
    for s in &t.fwsets {
        let Some(kind) = &s.kind else { continue };
        let wrong: Vec<Span> = match kind.value {
            FwSetKind::Net => s.ports.iter().map(|p| p.span).collect(),
            FwSetKind::Port => s.nets.iter().map(|n| n.span).collect(),
        };
        for span in wrong {
            let (is, holds) = match kind.value {
                FwSetKind::Net => ("net", "port"),
                FwSetKind::Port => ("port", "net"),
            };
            out.push(
                Diagnostic::error(
                    Code::FwsetType,
                    format!("fwset `{}` is of type \"{is}\" but holds a {holds}", s.name.value),
                    span,
                    format!("a {holds} entry"),
                )
                .with_label(kind.span, format!("type \"{is}\""))
                .with_help(format!("move it into a fwset of type \"{holds}\"")),
            );
        }
    }

    let check_selector = |sel: &Sp<Selector>, out: &mut Diagnostics| match &sel.value {
        Selector::Client(name) if !clients.contains(name.as_str()) => {
            let mut d = unknown("client", name, sel.span, &mut clients.iter().copied());
            if d.help.is_none() {
                d = d.with_help("a bare name selects a client; use tag:T, fwset:S or controller:C for the others");
            }
            out.push(d);
        }
        Selector::Tag(tag) if !tags.contains(tag.as_str()) => {
            out.push(unknown("tag", tag, sel.span, &mut tags.iter().copied()));
        }
        Selector::Controller(name) if !controllers.contains(&name.as_str()) => {
            out.push(unknown("controller", name, sel.span, &mut controllers.iter().copied()));
        }
        Selector::FwSet(name) => match fwsets.get(name.as_str()) {
            None => out.push(unknown("fwset", name, sel.span, &mut fwsets.keys().copied())),
            Some(Some(FwSetKind::Port)) => out.push(
                Diagnostic::error(
                    Code::FwsetType,
                    format!("fwset `{name}` holds ports, not addresses"),
                    sel.span,
                    "a port fwset",
                )
                .with_help("from= and to= take fwsets of type \"net\""),
            ),
            _ => {}
        },
        _ => {}
    };

    let check_port = |port: &Sp<PortSpec>, proto: Option<&Sp<Proto>>, out: &mut Diagnostics| {
        if !matches!(proto.map(|p| p.value), Some(Proto::Tcp | Proto::Udp)) {
            let mut d = Diagnostic::error(
                Code::PortWithoutProtocol,
                "a port needs proto=\"tcp\" or proto=\"udp\"",
                port.span,
                "port without tcp or udp",
            );
            if let Some(p) = proto {
                d = d.with_label(p.span, format!("{} has no ports", p.value.name()));
            }
            out.push(d);
        }
        if let PortSpec::FwSet(name) = &port.value {
            match fwsets.get(name.as_str()) {
                None => out.push(unknown("fwset", name, port.span, &mut fwsets.keys().copied())),
                Some(Some(FwSetKind::Net)) => out.push(
                    Diagnostic::error(
                        Code::FwsetType,
                        format!("fwset `{name}` holds networks, not ports"),
                        port.span,
                        "a net fwset",
                    )
                    .with_help("port= takes fwsets of type \"port\""),
                ),
                _ => {}
            }
        }
    };

    for r in &t.firewall.rules {
        for sel in [&r.from, &r.to].into_iter().flatten() {
            check_selector(sel, out);
        }
        if let Some(port) = &r.port {
            check_port(port, r.proto.as_ref(), out);
        }
    }
    // Endpoints: clients, vNICs, and nodes (their admin-overlay vNIC) when there is an admin overlay.
    let mut endpoints: BTreeSet<&str> = clients.iter().copied().collect();
    endpoints.extend(t.vxlans.iter().flat_map(|x| x.vnics.iter().map(|v| v.name.value.as_str())));
    if t.admin_overlay.is_some() {
        endpoints.extend(t.nodes.iter().map(|n| n.name.value.as_str()));
    }
    let what = if t.nodes.is_empty() { "client" } else { "client or vNIC" };
    for e in &t.expects {
        for end in [&e.from, &e.to] {
            if let Endpoint::Named(name) = &end.value
                && !endpoints.contains(name.as_str())
            {
                let mut d = unknown(what, name, end.span, &mut endpoints.iter().copied());
                if d.help.is_none() && t.nodes.iter().any(|n| &n.name.value == name) {
                    d = d.with_help("a node is an endpoint through its admin-overlay vNIC: declare `admin-overlay`");
                }
                out.push(d);
            }
        }
        if let Some(port) = &e.port {
            let spec =
                Sp::new(PortSpec::Range(crate::model::PortRange { low: port.value, high: port.value }), port.span);
            check_port(&spec, e.proto.as_ref(), out);
        }
    }
    for r in &t.node_firewall.rules {
        if let Some(sel) = &r.from {
            match &sel.value {
                Selector::Any | Selector::Net(_) | Selector::FwSet(_) => check_selector(sel, out),
                other => out.push(
                    Diagnostic::error(
                        Code::UnknownReference,
                        format!("node-firewall rules match the external interface's sources, not `{other}`"),
                        sel.span,
                        "not a source a node's external interface sees",
                    )
                    .with_help("from= takes any, a CIDR or fwset:S"),
                ),
            }
        }
        if let Some(port) = &r.port {
            check_port(port, r.proto.as_ref(), out);
        }
    }
}
