//! `name::duplicate`, `controller::duplicate-id`, `controller::no-root`.
//!
//! Controllers, engines, peering identities (`peer-<controller>`) and clients share one name
//! space (each is a certificate CN and a key file name); fwsets have their own.

use std::collections::BTreeMap;

use super::Context;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::emit::openvpn::peer_cn;
use crate::model::vxlan::ADMIN_OVERLAY_RULE;
use crate::network::engine_name;

/// Names of the keyset's own files (`keys/ca.crt`, `keys/crl.pem`, `keys/tls-crypt.key`):
/// an identity with one of them would overwrite it.
pub const RESERVED: &[&str] = &["ca", "crl", "tls-crypt"];
use crate::source::{Span, at};

pub fn check(ctx: &Context<'_>, out: &mut Diagnostics) {
    let t = ctx.topology;
    // name -> (what it is, where)
    let mut identities: BTreeMap<String, (String, Span)> = BTreeMap::new();
    let mut claim = |name: &str, what: String, span: Span, out: &mut Diagnostics| {
        if RESERVED.contains(&name) {
            out.push(
                Diagnostic::error(Code::InvalidName, format!("`{name}` is a reserved name"), span, "reserved")
                    .with_help(format!("{} name key files of their own; pick another name", RESERVED.join(", "))),
            );
            return;
        }
        if let Some((first, first_span)) = identities.get(name) {
            let message = if *first == what {
                format!("{what} is declared twice")
            } else {
                format!("`{name}` names both {first} and {what}")
            };
            out.push(
                Diagnostic::error(Code::DuplicateName, message, span, format!("{what} named again here"))
                    .with_label(*first_span, format!("{first} first"))
                    .with_help("controllers, engines (CONTROLLER-eK), clients, nodes, overlays and vNICs share one name space: rename one"),
            );
        } else {
            identities.insert(name.to_string(), (what, span));
        }
    };
    for c in &t.controllers {
        claim(&c.name.value, format!("controller `{}`", c.name.value), c.name.span, out);
    }
    for c in &t.controllers {
        let cn = peer_cn(&c.name.value);
        claim(&cn, format!("the peering identity of `{}`", c.name.value), c.name.span, out);
    }
    for c in &t.controllers {
        if let Some(e) = &c.engines {
            for k in 1..=e.count.value {
                let name = engine_name(&c.name.value, k);
                claim(&name, format!("engine {k} of `{}`", c.name.value), e.count.span, out);
            }
        }
    }
    let mut groups_seen: BTreeMap<&str, Span> = BTreeMap::new();
    for c in &t.clients {
        if let Some(group) = &c.group {
            // A group repeated would report every member; report the group once.
            if let Some(first) = groups_seen.get(group.as_str()) {
                if *first != c.name.span {
                    out.push(
                        Diagnostic::error(
                            Code::DuplicateName,
                            format!("client group `{group}` declared twice"),
                            c.name.span,
                            "declared again here",
                        )
                        .with_label(*first, "first declared here"),
                    );
                }
                continue;
            }
            groups_seen.insert(group, c.name.span);
        }
        claim(&c.name.value, format!("client `{}`", c.name.value), c.name.span, out);
    }
    // Nodes, overlays and vNICs are `expect` endpoints and artifact directories: same name space.
    for n in &t.nodes {
        claim(&n.name.value, format!("node `{}`", n.name.value), n.name.span, out);
    }
    if let Some(admin) = &t.admin_overlay {
        claim(ADMIN_OVERLAY_RULE, "the admin overlay".into(), admin.span, out);
    }
    for x in &t.vxlans {
        claim(&x.name.value, format!("overlay `{}`", x.name.value), x.name.span, out);
    }
    for x in &t.vxlans {
        for v in &x.vnics {
            claim(&v.name.value, format!("vNIC `{}`", v.name.value), v.name.span, out);
        }
    }
    let mut fwsets: BTreeMap<&str, Span> = BTreeMap::new();
    for s in &t.fwsets {
        match fwsets.get(s.name.value.as_str()) {
            Some(first) => out.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    format!("fwset `{}` declared twice", s.name.value),
                    s.name.span,
                    "declared again here",
                )
                .with_label(*first, "first declared here"),
            ),
            None => {
                fwsets.insert(&s.name.value, s.name.span);
            }
        }
    }
    let mut ids: BTreeMap<u32, (&str, Span)> = BTreeMap::new();
    for c in &t.controllers {
        let Some(id) = &c.id else { continue };
        match ids.get(&id.value) {
            Some((first, first_span)) => out.push(
                Diagnostic::error(
                    Code::DuplicateId,
                    format!("controllers `{first}` and `{}` both have id {}", c.name.value, id.value),
                    id.span,
                    "id used again here",
                )
                .with_label(*first_span, format!("`{first}` has it"))
                .with_help("ids decide overlay addresses and peering ports: give each controller its own"),
            ),
            None => {
                ids.insert(id.value, (&c.name.value, id.span));
            }
        }
    }
    let all_have_ids = t.controllers.iter().all(|c| c.id.is_some());
    if !t.controllers.is_empty() && all_have_ids && !ids.contains_key(&1) {
        let first = &t.controllers[0];
        let span = first.id.as_ref().map_or(at(first.name.span.offset(), 0), |i| i.span);
        out.push(
            Diagnostic::error(Code::NoRoot, "no controller has id 1 (the root)", span, "no controller is the root")
                .with_help("the root (id 1) generates the keyset; give one controller id=1"),
        );
    }
}
