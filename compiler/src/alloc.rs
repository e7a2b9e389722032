//! Overlay address allocation, as VNS3 does it: controller id k takes the overlay's last usable
//! address minus k; the last usable address stays free as a shared address; engines take
//! addresses below the controllers' block; clients fill from the bottom up in declaration
//! order, and an explicit `ip=` is kept.
//!
//! With a lock (see `crate::lock`), engines and clients keep their locked addresses first, so
//! that one added, removed or reordered line moves nobody else; only what is new fills as above.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::lock::{Key, Lock, Section};
use crate::model::{Controller, Topology};
use crate::network::engine_name;
use crate::pool::{Pool, Relocation};

#[derive(Clone, Debug, Default)]
pub struct Allocation {
    pub shared: Option<Ipv4Addr>,
    /// Controller name -> overlay address.
    pub controllers: BTreeMap<String, Ipv4Addr>,
    /// Controller name -> overlay address of engine 1, 2, ...
    pub engines: BTreeMap<String, Vec<Ipv4Addr>>,
    /// One per client, in declaration order; None where the client's address is invalid.
    pub clients: Vec<Option<Ipv4Addr>>,
    pub problems: Vec<Diagnostic>,
    /// Objects that could not keep their locked addresses.
    pub relocations: Vec<Relocation>,
}

/// Usable hosts of a network: all addresses but network and broadcast (a /31 and /32 have none
/// to spare, which the size check reports).
fn usable(net: Ipv4Net) -> Option<(u32, u32)> {
    let first = u32::from(net.network()) + 1;
    let last = u32::from(net.broadcast()).checked_sub(1)?;
    (net.prefix_len() <= 30 && first <= last).then_some((first, last))
}

/// Size of the controllers' block: the license cap when given (so adding a controller later
/// does not move every engine), else the highest id.
fn controller_block(t: &Topology) -> u32 {
    let max_id = t.controllers.iter().filter_map(|c| c.id.as_ref().map(|i| i.value)).max().unwrap_or(0);
    t.license.controllers.as_ref().map_or(max_id, |l| l.value.max(max_id))
}

