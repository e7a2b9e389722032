//! `network::overlap` and `engines::subnet-too-small`: plugin subnets may not overlap each
//! other, the overlay, a LAN or an underlay address; LANs may not overlap each other or the
//! overlay; a plugin subnet must hold plugin0 plus one address per engine.

use ipnet::Ipv4Net;

use super::Context;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::{Host, Sp};

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

pub fn check(ctx: &Context<'_>, out: &mut Diagnostics) {
    let t = ctx.topology;
    // (network, description, span) for everything that must stay apart.
    let mut plugins: Vec<(&Sp<Ipv4Net>, String)> = Vec::new();
    let mut lans: Vec<(&Sp<Ipv4Net>, String)> = Vec::new();
    for c in &t.controllers {
        if let Some(s) = c.engines.as_ref().and_then(|e| e.subnet.as_ref()) {
            plugins.push((s, format!("plugin subnet of `{}`", c.name.value)));
        }
        for l in &c.lans {
            lans.push((l, format!("LAN {} of `{}`", l.value, c.name.value)));
        }
    }
    let clash = |a: &(&Sp<Ipv4Net>, String), b_span, b_what: &str| {
        Diagnostic::error(
            Code::SubnetOverlap,
            format!("{} ({}) overlaps {b_what}", a.1, a.0.value),
            a.0.span,
            "overlaps",
        )
        .with_label(b_span, b_what.to_string())
    };
    for (i, p) in plugins.iter().enumerate() {
        for q in &plugins[..i] {
            if overlaps(&p.0.value, &q.0.value) {
                out.push(
                    clash(p, q.0.span, &q.1).with_help("peered controllers must use non-overlapping plugin subnets"),
                );
            }
        }
        if let Some(o) = &t.overlay
            && overlaps(&p.0.value, &o.value)
        {
            out.push(clash(p, o.span, "the overlay"));
        }
        for l in &lans {
            if overlaps(&p.0.value, &l.0.value) {
                out.push(clash(p, l.0.span, &l.1));
            }
        }
        for c in &t.controllers {
            if let Some(Sp { value: Host::Ip(ip), span }) = &c.address
                && p.0.value.contains(ip)
            {
                out.push(clash(p, *span, &format!("the underlay address of `{}`", c.name.value)));
            }
        }
    }
    for (i, l) in lans.iter().enumerate() {
        for m in &lans[..i] {
            if overlaps(&l.0.value, &m.0.value) {
                out.push(clash(l, m.0.span, &m.1).with_help("a network can sit behind one controller only"));
            }
        }
        if let Some(o) = &t.overlay
            && overlaps(&l.0.value, &o.value)
        {
            out.push(clash(l, o.span, "the overlay"));
        }
    }
    for c in &t.controllers {
        let Some(e) = &c.engines else { continue };
        let Some(subnet) = &e.subnet else { continue };
        let hosts = if subnet.value.prefix_len() >= 31 { 0 } else { (1u64 << (32 - subnet.value.prefix_len())) - 2 };
        let needed = u64::from(e.count.value) + 1;
        if hosts < needed {
            let prefix = (0..=30u8).rev().find(|p| (1u64 << (32 - p)) - 2 >= needed).unwrap_or(0);
            out.push(
                Diagnostic::error(
                    Code::PluginSubnetTooSmall,
                    format!("{} has {hosts} usable addresses, `{}` needs {needed}", subnet.value, c.name.value),
                    subnet.span,
                    format!("too small for {}", crate::plural::count(e.count.value, "engine")),
                )
                .with_label(e.count.span, "engines counted here")
                .with_help(format!("plugin0 takes the first host and engine k host 1+k; a /{prefix} would do")),
            );
        }
    }
}
