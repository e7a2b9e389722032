//! Emitters: each turns the resolved network into one kind of artifact for one controller.

pub mod nftables;
pub mod node;
pub mod openvpn;
pub mod routes;
pub mod vns3;
