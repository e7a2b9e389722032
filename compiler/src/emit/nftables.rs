//! A controller's nftables ruleset: one table of its own, `inet meshwork`, replaced atomically.
//!
//! - `prerouting` (nat, dstnat; only with engines): a jhash of (source address, source port)
//!   of client flows on UDP 1194 sets a mark from the engine set's offset; the offset stays with
//!   the controller's own server, mark offset+k is DNATed to engine k on plugin0.
//! - `input` (filter): admits clients on the underlay interface and peers on this controller's
//!   peering listen ports (from the peer's address when it is known).
//! - `forward` (filter, policy accept so unrelated forwarding on the host is untouched): replies
//!   pass, the engines' own OpenVPN traffic passes, then everything entering or leaving an overlay
//!   interface (tun0, plugin0, `mw-p<peer id>`) jumps to `firewall`.
//! - `firewall` (regular): the firewall rules in order, first match wins, then the policy.
//!
//! [`plan`] decides the ruleset once as a small IR ([`ir`]); `json` and `text` only render it, so
//! the JSON that is applied and the nft text that is reviewed cannot disagree. The sets and the
//! `firewall` chain are the same on every controller: a [`Renderer`] plans and renders them once
//! per topology and splices each controller's own chains in.

pub mod ir;
pub(crate) mod json;
mod names;
pub mod plan;
pub(crate) mod text;

pub use names::{FWSET_SET_PREFIX, SetNames, TAG_SET_PREFIX};

use crate::network::{ControllerNet, Network};

/// The family of meshwork's table, as nft spells it.
pub const FAMILY: &str = "inet";
/// The one table meshwork owns on a controller; it never touches any other.
pub const TABLE: &str = "meshwork";
/// Base chain (nat, prerouting, dstnat) that spreads clients over the engines.
pub const CHAIN_PREROUTING: &str = "prerouting";
/// Base chain (filter, input) that admits clients and peers.
pub const CHAIN_INPUT: &str = "input";
/// Base chain (filter, forward) that sends overlay traffic to [`CHAIN_FIREWALL`].
pub const CHAIN_FORWARD: &str = "forward";
/// Regular chain holding the topology's firewall.
pub const CHAIN_FIREWALL: &str = "firewall";
// Marks: the controller's own server has the engine set's `offset` (default
// `model::DEFAULT_MARK_OFFSET`, 0x1000), engine k has offset + k (`EngineNet::mark`).

/// The ruleset as `nft -j -f` input: add, delete and add the table (an idempotent replace in one
/// transaction), then its sets, chains and rules.
pub fn ruleset(net: &Network, c: &ControllerNet) -> ::nftables::schema::Nftables<'static> {
    json::render(&plan::build(net, c))
}

/// `nft -j -f` input, one command per line (see [`json::OPEN`] for the layout).
pub fn to_json(r: &::nftables::schema::Nftables<'_>) -> String {
    let mut s = String::from(json::OPEN);
    let mut elements = json::Elements;
    for (i, obj) in r.objects.iter().enumerate() {
        if i > 0 {
            s.push_str(json::SEPARATOR);
        }
        elements.write(&mut s, obj);
    }
    s.push_str(json::CLOSE);
    s
}

/// The same ruleset in nft syntax (`nft -f` input, an atomic replace of the table).
pub fn to_text(net: &Network, c: &ControllerNet) -> String {
    Renderer::new(net).text(net, c)
}

/// Renders the rulesets of a topology's controllers. Every controller's ruleset holds the same
/// named sets and the same `firewall` chain, which can be most of it (tens of thousands of set
/// elements); `new` plans and renders that part once, and each controller then plans and renders
/// only its base chains and splices the pieces together, in the order of [`ruleset`].
#[derive(Clone, Debug)]
pub struct Renderer {
    /// JSON from the document's opening through the table commands and the sets.
    json_head: String,
    /// `,\n` and the object that adds the `firewall` chain.
    json_firewall_chain: String,
    /// `,\n` and the `firewall` chain's rules, then the document's closing.
    json_tail: String,
    /// nft text from the table commands through the sets.
    text_head: String,
    /// Whether `text_head` holds a set, so a separator goes before the first chain.
    text_sets: bool,
    /// The separator, the `firewall` chain, the table's closing brace.
    text_tail: String,
}

