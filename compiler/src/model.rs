//! The topology as meshwork understands it, after parsing and shape checking. Every value keeps
//! the span it came from so later rules can point at it. Optional values that were invalid in
//! the file are absent here (their error is already reported).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::source::Span;

pub mod vxlan;

pub use vxlan::{AdminOverlay, Ipsec, Node, NodeFirewall, OverlayRule, Vxlan};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sp<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Sp<T> {
    pub fn new(value: T, span: Span) -> Self {
        Self { value, span }
    }
}

impl<T> std::ops::Deref for Sp<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

pub const DEFAULT_INTERFACE: &str = "eth0";
pub const DEFAULT_SEED: u32 = 0xf1e2_d3c4;
pub const DEFAULT_MARK_OFFSET: u32 = 0x1000;
pub const DEFAULT_LINK_COST: u32 = 1;

#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub name: Option<Sp<String>>,
    pub overlay: Option<Sp<Ipv4Net>>,
    /// An `overlay` node is in the file, even if its value is invalid (reported already).
    pub overlay_given: bool,
    pub license: License,
    pub controllers: Vec<Controller>,
    pub peering: Peering,
    pub clients: Vec<Client>,
    pub fwsets: Vec<FwSet>,
    pub firewall: Firewall,
    pub expects: Vec<Expect>,
    pub nodes: Vec<Node>,
    pub overlay_rules: Vec<OverlayRule>,
    pub admin_overlay: Option<AdminOverlay>,
    pub vxlans: Vec<Vxlan>,
    pub ipsec: Ipsec,
    pub node_firewall: NodeFirewall,
}

#[derive(Clone, Debug, Default)]
pub struct License {
    pub controllers: Option<Sp<u32>>,
    pub clients: Option<Sp<u32>>,
}

/// An underlay address: clients and peers dial it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Ip(Ipv4Addr),
    Dns(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ip(ip) => ip.fmt(f),
            Host::Dns(name) => f.write_str(name),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Controller {
    pub name: Sp<String>,
    pub id: Option<Sp<u32>>,
    pub address: Option<Sp<Host>>,
    pub interface: Sp<String>,
    pub cores: Option<Sp<u32>>,
    pub engines: Option<Engines>,
    pub lans: Vec<Sp<Ipv4Net>>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Engines {
    pub count: Sp<u32>,
    pub subnet: Option<Sp<Ipv4Net>>,
    pub seed: u32,
    pub offset: u32,
    pub span: Span,
}

#[derive(Clone, Debug, Default)]
pub enum Peering {
    /// Every controller peers with every other at the default cost.
    #[default]
    Full,
    Partial(Vec<Link>),
}

#[derive(Clone, Debug)]
pub struct Link {
    pub a: Sp<String>,
    pub b: Sp<String>,
    pub cost: u32,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Client {
    pub name: Sp<String>,
    pub ip: Option<Sp<Ipv4Addr>>,
    pub tags: Vec<Sp<String>>,
    pub revoked: bool,
    /// None: the topology's default (on where engines exist).
    pub redirect_gateway: Option<bool>,
    /// The `clients` group this client was expanded from, if any.
    pub group: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FwSetKind {
    Net,
    Port,
}

#[derive(Clone, Debug)]
pub struct FwSet {
    pub name: Sp<String>,
    pub kind: Option<Sp<FwSetKind>>,
    pub nets: Vec<Sp<Ipv4Net>>,
    pub ports: Vec<Sp<PortSpec>>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Accept,
    Drop,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Accept => "allow",
            Action::Drop => "drop",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Firewall {
    pub policy: Action,
    pub rules: Vec<Rule>,
}

impl Default for Firewall {
    fn default() -> Self {
        Self { policy: Action::Accept, rules: Vec::new() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Any,
    Overlay,
    Client(String),
    Tag(String),
    FwSet(String),
    Controller(String),
    Net(Ipv4Net),
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Any => f.write_str("any"),
            Selector::Overlay => f.write_str("overlay"),
            Selector::Client(c) => f.write_str(c),
            Selector::Tag(t) => write!(f, "tag:{t}"),
            Selector::FwSet(s) => write!(f, "fwset:{s}"),
            Selector::Controller(c) => write!(f, "controller:{c}"),
            Selector::Net(n) => n.fmt(f),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.low == self.high { write!(f, "{}", self.low) } else { write!(f, "{}-{}", self.low, self.high) }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSpec {
    Range(PortRange),
    FwSet(String),
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortSpec::Range(r) => r.fmt(f),
            PortSpec::FwSet(s) => write!(f, "fwset:{s}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub action: Action,
    pub from: Option<Sp<Selector>>,
    pub to: Option<Sp<Selector>>,
    pub proto: Option<Sp<Proto>>,
    pub port: Option<Sp<PortSpec>>,
    pub span: Span,
}

/// One end of an expected flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A client, a vNIC, or a node (its admin-overlay vNIC).
    Named(String),
    Ip(Ipv4Addr),
}

#[derive(Clone, Debug)]
pub struct Expect {
    pub name: Option<String>,
    pub from: Sp<Endpoint>,
    pub to: Sp<Endpoint>,
    pub proto: Option<Sp<Proto>>,
    pub port: Option<Sp<u16>>,
    pub verdict: Option<Sp<Action>>,
    pub span: Span,
}
