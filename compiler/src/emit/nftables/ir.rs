//! The ruleset as a few plain values: what [`super::plan`] decides and what the JSON and text
//! renderers read. Only the shapes meshwork emits exist here, so each renderer is a short,
//! total `match` and the two forms cannot drift apart.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Everything inside `table inet meshwork`, in the order it is created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub sets: Vec<NamedSet>,
    /// Base chains and the regular `firewall` chain; every chain is created before any rule, so
    /// a jump may name a chain listed after it.
    pub chains: Vec<Chain>,
}

impl Ruleset {
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedSet {
    /// A valid nft identifier, unique in the table.
    pub name: String,
    pub kind: SetKind,
    /// Elements may be prefixes or ranges (`flags interval`).
    pub interval: bool,
    /// Sorted, without overlaps (nft rejects overlapping intervals).
    pub elements: Vec<Elem>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetKind {
    /// `ipv4_addr`
    Addr,
    /// `inet_service` (ports)
    Service,
}

/// One element of a named or anonymous set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    Addr(Ipv4Addr),
    Net(Ipv4Net),
    Port(u16),
    Ports(u16, u16),
}

/// As nft (and ipset) write it: `192.0.2.1`, `10.0.0.0/8`, `80`, `8000-8080`.
impl std::fmt::Display for Elem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Elem::Addr(a) => a.fmt(f),
            Elem::Net(n) => write!(f, "{}/{}", n.network(), n.prefix_len()),
            Elem::Port(p) => p.fmt(f),
            Elem::Ports(lo, hi) => write!(f, "{lo}-{hi}"),
        }
    }
}

impl Elem {
    /// Appends the element as [`Display`](std::fmt::Display) writes it, without the formatting
    /// machinery: sets can hold tens of thousands of addresses.
    pub fn push_to(self, out: &mut String) {
        match self {
            Elem::Addr(a) => push_addr(out, a),
            Elem::Net(n) => {
                push_addr(out, n.network());
                out.push('/');
                push_decimal(out, n.prefix_len());
            }
            Elem::Port(_) | Elem::Ports(..) => {
                use std::fmt::Write;
                let _ = write!(out, "{self}");
            }
        }
    }
}

/// Appends `a` in dotted decimal, as `Ipv4Addr`'s `Display` writes it.
pub fn push_addr(out: &mut String, a: Ipv4Addr) {
    for (i, octet) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(out, octet);
    }
}

fn push_decimal(out: &mut String, n: u8) {
    if n >= 100 {
        out.push(char::from(b'0' + n / 100));
    }
    if n >= 10 {
        out.push(char::from(b'0' + n / 10 % 10));
    }
    out.push(char::from(b'0' + n % 10));
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: &'static str,
    /// None: a regular chain, entered only by `jump`.
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseChain {
    pub kind: ChainKind,
    pub hook: Hook,
    pub priority: Priority,
    /// Always accept: meshwork must not break unrelated traffic on the host.
    pub policy: Verdict,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainKind {
    Filter,
    Nat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// `dstnat`, -100.
    DstNat,
    /// `filter`, 0.
    Filter,
}

impl Priority {
    pub fn value(self) -> i32 {
        match self {
            Priority::DstNat => -100,
            Priority::Filter => 0,
        }
    }
    pub fn keyword(self) -> &'static str {
        match self {
            Priority::DstNat => "dstnat",
            Priority::Filter => "filter",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub stmts: Vec<Stmt>,
    /// The kernel-side comment (`comment "rule 3"`), at most [`MAX_COMMENT`] bytes.
    pub comment: Option<String>,
    /// A line of explanation for the text form only (e.g. the firewall rule as written).
    pub note: Option<String>,
}

/// nft refuses comments longer than this (NFTNL_UDATA_COMMENT_MAXLEN is 128 with the NUL).
pub const MAX_COMMENT: usize = 127;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    /// `KEY == VALUE` (or `in` for flag lists and sets).
    Match(Key, Value),
    /// `meta mark set jhash ip saddr . udp sport mod M seed S offset O`.
    MarkJhash {
        modulus: u32,
        seed: u32,
        offset: u32,
    },
    /// `dnat ip to ADDR:PORT`.
    DnatIp(Ipv4Addr, u16),
    Counter,
    Verdict(Verdict),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Jump(&'static str),
}

/// The left-hand side of a match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    IifName,
    OifName,
    L4Proto,
    Mark,
    CtState,
    IpSaddr,
    IpDaddr,
    UdpSport,
    UdpDport,
    TcpDport,
    /// Transport header destination port, for any protocol with ports.
    ThDport,
    /// `meta ipsec`: the packet arrived through an IPsec SA (input side).
    IpsecIn,
    /// `rt ipsec`: the packet's route leads into an IPsec SA (output side).
    IpsecOut,
}

impl Key {
    /// As written in nft syntax.
    pub fn text(self) -> &'static str {
        match self {
            Key::IifName => "iifname",
            Key::OifName => "oifname",
            Key::L4Proto => "meta l4proto",
            Key::Mark => "meta mark",
            Key::CtState => "ct state",
            Key::IpSaddr => "ip saddr",
            Key::IpDaddr => "ip daddr",
            Key::UdpSport => "udp sport",
            Key::UdpDport => "udp dport",
            Key::TcpDport => "tcp dport",
            Key::ThDport => "th dport",
            Key::IpsecIn => "meta ipsec",
            Key::IpsecOut => "rt ipsec",
        }
    }
}

/// The right-hand side of a match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// An interface name.
    Name(String),
    /// Several interface names (an anonymous set).
    Names(Vec<String>),
    /// A mark, shown in hex.
    Mark(u32),
    /// Protocol names (`tcp`, `udp`, `icmp`); more than one makes an anonymous set.
    Protos(Vec<&'static str>),
    /// Conntrack states, matched as flags.
    CtStates(Vec<&'static str>),
    /// One element: an address, a prefix, a port or a port range.
    Elem(Elem),
    /// An anonymous set of elements (interval when any is a prefix or range).
    Set(Vec<Elem>),
    /// A named set: `@name`.
    SetRef(String),
    /// `exists` (true) or `missing` (false), for [`Key::IpsecIn`] and [`Key::IpsecOut`].
    Exists(bool),
}