impl Renderer {
    /// Plans the named sets and the `firewall` chain of `net` and renders them in both forms.
    pub fn new(net: &Network) -> Renderer {
        let shared = plan::shared(net);
        let mut elements = json::Elements;

        let mut json_head = String::from(json::OPEN);
        let [first, rest @ ..] = json::table_commands();
        elements.write(&mut json_head, &first);
        elements.write_each(&mut json_head, rest);
        elements.write_each(&mut json_head, shared.sets.iter().map(json::set));
        let mut json_firewall_chain = String::new();
        elements.write_each(&mut json_firewall_chain, [json::chain(&shared.firewall)]);
        let mut json_tail = String::new();
        elements.write_each(&mut json_tail, shared.firewall.rules.iter().map(|r| json::rule(shared.firewall.name, r)));
        json_tail.push_str(json::CLOSE);

        let mut text_head = String::new();
        text::open(&mut text_head);
        for (i, set) in shared.sets.iter().enumerate() {
            if i > 0 {
                text_head.push_str(text::SEPARATOR);
            }
            text::named_set(&mut text_head, set);
        }
        // The firewall chain always follows a base chain.
        let mut text_tail = String::from(text::SEPARATOR);
        text::chain(&mut text_tail, &shared.firewall);
        text_tail.push_str(text::CLOSE);

        Renderer { json_head, json_firewall_chain, json_tail, text_head, text_sets: !shared.sets.is_empty(), text_tail }
    }

    /// The ruleset of `c` as `nft -j -f` input: `to_json(&ruleset(net, c))`. `net` must be the
    /// network this renderer was made from.
    pub fn json(&self, net: &Network, c: &ControllerNet) -> String {
        let chains = plan::local(net, c);
        let mut elements = json::Elements;
        let mut local_chains = String::new();
        elements.write_each(&mut local_chains, chains.iter().map(json::chain));
        let mut local_rules = String::new();
        for chain in &chains {
            elements.write_each(&mut local_rules, chain.rules.iter().map(|r| json::rule(chain.name, r)));
        }
        concat(&[&self.json_head, &local_chains, &self.json_firewall_chain, &local_rules, &self.json_tail])
    }

    /// The ruleset of `c` in nft syntax (`nft -f` input, an atomic replace of the table). `net`
    /// must be the network this renderer was made from.
    pub fn text(&self, net: &Network, c: &ControllerNet) -> String {
        let mut head = String::new();
        text::header(&mut head, &text_header(net, c));
        let mut local = String::new();
        for (i, chain) in plan::local(net, c).iter().enumerate() {
            if i > 0 || self.text_sets {
                local.push_str(text::SEPARATOR);
            }
            text::chain(&mut local, chain);
        }
        concat(&[&head, &self.text_head, &local, &self.text_tail])
    }
}

/// The comment lines at the top of the nft text.
fn text_header(net: &Network, c: &ControllerNet) -> [String; 2] {
    [
        format!("meshwork: nftables ruleset of controller \"{}\" (id {}), topology \"{}\"", c.name, c.id, net.name),
        format!("Load with `nft -f`: it replaces table {FAMILY} {TABLE} atomically and touches nothing else."),
    ]
}

/// The parts in one allocation of the exact size.
fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ir::{Elem, Key, Stmt, Value, Verdict};
    use super::*;
    use crate::testing::network;

    const TEN_ENGINES: &str = r#"
