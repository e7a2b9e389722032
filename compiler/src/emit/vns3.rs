//! The controller's dataplane in VNS3 firewall syntax (`PREROUTING_CUST`/`FORWARD_CUST`
//! iptables-style lines), for operators who know VNS3 or run it: the engine spreading of DESIGN
//! §1 (HMARK, then ACCEPT or DNAT by mark), the plugin0 accepts, then the firewall rules in order
//! and the policy. Tags and fwsets are ipsets named as in the nft ruleset and listed, with their
//! members, in the comment header.

use std::fmt::Write;

use ipnet::Ipv4Net;

use crate::emit::nftables::SetNames;
use crate::emit::nftables::ir::Elem;
use crate::emit::nftables::plan::{addr_elems, net_elems, port_elems};
use crate::firewall::{AddrMatch, CompiledRule};
use crate::model::{Action, PortSpec, Selector};
use crate::network::{CLIENT_PORT, ControllerNet, EngineSet, Network, PLUGIN_BRIDGE, TUN_DEVICE};

const PREROUTING: &str = "PREROUTING_CUST";
const FORWARD: &str = "FORWARD_CUST";

/// The VNS3 firewall of controller `c`.
pub fn firewall(net: &Network, c: &ControllerNet) -> String {
    Renderer::new(net).firewall(net, c)
}

/// Renders the VNS3 firewalls of a topology's controllers. The sets in the header and the
/// firewall rules are the same on every controller but for the interfaces the rules name (tun0,
/// and plugin0 with engines); `new` renders them once per variant the topology uses, and each
/// controller adds its first line and engine lines.
#[derive(Clone, Debug)]
pub struct Renderer {
    /// The sets, as comment lines.
    sets: String,
    /// The firewall rules and the policy, for a controller without and with engines; None for a
    /// variant no controller of the topology needs.
    rules: [Option<String>; 2],
}

impl Renderer {
    pub fn new(net: &Network) -> Renderer {
        let names = SetNames::new(&net.firewall);
        let mut sets = String::new();
        header(&mut sets, net, &names);
        let with_engines = |engines: bool| {
            net.controllers.iter().any(|c| c.engines.is_some() == engines).then(|| rules(net, &names, engines))
        };
        Renderer { sets, rules: [with_engines(false), with_engines(true)] }
    }

    /// The VNS3 firewall of `c`; `net` must be the network this renderer was made from.
    pub fn firewall(&self, net: &Network, c: &ControllerNet) -> String {
        let mut local = String::with_capacity(256);
        let _ = writeln!(
            local,
            "# meshwork: VNS3 firewall of controller \"{}\" (id {}), topology \"{}\"",
            c.name, c.id, net.name
        );
        let head = local.len();
        if let Some(e) = &c.engines {
            engines(&mut local, c, e);
        }
        let variant = usize::from(c.engines.is_some());
        let rendered;
        let rules = match &self.rules[variant] {
            Some(r) => r,
            None => {
                rendered = rules(net, &SetNames::new(&net.firewall), c.engines.is_some());
                &rendered
            }
        };
        let mut out = String::with_capacity(local.len() + self.sets.len() + rules.len());
        out.push_str(&local[..head]);
        out.push_str(&self.sets);
        out.push_str(&local[head..]);
        out.push_str(rules);
        out
    }
}

/// The firewall rules in order, then the policy, for a controller with or without engines.
fn rules(net: &Network, names: &SetNames, engines: bool) -> String {
    let fw = &net.firewall;
    let ifaces = if engines { format!("{TUN_DEVICE},{PLUGIN_BRIDGE}") } else { TUN_DEVICE.to_string() };
    let mut out = String::with_capacity(256 + 200 * fw.rules.len());
    for r in &fw.rules {
        let _ = write!(out, "# rule {}: ", r.number);
        out.extend(r.describe().chars().map(|c| if c.is_control() { ' ' } else { c }));
        out.push('\n');
        rule(&mut out, &ifaces, r, names);
    }
    match fw.policy {
        Action::Drop => {
            let _ = writeln!(out, "# policy drop: traffic no rule matches is dropped");
            let _ = writeln!(out, "{FORWARD} -i {ifaces} -j DROP");
        }
        Action::Accept => {
            let _ = writeln!(out, "# policy accept: traffic no rule matches is forwarded");
        }
    }
    out
}

