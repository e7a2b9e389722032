//! The firewall with every selector resolved to addresses and ports, and its evaluation (first
//! match wins, the policy when nothing matches). The nftables and VNS3 emitters and `expect`
//! all read this one structure, so the static verdict is the one the kernel enforces.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::alloc::Allocation;
use crate::model::{Action, PortRange, PortSpec, Proto, Selector, Topology};
use crate::source::Span;

/// Addresses a selector stands for. `None` in `AddrMatch::nets` means any address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrMatch {
    pub selector: Selector,
    /// Single addresses, sorted (so membership is a binary search even for large tags).
    pub hosts: Vec<Ipv4Addr>,
    pub nets: Vec<Ipv4Net>,
    pub any: bool,
}

impl AddrMatch {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.any || self.hosts.binary_search(&ip).is_ok() || self.nets.iter().any(|n| n.contains(&ip))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMatch {
    pub spec: PortSpec,
    pub ranges: Vec<PortRange>,
}

#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// 1-based position among the firewall's rules.
    pub number: usize,
    pub action: Action,
    pub from: AddrMatch,
    pub to: AddrMatch,
    pub proto: Option<Proto>,
    pub port: Option<PortMatch>,
    pub span: Span,
}

impl CompiledRule {
    /// The rule as written, e.g. `allow from="tag:web" to="tag:db" proto="tcp" port=5432`.
    pub fn describe(&self) -> String {
        let verb = match self.action {
            Action::Accept => "allow",
            Action::Drop => "deny",
        };
        let mut s = format!("{verb} from=\"{}\" to=\"{}\"", self.from.selector, self.to.selector);
        if let Some(p) = self.proto {
            s += &format!(" proto=\"{}\"", p.name());
        }
        if let Some(p) = &self.port {
            match &p.spec {
                PortSpec::Range(r) if r.low == r.high => s += &format!(" port={}", r.low),
                spec => s += &format!(" port=\"{spec}\""),
            }
        }
        s
    }

    fn matches(&self, src: Ipv4Addr, dst: Ipv4Addr, proto: Option<Proto>, port: Option<u16>) -> bool {
        if let Some(p) = self.proto
            && proto != Some(p)
        {
            return false;
        }
        if let Some(pm) = &self.port {
            match port {
                Some(port) if pm.ranges.iter().any(|r| (r.low..=r.high).contains(&port)) => {}
                _ => return false,
            }
        }
        self.from.contains(src) && self.to.contains(dst)
    }
}

#[derive(Clone, Debug)]
pub struct CompiledFirewall {
    pub policy: Action,
    pub rules: Vec<CompiledRule>,
    /// Tag -> its clients' addresses, sorted; only tags some rule uses.
    pub tags: BTreeMap<String, Vec<Ipv4Addr>>,
    pub net_sets: BTreeMap<String, Vec<Ipv4Net>>,
    pub port_sets: BTreeMap<String, Vec<PortRange>>,
}

/// The verdict for one flow and the rule that gave it (None: the policy did).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub rule: Option<usize>,
}

impl CompiledFirewall {
    pub fn evaluate(&self, src: Ipv4Addr, dst: Ipv4Addr, proto: Option<Proto>, port: Option<u16>) -> Decision {
        self.rules.iter().find(|r| r.matches(src, dst, proto, port)).map_or(
            Decision { action: self.policy, rule: None },
            |r| Decision { action: r.action, rule: Some(r.number) },
        )
    }

    /// Resolves every rule. Unknown names resolve to nothing (the reference rule reports them),
    /// so this never fails.
    pub fn compile(t: &Topology, a: &Allocation) -> Self {
        let client_ips: BTreeMap<&str, Ipv4Addr> =
            t.clients.iter().zip(&a.clients).filter_map(|(c, ip)| Some((c.name.value.as_str(), (*ip)?))).collect();
        let mut all_tags: BTreeMap<&str, Vec<Ipv4Addr>> = BTreeMap::new();
        for (c, ip) in t.clients.iter().zip(&a.clients) {
            for tag in &c.tags {
                if let Some(ip) = ip {
                    all_tags.entry(tag.value.as_str()).or_default().push(*ip);
                }
            }
        }
        let mut fw = CompiledFirewall {
            policy: t.firewall.policy,
            rules: Vec::new(),
            tags: BTreeMap::new(),
            net_sets: BTreeMap::new(),
            port_sets: BTreeMap::new(),
        };
        let resolve = |sel: &Selector, fw: &mut CompiledFirewall| -> AddrMatch {
            let mut m = AddrMatch { selector: sel.clone(), hosts: vec![], nets: vec![], any: false };
            match sel {
                Selector::Any => m.any = true,
                Selector::Overlay => m.nets.extend(t.overlay.as_ref().map(|o| o.value)),
                Selector::Client(name) => m.hosts.extend(client_ips.get(name.as_str())),
                Selector::Tag(tag) => {
                    let mut ips = all_tags.get(tag.as_str()).cloned().unwrap_or_default();
                    ips.sort();
                    ips.dedup();
                    m.hosts = ips.clone();
                    fw.tags.insert(tag.clone(), ips);
                }
                Selector::FwSet(name) => {
                    let nets: Vec<Ipv4Net> = t
                        .fwsets
                        .iter()
                        .filter(|s| &s.name.value == name)
                        .flat_map(|s| s.nets.iter().map(|n| n.value))
                        .collect();
                    m.nets = nets.clone();
                    fw.net_sets.insert(name.clone(), nets);
                }
                Selector::Controller(name) => {
                    m.nets.extend(
                        t.controllers
                            .iter()
                            .filter(|c| &c.name.value == name)
                            .flat_map(|c| c.lans.iter().map(|l| l.value)),
                    );
                }
                Selector::Net(n) => m.nets.push(*n),
            }
            m
        };
        for (i, r) in t.firewall.rules.iter().enumerate() {
            let (Some(from), Some(to)) = (&r.from, &r.to) else { continue };
            let from = resolve(&from.value, &mut fw);
            let to = resolve(&to.value, &mut fw);
            let port = r.port.as_ref().map(|p| {
                let ranges = match &p.value {
                    PortSpec::Range(range) => vec![*range],
                    PortSpec::FwSet(name) => {
                        let ranges: Vec<PortRange> = t
                            .fwsets
                            .iter()
                            .filter(|s| &s.name.value == name)
                            .flat_map(|s| {
                                s.ports.iter().filter_map(|p| match p.value {
                                    PortSpec::Range(r) => Some(r),
                                    PortSpec::FwSet(_) => None,
                                })
                            })
                            .collect();
                        fw.port_sets.insert(name.clone(), ranges.clone());
                        ranges
                    }
                };
                PortMatch { spec: p.value.clone(), ranges }
            });
            fw.rules.push(CompiledRule {
                number: i + 1,
                action: r.action,
                from,
                to,
                proto: r.proto.as_ref().map(|p| p.value),
                port,
                span: r.span,
            });
        }
        fw
    }
}
