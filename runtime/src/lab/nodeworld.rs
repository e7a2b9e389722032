//! Builds the node part of a lab ([`NodeLayout`]) in the kernel: the internet, one admin
//! segment per PDC, a namespace per node with its admin and external interfaces (what `meshwork
//! apply --node` expects to find), the wire counters, and after the nodes are applied, a
//! namespace per vNIC (a "VM") on the overlay's bridge. All through [`crate::netlink`],
//! [`crate::netns`] and [`crate::nft`].

use std::io;

use ipnet::Ipv4Net;

use super::nodes::{LabNode, NodeLayout, VM_INTERFACE, Vm};
use super::wire;
use super::world::{context, default_route_via, new_namespace, route};
use crate::netlink::Netlink;
use crate::netns;

/// Refuses (AlreadyExists) without touching anything when a namespace of the node part exists.
pub fn refuse_existing(layout: &NodeLayout) -> io::Result<()> {
    let existing: Vec<&str> = layout.namespaces().into_iter().filter(|ns| netns::exists(ns)).collect();
    if existing.is_empty() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("network namespace {} already exists: a lab is up already", existing.join(", ")),
    ))
}

/// The internet, the segments, the nodes' namespaces and interfaces, and the wire counters.
/// The caller records the layout first and tears down on failure.
pub async fn build(layout: &NodeLayout, progress: &mut dyn FnMut(&str)) -> io::Result<()> {
    let internet = match &layout.internet {
        Some(i) => {
            progress(&format!("internet {} (counts plaintext VXLAN and ESP between PDCs)", i.netns));
            new_namespace(&i.netns)?;
            netns::sysctl_write(Some(&i.netns), "net.ipv4.ip_forward", "1")?;
            // Nodes of one external network ARP for each other: the internet answers and routes.
            for key in ["net.ipv4.conf.all.proxy_arp", "net.ipv4.conf.default.proxy_arp"] {
                netns::sysctl_write(Some(&i.netns), key, "1")?;
            }
            Some(Netlink::connect_in(&i.netns).await?)
        }
        None => None,
    };
    let mut segments = Vec::new();
    for s in &layout.segments {
        progress(&format!("admin segment of PDC {} in {}", s.pdc, s.netns));
        new_namespace(&s.netns)?;
        let nl = Netlink::connect_in(&s.netns).await?;
        nl.add_bridge(&s.bridge).await?;
        nl.set_up(&s.bridge).await?;
        segments.push((s.pdc.as_str(), nl));
    }
    for n in &layout.nodes {
        progress(&format!(
            "node {} in {}: {} {}{}",
            n.name,
            n.netns,
            n.admin.interface,
            n.admin.address,
            n.external.as_ref().map_or(String::new(), |e| format!(", {} {}", e.link.interface, e.link.address))
        ));
        let segment = segments.iter().find(|(pdc, _)| *pdc == n.pdc).map(|(_, nl)| nl).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("no admin segment for PDC {}", n.pdc))
        })?;
        build_node(layout, n, segment, internet.as_ref()).await.map_err(|e| context(e, &format!("node {}", n.name)))?;
    }
    wire::load_all(layout)
}

async fn build_node(layout: &NodeLayout, n: &LabNode, segment: &Netlink, internet: Option<&Netlink>) -> io::Result<()> {
    new_namespace(&n.netns)?;
    let node = Netlink::connect_in(&n.netns).await?;
    let bridge = layout.segment(&n.pdc).map_or(super::nodes::SEGMENT_BRIDGE, |s| s.bridge.as_str());
    segment.add_veth(&n.admin.far_link, &n.admin.interface, Some(&n.netns)).await?;
    segment.set_mtu(&n.admin.far_link, n.mtu).await?;
    segment.set_master(&n.admin.far_link, bridge).await?;
    segment.set_up(&n.admin.far_link).await?;
    node.set_mtu(&n.admin.interface, n.mtu).await?;
    node.add_address(&n.admin.interface, n.admin.address).await?;
    node.set_up(&n.admin.interface).await?;
    let (Some(e), Some(internet)) = (&n.external, internet) else { return Ok(()) };
    internet.add_veth(&e.link.far_link, &e.link.interface, Some(&n.netns)).await?;
    internet.set_mtu(&e.link.far_link, n.mtu).await?;
    internet.add_address(&e.link.far_link, Ipv4Net::from(e.gateway)).await?;
    internet.set_up(&e.link.far_link).await?;
    internet.replace_route(&route(Ipv4Net::from(e.link.address.addr()), None, &e.link.far_link)).await?;
    node.set_mtu(&e.link.interface, n.mtu).await?;
    node.add_address(&e.link.interface, e.link.address).await?;
    node.set_up(&e.link.interface).await?;
    default_route_via(&node, e.gateway, &e.link.interface).await
}

