//! A controller's overlay engines (DESIGN §1): the `plugin0` bridge with the controller's
//! address, per engine a namespace, a veth pair into the bridge, the engine end's address, its
//! routes and rule (everything from its tun goes to the controller), its settings, and its
//! OpenVPN process inside the namespace.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use meshwork_compiler::emit::openvpn;
use meshwork_compiler::network::{PLUGIN_BRIDGE, TUN_DEVICE};

use super::super::desired::{Desired, DesiredError, IP_FORWARD, MAIN_TABLE, address, route_resource, rule_resource};
use super::super::observe::Observed;
use super::super::part::{Observing, Part, Pending, Topology};
use super::super::resource::{Kind, Resource, Spec};
use super::super::unit::UnitName;
use super::super::{ENGINE_LINK, ENGINE_RULE_PRIORITY, ENGINE_TABLE, ROUTE_PROTO_STATIC, engine_veth};
use super::openvpn::process;
use crate::netlink::{Netlink, RouteInfo, RuleInfo};
use crate::netns;

const RP_FILTER_ALL: &str = "net.ipv4.conf.all.rp_filter";
const RP_FILTER_ENGINE_LINK: &str = "net.ipv4.conf.eth0.rp_filter";

pub struct Engines;

/// plugin0 and the engines' veths (`mw-e<k>`, [`engine_veth`]).
fn owned_link(name: &str) -> bool {
    let veth_prefix = engine_veth(0);
    let veth_prefix = veth_prefix.trim_end_matches('0');
    name == PLUGIN_BRIDGE
        || name.strip_prefix(veth_prefix).is_some_and(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_digit()))
}