/// The sets the rules name, one comment line each: `# fwset NAME type=net|port: members`.
fn header(out: &mut String, net: &Network, names: &SetNames) {
    let fw = &net.firewall;
    if fw.tags.is_empty() && fw.net_sets.is_empty() && fw.port_sets.is_empty() {
        return;
    }
    out.push_str("#\n# Sets (ipsets) used below; tag sets hold the tagged clients' addresses:\n");
    let line = |out: &mut String, name: &str, kind: &str, elems: Vec<Elem>| {
        let _ = write!(out, "# fwset {name} type={kind}:");
        for (i, e) in elems.into_iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ", " });
            e.push_to(out);
        }
        out.push('\n');
    };
    for (tag, hosts) in &fw.tags {
        line(out, names.tag(tag), "net", addr_elems(hosts));
    }
    for (set, nets) in &fw.net_sets {
        line(out, names.net(set), "net", net_elems(nets.iter().copied()));
    }
    for (set, ranges) in &fw.port_sets {
        line(out, names.port(set), "port", port_elems(ranges));
    }
    out.push_str("#\n");
}

/// DESIGN §1: HMARK over (source address, source port), the controller's own mark accepted,
/// each engine's mark DNATed to it; then the engines' OpenVPN traffic through plugin0.
fn engines(out: &mut String, c: &ControllerNet, e: &EngineSet) {
    let _ = writeln!(
        out,
        "{PREROUTING} -i {} -p udp --dport {CLIENT_PORT} -j HMARK --hmark-tuple src,sport --hmark-mod {} --hmark-rnd 0x{:08x} --hmark-offset {}",
        c.interface,
        e.modulus(),
        e.seed,
        Hex(e.offset)
    );
    let _ = writeln!(out, "{PREROUTING} -p udp --dport {CLIENT_PORT} -m mark --mark {} -j ACCEPT", Hex(e.offset));
    for engine in &e.engines {
        let _ = writeln!(
            out,
            "{PREROUTING} -p udp --dport {CLIENT_PORT} -m mark --mark {} -j DNAT --to-destination {}:{CLIENT_PORT}",
            Hex(engine.mark),
            engine.plugin_ip
        );
    }
    let _ = writeln!(out, "{FORWARD} -i {PLUGIN_BRIDGE} -p udp --sport {CLIENT_PORT} -j ACCEPT");
    let _ = writeln!(out, "{FORWARD} -o {PLUGIN_BRIDGE} -p udp --dport {CLIENT_PORT} -j ACCEPT");
}

/// A mark as DESIGN writes it: `0x` and uppercase hex digits (the 10th engine is 0x100A).
struct Hex(u32);

impl std::fmt::Display for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:X}", self.0)
    }
}

/// One firewall rule; two lines (tcp and udp) when a port is given without a protocol, and a
/// comment instead when an address side names no address.
fn rule(out: &mut String, ifaces: &str, r: &CompiledRule, names: &SetNames) {
    let (Some(src), Some(dst)) = (address(&r.from, "-s", "src", names), address(&r.to, "-d", "dst", names)) else {
        let _ = writeln!(out, "# rule {} matches no address: not emitted", r.number);
        return;
    };
    let target = match r.action {
        Action::Accept => "ACCEPT",
        Action::Drop => "DROP",
    };
    let port = r.port.as_ref().map(|p| {
        let mut s = String::new();
        match &p.spec {
            PortSpec::FwSet(set) => {
                let _ = write!(s, " -m set --match-set {} dst", names.port(set));
            }
            PortSpec::Range(_) => {
                let ports = port_elems(&p.ranges);
                s.push_str(if ports.len() == 1 { " --dport " } else { " -m multiport --dports " });
                for (i, e) in ports.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    let _ = match *e {
                        Elem::Ports(lo, hi) => write!(s, "{lo}:{hi}"),
                        other => write!(s, "{other}"),
                    };
                }
            }
        }
        s
    });
    let protos: &[&str] = match (r.proto, &port) {
        (Some(p), _) => &[p.name()],
        (None, Some(_)) => &["tcp", "udp"],
        (None, None) => &[""],
    };
    for proto in protos {
        let _ = write!(out, "{FORWARD} -i {ifaces}{src}{dst}");
        if !proto.is_empty() {
            let _ = write!(out, " -p {proto}");
        }
        if let Some(port) = &port {
            out.push_str(port);
        }
        let _ = writeln!(out, " -j {target}");
    }
}

