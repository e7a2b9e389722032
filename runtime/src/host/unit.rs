//! The daemons meshwork runs on a host, named in one place: the name is the stem of the unit's
//! pid file, log and management socket, and what the plan shows (`process engine-2`).

use std::fmt;

/// A daemon on a controller (OpenVPN) or a node (charon).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnitName {
    /// The controller's own OpenVPN server.
    Server,
    /// Engine `k`'s OpenVPN server, in the engine's namespace.
    Engine(u32),
    /// The peering tunnel to controller `remote`.
    Peer(String),
    /// A node's IKE daemon.
    Charon,
}

impl UnitName {
    /// Reads a unit's name back from what was made with [`fmt::Display`] (a pid file's stem).
    pub fn parse(name: &str) -> Option<UnitName> {
        match name {
            "server" => Some(UnitName::Server),
            "charon" => Some(UnitName::Charon),
            _ => {
                if let Some(k) = name.strip_prefix("engine-") {
                    return k.parse().ok().map(UnitName::Engine);
                }
                name.strip_prefix("peer-").filter(|r| !r.is_empty()).map(|r| UnitName::Peer(r.to_string()))
            }
        }
    }

    /// Whether clients connect to it (its management interface knows where they sit).
    pub fn serves_clients(&self) -> bool {
        matches!(self, UnitName::Server | UnitName::Engine(_))
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitName::Server => f.write_str("server"),
            UnitName::Engine(k) => write!(f, "engine-{k}"),
            UnitName::Peer(remote) => write!(f, "peer-{remote}"),
            UnitName::Charon => f.write_str("charon"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_as_the_unit_they_name() {
        for unit in [UnitName::Server, UnitName::Engine(12), UnitName::Peer("west-2".into()), UnitName::Charon] {
            assert_eq!(UnitName::parse(&unit.to_string()), Some(unit));
        }
        assert_eq!(UnitName::parse("engine-x"), None);
        assert_eq!(UnitName::parse("peer-"), None);
        assert!(UnitName::Engine(1).serves_clients() && !UnitName::Peer("a".into()).serves_clients());
    }
}
