//! Overlay address allocation, as VNS3 does it: controller id k takes the overlay's last usable
//! address minus k; the last usable address stays free as a shared address; engines take
//! addresses below the controllers' block; clients fill from the bottom up in declaration
//! order, and an explicit `ip=` is kept.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::model::Topology;

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

pub fn allocate(t: &Topology) -> Allocation {
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
    a.shared = Some(Ipv4Addr::from(last));
    // Reserved: address -> what holds it, for collision messages.
    let mut reserved: BTreeMap<u32, String> = BTreeMap::new();
    reserved.insert(last, "the shared address".into());
    for c in &t.controllers {
        if let Some(id) = &c.id {
            let ip = last - id.value;
            a.controllers.insert(c.name.value.clone(), Ipv4Addr::from(ip));
            reserved.insert(ip, format!("controller `{}`", c.name.value));
        }
    }
    let mut next_engine = last - block - 1;
    let mut by_id: Vec<_> = t.controllers.iter().filter(|c| c.id.is_some()).collect();
    by_id.sort_by_key(|c| c.id.as_ref().map(|i| i.value));
    for c in by_id {
        let Some(e) = &c.engines else { continue };
        let ips: Vec<Ipv4Addr> = (1..=e.count.value)
            .map(|k| {
                let ip = next_engine;
                next_engine -= 1;
                reserved.insert(ip, format!("engine {k} of `{}`", c.name.value));
                Ipv4Addr::from(ip)
            })
            .collect();
        a.engines.insert(c.name.value.clone(), ips);
    }
    // Explicit addresses first, so the bottom-up fill skips them wherever they are declared.
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
        } else if let Some(holder) = reserved.get(&n) {
            a.problems.push(
                Diagnostic::error(
                    Code::AddressCollision,
                    format!("client `{}` takes {}, which is reserved for {holder}", client.name.value, ip.value),
                    ip.span,
                    format!("reserved for {holder}"),
                )
                .with_help("leave out ip= to have an address allocated, or pick one from the bottom of the overlay"),
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
        } else {
            taken.insert(n, i);
            a.clients[i] = Some(ip.value);
        }
    }
    let mut next = first;
    for (i, client) in t.clients.iter().enumerate() {
        if client.ip.is_some() {
            continue;
        }
        while taken.contains_key(&next) || reserved.contains_key(&next) {
            next += 1;
        }
        if next > last {
            break; // cannot happen after the size check, but never panic on input
        }
        taken.insert(next, i);
        a.clients[i] = Some(Ipv4Addr::from(next));
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
