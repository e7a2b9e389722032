//! `network::overlap` for the VXLAN part: what shares one routing table on a node must not
//! overlap — node admin and external networks, the VTEP pool, the admin overlay, the
//! controllers' overlay and the LANs behind controllers. Tenant overlays are not here: they may
//! reuse subnets and addresses (each lives on its own bridge, isolated, DESIGN §9).

use ipnet::Ipv4Net;

use super::Context;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::source::Span;

/// Kinds of network; two of one kind may overlap (nodes of one PDC share their admin network).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Admin,
    External,
    VtepPool,
    AdminOverlay,
    ControllersOverlay,
    Lan,
}

struct Entry {
    net: Ipv4Net,
    kind: Kind,
    what: String,
    span: Span,
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

pub fn check(ctx: &Context<'_>, out: &mut Diagnostics) {
    let t = ctx.topology;
    if t.nodes.is_empty() {
        return;
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut add = |net: Ipv4Net, kind: Kind, what: String, span: Span| {
        // One entry per network and kind: nodes of one PDC on one admin network are one entry.
        if !entries.iter().any(|e| e.kind == kind && e.net == net) {
            entries.push(Entry { net, kind, what, span });
        }
    };
    for n in &t.nodes {
        if let Some(a) = &n.admin {
            add(a.value.network(), Kind::Admin, format!("the admin network of node `{}`", n.name.value), a.span);
        }
        if let Some(e) = &n.external {
            add(e.value.network(), Kind::External, format!("the external network of node `{}`", n.name.value), e.span);
        }
    }
    if crate::vxlan::alloc::spans_pdcs(t) {
        let span = t.ipsec.vtep_pool_span.unwrap_or(t.nodes[0].name.span);
        let what = if t.ipsec.vtep_pool_span.is_some() { "the VTEP pool" } else { "the default VTEP pool" };
        add(t.ipsec.vtep_pool, Kind::VtepPool, format!("{what} {}", t.ipsec.vtep_pool), span);
    }
    if let Some(s) = t.admin_overlay.as_ref().and_then(|a| a.subnet.as_ref()) {
        add(s.value, Kind::AdminOverlay, "the admin overlay".into(), s.span);
    }
    if let Some(o) = &t.overlay {
        add(o.value, Kind::ControllersOverlay, "the controllers' overlay".into(), o.span);
    }
    for c in &t.controllers {
        for l in &c.lans {
            add(l.value, Kind::Lan, format!("LAN {} of `{}`", l.value, c.name.value), l.span);
        }
    }
    // The later of two overlapping declarations is the one reported, as elsewhere.
    entries.sort_by_key(|e| e.span.offset());
    for (i, a) in entries.iter().enumerate() {
        for b in &entries[..i] {
            // Controller-side pairs (overlay and LANs) are `networks`' to report.
            let controller_side = |k| matches!(k, Kind::ControllersOverlay | Kind::Lan);
            if a.kind == b.kind || (controller_side(a.kind) && controller_side(b.kind)) {
                continue;
            }
            if overlaps(&a.net, &b.net) {
                out.push(
                    Diagnostic::error(
                        Code::SubnetOverlap,
                        format!("{} ({}) overlaps {} ({})", a.what, a.net, b.what, b.net),
                        a.span,
                        "overlaps",
                    )
                    .with_label(b.span, b.what.clone())
                    .with_help("these share a node's routing table: give them networks of their own"),
                );
            }
        }
    }
}
