//! meshwork's runtime: everything that touches a host or the disk (keys, clientpacks, and
//! later nftables, netlink and OpenVPN processes). The `meshwork` binary is a thin CLI over it.

pub mod agent;
pub mod api;
pub mod bench_support;
pub mod bench_topology;
pub mod bundle;
pub mod clientpack;
pub mod daemon;
pub mod host;
pub mod icmp;
pub mod keys;
pub mod lab;
pub mod lockfile;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod node;
pub mod openvpn;
pub mod plural;
pub mod private_file;
pub mod report;
pub mod state;
pub mod term;
