//! Reading one value of a given type. The shape checker calls `check` to report problems; the
//! lowering calls the typed readers, which give `None` for values already reported.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::codes::Code;
use crate::grammar::Ty;
use crate::model::vxlan::{IfAddr, MAX_VNI, Mac};
use crate::model::{Host, PortRange, PortSpec, Selector};
use crate::syntax::{RawValue, Scalar};

/// Why a value was refused: the code, the label for its span and an optional help line.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub code: Code,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

fn refuse(code: Code, message: impl Into<String>, label: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into(), label: label.into(), help: None }
}

impl Refusal {
    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

pub const MAX_NAME_LEN: usize = 64;

fn wrong_type(expected: &str, v: &RawValue) -> Refusal {
    refuse(Code::WrongType, format!("expected {expected}, found {}", v.value.kind()), format!("expected {expected}"))
}

fn string<'a>(v: &'a RawValue, expected: &str) -> Result<&'a str, Refusal> {
    match &v.value {
        Scalar::String(s) => Ok(s),
        _ => Err(wrong_type(expected, v)),
    }
}

pub fn integer(v: &RawValue, min: i128, max: i128) -> Result<i128, Refusal> {
    match v.value {
        Scalar::Integer(n) if (min..=max).contains(&n) => Ok(n),
        Scalar::Integer(n) => {
            Err(refuse(Code::OutOfRange, format!("{n} is out of range"), format!("must be {min}..={max}")))
        }
        _ => Err(wrong_type("an integer", v)),
    }
}

pub fn name(text: &str) -> Result<(), Refusal> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let first_ok = text.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && text.len() <= MAX_NAME_LEN && text.chars().all(ok_char) {
        Ok(())
    } else {
        Err(refuse(Code::InvalidName, format!("`{text}` is not a valid name"), "invalid name")
            .help("use letters, digits, '-', '_' and '.', starting with a letter or digit, at most 64 characters"))
    }
}

pub fn ip(text: &str) -> Result<Ipv4Addr, Refusal> {
    text.parse().map_err(|_| refuse(Code::InvalidIp, format!("`{text}` is not an IPv4 address"), "not an IPv4 address"))
}

pub fn cidr(text: &str) -> Result<Ipv4Net, Refusal> {
    let Some((_, _)) = text.split_once('/') else {
        return Err(refuse(Code::InvalidCidr, format!("`{text}` has no prefix length"), "expected ADDRESS/PREFIX")
            .help(format!("write the network with its prefix, e.g. \"{text}/24\"")));
    };
    let net: Ipv4Net = text.parse().map_err(|_| {
        refuse(Code::InvalidCidr, format!("`{text}` is not an IPv4 network"), "not an IPv4 network in CIDR form")
    })?;
    if net.network() != net.addr() {
        return Err(refuse(Code::InvalidCidr, format!("`{text}` has host bits set"), "host bits set")
            .help(format!("did you mean \"{}\"?", net.trunc())));
    }
    Ok(net)
}

/// A network, or a bare address meaning /32.
pub fn net(text: &str) -> Result<Ipv4Net, Refusal> {
    if text.contains('/') { cidr(text) } else { ip(text).map(Ipv4Net::from) }
}

pub fn host(text: &str) -> Result<Host, Refusal> {
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(ip));
    }
    let looks_numeric = text.split('.').all(|l| l.chars().all(|c| c.is_ascii_digit()));
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !looks_numeric && text.len() <= 253 && text.trim_end_matches('.').split('.').all(label_ok) {
        Ok(Host::Dns(text.to_string()))
    } else {
        Err(refuse(Code::InvalidIp, format!("`{text}` is neither an IPv4 address nor a DNS name"), "not an address"))
    }
}

pub fn interface(text: &str) -> Result<(), Refusal> {
    let ok = !text.is_empty()
        && text.len() <= 15
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':'));
    if ok {
        Ok(())
    } else {
        Err(refuse(Code::InvalidName, format!("`{text}` is not an interface name"), "invalid interface name")
            .help("use 1-15 letters, digits, '-', '_', '.', '@' or ':' (no wildcards)"))
    }
}

pub fn port_number(n: i128) -> Result<u16, Refusal> {
    match u16::try_from(n) {
        Ok(p) if p >= 1 => Ok(p),
        _ => Err(refuse(Code::InvalidPort, format!("port {n} is out of range"), "ports are 1..65535")),
    }
}

pub fn port(v: &RawValue) -> Result<PortSpec, Refusal> {
    match &v.value {
        Scalar::Integer(n) => port_number(*n).map(|p| PortSpec::Range(PortRange { low: p, high: p })),
        Scalar::String(s) => {
            if let Some(set) = s.strip_prefix("fwset:") {
                name(set)?;
                return Ok(PortSpec::FwSet(set.to_string()));
            }
            let bad = || {
                refuse(
                    Code::InvalidPort,
                    format!("`{s}` is not a port or range"),
                    "expected PORT, LOW-HIGH or fwset:NAME",
                )
            };
            let parse = |t: &str| t.trim().parse::<i128>().map_err(|_| bad()).and_then(port_number);
            let (low, high) = match s.split_once('-') {
                Some((l, h)) => (parse(l)?, parse(h)?),
                None => {
                    let p = parse(s)?;
                    (p, p)
                }
            };
            if low > high {
                return Err(refuse(
                    Code::InvalidPort,
                    format!("range `{s}` runs backwards"),
                    "low end must come first",
                )
                .help(format!("did you mean \"{high}-{low}\"?")));
            }
            Ok(PortSpec::Range(PortRange { low, high }))
        }
        _ => Err(wrong_type("a port number or a string", v)),
    }
}