/// The VMs: a namespace per vNIC, its `eth0` with the vNIC's MAC, address and MTU, the other
/// end a port of the overlay's bridge in the node's namespace (made by `meshwork apply`).
pub async fn build_vms(layout: &NodeLayout, progress: &mut dyn FnMut(&str)) -> io::Result<()> {
    for vm in &layout.vms {
        let node = layout.node(&vm.node).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("vNIC {} is on unknown node {}", vm.vnic, vm.node))
        })?;
        progress(&format!(
            "VM {} in {}: {} {} MTU {} on {}'s {}{}",
            vm.vnic,
            vm.netns,
            vm.mac,
            vm.address,
            vm.mtu,
            vm.node,
            vm.bridge,
            vm.vlan.map_or(String::new(), |v| format!(" (VLAN {v} untagged: no 802.1Q here)"))
        ));
        build_vm(node, vm).await.map_err(|e| context(e, &format!("VM {}", vm.vnic)))?;
    }
    Ok(())
}

async fn build_vm(node: &LabNode, vm: &Vm) -> io::Result<()> {
    new_namespace(&vm.netns)?;
    let host = Netlink::connect_in(&node.netns).await?;
    host.add_veth(&vm.port, VM_INTERFACE, Some(&vm.netns)).await?;
    host.set_mtu(&vm.port, vm.mtu).await?;
    host.set_master(&vm.port, &vm.bridge).await?;
    host.set_up(&vm.port).await?;
    let inside = Netlink::connect_in(&vm.netns).await?;
    set_mac(&inside, VM_INTERFACE, vm.mac.0).await?;
    inside.set_mtu(VM_INTERFACE, vm.mtu).await?;
    inside.add_address(VM_INTERFACE, vm.address).await?;
    inside.set_up(VM_INTERFACE).await
}

/// `ip link set LINK address MAC`.
async fn set_mac(nl: &Netlink, link: &str, mac: [u8; 6]) -> io::Result<()> {
    let what = || format!("cannot set the address of {link}");
    let index = nl.link(link).await?.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, what()))?.index;
    let msg = rtnetlink::LinkUnspec::new_with_index(index).address(mac.to_vec()).build();
    nl.handle().link().set(msg).execute().await.map_err(|e| io::Error::other(format!("{}: {e}", what())))
}

/// Removes every namespace of the node part, keeping on after a failure; returns every failure.
/// What is already gone is not a failure.
pub fn teardown(layout: &NodeLayout) -> Vec<String> {
    layout.namespaces().into_iter().filter_map(super::world::delete_netns).collect()
}

/// Cuts a node off its admin segment and the internet (the far ends of its veths down), or
/// connects it again (taking a link down flushes the internet's route to the node: re-added).
pub async fn set_node_links(layout: &NodeLayout, node: &LabNode, up: bool) -> io::Result<()> {
    if let Some(s) = layout.segment(&node.pdc) {
        let nl = Netlink::connect_in(&s.netns).await?;
        if up { nl.set_up(&node.admin.far_link).await? } else { nl.set_down(&node.admin.far_link).await? }
    }
    if let (Some(i), Some(e)) = (&layout.internet, &node.external) {
        let nl = Netlink::connect_in(&i.netns).await?;
        if up {
            nl.set_up(&e.link.far_link).await?;
            nl.replace_route(&route(Ipv4Net::from(e.link.address.addr()), None, &e.link.far_link)).await?;
        } else {
            nl.set_down(&e.link.far_link).await?;
        }
    }
    Ok(())
}
