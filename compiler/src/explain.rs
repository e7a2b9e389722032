//! `meshwork explain`: the firewall's verdict for one flow and the rule that decides it.

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::model::{Action, Endpoint, Proto};
use crate::network::Network;
use crate::rules::expects::address;
use crate::source::{SourceFile, Span};
use crate::vxlan::reach;

#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub from: Ipv4Addr,
    pub to: Ipv4Addr,
    pub proto: Option<&'static str>,
    pub port: Option<u16>,
    pub verdict: &'static str,
    /// The deciding rule, or None when the policy (or, between vNICs, the overlays) decided.
    pub rule: Option<DecidingRule>,
    /// Between vNICs: which overlays, and the path (clear within a PDC, IPsec across).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DecidingRule {
    pub number: usize,
    pub text: String,
    pub line: usize,
    pub column: usize,
    #[serde(skip)]
    pub span: Span,
}

/// Reads an endpoint as the `expect` node does: an IPv4 address, or a client's name.
pub fn endpoint(net: &Network, text: &str) -> Result<Ipv4Addr, String> {
    let e = match text.parse::<Ipv4Addr>() {
        Ok(ip) => Endpoint::Ip(ip),
        Err(_) => Endpoint::Named(text.to_string()),
    };
    if let Some((_, v)) = reach::vnic(&net.vxlan, text) {
        return Ok(v.ip);
    }
    address(net, &e).ok_or_else(|| {
        let vnics = net.vxlan.overlays.iter().flat_map(|o| o.vnics.iter().map(|v| v.name.as_str()));
        let hint = crate::grammar::did_you_mean(text, net.clients.iter().map(|c| c.name.as_str()).chain(vnics));
        let what = if net.vxlan.is_empty() { "a client" } else { "a client or a vNIC" };
        match hint {
            Some(m) => format!("`{text}` is neither an address nor {what} (did you mean `{m}`?)"),
            None => format!("`{text}` is neither an address nor {what}"),
        }
    })
}

pub fn proto(text: &str) -> Result<Option<Proto>, String> {
    match text {
        "tcp" => Ok(Some(Proto::Tcp)),
        "udp" => Ok(Some(Proto::Udp)),
        "icmp" => Ok(Some(Proto::Icmp)),
        "any" => Ok(None),
        _ => Err(format!("`{text}` is not a protocol (tcp, udp, icmp or any)")),
    }
}

pub fn explain(
    file: &SourceFile,
    net: &Network,
    from: &str,
    to: &str,
    proto_text: &str,
    port: Option<u16>,
) -> Result<Explanation, String> {
    let (src, dst, proto) = (endpoint(net, from)?, endpoint(net, to)?, proto(proto_text)?);
    if port.is_some() && !matches!(proto, Some(Proto::Tcp | Proto::Udp)) {
        return Err("a port needs tcp or udp".to_string());
    }
    let (vnic_from, vnic_to) = (reach::vnic(&net.vxlan, from), reach::vnic(&net.vxlan, to));
    if vnic_from.is_some() || vnic_to.is_some() {
        let r = match (vnic_from, vnic_to) {
            (Some(a), Some(b)) => reach::reach(&net.vxlan, a, b),
            _ => reach::Reach {
                reachable: false,
                why: "VXLAN overlays are reached by vNIC name from another vNIC; they are not connected to the \
                      controllers' overlay or routed from outside"
                    .into(),
            },
        };
        return Ok(Explanation {
            from: src,
            to: dst,
            proto: proto.map(Proto::name),
            port,
            verdict: if r.reachable { "allow" } else { "drop" },
            rule: None,
            why: Some(r.why),
        });
    }
    if let (Some(p @ (Proto::Tcp | Proto::Udp)), None) = (proto, port) {
        // Rules match on ports, so the verdict for "any port" would be a guess.
        return Err(format!(
            "{} flows are decided by their port: give one, e.g. `meshwork explain FILE {from} {to} {} 443`",
            p.name(),
            p.name()
        ));
    }
    let decision = net.firewall.evaluate(src, dst, proto, port);
    let rule = decision.rule.and_then(|n| net.firewall.rules.get(n - 1)).map(|r| {
        let (line, column) = file.line_col(r.span.offset());
        DecidingRule { number: r.number, text: r.describe(), line, column, span: r.span }
    });
    Ok(Explanation {
        from: src,
        to: dst,
        proto: proto.map(Proto::name),
        port,
        verdict: match decision.action {
            Action::Accept => "allow",
            Action::Drop => "drop",
        },
        rule,
        why: None,
    })
}