pub fn selector(text: &str) -> Result<Selector, Refusal> {
    let prefixed = |prefix: &str| text.strip_prefix(prefix).map(str::to_string);
    Ok(match text {
        "any" => Selector::Any,
        "overlay" => Selector::Overlay,
        _ => {
            if let Some(t) = prefixed("tag:") {
                name(&t)?;
                Selector::Tag(t)
            } else if let Some(s) = prefixed("fwset:") {
                name(&s)?;
                Selector::FwSet(s)
            } else if let Some(c) = prefixed("controller:") {
                name(&c)?;
                Selector::Controller(c)
            } else if text.starts_with(|c: char| c.is_ascii_digit())
                && (text.contains('/') || text.parse::<Ipv4Addr>().is_ok())
            {
                Selector::Net(net(text)?)
            } else {
                name(text).map_err(|_| {
                    refuse(Code::InvalidValue, format!("`{text}` is not a selector"), "not a selector")
                        .help("use any, overlay, a client name, tag:T, fwset:S, controller:C or a CIDR")
                })?;
                Selector::Client(text.to_string())
            }
        }
    })
}

pub fn tags(text: &str) -> Result<Vec<String>, Refusal> {
    text.split(',').map(str::trim).filter(|t| !t.is_empty()).map(|t| name(t).map(|()| t.to_string())).collect()
}

pub fn mac(text: &str) -> Result<Mac, Refusal> {
    let mac: Mac = text.parse().map_err(|()| {
        refuse(Code::InvalidMac, format!("`{text}` is not a MAC address"), "not a MAC address")
            .help("write six hex octets separated by ':', e.g. \"02:00:00:00:00:01\"")
    })?;
    if mac.is_multicast() || mac.is_zero() {
        return Err(refuse(
            Code::MulticastMac,
            format!("{mac} is not a unicast address"),
            if mac.is_zero() { "all-zero address" } else { "multicast bit set" },
        )
        .help("a vNIC needs a unicast MAC: the lowest bit of the first octet clear, e.g. 02:…; or leave mac= out to derive one"));
    }
    Ok(mac)
}

/// An address on an interface, optionally with its prefix length (host bits allowed).
pub fn if_addr(text: &str) -> Result<IfAddr, Refusal> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => {
            let prefix = p.parse::<u8>().ok().filter(|p| *p <= 32).ok_or_else(|| {
                refuse(Code::InvalidCidr, format!("`{text}` has no valid prefix length"), "prefix must be 0..=32")
            })?;
            (a, prefix)
        }
        None => (text, 32),
    };
    Ok(IfAddr { ip: ip(addr)?, prefix })
}

pub fn rule_name(text: &str) -> Result<(), Refusal> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let last_ok = text.chars().last().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if text.len() >= 2 && text.len() <= MAX_NAME_LEN && text.chars().all(ok_char) && last_ok {
        Ok(())
    } else {
        Err(refuse(Code::RuleName, format!("`{text}` cannot name an overlay rule"), "SmartOS cannot take this name")
            .help("use at least two letters, digits or '_', ending in a letter or '_' (SmartOS appends the VNI to the name)"))
    }
}

pub fn vni(v: &RawValue) -> Result<u32, Refusal> {
    match v.value {
        Scalar::Integer(n) if (1..=i128::from(MAX_VNI)).contains(&n) => Ok(n as u32),
        Scalar::Integer(n) => Err(refuse(Code::VniRange, format!("VNI {n} is out of range"), "VNIs are 1..=16777215")
            .help("a VXLAN network identifier has 24 bits, and 0 is reserved")),
        _ => Err(wrong_type("an integer", v)),
    }
}

/// Checks `v` against `ty`; Ok when the lowering will be able to read it.
pub fn check(ty: Ty, v: &RawValue) -> Result<(), Refusal> {
    match ty {
        Ty::String => string(v, "a string").map(drop),
        Ty::Name => name(string(v, "a name (string)")?),
        Ty::Tags => tags(string(v, "a comma-separated string of tags")?).map(drop),
        Ty::Integer { min, max } => integer(v, min, max).map(drop),
        Ty::Bool => match v.value {
            Scalar::Bool(_) => Ok(()),
            _ => Err(wrong_type("a boolean (#true or #false in KDL)", v)),
        },
        Ty::Ip => ip(string(v, "an IPv4 address (string)")?).map(drop),
        Ty::Cidr => cidr(string(v, "a CIDR (string)")?).map(drop),
        Ty::Net => net(string(v, "a network (string)")?).map(drop),
        Ty::Host => host(string(v, "an address or DNS name (string)")?).map(drop),
        Ty::Interface => interface(string(v, "an interface name (string)")?),
        Ty::Port => port(v).map(drop),
        Ty::Selector => selector(string(v, "a selector (string)")?).map(drop),
        Ty::Mac => mac(string(v, "a MAC address (string)")?).map(drop),
        Ty::IfAddr => if_addr(string(v, "an address (string)")?).map(drop),
        Ty::RuleName => rule_name(string(v, "a rule name (string)")?),
        Ty::Vni => vni(v).map(drop),
        Ty::Choice(choices) => {
            let s = string(v, "a string")?;
            if choices.contains(&s) {
                Ok(())
            } else {
                let mut r = refuse(Code::InvalidValue, format!("`{s}` is not one of the choices"), "not allowed here");
                r.help = Some(match crate::grammar::did_you_mean(s, choices.iter().copied()) {
                    Some(m) => format!("did you mean \"{m}\"? expected one of: {}", choices.join(", ")),
                    None => format!("expected one of: {}", choices.join(", ")),
                });
                Err(r)
            }
        }
    }
}

/// The string inside `v`, if it is one.
pub fn as_str(v: &RawValue) -> Option<&str> {
    match &v.value {
        Scalar::String(s) => Some(s),
        _ => None,
    }
}