pub fn allocate(t: &Topology, lock: &Lock) -> Allocation {
    let mut a = Allocation { clients: vec![None; t.clients.len()], ..Default::default() };
    let Some(overlay) = &t.overlay else { return a };
    let engine_total: u32 = t.controllers.iter().filter_map(|c| c.engines.as_ref()).map(|e| e.count.value).sum();
    let client_total = t.clients.len() as u64;
    let block = controller_block(t);
    let needed = 1 + u64::from(block) + u64::from(engine_total) + client_total;
    let Some((first, last)) = usable(overlay.value) else {
        a.problems.push(too_small(t, needed, 0));
        return a;
    };
    let capacity = u64::from(last - first + 1);
    if needed > capacity {
        a.problems.push(too_small(t, needed, capacity));
        return a;
    }
    let range = format!("the overlay {}", overlay.value);
    a.shared = Some(Ipv4Addr::from(last));
    // Every address and who holds it, for collision messages.
    let mut pool = Pool::new(first, last);
    let _ = pool.take(last, "the shared address");
    for c in &t.controllers {
        if let Some(id) = &c.id {
            let ip = last - id.value;
            a.controllers.insert(c.name.value.clone(), Ipv4Addr::from(ip));
            let _ = pool.take(ip, format!("controller `{}`", c.name.value));
        }
    }
    let mut by_id: Vec<_> = t.controllers.iter().filter(|c| c.id.is_some()).collect();
    by_id.sort_by_key(|c| c.id.as_ref().map(|i| i.value));
    // Engines keep their locked addresses when they can; the block stays the controllers'.
    let block_start = last - block;
    let mut engines: Vec<(&Controller, Vec<Option<u32>>)> = Vec::new();
    for c in by_id {
        let Some(e) = &c.engines else { continue };
        let ips = (1..=e.count.value)
            .map(|k| {
                let name = engine_name(&c.name.value, k);
                let locked = lock.address(Section::Engines, &name)?;
                let n = u32::from(locked);
                let holder = format!("engine {k} of `{}`", c.name.value);
                let kept = if (block_start..last).contains(&n) {
                    Err("it is inside the controllers' block".to_string())
                } else {
                    pool.keep(n, holder).map_err(|r| Relocation::reason_for(r, &range))
                };
                match kept {
                    Ok(()) => Some(n),
                    Err(reason) => {
                        a.relocations.push(Relocation::new(
                            Key::new(Section::Engines, &name),
                            e.count.span,
                            format!("address {locked}"),
                            reason,
                        ));
                        None
                    }
                }
            })
            .collect();
        engines.push((c, ips));
    }
    // Clients keep their locked addresses unless an explicit ip= takes one.
    let explicit: BTreeMap<u32, usize> = t
        .clients
        .iter()
        .enumerate()
        .rev()
        .filter_map(|(i, c)| c.ip.as_ref().map(|ip| (u32::from(ip.value), i)))
        .collect();
    for (i, client) in t.clients.iter().enumerate() {
        if client.ip.is_some() {
            continue;
        }
        let Some(locked) = lock.address(Section::Clients, &client.name.value) else { continue };
        let n = u32::from(locked);
        let kept = match explicit.get(&n) {
            Some(&holder) => Err(format!("client `{}` takes it with ip=", t.clients[holder].name.value)),
            None => {
                pool.keep(n, format!("client `{}`", client.name.value)).map_err(|r| Relocation::reason_for(r, &range))
            }
        };
        match kept {
            Ok(()) => a.clients[i] = Some(locked),
            Err(reason) => a.relocations.push(Relocation::new(
                Key::new(Section::Clients, &client.name.value),
                client.name.span,
                format!("address {locked}"),
                reason,
            )),
        }
    }
    // New engines: downward from below the controllers' block, in id order.
    for (c, ips) in engines {
        let mut out = Vec::with_capacity(ips.len());
        for (k, ip) in (1u32..).zip(ips) {
            let ip =
                ip.or_else(|| pool.fill_down(block_start.wrapping_sub(1), format!("engine {k} of `{}`", c.name.value)));
            match ip {
                Some(ip) => out.push(Ipv4Addr::from(ip)),
                None => {
                    // The size check leaves room for every engine; a lock that holds the
                    // addresses below the block can still leave none.
                    a.problems.push(too_small(t, needed, capacity));
                    return a;
                }
            }
        }
        a.engines.insert(c.name.value.clone(), out);
    }
    // Explicit addresses next, so the bottom-up fill skips them wherever they are declared.
    let mut taken: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, client) in t.clients.iter().enumerate() {
        let Some(ip) = &client.ip else { continue };
        let n = u32::from(ip.value);
        if !(first..=last).contains(&n) || !overlay.value.contains(&ip.value) {
            a.problems.push(
                Diagnostic::error(
                    Code::OutsideOverlay,
                    format!("client `{}` has an address outside the overlay {}", client.name.value, overlay.value),
                    ip.span,
                    "not a usable overlay address",
                )
                .with_label(overlay.span, "overlay declared here")
                .with_help(format!(
                    "usable addresses are {} to {}",
                    Ipv4Addr::from(first),
                    Ipv4Addr::from(last)
                )),
            );
        } else if let Some(&other) = taken.get(&n) {
            let first_client = &t.clients[other];
            let mut d = Diagnostic::error(
                Code::AddressCollision,
                format!("clients `{}` and `{}` both take {}", first_client.name.value, client.name.value, ip.value),
                ip.span,
                "taken again here",
            );
            if let Some(first_ip) = &first_client.ip {
                d = d.with_label(first_ip.span, "first taken here");
            }
            a.problems.push(d);
        } else if let Some(holder) = pool.holder(n) {
            a.problems.push(
                Diagnostic::error(
                    Code::AddressCollision,
                    format!("client `{}` takes {}, which is reserved for {holder}", client.name.value, ip.value),
                    ip.span,
                    format!("reserved for {holder}"),
                )
                .with_help("leave out ip= to have an address allocated, or pick one from the bottom of the overlay"),
            );
        } else {
            let _ = pool.take(n, format!("client `{}`", client.name.value));
            taken.insert(n, i);
            a.clients[i] = Some(ip.value);
        }
    }
    // New clients: bottom-up, in declaration order.
    for (i, client) in t.clients.iter().enumerate() {
        if client.ip.is_some() || a.clients[i].is_some() {
            continue;
        }
        // None cannot happen after the size check, but never panic on input.
        let Some(n) = pool.fill_up(first, format!("client `{}`", client.name.value)) else { break };
        a.clients[i] = Some(Ipv4Addr::from(n));
    }
    a
}

fn too_small(t: &Topology, needed: u64, capacity: u64) -> Diagnostic {
    let overlay = t.overlay.as_ref().expect("checked by caller");
    let prefix = (0..=30u8).rev().find(|p| (1u64 << (32 - p)) - 2 >= needed).unwrap_or(0);
    Diagnostic::error(
        Code::OverlayTooSmall,
        format!("the overlay {} has {capacity} usable addresses but needs {needed}", overlay.value),
        overlay.span,
        format!("needs {needed} addresses"),
    )
    .with_help(format!(
        "it must hold the shared address, the controllers' block, every engine and every client; a /{prefix} would do"
    ))
}
