//! `expect::failed`: every expectation is evaluated on the compiled firewall (first match wins,
//! the policy otherwise); a broken one is an error that shows the rule that decided it.

use std::net::Ipv4Addr;

use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::firewall::Decision;
use crate::model::{Endpoint, Expect, Topology};
use crate::network::Network;

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

pub fn check(t: &Topology, net: &Network, out: &mut Diagnostics) {
    for e in &t.expects {
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
