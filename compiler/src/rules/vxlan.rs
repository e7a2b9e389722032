//! The VXLAN part's own rules: references between overlays, rules and nodes (`vxlan::unknown-rule`,
//! `vxlan::unknown-node`), VNIs unique per rule (`vxlan::duplicate-vni`), what crossing PDCs
//! needs (`vxlan::missing-external`, `vxlan::admin-rule-spans-pdcs`), MTUs that fit the worst
//! path (`vxlan::mtu`), the admin overlay's reserved rule (`vxlan::admin-overlay`) and node
//! addresses taken twice (`vxlan::duplicate-address`). Allocation problems (addresses, MACs,
//! ports) come from `vxlan::alloc`; overlaps of what shares a routing table from `networks`.

use std::collections::{BTreeMap, BTreeSet};

use super::Context;
use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::grammar::did_you_mean;
use crate::model::vxlan::{ADMIN_OVERLAY_RULE, Listen, Node, OverlayRule, Vxlan};
use crate::model::{Sp, Topology};
use crate::source::Span;
use crate::vxlan::alloc::spans_pdcs;
use crate::vxlan::mtu::{Budget, PathKind, largest_fitting};

pub fn check(ctx: &Context<'_>, out: &mut Diagnostics) {
    let t = ctx.topology;
    references(t, out);
    vnis(t, out);
    admin_rule_name(t, out);
    node_addresses(t, out);
    let multi_pdc = spans_pdcs(t);
    // node name -> why it needs an external address (the first reason found), reported once
    let mut need_external: BTreeMap<&str, (&Node, String)> = BTreeMap::new();
    let nodes: BTreeMap<&str, &Node> = t.nodes.iter().map(|n| (n.name.value.as_str(), n)).collect();
    for rule in &t.overlay_rules {
        let usage = RuleUsage::of(t, &nodes, rule);
        if usage.pdcs.len() > 1 && rule.listen == Listen::Admin {
            listen_admin_across_pdcs(rule, &usage, out);
        }
        if let Some(mtu) = &rule.mtu {
            let path = PathKind::new(usage.vlan, usage.pdcs.len() > 1, t.ipsec.datapath);
            check_mtu(&format!("overlay rule `{}`", rule.name.value), mtu, path, &usage.nodes, out);
        }
        if multi_pdc && usage.pdcs.len() > 1 {
            for n in &usage.nodes {
                let why = format!("overlay rule `{}`, which spans PDCs", rule.name.value);
                need_external.entry(n.name.value.as_str()).or_insert((n, why));
            }
        }
    }
    if let Some(admin) = &t.admin_overlay {
        let nodes: Vec<&Node> = t.nodes.iter().collect();
        let path = PathKind::new(true, multi_pdc, t.ipsec.datapath);
        check_mtu("the admin overlay", &admin.mtu, path, &nodes, out);
        if multi_pdc {
            for n in &nodes {
                need_external.entry(n.name.value.as_str()).or_insert((n, "the admin overlay, which spans PDCs".into()));
            }
        }
    }
    for (n, why) in need_external.values() {
        missing_external(n, why, out);
    }
}

/// Which nodes and PDCs a rule's overlays reach, and whether any carries an inner VLAN tag.
struct RuleUsage<'t> {
    nodes: Vec<&'t Node>,
    /// PDC -> the first vNIC (span) that put the rule there.
    pdcs: BTreeMap<&'t str, Span>,
    vlan: bool,
}

impl<'t> RuleUsage<'t> {
    fn of(t: &'t Topology, by_name: &BTreeMap<&str, &'t Node>, rule: &OverlayRule) -> Self {
        let mut nodes: Vec<&Node> = Vec::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut pdcs = BTreeMap::new();
        let mut vlan = false;
        for x in t.vxlans.iter().filter(|x| x.rule.as_ref().is_some_and(|r| r.value == rule.name.value)) {
            vlan |= x.vlan.is_some();
            for v in &x.vnics {
                let Some(&node) = v.node.as_ref().and_then(|n| by_name.get(n.value.as_str())) else {
                    continue;
                };
                if seen.insert(node.name.value.as_str()) {
                    nodes.push(node);
                }
                if let Some(pdc) = &node.pdc {
                    pdcs.entry(pdc.value.as_str()).or_insert(v.name.span);
                }
            }
        }
        Self { nodes, pdcs, vlan }
    }
}

fn references(t: &Topology, out: &mut Diagnostics) {
    let rules: BTreeSet<&str> = t.overlay_rules.iter().map(|r| r.name.value.as_str()).collect();
    let nodes: BTreeSet<&str> = t.nodes.iter().map(|n| n.name.value.as_str()).collect();
    for x in &t.vxlans {
        if let Some(rule) = &x.rule
            && !rules.contains(rule.value.as_str())
        {
            if rule.value == ADMIN_OVERLAY_RULE {
                out.push(
                    Diagnostic::error(
                        Code::AdminOverlay,
                        format!("overlay `{}` is on the admin overlay's rule", x.name.value),
                        rule.span,
                        "the admin overlay's own rule",
                    )
                    .with_help("the admin overlay has one vNIC per node, made by meshwork; declare an overlay-rule of your own"),
                );
                continue;
            }
            let mut d = Diagnostic::error(
                Code::UnknownRule,
                format!("overlay `{}` uses overlay rule `{}`, which is not declared", x.name.value, rule.value),
                rule.span,
                "no such overlay rule",
            );
            d = d.with_help(match did_you_mean(&rule.value, rules.iter().copied()) {
                Some(m) => format!("did you mean `{m}`?"),
                None => format!("declare it: overlay-rule \"{}\"", rule.value),
            });
            out.push(d);
        }
        for v in &x.vnics {
            let Some(node) = &v.node else { continue };
            if nodes.contains(node.value.as_str()) {
                continue;
            }
            let mut d = Diagnostic::error(
                Code::UnknownNodeRef,
                format!("vNIC `{}` is on node `{}`, which is not declared", v.name.value, node.value),
                node.span,
                "no such node",
            );
            d = d.with_help(match did_you_mean(&node.value, nodes.iter().copied()) {
                Some(m) => format!("did you mean `{m}`?"),
                None => format!("declare it: node \"{}\" pdc=… admin=…", node.value),
            });
            out.push(d);
        }
    }
}