topology "t"
overlay "100.127.0.0/24"
controller "east" id=1 {
    address "192.0.2.10"
    interface "ens3"
    cores 16
    engines 10 subnet="198.51.100.0/27" seed=0xcafe offset=0x2000
}
client "web-1" ip="100.127.0.50" tags="web"
client "web-2" ip="100.127.0.51" tags="web"
client "db-1" ip="100.127.0.60" tags="db"
fwset "web-ports" type="port" {
    port 80
    port 443
    port "8000-8080"
}
fwset "office" type="net" {
    net "203.0.113.0/24"
    net "203.0.113.128/25"
}
firewall policy="drop" {
    allow from="tag:web" to="tag:db" proto="tcp" port=5432
    deny from="tag:web" to="any"
    allow from="fwset:office" to="tag:web" proto="tcp" port="fwset:web-ports"
    allow from="overlay" to="overlay" proto="icmp"
    allow from="db-1" to="10.0.0.0/8" proto="udp" port="53-54"
}
"#;

    const THREE_PEERS: &str = r#"
topology "mesh"
overlay "100.127.0.0/24"
controller "a" id=1 {
    address "192.0.2.1"
}
controller "b" id=2 {
    address "192.0.2.2"
}
controller "c" id=3 {
    address "peer-c.example.net"
}
client "x" ip="100.127.0.50"
firewall policy="accept" {
    deny from="x" to="any" proto="tcp" port=25
}
"#;

    /// Engines on two controllers (one set with its own seed and offset), one without; a partial
    /// mesh with a peer known by name; tags, fwsets of both kinds, rules of every shape.
    const MIXED: &str = r#"
