//! Addresses, MACs and ports of the VXLAN part, decided once: rule ports (one above the
//! highest so far, from 4790, skipping ports already taken), vNIC addresses (bottom-up per overlay, in
//! declaration order, explicit ones kept), admin-overlay addresses (from .11 upward, one per
//! node), derived MACs and VTEP addresses (one per node with an external address, from the
//! pool's first host, once the topology spans two PDCs). Problems found on the way (addresses
//! outside a subnet or taken twice, a full subnet, a MAC used twice, a port taken twice) are
//! diagnostics, reported by `rules::allocation`.
//!
//! With a lock (see `crate::lock`), every one of these keeps its locked value first when it
//! still can (explicit `ip=`, `port=` and `mac=` win over the lock); only new objects fill as
//! above, so one added line moves nobody else.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::mac;
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::lock::{Key, Lock, Section};
use crate::model::vxlan::{ADMIN_OVERLAY_RULE, FIRST_RULE_PORT, Mac};
use crate::model::{Sp, Topology};
use crate::network::CLIENT_PORT;
use crate::peering::PEER_PORT_BASE;
use crate::pool::{Pool, Relocation};
use crate::source::Span;

/// The admin overlay's first node address: host .11, as Danube numbers it.
pub const ADMIN_OVERLAY_FIRST_HOST: u32 = 11;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VnicAddress {
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

#[derive(Clone, Debug, Default)]
pub struct VxAllocation {
    /// Per `overlay_rules` entry.
    pub rule_ports: Vec<Option<u16>>,
    /// Per `vxlans` entry, per vNIC.
    pub vnics: Vec<Vec<Option<VnicAddress>>>,
    /// Per node: its admin-overlay vNIC (when there is an admin overlay).
    pub admin_vnics: Vec<Option<VnicAddress>>,
    /// Per node: its VTEP address (when it takes part in the IPsec mesh).
    pub vteps: Vec<Option<Ipv4Addr>>,
    pub problems: Vec<Diagnostic>,
    /// Objects that could not keep their locked values.
    pub relocations: Vec<Relocation>,
}

/// Usable hosts of a network, first and last.
fn usable(net: Ipv4Net) -> Option<(u32, u32)> {
    let first = u32::from(net.network()) + 1;
    let last = u32::from(net.broadcast()).checked_sub(1)?;
    (net.prefix_len() <= 30 && first <= last).then_some((first, last))
}

/// The topology spans two PDCs or more.
pub fn spans_pdcs(t: &Topology) -> bool {
    let pdcs: BTreeSet<&str> = t.nodes.iter().filter_map(|n| n.pdc.as_ref().map(|p| p.value.as_str())).collect();
    pdcs.len() > 1
}

pub fn allocate(t: &Topology, lock: &Lock) -> VxAllocation {
    let mut a = VxAllocation {
        rule_ports: vec![None; t.overlay_rules.len()],
        vnics: t.vxlans.iter().map(|x| vec![None; x.vnics.len()]).collect(),
        admin_vnics: vec![None; t.nodes.len()],
        vteps: vec![None; t.nodes.len()],
        problems: Vec::new(),
        relocations: Vec::new(),
    };
    ports(t, lock, &mut a);
    let mut macs = Macs {
        topology: t.name.as_ref().map_or("", |n| n.value.as_str()),
        held: BTreeMap::new(),
        explicit: t.vxlans.iter().flat_map(|x| &x.vnics).filter_map(|v| v.mac.as_ref().map(|m| m.value)).collect(),
    };
    if let Some(admin) = &t.admin_overlay
        && let Some(subnet) = &admin.subnet
    {
        admin_vnics(t, lock, subnet, &mut macs, &mut a);
    }
    for (i, x) in t.vxlans.iter().enumerate() {
        let Some(subnet) = &x.subnet else { continue };
        vnic_addresses(t, i, lock, subnet, &mut macs, &mut a);
    }
    if spans_pdcs(t) {
        vteps(t, lock, &mut a);
    }
    a
}

fn ports(t: &Topology, lock: &Lock, a: &mut VxAllocation) {
    // port -> who holds it (and where, when written in the file)
    let mut taken: BTreeMap<u16, (String, Option<Span>)> = BTreeMap::new();
    taken.insert(CLIENT_PORT, ("OpenVPN's client port".into(), None));
    for id in 1..=255u16 {
        taken.insert(PEER_PORT_BASE + id, (format!("the peering port of controller id {id}"), None));
    }
    let mut claim = |port: &Sp<u16>, what: String, explicit: bool, a: &mut VxAllocation| {
        if let Some((holder, span)) = taken.get(&port.value) {
            let mut d = Diagnostic::error(
                Code::RulePortClash,
                format!("{what} listens on UDP {}, which {holder} uses", port.value),
                port.span,
                format!("port {} taken", port.value),
            )
            .with_help("give every overlay rule a port of its own, away from 1194 and the peering ports 1195..1449");
            if let Some(span) = span {
                d = d.with_label(*span, format!("{holder} has it"));
            }
            a.problems.push(d);
            return false;
        }
        if explicit {
            taken.insert(port.value, (what, Some(port.span)));
        }
        true
    };
    if let Some(admin) = &t.admin_overlay {
        claim(&admin.port, "the admin overlay".into(), true, a);
    }
    for (i, r) in t.overlay_rules.iter().enumerate() {
        if let Some(p) = &r.port
            && claim(p, format!("overlay rule `{}`", r.name.value), true, a)
        {
            a.rule_ports[i] = Some(p.value);
        }
    }
    let mut pool = Pool::new(1, u32::from(u16::MAX));
    for (port, (holder, _)) in &taken {
        let _ = pool.take(u32::from(*port), holder.clone());
    }
    // Locked ports, for rules without port=.
    for (i, r) in t.overlay_rules.iter().enumerate() {
        let Some(locked) = lock.port(&r.name.value).filter(|_| r.port.is_none()) else { continue };
        let what = format!("overlay rule `{}`", r.name.value);
        match pool.keep(u32::from(locked), what.clone()) {
            Ok(()) => a.rule_ports[i] = Some(locked),
            Err(refusal) => a.relocations.push(Relocation::new(
                Key::new(Section::RulePorts, &r.name.value),
                r.name.span,
                format!("port {locked}"),
                Relocation::reason_for(refusal, "the UDP ports"),
            )),
        }
    }
    // Defaults: the highest port so far + 1 (from 4790), skipping ports already taken.
    let mut highest: Option<u16> = None;
    for (i, r) in t.overlay_rules.iter().enumerate() {
        if let Some(p) = a.rule_ports[i] {
            highest = Some(highest.map_or(p, |h| h.max(p)));
            continue;
        }
        if r.port.is_some() {
            continue; // clashed: reported
        }
        let start = highest.map_or(FIRST_RULE_PORT, |h| h.saturating_add(1));
        let Some(port) = pool.fill_up(u32::from(start), format!("overlay rule `{}`", r.name.value)) else { continue };
        let port = u16::try_from(port).unwrap_or(u16::MAX);
        a.rule_ports[i] = Some(port);
        highest = Some(port);
    }
}

/// MACs across the whole topology: who holds each (and where), and which are explicit `mac=`
/// (a locked MAC gives way to those).
struct Macs<'t> {
    topology: &'t str,
    held: BTreeMap<Mac, (String, Span)>,
    explicit: BTreeSet<Mac>,
}

