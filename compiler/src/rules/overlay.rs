//! `shape::missing-value` for `overlay`: controllers, engines and clients take their addresses
//! from it, so it is required once the file has any of them; a file of compute nodes alone
//! needs none.

use super::Context;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::grammar;
use crate::source::at;

pub fn check(ctx: &Context<'_>, out: &mut Diagnostics) {
    let t = ctx.topology;
    let needs_overlay = !t.controllers.is_empty() || !t.clients.is_empty() || t.nodes.is_empty();
    if !t.overlay_given && needs_overlay {
        out.push(
            Diagnostic::error(Code::MissingValue, "the file has no `overlay`", at(0, 0), "`overlay` missing")
                .with_help(grammar::OVERLAY.doc),
        );
    }
}
