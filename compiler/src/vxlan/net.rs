//! The VXLAN part of a valid topology with everything decided: what the node emitters, the
//! keyset and the runtime read. Built only when validation found no errors.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::alloc::{VnicAddress, VxAllocation};
use super::mtu::{PathKind, largest_fitting};
use super::names::{self, NodePair};
use crate::model::vxlan::{ADMIN_OVERLAY_RULE, Datapath, IfAddr, Listen, NodeRule};
use crate::model::{Action, PortRange, PortSpec, Proto, Selector, Topology};

#[derive(Clone, Debug, Default)]
pub struct VxlanNet {
    /// In declaration order.
    pub nodes: Vec<NodeNet>,
    /// The admin overlay's rule first (when there is one), then the file's, in order.
    pub rules: Vec<RuleNet>,
    /// The admin overlay first (when there is one), then the file's, in order.
    pub overlays: Vec<OverlayNet>,
    pub ipsec: IpsecNet,
    pub firewall: NodeFirewallNet,
}

#[derive(Clone, Debug)]
pub struct NodeNet {
    pub name: String,
    pub pdc: String,
    pub admin: IfAddr,
    pub external: Option<IfAddr>,
    pub admin_interface: String,
    pub external_interface: String,
    pub underlay_mtu: u32,
    /// Its address inside the IPsec mesh, when it has peers in other PDCs.
    pub vtep: Option<Ipv4Addr>,
    /// Its admin-overlay vNIC.
    pub admin_vnic: Option<VnicAddress>,
}

#[derive(Clone, Debug)]
pub struct RuleNet {
    pub name: String,
    pub port: u16,
    /// Explicit, or the largest that fits every path of the rule.
    pub mtu: u32,
    pub mtu_computed: bool,
    pub listen: Listen,
    /// Its overlays have vNICs in two PDCs or more.
    pub spans_pdcs: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverlayKind {
    Admin,
    Tenant,
}

#[derive(Clone, Debug)]
pub struct OverlayNet {
    pub name: String,
    pub kind: OverlayKind,
    /// Index into `VxlanNet::rules`.
    pub rule: usize,
    pub vni: u32,
    pub subnet: Ipv4Net,
    pub vlan: Option<u16>,
    pub vnics: Vec<VnicNet>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VnicNet {
    pub name: String,
    pub node: String,
    pub ip: Ipv4Addr,
    pub mac: super::super::model::vxlan::Mac,
}

#[derive(Clone, Debug, Default)]
pub struct IpsecNet {
    pub proposals: String,
    pub esp: String,
    pub vtep_pool: Ipv4Net,
    pub datapath: Datapath,
    /// Every pair of nodes in different PDCs that both have an external address.
    pub pairs: Vec<NodePair>,
}

#[derive(Clone, Debug)]
pub struct NodeFirewallNet {
    pub policy: Action,
    pub rules: Vec<NodeRuleNet>,
}

/// A node-firewall rule with its fwsets expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRuleNet {
    pub action: Action,
    /// Source networks; None for any.
    pub from: Option<Vec<Ipv4Net>>,
    pub proto: Option<Proto>,
    /// Destination ports; None for any.
    pub ports: Option<Vec<PortRange>>,
    /// The rule as written, for comments.
    pub text: String,
}

impl NodeFirewallNet {
    fn resolve(t: &Topology) -> Self {
        let fwset = |name: &str| t.fwsets.iter().find(|s| s.name.value == name);
        let rules = t
            .node_firewall
            .rules
            .iter()
            .map(|r| {
                let from = r.from.as_ref().and_then(|f| match &f.value {
                    Selector::Net(n) => Some(vec![*n]),
                    Selector::FwSet(name) => {
                        Some(fwset(name).map_or_else(Vec::new, |s| s.nets.iter().map(|n| n.value).collect()))
                    }
                    _ => None,
                });
                let ports = r.port.as_ref().map(|p| match &p.value {
                    PortSpec::Range(range) => vec![*range],
                    PortSpec::FwSet(name) => fwset(name).map_or_else(Vec::new, |s| {
                        s.ports
                            .iter()
                            .filter_map(|p| match p.value {
                                PortSpec::Range(r) => Some(r),
                                PortSpec::FwSet(_) => None,
                            })
                            .collect()
                    }),
                });
                NodeRuleNet {
                    action: r.action,
                    from,
                    proto: r.proto.as_ref().map(|p| p.value),
                    ports,
                    text: describe(r),
                }
            })
            .collect();
        Self { policy: t.node_firewall.policy, rules }
    }
}

fn describe(r: &NodeRule) -> String {
    let mut s = String::from(match r.action {
        Action::Accept => "allow",
        Action::Drop => "deny",
    });
    if let Some(f) = &r.from {
        s += &format!(" from={}", f.value);
    }
    if let Some(p) = &r.proto {
        s += &format!(" proto={}", p.value.name());
    }
    if let Some(p) = &r.port {
        s += &format!(" port={}", p.value);
    }
    s
}

impl Default for NodeFirewallNet {
    fn default() -> Self {
        Self { policy: Action::Accept, rules: Vec::new() }
    }
}

/// How one node reaches another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Same PDC: VXLAN in clear to the peer's admin address.
    Clear(Ipv4Addr),
    /// Different PDCs: VXLAN to the peer's VTEP, through the IPsec tunnel between external addresses.
    Ipsec(Ipv4Addr),
}

