//! A node's VXLAN data plane (DESIGN §9), as its `network.json` says: the VTEP address on `lo`,
//! per overlay a bridge and a VXLAN device (nolearning, proxy, the rule's port, no listen
//! address unless the rule listens on the admin network), the device's static FDB and
//! permanent neighbour entries, and the node's own interface on the admin overlay.
//!
//! An inner VLAN tag is not applied: these kernels have no 802.1Q, and the overlay's VNI keeps
//! tenants apart without it (the MTU keeps room for the tag all the same).

use ipnet::Ipv4Net;
use meshwork_compiler::emit::node::network::{self, NodeNetwork};
use meshwork_compiler::vxlan::names::{
    ADMIN_OVERLAY_INTERFACE, ADMIN_OVERLAY_PORT, BRIDGE_PREFIX, VXLAN_DEVICE_PREFIX,
};

use super::super::desired::{Desired, DesiredError, address};
use super::super::observe::Observed;
use super::super::part::{Observing, Part, Pending, Topology};
use super::super::resource::{Kind, Resource, Spec};

/// Where the VTEP address lives: always up, never tied to a physical link.
pub const VTEP_LINK: &str = "lo";

pub struct Vxlan;

fn owned_link(name: &str) -> bool {
    name.starts_with(VXLAN_DEVICE_PREFIX) || name.starts_with(BRIDGE_PREFIX) || name == ADMIN_OVERLAY_INTERFACE
}

fn up(up: bool) -> &'static str {
    if up { "up" } else { "down" }
}

fn bridge(name: &str, mtu: u32, state: &str) -> Resource {
    Resource::new(Kind::Link, name, Spec::Bridge { name: name.into(), mtu: Some(mtu) })
        .attr("kind", "bridge")
        .attr("mtu", mtu.to_string())
        .attr("state", state)
}

fn vxlan(name: &str, p: crate::netlink::VxlanParams, mtu: u32, master: Option<&str>, state: &str) -> Resource {
    let mut r = Resource::new(
        Kind::Link,
        name,
        Spec::Vxlan {
            name: name.into(),
            vni: p.vni,
            port: p.port,
            local: p.local,
            mtu,
            master: master.unwrap_or_default().into(),
        },
    )
    .attr("kind", "vxlan")
    .attr("vni", p.vni.to_string())
    .attr("port", p.port.to_string())
    .attr("local", p.local.map(|a| a.to_string()).unwrap_or_else(|| "any".into()))
    .attr("learning", if p.learning { "on" } else { "off" })
    .attr("proxy", if p.proxy { "on" } else { "off" })
    .attr("mtu", mtu.to_string())
    .attr("state", state);
    if let Some(m) = master {
        r = r.attr("master", m);
    }
    r
}

fn fdb(device: &str, entries: Vec<(meshwork_compiler::model::vxlan::Mac, std::net::Ipv4Addr)>) -> Resource {
    let mut r = Resource::new(Kind::Fdb, device, Spec::Fdb { device: device.into(), entries: Vec::new() });
    for (mac, dst) in &entries {
        r = r.attr(&mac.to_string(), dst.to_string());
    }
    if let Spec::Fdb { entries: e, .. } = &mut r.spec {
        *e = entries;
    }
    r
}

fn neighbours(device: &str, entries: Vec<(std::net::Ipv4Addr, meshwork_compiler::model::vxlan::Mac)>) -> Resource {
    let mut r = Resource::new(Kind::Neighbour, device, Spec::Neighbours { device: device.into(), entries: Vec::new() });
    for (ip, mac) in &entries {
        r = r.attr(&ip.to_string(), mac.to_string());
    }
    if let Spec::Neighbours { entries: e, .. } = &mut r.spec {
        *e = entries;
    }
    r
}

