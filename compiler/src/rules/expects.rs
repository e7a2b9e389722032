//! `expect::failed`: every expectation is evaluated on the compiled firewall (first match wins,
//! the policy otherwise); a broken one is an error that shows the rule that decided it.

use std::net::Ipv4Addr;

use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::firewall::Decision;
use crate::model::{Endpoint, Expect, Topology};
use crate::network::Network;
use crate::vxlan::reach;
use crate::vxlan::{OverlayNet, VnicNet};

/// The address an endpoint stands for.
pub fn address(net: &Network, e: &Endpoint) -> Option<Ipv4Addr> {
    match e {
        Endpoint::Ip(ip) => Some(*ip),
        Endpoint::Named(name) => net.clients.iter().find(|c| &c.name == name).map(|c| c.ip),
    }
}

/// The firewall's decision for an expectation's flow.
pub fn decide(net: &Network, e: &Expect) -> Option<Decision> {
    let (src, dst) = (address(net, &e.from.value)?, address(net, &e.to.value)?);
    Some(net.firewall.evaluate(src, dst, e.proto.as_ref().map(|p| p.value), e.port.as_ref().map(|p| p.value)))
}

/// The vNIC (or node, for its admin-overlay vNIC) an endpoint names, if any.
fn vnic<'a>(net: &'a Network, e: &Endpoint) -> Option<(&'a OverlayNet, &'a VnicNet)> {
    match e {
        Endpoint::Named(name) => reach::vnic(&net.vxlan, name),
        Endpoint::Ip(_) => None,
    }
}

/// An expectation between vNICs: the overlays decide, not the firewall.
fn check_vnics(e: &Expect, net: &Network, out: &mut Diagnostics) -> bool {
    let (from, to) = (vnic(net, &e.from.value), vnic(net, &e.to.value));
    if from.is_none() && to.is_none() {
        return false;
    }
    let Some(verdict) = &e.verdict else { return true };
    let (reachable, why) = match (from, to) {
        (Some(a), Some(b)) => {
            let r = reach::reach(&net.vxlan, a, b);
            (r.reachable, r.why)
        }
        _ => (false, "VXLAN overlays and the controllers' overlay are not connected".to_string()),
    };
    let expected = verdict.value == crate::model::Action::Accept;
    if reachable != expected {
        let what = e.name.as_ref().map_or(String::new(), |n| format!(" \"{n}\""));
        out.push(
            Diagnostic::error(
                Code::ExpectFailed,
                format!(
                    "expectation{what} fails: {}",
                    if reachable { "the two reach each other" } else { "no path between them" }
                ),
                verdict.span,
                format!("expected {}", verdict.value.verb()),
            )
            .with_help(why),
        );
    }
    true
}

pub fn check(t: &Topology, net: &Network, out: &mut Diagnostics) {
    for e in &t.expects {
        if check_vnics(e, net, out) {
            continue;
        }
        let (Some(verdict), Some(decision)) = (&e.verdict, decide(net, e)) else { continue };
        if decision.action == verdict.value {
            continue;
        }
        let what = e.name.as_ref().map_or(String::new(), |n| format!(" \"{n}\""));
        let mut d = Diagnostic::error(
            Code::ExpectFailed,
            format!("expectation{what} fails: the firewall would {} this flow", decision.action.verb()),
            verdict.span,
            format!("expected {}", verdict.value.verb()),
        );
        match decision.rule.and_then(|n| net.firewall.rules.get(n - 1)) {
            Some(rule) => {
                d = d
                    .with_label(rule.span, format!("rule {} decides: {}", rule.number, rule.action.verb()))
                    .with_help(format!("rule {} (`{}`) matches first", rule.number, rule.describe()));
            }
            None => {
                d = d.with_help(format!("no rule matches, so the policy decides: {}", net.firewall.policy.verb()));
            }
        }
        out.push(d);
    }
}
