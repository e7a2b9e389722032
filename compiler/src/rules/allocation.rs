//! `alloc::outside-overlay`, `alloc::collision`, `alloc::overlay-too-small`: found while
//! allocating (see `crate::alloc`), reported here. `lock::relocated` is reported once the new
//! addresses are known (see `crate::analyze_with`).

use super::Context;
use crate::diagnostic::Diagnostics;

pub fn check(ctx: &Context<'_>, out: &mut Diagnostics) {
    out.extend(ctx.allocation.problems.iter().cloned());
    out.extend(ctx.vx_allocation.problems.iter().cloned());
}
