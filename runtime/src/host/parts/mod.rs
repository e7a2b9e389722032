//! The parts hosts are made of (see [`super::part`]). Controllers: forwarding, OpenVPN,
//! engines; nodes: the VXLAN data plane and IPsec; both: the firewall, managed files and the
//! daemons' pid files.

pub mod engines;
pub mod files;
pub mod firewall;
pub mod forwarding;
pub mod ipsec;
pub mod openvpn;
pub mod processes;
pub mod vxlan;
