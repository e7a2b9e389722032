//! The VXLAN part (Danube Cloud model on Linux): allocation, MTU arithmetic, derived MACs,
//! names, and the resolved network the node emitters read.

pub mod alloc;
pub mod diff;
pub mod forwarding;
pub mod mac;
pub mod mtu;
pub mod names;
pub mod net;
pub mod reach;

pub use net::{NodeNet, OverlayKind, OverlayNet, Path, RuleNet, VnicNet, VxlanNet, device_names};