fn vnis(t: &Topology, out: &mut Diagnostics) {
    // (rule, vni) -> the overlay that took it first
    let mut seen: BTreeMap<(&str, u32), (&Vxlan, Span)> = BTreeMap::new();
    for x in &t.vxlans {
        let (Some(rule), Some(vni)) = (&x.rule, &x.vni) else { continue };
        match seen.get(&(rule.value.as_str(), vni.value)) {
            Some((first, first_span)) => out.push(
                Diagnostic::error(
                    Code::DuplicateVni,
                    format!(
                        "overlays `{}` and `{}` both use VNI {} on rule `{}`",
                        first.name.value, x.name.value, vni.value, rule.value
                    ),
                    vni.span,
                    "VNI used again here",
                )
                .with_label(*first_span, format!("`{}` has it", first.name.value))
                .with_help("an overlay is a rule plus a VNI: give it another VNI, or put it on another rule"),
            ),
            None => {
                seen.insert((rule.value.as_str(), vni.value), (x, vni.span));
            }
        }
    }
}

fn admin_rule_name(t: &Topology, out: &mut Diagnostics) {
    for r in t.overlay_rules.iter().filter(|r| r.name.value == ADMIN_OVERLAY_RULE) {
        out.push(
            Diagnostic::error(
                Code::AdminOverlay,
                format!("`{ADMIN_OVERLAY_RULE}` is the admin overlay's rule"),
                r.name.span,
                "reserved rule name",
            )
            .with_help("declare `admin-overlay subnet=…` for the admin overlay; name this rule otherwise"),
        );
    }
}

fn node_addresses(t: &Topology, out: &mut Diagnostics) {
    // address -> (which address of which node, where)
    let mut seen: BTreeMap<std::net::Ipv4Addr, (String, Span)> = BTreeMap::new();
    for n in &t.nodes {
        for (kind, addr) in [("admin", &n.admin), ("external", &n.external)] {
            let Some(addr) = addr else { continue };
            let what = format!("the {kind} address of node `{}`", n.name.value);
            match seen.get(&addr.value.ip) {
                Some((first, span)) => out.push(
                    Diagnostic::error(
                        Code::DuplicateNodeAddress,
                        format!("{what} is {}, which is {first}", addr.value.ip),
                        addr.span,
                        "address taken again",
                    )
                    .with_label(*span, first.clone())
                    .with_help("every node has admin and external addresses of its own"),
                ),
                None => {
                    seen.insert(addr.value.ip, (what, addr.span));
                }
            }
        }
    }
}

fn listen_admin_across_pdcs(rule: &OverlayRule, usage: &RuleUsage<'_>, out: &mut Diagnostics) {
    let span = rule.listen_span.unwrap_or(rule.name.span);
    let mut d = Diagnostic::error(
        Code::AdminRuleSpansPdcs,
        format!(
            "overlay rule `{}` listens on the admin address but its overlays span PDCs {}",
            rule.name.value,
            usage.pdcs.keys().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
        ),
        span,
        "admin networks do not cross PDCs",
    );
    for (pdc, vnic) in &usage.pdcs {
        d = d.with_label(*vnic, format!("a vNIC in `{pdc}`"));
    }
    out.push(d.with_help(
        "drop listen=\"admin\" (the kernel then sources each packet by route), or keep the rule's vNICs in one PDC",
    ));
}

fn check_mtu(what: &str, mtu: &Sp<u32>, path: PathKind, nodes: &[&Node], out: &mut Diagnostics) {
    let Some(smallest) = nodes.iter().min_by_key(|n| n.mtu.value) else { return };
    let budget = Budget::of(mtu.value, path);
    let Some(excess) = budget.excess(smallest.mtu.value) else { return };
    let worst = match (path.ipsec, path.vlan) {
        (true, true) => "a cross-PDC path with an inner VLAN tag",
        (true, false) => "a cross-PDC path",
        (false, true) => "a path with an inner VLAN tag",
        (false, false) => "a path in clear",
    };
    out.push(
        Diagnostic::error(
            Code::MtuTooLarge,
            format!("{what} has MTU {}, whose packets do not fit {worst}", mtu.value),
            mtu.span,
            "does not fit",
        )
        .with_label(smallest.mtu.span, format!("node `{}`: underlay MTU {}", smallest.name.value, smallest.mtu.value))
        .with_help(format!(
            "{excess}; the largest that fits is {} (an overlay rule without mtu= gets it computed)",
            largest_fitting(smallest.mtu.value, path)
        )),
    );
}

fn missing_external(n: &Node, why: &str, out: &mut Diagnostics) {
    if n.external.is_some() {
        return;
    }
    out.push(
        Diagnostic::error(
            Code::MissingExternal,
            format!("node `{}` has no external address but carries {why}", n.name.value),
            n.name.span,
            "no `external=`",
        )
        .with_help("add external=\"ADDR\": traffic to other PDCs goes through IPsec between external addresses"),
    );
}
