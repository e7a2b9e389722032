//! A host is made of parts, and each part owns its resources: it says which it wants
//! ([`Part::desire`]) and finds them on the host ([`Part::observe`]). Desired and observed
//! state are the sum of the parts of the host's kind ([`parts`]): adding a part to a kind of
//! host touches the part's own file and that list, nothing else.

use std::future::Future;
use std::io;
use std::pin::Pin;

use meshwork_compiler::network::{ControllerNet, Network};
use meshwork_compiler::vxlan::NodeNet;

use super::applied::Applied;
use super::desired::{Desired, DesiredError};
use super::identity::{HostId, HostKind};
use super::layout::Layout;
use super::observe::Observed;
use super::parts;
use super::resource::ResourceMap;
use crate::keys::Keyset;
use crate::netlink::Netlink;

/// What a part reads to say what it wants.
pub struct Topology<'a> {
    pub net: &'a Network,
    pub keyset: &'a Keyset,
    pub host: &'a HostId,
}

impl Topology<'_> {
    /// The controller this host is (checked by [`Desired::new`] before any part runs).
    pub fn controller(&self) -> Result<&ControllerNet, DesiredError> {
        self.net.controller(&self.host.name).ok_or_else(|| self.unknown())
    }
    /// The node this host is.
    pub fn node(&self) -> Result<&NodeNet, DesiredError> {
        self.net.vxlan.node(&self.host.name).ok_or_else(|| self.unknown())
    }
    pub fn unknown(&self) -> DesiredError {
        let names: Vec<&str> = match self.host.kind {
            HostKind::Controller => self.net.controllers.iter().map(|c| c.name.as_str()).collect(),
            HostKind::Node => self.net.vxlan.nodes.iter().map(|n| n.name.as_str()).collect(),
        };
        let list = if names.is_empty() { "none".to_string() } else { names.join(", ") };
        DesiredError::NoHost { host: self.host.clone(), known: list }
    }
}

/// What a part reads to find its resources on the host.
pub struct Observing<'a> {
    pub host: &'a HostId,
    pub layout: &'a Layout,
    /// The last apply's record (what the host looked like right after it).
    pub applied: Option<&'a Applied>,
    /// What the topology wants (empty when destroying).
    pub wanted: &'a ResourceMap,
    /// The host's namespace.
    pub nl: &'a Netlink,
}

pub type Pending<'a> = Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'a>>;

pub trait Part: Send + Sync {
    /// Adds the resources this part wants, and the content they need (files, the ruleset).
    fn desire(&self, _t: &Topology<'_>, _out: &mut Desired) -> Result<(), DesiredError> {
        Ok(())
    }
    /// Adds what of this part is on the host now.
    fn observe<'a>(&'a self, _cx: &'a Observing<'a>, _out: &'a mut Observed) -> Pending<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// The parts of each kind of host, in the order they are asked.
pub fn parts(kind: HostKind) -> Vec<Box<dyn Part>> {
    match kind {
        HostKind::Controller => vec![
            Box::new(parts::forwarding::Forwarding),
            Box::new(parts::openvpn::Openvpn),
            Box::new(parts::engines::Engines),
            Box::new(parts::firewall::Firewall),
            Box::new(parts::files::Files),
            Box::new(parts::processes::Processes),
        ],
        HostKind::Node => vec![
            Box::new(parts::vxlan::Vxlan),
            Box::new(parts::ipsec::Ipsec),
            Box::new(parts::firewall::Firewall),
            Box::new(parts::files::Files),
            Box::new(parts::processes::Processes),
        ],
    }
}