impl Macs<'_> {
    /// Claims `mac` for `what`; a MAC held already is an error, never shifted.
    fn claim(&mut self, mac: Mac, what: String, span: Span, derived: bool, problems: &mut Vec<Diagnostic>) -> bool {
        if let Some((holder, first)) = self.held.get(&mac) {
            let how = if derived { " (derived)" } else { "" };
            problems.push(
                Diagnostic::error(
                    Code::DuplicateMac,
                    format!("{what} and {holder} share MAC {mac}{how}"),
                    span,
                    format!("{mac} again"),
                )
                .with_label(*first, format!("{holder} has it"))
                .with_help(
                    "MACs are unique across the topology; give one of them an explicit mac= (a collision is never shifted)",
                ),
            );
            return false;
        }
        self.held.insert(mac, (what, span));
        true
    }

    /// The MAC of a vNIC without `mac=`: its locked one while no one else has it, else the one
    /// derived from the names.
    fn locked_or_derived(
        &mut self,
        locked: Option<Mac>,
        overlay: &str,
        vnic: &str,
        key: Key,
        span: Span,
        relocations: &mut Vec<Relocation>,
    ) -> Mac {
        if let Some(mac) = locked {
            let holder = if self.explicit.contains(&mac) {
                Some("a vNIC's explicit mac=".to_string())
            } else {
                self.held.get(&mac).map(|(holder, _)| holder.clone())
            };
            match holder {
                None => return mac,
                Some(holder) => relocations
                    .push(Relocation::new(key, span, format!("MAC {mac}"), format!("{holder} has it")).of_mac()),
            }
        }
        mac::derive(self.topology, overlay, vnic)
    }
}

