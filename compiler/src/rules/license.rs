//! `license::exceeded`: more controllers or clients than `license` allows.

use super::Context;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};

pub fn check(ctx: &Context<'_>, out: &mut Diagnostics) {
    let t = ctx.topology;
    if let Some(cap) = &t.license.controllers
        && t.controllers.len() > cap.value as usize
    {
        let extra = &t.controllers[cap.value as usize];
        out.push(
            Diagnostic::error(
                Code::LicenseExceeded,
                format!("{} controllers, but the license allows {}", t.controllers.len(), cap.value),
                extra.name.span,
                format!("controller {} of {} allowed", cap.value + 1, cap.value),
            )
            .with_label(cap.span, "the cap"),
        );
    }
    if let Some(cap) = &t.license.clients
        && t.clients.len() > cap.value as usize
    {
        let extra = &t.clients[cap.value as usize];
        out.push(
            Diagnostic::error(
                Code::LicenseExceeded,
                format!("{} clients, but the license allows {}", t.clients.len(), cap.value),
                extra.name.span,
                format!("client {} of {} allowed", cap.value + 1, cap.value),
            )
            .with_label(cap.span, "the cap"),
        );
    }
}
