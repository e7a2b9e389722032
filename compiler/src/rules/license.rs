//! `license::exceeded`: more controllers or clients than `license` allows.

use super::Context;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::Sp;

pub fn check(ctx: &Context<'_>, out: &mut Diagnostics) {
    let t = ctx.topology;
    let controllers: Vec<_> = t.controllers.iter().map(|c| &c.name).collect();
    let clients: Vec<_> = t.clients.iter().map(|c| &c.name).collect();
    cap(&t.license.controllers, &controllers, "controller", out);
    cap(&t.license.clients, &clients, "client", out);
}

/// Reports the first of `names` beyond the cap, if the cap is exceeded.
fn cap(cap: &Option<Sp<u32>>, names: &[&Sp<String>], what: &str, out: &mut Diagnostics) {
    let Some(cap) = cap else { return };
    let Some(extra) = names.get(cap.value as usize) else { return };
    out.push(
        Diagnostic::error(
            Code::LicenseExceeded,
            format!("{} {what}s, but the license allows {}", names.len(), cap.value),
            extra.span,
            format!("{what} {} of {} allowed", cap.value + 1, cap.value),
        )
        .with_label(cap.span, "the cap"),
    );
}