fn admin_vnics(t: &Topology, lock: &Lock, subnet: &Sp<Ipv4Net>, macs: &mut Macs<'_>, a: &mut VxAllocation) {
    let Some((first, last)) = usable(subnet.value) else { return too_small_admin(t, subnet, a) };
    let start = u32::from(subnet.value.network()) + ADMIN_OVERLAY_FIRST_HOST;
    let capacity = u64::from(last.saturating_sub(start.max(first)) + 1) * u64::from(start <= last);
    if (t.nodes.len() as u64) > capacity {
        return too_small_admin(t, subnet, a);
    }
    let range = format!("the admin overlay {} from .{ADMIN_OVERLAY_FIRST_HOST}", subnet.value);
    let mut pool = Pool::new(start.max(first), last);
    let locked: Vec<_> = t.nodes.iter().map(|n| lock.vnic(Section::AdminOverlay, "", &n.name.value)).collect();
    let mut ips: Vec<Option<u32>> = vec![None; t.nodes.len()];
    for (i, n) in t.nodes.iter().enumerate() {
        let Some(v) = locked[i] else { continue };
        let what = format!("the admin-overlay vNIC of node `{}`", n.name.value);
        match pool.keep(u32::from(v.ip), what.clone()) {
            Ok(()) => ips[i] = Some(u32::from(v.ip)),
            Err(r) => a.relocations.push(Relocation::new(
                Key::new(Section::AdminOverlay, &n.name.value),
                n.name.span,
                format!("address {}", v.ip),
                Relocation::reason_for(r, &range),
            )),
        }
    }
    for (i, n) in t.nodes.iter().enumerate() {
        let what = format!("the admin-overlay vNIC of node `{}`", n.name.value);
        let ip = match ips[i] {
            Some(ip) => ip,
            // The capacity check leaves room for every node.
            None => match pool.fill_up(start, what.clone()) {
                Some(ip) => ip,
                None => return too_small_admin(t, subnet, a),
            },
        };
        let locked_mac = locked[i].map(|v| v.mac);
        let key = Key::new(Section::AdminOverlay, &n.name.value);
        let mac =
            macs.locked_or_derived(locked_mac, ADMIN_OVERLAY_RULE, &n.name.value, key, n.name.span, &mut a.relocations);
        if macs.claim(mac, what, n.name.span, true, &mut a.problems) {
            a.admin_vnics[i] = Some(VnicAddress { ip: Ipv4Addr::from(ip), mac });
        }
    }
}

fn too_small_admin(t: &Topology, subnet: &Sp<Ipv4Net>, a: &mut VxAllocation) {
    a.problems.push(
        Diagnostic::error(
            Code::AdminOverlay,
            format!("the admin overlay {} cannot hold {} nodes from host .11 upward", subnet.value, t.nodes.len()),
            subnet.span,
            "too small",
        )
        .with_help("every node takes one admin-overlay address from .11 upward; use a shorter prefix"),
    );
}

