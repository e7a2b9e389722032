//! Validation rules: one module per concern, each with the codes it emits. Every rule sees the
//! whole model and reports everything it finds; none stops another from running.

pub mod allocation;
pub mod engines;
pub mod expects;
pub mod license;
pub mod names;
pub mod networks;
pub mod overlay;
pub mod peering;
pub mod references;
pub mod routing_table;
pub mod vxlan;

use crate::alloc::{self, Allocation};
use crate::diagnostic::Diagnostics;
use crate::lock::Lock;
use crate::model::Topology;
use crate::peering::Mesh;
use crate::vxlan::alloc::{self as vx_alloc, VxAllocation};

/// What the rules share, computed once.
pub struct Context<'a> {
    pub topology: &'a Topology,
    pub allocation: Allocation,
    pub mesh: Mesh,
    pub vx_allocation: VxAllocation,
}

impl<'a> Context<'a> {
    /// `lock`: the addresses to keep (empty without a lock file).
    pub fn new(topology: &'a Topology, lock: &Lock) -> Self {
        Self {
            topology,
            allocation: alloc::allocate(topology, lock),
            mesh: Mesh::new(topology),
            vx_allocation: vx_alloc::allocate(topology, lock),
        }
    }
}

pub fn check_all(ctx: &Context<'_>, out: &mut Diagnostics) {
    overlay::check(ctx, out);
    names::check(ctx, out);
    license::check(ctx, out);
    allocation::check(ctx, out);
    networks::check(ctx, out);
    engines::check(ctx, out);
    peering::check(ctx, out);
    references::check(ctx, out);
    routing_table::check(ctx, out);
    vxlan::check(ctx, out);
}
