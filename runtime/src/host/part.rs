//! A host is made of parts, and each part owns its resources: it says which it wants
//! ([`Part::desire`]) and finds them on the host ([`Part::observe`]). Desired and observed
//! state are the sum of the parts of the host's kind ([`super::parts::of`], added up by
//! [`super::compose`]): adding a part to a kind of host touches the part's own file and that
//! list, nothing else.

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
use super::resource::{Kind, ResourceMap};
use crate::keys::Keyset;
use crate::netlink::Netlink;

/// What a part reads to say what it wants.
pub struct Topology<'a> {
    pub net: &'a Network,
    pub keyset: &'a Keyset,
    pub host: &'a HostId,
}

impl Topology<'_> {
    /// The controller this host is (checked by [`super::compose::desired`] before any part runs).
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
    /// The kinds of resource [`Part::observe`] finds: a pass that looks at some kinds only (the
    /// agent's, after an event) asks only the parts that find them. All, unless a part says.
    fn kinds(&self) -> &'static [Kind] {
        Kind::ALL
    }
    /// Adds what of this part is on the host now.
    fn observe<'a>(&'a self, _cx: &'a Observing<'a>, _out: &'a mut Observed) -> Pending<'a> {
        Box::pin(async { Ok(()) })
    }
}