fn vnic_addresses(
    t: &Topology,
    i: usize,
    lock: &Lock,
    subnet: &Sp<Ipv4Net>,
    macs: &mut Macs<'_>,
    a: &mut VxAllocation,
) {
    let x = &t.vxlans[i];
    let range = usable(subnet.value);
    let mut pool = range.map(|(first, last)| Pool::new(first, last));
    // Explicit addresses first, so the bottom-up fill skips them wherever they are declared.
    let mut taken: BTreeMap<u32, usize> = BTreeMap::new();
    let mut ips: Vec<Option<Ipv4Addr>> = vec![None; x.vnics.len()];
    for (k, v) in x.vnics.iter().enumerate() {
        let Some(ip) = &v.ip else { continue };
        let n = u32::from(ip.value);
        let inside = range.is_some_and(|(first, last)| (first..=last).contains(&n));
        if !inside {
            let mut d = Diagnostic::error(
                Code::VnicOutsideSubnet,
                format!("vNIC `{}` has an address outside overlay `{}` ({})", v.name.value, x.name.value, subnet.value),
                ip.span,
                "not a usable address of the overlay",
            )
            .with_label(subnet.span, "subnet declared here");
            if let Some((first, last)) = range {
                d = d.with_help(format!("usable addresses are {} to {}", Ipv4Addr::from(first), Ipv4Addr::from(last)));
            }
            a.problems.push(d);
        } else if let Some(&other) = taken.get(&n) {
            let first = &x.vnics[other];
            let mut d = Diagnostic::error(
                Code::DuplicateVnicIp,
                format!(
                    "vNICs `{}` and `{}` both take {} in overlay `{}`",
                    first.name.value, v.name.value, ip.value, x.name.value
                ),
                ip.span,
                "taken again here",
            )
            .with_help("leave out ip= to have an address allocated; other overlays may reuse it, this one may not");
            if let Some(first_ip) = &first.ip {
                d = d.with_label(first_ip.span, "first taken here");
            }
            a.problems.push(d);
        } else {
            taken.insert(n, k);
            if let Some(pool) = &mut pool {
                let _ = pool.take(n, format!("vNIC `{}` (its ip=)", v.name.value));
            }
            ips[k] = Some(ip.value);
        }
    }
    let locked: Vec<_> = x.vnics.iter().map(|v| lock.vnic(Section::Vnics, &x.name.value, &v.name.value)).collect();
    let what = |v: &crate::model::vxlan::Vnic| format!("vNIC `{}` of overlay `{}`", v.name.value, x.name.value);
    if let Some(pool) = &mut pool {
        let range = format!("the subnet {}", subnet.value);
        for (k, v) in x.vnics.iter().enumerate() {
            let Some(locked) = locked[k].filter(|_| v.ip.is_none()) else { continue };
            match pool.keep(u32::from(locked.ip), format!("vNIC `{}`", v.name.value)) {
                Ok(()) => ips[k] = Some(locked.ip),
                Err(r) => a.relocations.push(Relocation::new(
                    Key::vnic(&x.name.value, &v.name.value),
                    v.name.span,
                    format!("address {}", locked.ip),
                    Relocation::reason_for(r, &range),
                )),
            }
        }
        for (k, v) in x.vnics.iter().enumerate() {
            if ips[k].is_some() || v.ip.is_some() {
                continue;
            }
            let Some(n) = pool.fill_up(0, format!("vNIC `{}`", v.name.value)) else {
                a.problems.push(
                    Diagnostic::error(
                        Code::SubnetFull,
                        format!(
                            "overlay `{}` ({}) has no address left for vNIC `{}`",
                            x.name.value, subnet.value, v.name.value
                        ),
                        v.name.span,
                        "no address left",
                    )
                    .with_label(subnet.span, "subnet declared here")
                    .with_help("use a shorter prefix for the overlay's subnet"),
                );
                break;
            };
            ips[k] = Some(Ipv4Addr::from(n));
        }
    }
    for (k, v) in x.vnics.iter().enumerate() {
        let (mac, span, derived) = match &v.mac {
            Some(m) => (m.value, m.span, false),
            None => {
                let locked_mac = locked[k].map(|l| l.mac);
                let key = Key::vnic(&x.name.value, &v.name.value);
                let mac = macs.locked_or_derived(
                    locked_mac,
                    &x.name.value,
                    &v.name.value,
                    key,
                    v.name.span,
                    &mut a.relocations,
                );
                (mac, v.name.span, true)
            }
        };
        let unique = macs.claim(mac, what(v), span, derived, &mut a.problems);
        if let (true, Some(ip)) = (unique, ips[k]) {
            a.vnics[i][k] = Some(VnicAddress { ip, mac });
        }
    }
}

fn vteps(t: &Topology, lock: &Lock, a: &mut VxAllocation) {
    let pool_net = t.ipsec.vtep_pool;
    let Some((first, last)) = usable(pool_net) else { return vtep_pool_full(t, a) };
    let mut pool = Pool::new(first, last);
    let range = format!("the VTEP pool {pool_net}");
    for (i, n) in t.nodes.iter().enumerate() {
        let Some(locked) = lock.address(Section::Vteps, &n.name.value).filter(|_| n.external.is_some()) else {
            continue;
        };
        match pool.keep(u32::from(locked), format!("the VTEP of node `{}`", n.name.value)) {
            Ok(()) => a.vteps[i] = Some(locked),
            Err(r) => a.relocations.push(Relocation::new(
                Key::new(Section::Vteps, &n.name.value),
                n.name.span,
                format!("address {locked}"),
                Relocation::reason_for(r, &range),
            )),
        }
    }
    for (i, n) in t.nodes.iter().enumerate() {
        if n.external.is_none() || a.vteps[i].is_some() {
            continue;
        }
        let Some(ip) = pool.fill_up(first, format!("the VTEP of node `{}`", n.name.value)) else {
            return vtep_pool_full(t, a);
        };
        a.vteps[i] = Some(Ipv4Addr::from(ip));
    }
}

fn vtep_pool_full(t: &Topology, a: &mut VxAllocation) {
    let span =
        t.ipsec.vtep_pool_span.unwrap_or_else(|| t.nodes.first().map_or(crate::source::at(0, 0), |n| n.name.span));
    a.problems.push(
        Diagnostic::error(
            Code::SubnetFull,
            format!("the VTEP pool {} cannot give every node with an external address its own", t.ipsec.vtep_pool),
            span,
            "VTEP pool too small",
        )
        .with_help("give `ipsec vtep-pool=` a shorter prefix: one address per node"),
    );
}
