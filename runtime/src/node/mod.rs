//! Compute nodes (DESIGN §9): making a host's (or a namespace's) network what its compiled
//! `network.json` says. The rest of a node (strongSwan, the nft table, plan/apply/agent) comes
//! with the host-model reshape of issue 11.

pub mod dataplane;