impl Path {
    pub fn destination(self) -> Ipv4Addr {
        match self {
            Path::Clear(ip) | Path::Ipsec(ip) => ip,
        }
    }
}

impl VxlanNet {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, name: &str) -> Option<&NodeNet> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn rule_of(&self, o: &OverlayNet) -> &RuleNet {
        &self.rules[o.rule]
    }

    /// How `from` sends VXLAN to `to` (None when they are in different PDCs and one has no VTEP).
    pub fn path(&self, from: &NodeNet, to: &NodeNet) -> Option<Path> {
        if from.pdc == to.pdc { Some(Path::Clear(to.admin.ip)) } else { Some(Path::Ipsec(to.vtep?)) }
    }

    /// The IPsec peers of a node, in the order of `ipsec.pairs`.
    pub fn ipsec_peers<'a>(&'a self, node: &'a NodeNet) -> impl Iterator<Item = (&'a NodePair, &'a NodeNet)> + 'a {
        self.ipsec.pairs.iter().filter_map(move |p| Some((p, self.node(p.peer_of(&node.name)?)?)))
    }

    /// The overlays with a vNIC on `node`, or whose rule the node must carry (the admin overlay).
    pub fn overlays_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a OverlayNet> + 'a {
        self.overlays.iter().filter(move |o| o.vnics.iter().any(|v| v.node == node))
    }

    /// Resolves the VXLAN part of a topology that validated without errors.
    pub fn resolve(t: &Topology, a: &VxAllocation) -> Option<VxlanNet> {
        let mut nodes = Vec::new();
        for (i, n) in t.nodes.iter().enumerate() {
            nodes.push(NodeNet {
                name: n.name.value.clone(),
                pdc: n.pdc.as_ref()?.value.clone(),
                admin: n.admin.as_ref()?.value,
                external: n.external.as_ref().map(|e| e.value),
                admin_interface: n.admin_interface.value.clone(),
                external_interface: n.external_interface.value.clone(),
                underlay_mtu: n.mtu.value,
                vtep: a.vteps[i],
                admin_vnic: a.admin_vnics[i],
            });
        }
        let pdc_of = |node: &str| nodes.iter().find(|n| n.name == node).map(|n| n.pdc.clone());
        let mut rules = Vec::new();
        let mut overlays = Vec::new();
        if let Some(admin) = &t.admin_overlay {
            let vnics = nodes
                .iter()
                .map(|n| {
                    let v = n.admin_vnic?;
                    Some(VnicNet { name: n.name.clone(), node: n.name.clone(), ip: v.ip, mac: v.mac })
                })
                .collect::<Option<Vec<_>>>()?;
            rules.push(RuleNet {
                name: ADMIN_OVERLAY_RULE.to_string(),
                port: admin.port.value,
                mtu: admin.mtu.value,
                mtu_computed: false,
                listen: Listen::Any,
                spans_pdcs: false,
            });
            overlays.push(OverlayNet {
                name: ADMIN_OVERLAY_RULE.to_string(),
                kind: OverlayKind::Admin,
                rule: 0,
                vni: admin.vni.value,
                subnet: admin.subnet.as_ref()?.value,
                vlan: Some(admin.vlan.value),
                vnics,
            });
        }
        let first_user_rule = rules.len();
        for (i, r) in t.overlay_rules.iter().enumerate() {
            rules.push(RuleNet {
                name: r.name.value.clone(),
                port: a.rule_ports[i]?,
                mtu: r.mtu.as_ref().map_or(0, |m| m.value),
                mtu_computed: r.mtu.is_none(),
                listen: r.listen,
                spans_pdcs: false,
            });
        }
        for (i, x) in t.vxlans.iter().enumerate() {
            let rule_name = &x.rule.as_ref()?.value;
            let rule = first_user_rule + t.overlay_rules.iter().position(|r| &r.name.value == rule_name)?;
            let vnics = x
                .vnics
                .iter()
                .zip(&a.vnics[i])
                .map(|(v, addr)| {
                    let addr = (*addr)?;
                    Some(VnicNet {
                        name: v.name.value.clone(),
                        node: v.node.as_ref()?.value.clone(),
                        ip: addr.ip,
                        mac: addr.mac,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            overlays.push(OverlayNet {
                name: x.name.value.clone(),
                kind: OverlayKind::Tenant,
                rule,
                vni: x.vni.as_ref()?.value,
                subnet: x.subnet.as_ref()?.value,
                vlan: x.vlan.as_ref().map(|v| v.value),
                vnics,
            });
        }
        // Which rules span PDCs, then the computed MTUs (the largest that fits every path).
        for (r, rule) in rules.iter_mut().enumerate() {
            let on_rule: Vec<&OverlayNet> = overlays.iter().filter(|o| o.rule == r).collect();
            let pdcs: BTreeSet<String> =
                on_rule.iter().flat_map(|o| o.vnics.iter()).filter_map(|v| pdc_of(&v.node)).collect();
            rule.spans_pdcs = pdcs.len() > 1;
            if rule.mtu_computed {
                let spanned: BTreeSet<&str> =
                    on_rule.iter().flat_map(|o| o.vnics.iter()).map(|v| v.node.as_str()).collect();
                let underlay = nodes
                    .iter()
                    .filter(|n| spanned.contains(n.name.as_str()))
                    .map(|n| n.underlay_mtu)
                    .min()
                    .or_else(|| nodes.iter().map(|n| n.underlay_mtu).min())
                    .unwrap_or(crate::model::vxlan::DEFAULT_UNDERLAY_MTU);
                let vlan = on_rule.iter().any(|o| o.vlan.is_some());
                rule.mtu = largest_fitting(underlay, PathKind::new(vlan, rule.spans_pdcs, t.ipsec.datapath));
            }
        }
        let mut pairs = Vec::new();
        for (i, a) in nodes.iter().enumerate() {
            for b in &nodes[i + 1..] {
                if a.pdc != b.pdc && a.external.is_some() && b.external.is_some() {
                    pairs.push(NodePair::new(&a.name, &b.name));
                }
            }
        }
        pairs.sort();
        Some(VxlanNet {
            nodes,
            rules,
            overlays,
            ipsec: IpsecNet {
                proposals: t.ipsec.proposals.clone(),
                esp: t.ipsec.esp.clone(),
                vtep_pool: t.ipsec.vtep_pool,
                datapath: t.ipsec.datapath,
                pairs,
            },
            firewall: NodeFirewallNet::resolve(t),
        })
    }
}

/// The VXLAN device and bridge names of an overlay.
pub fn device_names(net: &VxlanNet, o: &OverlayNet) -> (String, String) {
    let port = net.rule_of(o).port;
    (names::vxlan_device(port, o.vni), names::bridge(port, o.vni))
}
