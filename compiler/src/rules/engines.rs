//! `engines::exceed-cores` (warning): one OpenVPN process uses one core, so engines at or
//! beyond the core count bring nothing; cores-1 is ideal.

use super::Context;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::plural::count;

pub fn check(ctx: &Context<'_>, out: &mut Diagnostics) {
    for c in &ctx.topology.controllers {
        let (Some(e), Some(cores)) = (&c.engines, &c.cores) else { continue };
        if e.count.value >= cores.value {
            let hint = cores.value.saturating_sub(1);
            let help = if hint == 0 {
                "a single-core host gains nothing from engines; remove them".to_string()
            } else {
                format!("use {}: cores-1 leaves one core for the controller's own server", count(hint, "engine"))
            };
            out.push(
                Diagnostic::warning(
                    Code::EnginesExceedCores,
                    format!(
                        "`{}` runs {} on {}",
                        c.name.value,
                        count(e.count.value, "engine"),
                        count(cores.value, "core")
                    ),
                    e.count.span,
                    count(e.count.value, "engine"),
                )
                .with_label(cores.span, count(cores.value, "core"))
                .with_help(help),
            );
        }
    }
}