topology "mixed"
overlay "100.126.0.0/22"
controller "a" id=1 {
    address "192.0.2.1"
    interface "ens3"
    engines 10 subnet="198.51.100.0/27"
    lan "10.1.0.0/16"
}
controller "b" id=2 {
    address "192.0.2.2"
    engines 1 subnet="198.51.100.32/29" seed=7 offset=0x4000
}
controller "c" id=3 {
    address "peer-c.example.net"
}
controller "d" id=4 {
    address "192.0.2.4"
}
peering "partial" {
    link "a" "b"
    link "b" "c"
    link "a" "c" cost=5
    link "c" "d"
}
client "web-1" tags="web,all"
client "web-2" tags="web,all"
client "db-1" tags="db,all"
clients "batch" count=20 tags="batch,all"
fwset "office" type="net" {
    net "203.0.113.0/24"
    net "203.0.113.0/25"
    net "198.18.0.1"
}
fwset "ports" type="port" {
    port 80
    port 443
    port "8000-8080"
}
firewall policy="drop" {
    allow from="tag:web" to="tag:db" proto="tcp" port=5432
    deny from="tag:batch" to="tag:db"
    allow from="fwset:office" to="tag:web" proto="tcp" port="fwset:ports"
    allow from="tag:all" to="controller:a" proto="udp" port="8000-8080"
    allow from="db-1" to="any" proto="icmp"
    allow from="any" to="100.126.0.0/22"
}
"#;

    #[test]
    fn renderer_is_sync() {
        fn sync<T: Send + Sync>() {}
        sync::<Renderer>();
        sync::<crate::emit::vns3::Renderer>();
    }

    /// The spliced document is the ruleset itself, read back as JSON.
    #[test]
    fn json_document_is_its_objects_spliced() {
        for kdl in [TEN_ENGINES, THREE_PEERS, MIXED] {
            let net = network(kdl);
            for c in &net.controllers {
                let r = ruleset(&net, c);
                let parsed: serde_json::Value = serde_json::from_str(&to_json(&r)).unwrap();
                assert_eq!(parsed, serde_json::to_value(&r).unwrap(), "controller {}", c.name);
                let mut spliced = String::from(json::OPEN);
                let mut elements = json::Elements;
                let (first, rest) = r.objects.split_first().unwrap();
                elements.write(&mut spliced, first);
                elements.write_each(&mut spliced, rest.iter().cloned());
                spliced.push_str(json::CLOSE);
                assert_eq!(spliced, to_json(&r), "controller {}", c.name);
            }
        }
    }

    /// One renderer for all controllers gives what each controller's ruleset rendered whole
    /// gives, and what a renderer of its own gives.
    #[test]
    fn renderer_matches_the_whole_ruleset() {
        for kdl in [TEN_ENGINES, THREE_PEERS, MIXED] {
            let net = network(kdl);
            let nft = Renderer::new(&net);
            let vns3 = crate::emit::vns3::Renderer::new(&net);
            for c in &net.controllers {
                assert_eq!(nft.json(&net, c), to_json(&ruleset(&net, c)), "controller {}", c.name);
                let text = nft.text(&net, c);
                assert_eq!(text, text::render(&plan::build(&net, c), &text_header(&net, c)), "controller {}", c.name);
                assert_eq!(text, to_text(&net, c));
                assert_eq!(vns3.firewall(&net, c), crate::emit::vns3::firewall(&net, c), "controller {}", c.name);
            }
        }
        // Both VNS3 variants, sets, engines and peers were exercised.
        let net = network(MIXED);
        let vns3 = crate::emit::vns3::Renderer::new(&net);
        let a = vns3.firewall(&net, net.controller("a").unwrap());
        let d = vns3.firewall(&net, net.controller("d").unwrap());
        assert!(a.contains("-i tun0,plugin0 ") && !d.contains("plugin0") && d.contains("# fwset tag_web "));
        let text = to_text(&net, net.controller("a").unwrap());
        assert!(text.contains("mw-p2") && text.contains("set tag_web {") && text.contains("chain prerouting {"));
    }

    fn rules_of<'a>(rs: &'a ir::Ruleset, chain: &str) -> &'a [ir::Rule] {
        &rs.chain(chain).unwrap_or_else(|| panic!("no chain {chain}")).rules
    }

    fn text_rules(text: &str, chain: &str) -> Vec<String> {
        let start = text.find(&format!("\tchain {chain} {{")).unwrap_or_else(|| panic!("no chain {chain}"));
        text[start..]
            .lines()
            .skip(1)
            .take_while(|l| *l != "\t}")
            .map(str::trim)
            .filter(|l| !l.starts_with('#') && !l.starts_with("type "))
            .map(String::from)
            .collect()
    }

    #[test]
    fn jhash_spreads_over_server_and_engines() {
        let net = network(TEN_ENGINES);
        let c = &net.controllers[0];
        let rs = plan::build(&net, c);
        let pre = rules_of(&rs, CHAIN_PREROUTING);
        assert_eq!(pre.len(), 12);
        assert_eq!(
            pre[0].stmts,
            vec![
                Stmt::Match(Key::IifName, Value::Name("ens3".into())),
                Stmt::Match(Key::UdpDport, Value::Elem(Elem::Port(1194))),
                Stmt::MarkJhash { modulus: 11, seed: 0xcafe, offset: 0x2000 },
            ]
        );
        let text = to_text(&net, c);
        let pre = text_rules(&text, CHAIN_PREROUTING);
        assert!(
            pre[0].starts_with(
                "iifname \"ens3\" udp dport 1194 meta mark set jhash ip saddr . udp sport mod 11 seed 0xcafe offset 0x2000"
            ),
            "{}",
            pre[0]
        );
        assert!(pre[1].starts_with("udp dport 1194 meta mark 0x2000 accept"), "{}", pre[1]);
        for k in 1..=10u32 {
            let expected = format!("udp dport 1194 meta mark {:#x} dnat ip to 198.51.100.{}:1194", 0x2000 + k, 1 + k);
            assert!(pre[1 + k as usize].starts_with(&expected), "{} vs {expected}", pre[1 + k as usize]);
        }
        let json = to_json(&ruleset(&net, c));
        assert!(json.contains("\"jhash\""));
        assert!(json.contains("\"mod\":11"));
        assert!(json.contains("\"seed\":51966"));
        assert!(json.contains("\"offset\":8192"));
        assert!(json.contains("\"family\":\"ip\""));
        assert!(json.contains("\"addr\":\"198.51.100.11\""));
    }

    #[test]
    fn atomic_replace_comes_first() {
        let net = network(TEN_ENGINES);
        let r = ruleset(&net, &net.controllers[0]);
        let v: serde_json::Value = serde_json::from_str(&to_json(&r)).unwrap();
        let objs = v["nftables"].as_array().unwrap();
        let table = serde_json::json!({"family": "inet", "name": "meshwork"});
        assert_eq!(objs[0], serde_json::json!({ "add": { "table": table } }));
        assert_eq!(objs[1], serde_json::json!({ "delete": { "table": table } }));
        assert_eq!(objs[2], serde_json::json!({ "add": { "table": table } }));
        // Every chain exists before the first rule (the forward chain jumps to a later one).
        let first_rule = objs.iter().position(|o| o["add"].get("rule").is_some()).unwrap();
        let last_chain = objs.iter().rposition(|o| o["add"].get("chain").is_some()).unwrap();
        assert!(last_chain < first_rule);
        let text = to_text(&net, &net.controllers[0]);
        let cmds: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).take(2).collect();
        assert_eq!(cmds, ["add table inet meshwork", "delete table inet meshwork"]);
    }

    #[test]
    fn plugin_accepts_come_before_the_overlay_jumps() {
        let net = network(TEN_ENGINES);
        let text = to_text(&net, &net.controllers[0]);
        let fwd = text_rules(&text, CHAIN_FORWARD);
        let lines: Vec<&str> = fwd.iter().map(|l| l.split(" comment ").next().unwrap()).collect();
        assert_eq!(
            lines,
            [
                "ct state established,related accept",
                "iifname \"plugin0\" udp sport 1194 accept",
                "oifname \"plugin0\" udp dport 1194 accept",
                "iifname { \"tun0\", \"plugin0\" } jump firewall",
                "oifname { \"tun0\", \"plugin0\" } jump firewall",
            ]
        );
        assert!(text.contains("type filter hook forward priority filter; policy accept;"));
        assert!(text.contains("type nat hook prerouting priority dstnat; policy accept;"));
    }

    #[test]
    fn no_engines_no_prerouting_and_peer_tunnels_jump() {
        let net = network(THREE_PEERS);
        for c in &net.controllers {
            let rs = plan::build(&net, c);
            assert!(rs.chain(CHAIN_PREROUTING).is_none());
            let text = to_text(&net, c);
            assert!(!text.contains("prerouting") && !text.contains("plugin0"), "{text}");
        }
        let a = net.controller("a").unwrap();
        let fwd = text_rules(&to_text(&net, a), CHAIN_FORWARD);
        assert!(fwd[0].starts_with("ct state established,related accept"));
        // The agents' API crosses controllers before the firewall can refuse it.
        let agents: Vec<String> = net.controllers.iter().map(|c| c.overlay_ip.to_string()).collect();
        let set = format!("{{ {} }}", agents.join(", "));
        assert!(fwd[1].starts_with(&format!("ip saddr {set} ip daddr {set} tcp dport 1194 accept")), "{}", fwd[1]);
        assert!(fwd[2].starts_with("iifname { \"tun0\", \"mw-p2\", \"mw-p3\" } jump firewall"), "{}", fwd[2]);
        assert!(fwd[3].starts_with("oifname { \"tun0\", \"mw-p2\", \"mw-p3\" } jump firewall"), "{}", fwd[3]);
        let c = net.controller("c").unwrap();
        let fwd = text_rules(&to_text(&net, c), CHAIN_FORWARD);
        assert!(fwd[2].starts_with("iifname { \"tun0\", \"mw-p1\", \"mw-p2\" } jump firewall"), "{}", fwd[2]);
    }

    #[test]
    fn input_admits_clients_and_known_peers() {
        let net = network(THREE_PEERS);
        // a (id 1) listens for b on 1196 and for c on 1197; c has a DNS address.
        let a = net.controller("a").unwrap();
        let input = text_rules(&to_text(&net, a), CHAIN_INPUT);
        let lines: Vec<&str> = input.iter().map(|l| l.split(" comment ").next().unwrap()).collect();
        assert_eq!(
            lines,
            [
                "iifname \"eth0\" udp dport 1194 accept",
                "ip saddr 192.0.2.2 udp dport 1196 accept",
                "udp dport 1197 accept",
                "udp dport 1196 drop",
            ]
        );
        // c listens for nobody: it has the highest id.
        let c = net.controller("c").unwrap();
        let input = text_rules(&to_text(&net, c), CHAIN_INPUT);
        assert_eq!(input.len(), 1);
        // b listens for c (1197), whose address is a name: admitted by port only.
        let b = net.controller("b").unwrap();
        let input = text_rules(&to_text(&net, b), CHAIN_INPUT);
        assert!(input[1].starts_with("udp dport 1197 accept"), "{input:?}");
        assert_eq!(input.len(), 2);
    }

    #[test]
    fn firewall_keeps_order_and_ends_with_the_policy() {
        let net = network(TEN_ENGINES);
        let rs = plan::build(&net, &net.controllers[0]);
        let fw = rules_of(&rs, CHAIN_FIREWALL);
        let comments: Vec<&str> = fw.iter().map(|r| r.comment.as_deref().unwrap()).collect();
        assert_eq!(comments, ["rule 1", "rule 2", "rule 3", "rule 4", "rule 5", "policy drop"]);
        assert_eq!(fw[1].stmts.last(), Some(&Stmt::Verdict(Verdict::Drop)));
        assert_eq!(fw[0].stmts.last(), Some(&Stmt::Verdict(Verdict::Accept)));
        let text = to_text(&net, &net.controllers[0]);
        let lines = text_rules(&text, CHAIN_FIREWALL);
        assert_eq!(
            lines,
            [
                "ip saddr @tag_web ip daddr @tag_db tcp dport 5432 counter accept comment \"rule 1\"",
                "ip saddr @tag_web counter drop comment \"rule 2\"",
                "ip saddr @fwset_office ip daddr @tag_web tcp dport @fwset_web_ports counter accept comment \"rule 3\"",
                "ip saddr 100.127.0.0/24 ip daddr 100.127.0.0/24 meta l4proto icmp counter accept comment \"rule 4\"",
                "ip saddr 100.127.0.60 ip daddr 10.0.0.0/8 udp dport 53-54 counter accept comment \"rule 5\"",
                "counter drop comment \"policy drop\"",
            ]
        );
        assert!(text.contains("\t\t# rule 1: allow from=\"tag:web\" to=\"tag:db\" proto=\"tcp\" port=5432\n"));
        let net = network(THREE_PEERS);
        let lines = text_rules(&to_text(&net, &net.controllers[0]), CHAIN_FIREWALL);
        assert_eq!(lines.last().unwrap(), "counter accept comment \"policy accept\"");
    }

    #[test]
    fn named_sets_hold_their_members() {
        let net = network(TEN_ENGINES);
        let rs = plan::build(&net, &net.controllers[0]);
        let set = |name: &str| rs.sets.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no set {name}"));
        let ip = |s: &str| Elem::Addr(s.parse().unwrap());
        assert_eq!(set("tag_web").elements, [ip("100.127.0.50"), ip("100.127.0.51")]);
        assert!(!set("tag_web").interval);
        assert_eq!(set("tag_db").elements, [ip("100.127.0.60")]);
        // Overlapping networks are merged: nft refuses overlapping intervals.
        assert_eq!(set("fwset_office").elements, [Elem::Net("203.0.113.0/24".parse().unwrap())]);
        assert!(set("fwset_office").interval);
        assert_eq!(set("fwset_web_ports").elements, [Elem::Port(80), Elem::Port(443), Elem::Ports(8000, 8080)]);
        let text = to_text(&net, &net.controllers[0]);
        assert!(text.contains(
            "\tset fwset_web_ports {\n\t\ttype inet_service\n\t\tflags interval\n\t\telements = { 80, 443, 8000-8080 }\n\t}\n"
        ));
        assert!(
            text.contains("\tset tag_web {\n\t\ttype ipv4_addr\n\t\telements = { 100.127.0.50, 100.127.0.51 }\n\t}\n")
        );
    }

    #[test]
    fn deterministic() {
        let net = network(TEN_ENGINES);
        let c = &net.controllers[0];
        assert_eq!(to_json(&ruleset(&net, c)), to_json(&ruleset(&net, c)));
        assert_eq!(to_text(&net, c), to_text(&net, c));
        assert!(to_json(&ruleset(&net, c)).ends_with("}\n"));
    }
}