impl Part for Engines {
    fn desire(&self, t: &Topology<'_>, out: &mut Desired) -> Result<(), DesiredError> {
        let c = t.controller()?;
        let Some(set) = &c.engines else { return Ok(()) };
        let prefix = set.subnet.prefix_len();
        let bridge_net = Ipv4Net::new(set.bridge_ip, prefix).expect("prefix from a valid subnet");
        let mut add = Vec::new();
        add.push(
            Resource::new(Kind::Link, PLUGIN_BRIDGE, Spec::Bridge { name: PLUGIN_BRIDGE.into(), mtu: None })
                .attr("kind", "bridge")
                .attr("state", "up"),
        );
        add.push(address(None, PLUGIN_BRIDGE, bridge_net));
        for e in &set.engines {
            let ns = openvpn::engine_netns(&e.name);
            let veth = engine_veth(e.index);
            add.push(Resource::new(Kind::Netns, ns.clone(), Spec::Netns { name: ns.clone() }));
            add.push(
                Resource::new(
                    Kind::Link,
                    veth.clone(),
                    Spec::Veth {
                        name: veth.clone(),
                        master: PLUGIN_BRIDGE.into(),
                        peer: ENGINE_LINK.into(),
                        peer_netns: ns.clone(),
                    },
                )
                .attr("kind", "veth")
                .attr("master", PLUGIN_BRIDGE)
                .attr("peer", format!("{ENGINE_LINK}@{ns}"))
                .attr("state", "up"),
            );
            add.push(
                Resource::new(
                    Kind::Link,
                    format!("{ns}:{ENGINE_LINK}"),
                    Spec::PeerLink { netns: ns.clone(), name: ENGINE_LINK.into() },
                )
                .attr("kind", "veth")
                .attr("state", "up"),
            );
            add.push(address(Some(&ns), ENGINE_LINK, Ipv4Net::new(e.plugin_ip, prefix).expect("valid prefix")));
            // The engine's OpenVPN answers clients through the controller (main table); what its
            // clients send goes to the controller too (ENGINE_TABLE, by the rule below), even to
            // the overlay subnet that is on its own tun, so the controller's firewall sees it.
            for table in [MAIN_TABLE, ENGINE_TABLE] {
                let route = RouteInfo {
                    dst: Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0"),
                    gateway: Some(set.bridge_ip),
                    dev: Some(ENGINE_LINK.into()),
                    table,
                    protocol: ROUTE_PROTO_STATIC,
                    source: None,
                };
                add.push(route_resource(Some(&ns), route));
            }
            let rule = RuleInfo { priority: ENGINE_RULE_PRIORITY, iif: Some(TUN_DEVICE.into()), table: ENGINE_TABLE };
            add.push(rule_resource(Some(&ns), rule));
            // Forwarding on; reverse-path filtering off, since overlay sources arrive on eth0
            // while the overlay subnet is on tun0.
            for (key, value) in [(IP_FORWARD, "1"), (RP_FILTER_ALL, "0"), (RP_FILTER_ENGINE_LINK, "0")] {
                add.push(
                    Resource::new(
                        Kind::Sysctl,
                        format!("{ns}:{key}"),
                        Spec::Sysctl { netns: Some(ns.clone()), key: key.into(), value: value.into() },
                    )
                    .attr("value", value),
                );
            }
            add.push(process(out, UnitName::Engine(e.index), openvpn::engine_conf(e.index), &e.name, Some(ns)));
        }
        out.resources.extend(add);
        Ok(())
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Netns, Kind::Link, Kind::Address, Kind::Route, Kind::Rule]
    }

    fn observe<'a>(&'a self, cx: &'a Observing<'a>, out: &'a mut Observed) -> Pending<'a> {
        Box::pin(async move {
            // Namespaces, and what is inside each.
            let prefix = openvpn::engine_netns_prefix(&cx.host.name);
            // Which namespace a veth's peer is in, as the topology or the last apply made it.
            let peer_netns: BTreeMap<&str, &str> = cx
                .wanted
                .values()
                .chain(cx.applied.iter().flat_map(|a| a.resources.iter()))
                .filter_map(|r| match &r.spec {
                    Spec::Veth { name, peer_netns, .. } => Some((name.as_str(), peer_netns.as_str())),
                    _ => None,
                })
                .collect();
            let namespaces: Vec<String> = netns::list()?.into_iter().filter(|n| n.starts_with(&prefix)).collect();
            let mut peer_links = BTreeMap::new();
            for ns in &namespaces {
                out.add(Resource::new(Kind::Netns, ns.clone(), Spec::Netns { name: ns.clone() }));
                let inner = Netlink::connect_in(ns).await?;
                if let Some(link) = inner.link(ENGINE_LINK).await? {
                    peer_links.insert(ns.clone(), link.clone());
                    out.add(
                        Resource::new(
                            Kind::Link,
                            format!("{ns}:{ENGINE_LINK}"),
                            Spec::PeerLink { netns: ns.clone(), name: ENGINE_LINK.into() },
                        )
                        .attr("kind", link.kind.clone().unwrap_or_default())
                        .attr("state", if link.up { "up" } else { "down" }),
                    );
                    for net in inner.addresses(ENGINE_LINK).await? {
                        out.add(address(Some(ns), ENGINE_LINK, net));
                    }
                }
                for route in inner.routes(Some(ROUTE_PROTO_STATIC), None).await? {
                    out.add(route_resource(Some(ns), route));
                }
                for rule in inner.rules().await?.into_iter().filter(|r| r.table == ENGINE_TABLE) {
                    out.add(rule_resource(Some(ns), rule));
                }
            }

            // plugin0 and the engines' veths in the controller's namespace.
            for link in cx.nl.links().await?.into_iter().filter(|l| owned_link(&l.name)) {
                let kind = link.kind.clone().unwrap_or_default();
                let state = if link.up { "up" } else { "down" };
                if link.name == PLUGIN_BRIDGE && kind == "bridge" {
                    out.add(
                        Resource::new(
                            Kind::Link,
                            PLUGIN_BRIDGE,
                            Spec::Bridge { name: PLUGIN_BRIDGE.into(), mtu: None },
                        )
                        .attr("kind", kind)
                        .attr("state", state),
                    );
                } else if let (true, Some(ns)) = (kind == "veth", peer_netns.get(link.name.as_str())) {
                    let ns = ns.to_string();
                    let peer = if peer_links.contains_key(&ns) { format!("{ENGINE_LINK}@{ns}") } else { "none".into() };
                    let mut r = Resource::new(
                        Kind::Link,
                        link.name.clone(),
                        Spec::Veth {
                            name: link.name.clone(),
                            master: link.master.clone().unwrap_or_default(),
                            peer: ENGINE_LINK.into(),
                            peer_netns: ns,
                        },
                    )
                    .attr("kind", kind)
                    .attr("peer", peer)
                    .attr("state", state);
                    if let Some(m) = &link.master {
                        r = r.attr("master", m.clone());
                    }
                    out.add(r);
                } else {
                    out.add(
                        Resource::new(Kind::Link, link.name.clone(), Spec::Link { name: link.name.clone() })
                            .attr("kind", kind)
                            .attr("state", state),
                    );
                }
                if link.name == PLUGIN_BRIDGE {
                    for net in cx.nl.addresses(PLUGIN_BRIDGE).await? {
                        out.add(address(None, PLUGIN_BRIDGE, net));
                    }
                }
            }
            Ok(())
        })
    }
}