/// ` -s ADDR[,ADDR]`, ` -m set --match-set NAME src`, or empty for any. None: no address.
fn address(m: &AddrMatch, flag: &str, dir: &str, names: &SetNames) -> Option<String> {
    let set = match &m.selector {
        _ if m.any => return Some(String::new()),
        Selector::Any => return Some(String::new()),
        Selector::Tag(tag) => names.tag(tag),
        Selector::FwSet(set) => names.net(set),
        Selector::Overlay | Selector::Client(_) | Selector::Controller(_) | Selector::Net(_) => {
            let elems = net_elems(m.hosts.iter().map(|h| Ipv4Net::from(*h)).chain(m.nets.iter().copied()));
            if elems.is_empty() {
                return None;
            }
            let mut s = format!(" {flag} ");
            for (i, e) in elems.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                e.push_to(&mut s);
            }
            return Some(s);
        }
    };
    Some(format!(" -m set --match-set {set} {dir}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::network;

    const ENGINES: &str = r#"
topology "t"
overlay "100.127.255.192/26"
controller "east" id=1 {
    address "192.0.2.10"
    cores 16
    engines 10 subnet="198.51.100.0/27"
    lan "10.10.0.0/16"
}
client "web-1" tags="web"
client "web-2" tags="web"
client "db-1" ip="100.127.255.210" tags="db"
fwset "office" type="net" {
    net "203.0.113.0/24"
}
fwset "web-ports" type="port" {
    port 80
    port 443
}
firewall policy="drop" {
    allow from="tag:web" to="tag:db" proto="tcp" port=5432
    allow from="fwset:office" to="tag:web" proto="tcp" port="fwset:web-ports"
    deny from="web-1" to="controller:east"
    allow from="overlay" to="10.10.0.0/16" proto="udp" port="8000-8080"
    allow from="any" to="any" proto="icmp"
}
"#;

    const PLAIN: &str = r#"
topology "plain"
overlay "100.127.0.0/24"
controller "west" id=1 {
    address "192.0.2.20"
    interface "ens5"
}
client "a" ip="100.127.0.40"
firewall {
    deny from="a" to="overlay" proto="tcp" port=22
}
"#;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn engines_follow_the_design_text() {
        let net = network(ENGINES);
        let text = firewall(&net, &net.controllers[0]);
        let l = lines(&text);
        assert_eq!(
            l[0],
            "PREROUTING_CUST -i eth0 -p udp --dport 1194 -j HMARK --hmark-tuple src,sport --hmark-mod 11 --hmark-rnd 0xf1e2d3c4 --hmark-offset 0x1000"
        );
        assert_eq!(l[1], "PREROUTING_CUST -p udp --dport 1194 -m mark --mark 0x1000 -j ACCEPT");
        assert_eq!(
            l[2],
            "PREROUTING_CUST -p udp --dport 1194 -m mark --mark 0x1001 -j DNAT --to-destination 198.51.100.2:1194"
        );
        assert_eq!(
            l[11],
            "PREROUTING_CUST -p udp --dport 1194 -m mark --mark 0x100A -j DNAT --to-destination 198.51.100.11:1194"
        );
        assert_eq!(l[12], "FORWARD_CUST -i plugin0 -p udp --sport 1194 -j ACCEPT");
        assert_eq!(l[13], "FORWARD_CUST -o plugin0 -p udp --dport 1194 -j ACCEPT");
    }

    #[test]
    fn firewall_rules_in_order_then_policy() {
        let net = network(ENGINES);
        let text = firewall(&net, &net.controllers[0]);
        let l = lines(&text);
        assert_eq!(
            &l[14..],
            [
                "FORWARD_CUST -i tun0,plugin0 -m set --match-set tag_web src -m set --match-set tag_db dst -p tcp --dport 5432 -j ACCEPT",
                "FORWARD_CUST -i tun0,plugin0 -m set --match-set fwset_office src -m set --match-set tag_web dst -p tcp -m set --match-set fwset_web_ports dst -j ACCEPT",
                "FORWARD_CUST -i tun0,plugin0 -s 100.127.255.193 -d 10.10.0.0/16 -j DROP",
                "FORWARD_CUST -i tun0,plugin0 -s 100.127.255.192/26 -d 10.10.0.0/16 -p udp --dport 8000:8080 -j ACCEPT",
                "FORWARD_CUST -i tun0,plugin0 -p icmp -j ACCEPT",
                "FORWARD_CUST -i tun0,plugin0 -j DROP",
            ]
        );
        assert!(text.contains("# fwset tag_web type=net: 100.127.255.193, 100.127.255.194\n"));
        assert!(text.contains("# fwset tag_db type=net: 100.127.255.210\n"));
        assert!(text.contains("# fwset fwset_office type=net: 203.0.113.0/24\n"));
        assert!(text.contains("# fwset fwset_web_ports type=port: 80, 443\n"));
        assert!(text.contains("# rule 3: deny from=\"web-1\" to=\"controller:east\"\n"));
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || l.starts_with("PREROUTING_CUST ") || l.starts_with("FORWARD_CUST "))
        );
    }

    #[test]
    fn without_engines_only_tun0() {
        let net = network(PLAIN);
        let text = firewall(&net, &net.controllers[0]);
        assert!(!text.contains("PREROUTING_CUST") && !text.contains("plugin0"), "{text}");
        assert_eq!(lines(&text), ["FORWARD_CUST -i tun0 -s 100.127.0.40 -d 100.127.0.0/24 -p tcp --dport 22 -j DROP"]);
        assert!(text.ends_with("# policy accept: traffic no rule matches is forwarded\n"));
        assert_eq!(text, firewall(&net, &net.controllers[0]));
    }
}
