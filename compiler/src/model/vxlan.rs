//! The VXLAN part of the model (Danube Cloud on Linux): compute nodes, overlay rules, VXLAN
//! overlays with their vNICs, the admin overlay, IPsec settings and the nodes' own firewall.
//! As in the rest of the model, every value keeps its span and invalid values are absent.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{Action, PortSpec, Proto, Selector, Sp};
use crate::source::Span;

pub const DEFAULT_ADMIN_INTERFACE: &str = "eth1";
pub const DEFAULT_EXTERNAL_INTERFACE: &str = "eth0";
pub const DEFAULT_UNDERLAY_MTU: u32 = 1500;
/// esdc-overlay's habit: the first rule listens on 4790, each later one on the highest so far + 1.
pub const FIRST_RULE_PORT: u16 = 4790;
pub const ADMIN_OVERLAY_RULE: &str = "adminoverlay";
pub const ADMIN_OVERLAY_VNI: u32 = 2;
pub const ADMIN_OVERLAY_VLAN: u16 = 2;
pub const ADMIN_OVERLAY_PORT: u16 = 4793;
pub const ADMIN_OVERLAY_MTU: u32 = 1300;
pub const DEFAULT_IKE_PROPOSALS: &str = "aes256gcm16-prfsha256-ecp256";
pub const DEFAULT_ESP_PROPOSALS: &str = "aes256gcm16";
pub const DEFAULT_VTEP_POOL: &str = "198.19.254.0/24";
pub const MAX_VNI: u32 = 16_777_215;

/// An Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The group bit: a multicast (or broadcast) address can never be a vNIC's own.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }
    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl std::str::FromStr for Mac {
    type Err = ();
    /// Six two-digit hex octets separated by `:` (or `-`), either case.
    fn from_str(s: &str) -> Result<Self, ()> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for o in &mut out {
            let p = parts.next().ok_or(())?;
            if p.len() != 2 {
                return Err(());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(Mac(out))
    }
}

/// As text (`02:00:00:00:00:01`), in artifacts the runtime reads back.
impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(|()| serde::de::Error::custom(format!("`{text}` is not a MAC address")))
    }
}

/// An address on an interface, with the prefix of its network when given (a bare address is
/// the address alone, a /32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

impl IfAddr {
    /// The network the address sits in.
    pub fn network(self) -> Ipv4Net {
        Ipv4Net::new(self.ip, self.prefix).map(|n| n.trunc()).unwrap_or_else(|_| Ipv4Net::from(self.ip))
    }
}

impl std::fmt::Display for IfAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: Sp<String>,
    /// Physical datacenter: nodes in one talk in clear over the admin network.
    pub pdc: Option<Sp<String>>,
    pub admin: Option<Sp<IfAddr>>,
    pub external: Option<Sp<IfAddr>>,
    pub admin_interface: Sp<String>,
    pub external_interface: Sp<String>,
    /// The underlay's MTU on this node.
    pub mtu: Sp<u32>,
    pub span: Span,
}

/// Where a rule's VXLAN devices listen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Listen {
    /// No listen address (Danube's 0.0.0.0): the kernel sources each packet by route.
    #[default]
    Any,
    /// The node's admin address: the rule never leaves one PDC.
    Admin,
}

#[derive(Clone, Debug)]
pub struct OverlayRule {
    pub name: Sp<String>,
    pub port: Option<Sp<u16>>,
    /// Computed as the largest that fits when absent.
    pub mtu: Option<Sp<u32>>,
    pub listen: Listen,
    pub listen_span: Option<Span>,
    pub span: Span,
}

/// The admin overlay: one vNIC per node, on its own rule.
#[derive(Clone, Debug)]
pub struct AdminOverlay {
    pub subnet: Option<Sp<Ipv4Net>>,
    pub vni: Sp<u32>,
    pub vlan: Sp<u16>,
    pub port: Sp<u16>,
    pub mtu: Sp<u32>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Vxlan {
    pub name: Sp<String>,
    pub rule: Option<Sp<String>>,
    pub vni: Option<Sp<u32>>,
    pub subnet: Option<Sp<Ipv4Net>>,
    /// Inner 802.1Q tag.
    pub vlan: Option<Sp<u16>>,
    pub vnics: Vec<Vnic>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Vnic {
    pub name: Sp<String>,
    pub node: Option<Sp<String>>,
    pub ip: Option<Sp<Ipv4Addr>>,
    pub mac: Option<Sp<Mac>>,
    pub span: Span,
}

/// Which ESP implementation carries the tunnels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Datapath {
    /// Probe whether the kernel can hold an ESP SA; userspace if not.
    #[default]
    Auto,
    /// XFRM in the kernel (strongSwan's kernel-netlink).
    Kernel,
    /// strongSwan's kernel-libipsec: ESP in userspace through a TUN device.
    Userspace,
}

impl Datapath {
    pub fn name(self) -> &'static str {
        match self {
            Datapath::Auto => "auto",
            Datapath::Kernel => "kernel",
            Datapath::Userspace => "userspace",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Ipsec {
    /// IKE proposals, strongSwan syntax.
    pub proposals: String,
    /// ESP proposals, strongSwan syntax.
    pub esp: String,
    /// VTEP addresses (one per node) come from here.
    pub vtep_pool: Ipv4Net,
    /// Where the pool is written, or None when it is the default.
    pub vtep_pool_span: Option<Span>,
    pub datapath: Datapath,
}

impl Default for Ipsec {
    fn default() -> Self {
        Self {
            proposals: DEFAULT_IKE_PROPOSALS.to_string(),
            esp: DEFAULT_ESP_PROPOSALS.to_string(),
            vtep_pool: DEFAULT_VTEP_POOL.parse().expect("a valid constant"),
            vtep_pool_span: None,
            datapath: Datapath::Auto,
        }
    }
}

/// One rule of a node's external-interface input policy.
#[derive(Clone, Debug)]
pub struct NodeRule {
    pub action: Action,
    pub from: Option<Sp<Selector>>,
    pub proto: Option<Sp<Proto>>,
    pub port: Option<Sp<PortSpec>>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct NodeFirewall {
    pub policy: Action,
    pub rules: Vec<NodeRule>,
    pub span: Option<Span>,
}

impl Default for NodeFirewall {
    fn default() -> Self {
        Self { policy: Action::Accept, rules: Vec::new(), span: None }
    }
}
