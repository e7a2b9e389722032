//! A host (a controller or a compute node) as meshwork owns it: what the topology wants there ([`desired`]), what is
//! there now ([`observe`]), the difference ([`plan`]) and how to close it ([`execute`]).
//!
//! Everything is described as [`resource::Resource`]s (a kind, a name and attributes), so plan,
//! drift detection, apply, destroy and the agent's repairs all work on one model.

pub mod applied;
pub mod desired;
pub mod execute;
pub mod identity;
pub mod layout;
pub mod lock;
pub mod observe;
pub mod part;
pub mod parts;
pub mod plan;
pub mod planfile;
pub mod render;
pub mod resource;
pub mod session;
pub mod unit;

/// Route protocol number of meshwork's static routes (engines' default routes, LANs and peers):
/// how meshwork recognises its own routes when it reads the kernel's tables.
pub const ROUTE_PROTO_STATIC: u8 = 77;
/// Route protocol number of the /32 routes the agent learns for clients sitting on engines.
/// Apart from the static ones, since the plan leaves these to the agent.
pub const ROUTE_PROTO_AGENT: u8 = 78;
/// Routing table an engine's namespace uses for what arrives from its tun device: everything
/// goes to the controller, so the controller's forward chain is the single enforcement point.
pub const ENGINE_TABLE: u32 = 1194;
/// Priority of the engine namespace's `iif tun0 lookup ENGINE_TABLE` rule.
pub const ENGINE_RULE_PRIORITY: u32 = 1000;
/// The engine end of the veth pair, inside the engine's namespace.
pub const ENGINE_LINK: &str = "eth0";

/// The controller end of engine `k`'s veth pair (`mw-*`, so it is recognisably meshwork's).
pub fn engine_veth(k: u32) -> String {
    format!("mw-e{k}")
}
