//! `peering::unknown-controller`, `peering::invalid-link`, `peering::disconnected` and
//! `peering::single-point-of-failure` (warning).

use std::collections::BTreeMap;

use super::Context;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::grammar::did_you_mean;
use crate::model::Peering;

pub fn check(ctx: &Context<'_>, out: &mut Diagnostics) {
    let t = ctx.topology;
    let Peering::Partial(links) = &t.peering else { return };
    let names: Vec<&str> = t.controllers.iter().map(|c| c.name.value.as_str()).collect();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut all_known = true;
    for (i, l) in links.iter().enumerate() {
        let mut known = true;
        for end in [&l.a, &l.b] {
            if !names.contains(&end.value.as_str()) {
                known = false;
                let mut d = Diagnostic::error(
                    Code::UnknownPeer,
                    format!("link names unknown controller `{}`", end.value),
                    end.span,
                    "no such controller",
                );
                if let Some(m) = did_you_mean(&end.value, names.iter().copied()) {
                    d = d.with_help(format!("did you mean `{m}`?"));
                }
                out.push(d);
            }
        }
        all_known &= known;
        if l.a.value == l.b.value {
            out.push(Diagnostic::error(
                Code::InvalidLink,
                format!("link from `{}` to itself", l.a.value),
                l.b.span,
                "same controller",
            ));
            continue;
        }
        let key = if l.a.value < l.b.value {
            (l.a.value.clone(), l.b.value.clone())
        } else {
            (l.b.value.clone(), l.a.value.clone())
        };
        if let Some(&first) = seen.get(&key) {
            out.push(
                Diagnostic::error(
                    Code::InvalidLink,
                    format!("link between `{}` and `{}` declared twice", key.0, key.1),
                    l.span,
                    "declared again here",
                )
                .with_label(links[first].span, "first declared here"),
            );
        } else {
            seen.insert(key, i);
        }
    }
    // Graph properties only make sense over a mesh whose links all resolve.
    if !all_known || ctx.mesh.tunnels().is_empty() && t.controllers.len() <= 1 {
        return;
    }
    let link_span = |a: &str, b: &str| {
        links.iter().find(|l| (l.a.value == a && l.b.value == b) || (l.a.value == b && l.b.value == a)).map(|l| l.span)
    };
    let controller_span = |name: &str| t.controllers.iter().find(|c| c.name.value == name).map(|c| c.name.span);
    if !ctx.mesh.is_connected() {
        let parts = ctx.mesh.components();
        let described: Vec<String> = parts.iter().map(|p| format!("{{{}}}", p.join(", "))).collect();
        let stray = parts.last().and_then(|p| p.first()).and_then(|n| controller_span(n));
        if let Some(span) = stray {
            out.push(
                Diagnostic::error(
                    Code::Disconnected,
                    format!("the peering mesh falls apart into {} parts: {}", parts.len(), described.join(" and ")),
                    span,
                    "cannot reach the rest of the mesh",
                )
                .with_help("add a link between the parts"),
            );
        }
        return;
    }
    for name in ctx.mesh.articulation_points() {
        if let Some(span) = controller_span(&name) {
            out.push(
                Diagnostic::warning(
                    Code::SinglePointOfFailure,
                    format!("losing controller `{name}` would split the peering mesh"),
                    span,
                    "single point of failure",
                )
                .with_help("add a link that bypasses it"),
            );
        }
    }
    for (a, b) in ctx.mesh.bridges() {
        if let Some(span) = link_span(&a, &b) {
            out.push(
                Diagnostic::warning(
                    Code::SinglePointOfFailure,
                    format!("losing the link `{a}` - `{b}` would split the peering mesh"),
                    span,
                    "single point of failure",
                )
                .with_help("add another path between the two sides"),
            );
        }
    }
}
