//! The one model of everything meshwork owns on a host: a resource is a kind, a name and a set
//! of attributes. Desired state, observed state and the last applied state are all lists of
//! resources, so plan, drift and destroy are comparisons of attribute maps.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use meshwork_compiler::model::vxlan::Mac;

use serde::{Deserialize, Serialize};

use crate::daemon::Program;

/// Kinds, in the order apply creates them (and destroy removes them in reverse): a namespace
/// before the link that goes into it, links before addresses and forwarding entries, files
/// before the processes that read them, the firewall before the servers that clients reach
/// through it, and strongSwan's configuration after the charon that loads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Netns,
    Link,
    Address,
    Route,
    Rule,
    /// A VXLAN device's static forwarding table (MAC -> remote VTEP).
    Fdb,
    /// A VXLAN device's permanent neighbour entries (IP -> MAC), answered by proxy ARP.
    Neighbour,
    Sysctl,
    File,
    Nftables,
    Process,
    /// The connections and keys loaded into a running charon.
    Ike,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Netns,
        Kind::Link,
        Kind::Address,
        Kind::Route,
        Kind::Rule,
        Kind::Fdb,
        Kind::Neighbour,
        Kind::Sysctl,
        Kind::File,
        Kind::Nftables,
        Kind::Process,
        Kind::Ike,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Netns => "netns",
            Kind::Link => "link",
            Kind::Address => "address",
            Kind::Route => "route",
            Kind::Rule => "rule",
            Kind::Fdb => "fdb",
            Kind::Neighbour => "neighbour",
            Kind::Sysctl => "sysctl",
            Kind::File => "file",
            Kind::Nftables => "nftables",
            Kind::Process => "process",
            Kind::Ike => "ike",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which resource: unique within one controller.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceId {
    pub kind: Kind,
    pub name: String,
}

impl ResourceId {
    pub fn new(kind: Kind, name: impl Into<String>) -> ResourceId {
        ResourceId { kind, name: name.into() }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// Attribute values are strings: they are compared and shown, never computed with. Secret
/// content is never an attribute; files are represented by their digest.
pub type Attrs = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub id: ResourceId,
    pub attrs: Attrs,
    /// What it is, in the terms the code that creates or removes it needs.
    pub spec: Spec,
}

/// The typed description of a resource, for the code that acts on it. Namespaced things carry
/// the engine namespace they live in (None: the host's own namespace).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Spec {
    Netns {
        name: String,
    },
    Bridge {
        name: String,
        /// Set explicitly (a node's overlay bridge); None leaves the kernel's.
        #[serde(default)]
        mtu: Option<u32>,
    },
    /// A node's VXLAN device (nolearning, proxy), enslaved to its overlay's bridge.
    Vxlan {
        name: String,
        vni: u32,
        port: u16,
        local: Option<Ipv4Addr>,
        mtu: u32,
        master: String,
    },
    /// A node's own interface on an overlay (`adminoverlay_0`): one end of a veth pair with
    /// the node's MAC, address and MTU; the other end, `port`, is a port of `bridge`.
    OverlayInterface {
        name: String,
        port: String,
        bridge: String,
        mac: Mac,
        mtu: u32,
    },
    /// A veth pair: `name` on the controller, enslaved to `master`; `peer` inside `peer_netns`.
    Veth {
        name: String,
        master: String,
        peer: String,
        peer_netns: String,
    },
    /// The engine end of a veth pair (created with the pair; apply only sets it up).
    PeerLink {
        netns: String,
        name: String,
    },
    /// A link meshwork owns by its name but does not want (only ever deleted).
    Link {
        name: String,
    },
    Address {
        netns: Option<String>,
        link: String,
        net: ipnet::Ipv4Net,
    },
    Route {
        netns: Option<String>,
        route: crate::netlink::RouteInfo,
    },
    Rule {
        netns: Option<String>,
        rule: crate::netlink::RuleInfo,
    },
    Sysctl {
        netns: Option<String>,
        key: String,
        value: String,
    },
    /// The whole static forwarding table of a VXLAN device: MAC -> the VTEP behind which it is.
    Fdb {
        device: String,
        entries: Vec<(Mac, Ipv4Addr)>,
    },
    /// The whole set of permanent neighbour entries on a VXLAN device.
    Neighbours {
        device: String,
        entries: Vec<(Ipv4Addr, Mac)>,
    },
    /// A file under the host's working directory ([`Layout::work`](super::layout::Layout::work));
    /// `path` is relative to it.
    File {
        path: String,
        mode: u32,
        secret: bool,
    },
    Nftables,
    /// A daemon started in the host's working directory with `config`: OpenVPN, or charon.
    Process {
        unit: String,
        config: String,
        netns: Option<String>,
        /// Records written before nodes existed hold OpenVPN.
        #[serde(default)]
        program: Program,
    },
    /// `swanctl.conf` and the keys it includes, loaded into the host's charon.
    Swanctl,
}

impl Resource {
    pub fn new(kind: Kind, name: impl Into<String>, spec: Spec) -> Resource {
        Resource { id: ResourceId::new(kind, name), attrs: Attrs::new(), spec }
    }
    pub fn attr(mut self, key: &str, value: impl Into<String>) -> Resource {
        self.attrs.insert(key.to_string(), value.into());
        self
    }
}

/// Resources by id.
pub type ResourceMap = BTreeMap<ResourceId, Resource>;

pub fn by_id(resources: impl IntoIterator<Item = Resource>) -> ResourceMap {
    resources.into_iter().map(|r| (r.id.clone(), r)).collect()
}

/// The attributes that differ between two versions of a resource: (key, before, after).
pub fn attr_changes(before: &Attrs, after: &Attrs) -> Vec<(String, Option<String>, Option<String>)> {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| (k.clone(), before.get(k).cloned(), after.get(k).cloned()))
        .collect()
}