impl Part for Vxlan {
    fn desire(&self, t: &Topology<'_>, out: &mut Desired) -> Result<(), DesiredError> {
        let nn: NodeNetwork = network::build(t.net, t.node()?);
        if let Some(vtep) = nn.vtep {
            out.resources.push(address(None, VTEP_LINK, Ipv4Net::from(vtep)));
        }
        for o in &nn.overlays {
            let d = &o.device;
            out.resources.push(bridge(&o.bridge.name, o.bridge.mtu, "up"));
            let params = crate::netlink::VxlanParams {
                vni: d.vni,
                port: d.port,
                local: d.local,
                learning: d.learning,
                proxy: d.proxy,
            };
            out.resources.push(vxlan(&d.name, params, d.mtu, Some(&o.bridge.name), "up"));
            if !o.fdb.is_empty() {
                out.resources.push(fdb(&d.name, o.fdb.iter().map(|f| (f.mac, f.dst)).collect()));
            }
            if !o.neighbours.is_empty() {
                out.resources.push(neighbours(&d.name, o.neighbours.iter().map(|n| (n.ip, n.mac)).collect()));
            }
        }
        if let Some(a) = &nn.admin_overlay {
            out.resources.push(
                Resource::new(
                    Kind::Link,
                    &a.name,
                    Spec::OverlayInterface {
                        name: a.name.clone(),
                        port: ADMIN_OVERLAY_PORT.into(),
                        bridge: a.bridge.clone(),
                        mac: a.mac,
                        mtu: a.mtu,
                    },
                )
                .attr("kind", "veth")
                .attr("mac", a.mac.to_string())
                .attr("mtu", a.mtu.to_string())
                .attr("bridge", a.bridge.clone())
                .attr("state", "up"),
            );
            out.resources.push(address(None, &a.name, a.address));
        }
        Ok(())
    }

    fn observe<'a>(&'a self, cx: &'a Observing<'a>, out: &'a mut Observed) -> Pending<'a> {
        Box::pin(async move {
            let nl = cx.nl;
            let links = nl.links().await?;
            for link in links.iter().filter(|l| owned_link(&l.name)) {
                let kind = link.kind.clone().unwrap_or_default();
                let state = up(link.up);
                if link.name == ADMIN_OVERLAY_INTERFACE {
                    let port = links.iter().find(|l| l.name == ADMIN_OVERLAY_PORT);
                    let mut r = Resource::new(
                        Kind::Link,
                        &link.name,
                        Spec::OverlayInterface {
                            name: link.name.clone(),
                            port: ADMIN_OVERLAY_PORT.into(),
                            bridge: port.and_then(|p| p.master.clone()).unwrap_or_default(),
                            mac: link.mac.unwrap_or(meshwork_compiler::model::vxlan::Mac([0; 6])),
                            mtu: link.mtu,
                        },
                    )
                    .attr("kind", kind)
                    .attr("mac", link.mac.map(|m| m.to_string()).unwrap_or_default())
                    .attr("mtu", link.mtu.to_string())
                    .attr("state", state);
                    if let Some(b) = port.and_then(|p| p.master.clone()) {
                        r = r.attr("bridge", b);
                    }
                    out.add(r);
                    for net in nl.addresses(&link.name).await? {
                        out.add(address(None, &link.name, net));
                    }
                } else if kind == "bridge" {
                    out.add(bridge(&link.name, link.mtu, state));
                } else if let Some(p) = nl.vxlan(&link.name).await? {
                    out.add(vxlan(&link.name, p, link.mtu, link.master.as_deref(), state));
                    let entries = nl.fdb_entries(&link.name).await?;
                    if !entries.is_empty() {
                        out.add(fdb(&link.name, entries.into_iter().map(|f| (f.mac, f.dst)).collect()));
                    }
                    let entries = nl.neighbours(&link.name).await?;
                    if !entries.is_empty() {
                        out.add(neighbours(&link.name, entries.into_iter().map(|n| (n.ip, n.mac)).collect()));
                    }
                } else {
                    out.add(
                        Resource::new(Kind::Link, &link.name, Spec::Link { name: link.name.clone() })
                            .attr("kind", kind)
                            .attr("state", state),
                    );
                }
            }
            // The VTEP: meshwork owns only the addresses on `lo` that it wants or put there.
            let known: Vec<Ipv4Net> = cx
                .wanted
                .values()
                .chain(cx.applied.iter().flat_map(|a| a.resources.iter()))
                .filter_map(|r| match &r.spec {
                    Spec::Address { netns: None, link, net } if link == VTEP_LINK => Some(*net),
                    _ => None,
                })
                .collect();
            for net in nl.addresses(VTEP_LINK).await? {
                if known.contains(&net) {
                    out.add(address(None, VTEP_LINK, net));
                }
            }
            Ok(())
        })
    }
}
