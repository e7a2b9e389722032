//! Compute nodes (DESIGN §9): a host's (or a namespace's) VXLAN data plane made what its
//! compiled `network.json` says, and strongSwan run and loaded from its `swanctl.conf`. Plan,
//! apply and the agent for nodes come with the host-model reshape of issue 11.

pub mod datapath;
pub mod dataplane;
pub mod keys;
pub mod strongswan;
