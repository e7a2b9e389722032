//! Which host this is: a controller or a compute node of the topology, by name. Made once from
//! the command line (`--controller C` / `--node N`) and passed around typed; everything named
//! after the host (its state directory, its plans, its messages) is derived here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The two kinds of host DESIGN §6 and §9 name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostKind {
    /// Runs OpenVPN for clients, engines and peering tunnels.
    Controller,
    /// Carries vNICs on VXLAN overlays, with IPsec to nodes in other PDCs.
    Node,
}

impl HostKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HostKind::Controller => "controller",
            HostKind::Node => "node",
        }
    }
    /// The directory under the state directory that holds hosts of this kind.
    pub fn state_subdir(self) -> &'static str {
        match self {
            HostKind::Controller => "controllers",
            HostKind::Node => "nodes",
        }
    }
    /// The command-line flag that names a host of this kind.
    pub fn flag(self) -> &'static str {
        match self {
            HostKind::Controller => "--controller",
            HostKind::Node => "--node",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostId {
    pub kind: HostKind,
    pub name: String,
}

impl HostId {
    pub fn controller(name: impl Into<String>) -> HostId {
        HostId { kind: HostKind::Controller, name: name.into() }
    }
    pub fn node(name: impl Into<String>) -> HostId {
        HostId { kind: HostKind::Node, name: name.into() }
    }
    /// `--node cn-1`: how the user names this host on the command line.
    pub fn as_flag(&self) -> String {
        format!("{} {}", self.kind.flag(), self.name)
    }
}

impl fmt::Display for HostId {
    /// `controller east`, `node cn-1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_read_as_their_kind_and_name() {
        assert_eq!(HostId::node("cn-1").to_string(), "node cn-1");
        assert_eq!(HostId::controller("east").as_flag(), "--controller east");
        assert_ne!(HostId::node("x"), HostId::controller("x"));
    }
}
