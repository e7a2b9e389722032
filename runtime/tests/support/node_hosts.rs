//! Compute nodes of `examples/two-pdc.kdl` as namespaces, for kernel tests of `meshwork
//! apply|plan|destroy|agent --node`: an "internet" namespace routes between the PDCs' external
//! networks (198.18.0.0/24 prague, 198.18.1.0/24 brno) and counts what crosses it; each node
//! namespace gets the underlay its host would have (eth0 with the external address and a
//! default route, eth1 with the admin address); meshwork makes the rest.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Lab, run};

pub const TWO_PDC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/two-pdc.kdl");

/// (node, PDC gateway on the internet side, external address, admin address) of two-pdc.kdl.
const NODES: [(&str, &str, &str, &str); 4] = [
    ("cn-1", "198.18.0.1", "198.18.0.11/24", "10.100.0.11/24"),
    ("cn-2", "198.18.0.1", "198.18.0.12/24", "10.100.0.12/24"),
    ("cn-3", "198.18.1.1", "198.18.1.13/24", "10.100.1.13/24"),
    ("cn-4", "198.18.1.1", "198.18.1.14/24", "10.100.1.14/24"),
];

/// The comments of the internet namespace's counters.
pub const PLAINTEXT: &str = "plaintext";
pub const ESP_IN_UDP: &str = "esp-in-udp";

pub struct NodeHosts {
    pub inet: String,
    /// (node, namespace)
    pub nodes: Vec<(&'static str, String)>,
    pub state: PathBuf,
}

/// Whether strongSwan's daemon is installed (`charon-systemd --version` would start it).
pub fn charon_installed() -> bool {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]).any(|d| d.join("charon-systemd").exists())
    });
    if !found {
        assert!(std::env::var_os("CI").is_none(), "kernel test needs charon-systemd (strongSwan)");
        eprintln!("skipping: needs charon-systemd");
    }
    found
}

impl NodeHosts {
    /// Namespaces `mwt-<tag>i-<pid>` (internet) and `mwt-<tag><k>-<pid>` (node cn-k) for
    /// `names`, and a keyset in the lab's `state/` made by `meshwork keys init FILE`.
    pub fn new(lab: &mut Lab, tag: &str, file: &Path, names: &[&'static str]) -> NodeHosts {
        let state = lab.path("state");
        let out = super::meshwork(&["keys", "init", file.to_str().unwrap(), "--state-dir", state.to_str().unwrap()]);
        assert!(out.status.success(), "keys init: {}", String::from_utf8_lossy(&out.stderr));
        let inet = lab.netns(&format!("{tag}i"));
        run("ip", &["netns", "exec", &inet, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let mut gateways = Vec::new();
        let mut nodes = Vec::new();
        for name in names {
            let (_, gw, external, admin) = NODES.iter().find(|n| n.0 == *name).expect("a node of two-pdc");
            let k = &name[3..];
            let ns = lab.netns(&format!("{tag}{k}"));
            let outside = format!("mwt-{tag}o{k}");
            run("ip", &["-n", &inet, "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            run("ip", &["-n", &inet, "link", "set", &outside, "up"]);
            if !gateways.contains(gw) {
                // The PDC's gateway on the first port toward it; the others reach it by route.
                run("ip", &["-n", &inet, "addr", "add", &format!("{gw}/32"), "dev", "lo"]);
                gateways.push(*gw);
            }
            let ext_ip = external.split('/').next().unwrap();
            run("ip", &["-n", &inet, "route", "add", &format!("{ext_ip}/32"), "dev", &outside]);
            run("ip", &["-n", &ns, "addr", "add", &format!("{ext_ip}/32"), "dev", "eth0"]);
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            run("ip", &["-n", &ns, "route", "add", &format!("{gw}/32"), "dev", "eth0"]);
            run("ip", &["-n", &ns, "route", "add", "default", "via", gw, "dev", "eth0"]);
            // The admin network is not crossed in these tests (the nodes are in different
            // PDCs), but the host has its interface: one end of a veth pair.
            run("ip", &["-n", &ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"]);
            run("ip", &["-n", &ns, "addr", "add", admin, "dev", "eth1"]);
            run("ip", &["-n", &ns, "link", "set", "eth1", "up"]);
            run("ip", &["-n", &ns, "link", "set", "eth1p", "up"]);
            nodes.push((*name, ns));
        }
        let counters = lab.path("inet.nft");
        std::fs::write(
            &counters,
            format!(
                "table inet mwtest {{\n chain forward {{\n  type filter hook forward priority 0; policy accept;\n  \
                 udp dport {{ 4790, 4791, 4793 }} counter comment \"{PLAINTEXT}\"\n  \
                 udp dport 4500 counter comment \"{ESP_IN_UDP}\"\n }}\n}}\n"
            ),
        )
        .unwrap();
        run("ip", &["netns", "exec", &inet, "nft", "-f", counters.to_str().unwrap()]);
        NodeHosts { inet, nodes, state }
    }

    pub fn netns(&self, node: &str) -> &str {
        &self.nodes.iter().find(|n| n.0 == node).expect("a node of this test").1
    }

    /// `meshwork VERB [FILE] --node NODE --netns NS --state-dir STATE EXTRA...`.
    pub fn host_args(&self, node: &str) -> Vec<String> {
        ["--node", node, "--netns", self.netns(node), "--state-dir", self.state.to_str().unwrap()]
            .map(String::from)
            .to_vec()
    }

    /// charon's working directory of `node`.
    pub fn charon_dir(&self, node: &str) -> PathBuf {
        self.state.join("nodes").join(node).join("strongswan")
    }

    /// The pid charon's pid file names, if any.
    pub fn charon_pid(&self, node: &str) -> Option<u32> {
        let text = std::fs::read_to_string(self.charon_dir(node).join("run/charon.pid")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["pid"].as_u64().map(|p| p as u32)
    }

    /// The counter of the internet namespace's rule with `comment`.
    pub fn inet_counter(&self, comment: &str) -> u64 {
        counter(&self.inet, "mwtest", comment)
    }
}

/// The packet counter of the rule with `comment` in `ns`'s table `inet TABLE`.
pub fn counter(ns: &str, table: &str, comment: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-j", "list", "table", "inet", table])
        .output()
        .expect("nft");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j");
    for item in v["nftables"].as_array().expect("array") {
        let Some(rule) = item.get("rule") else { continue };
        if rule["comment"] != comment {
            continue;
        }
        for e in rule["expr"].as_array().expect("expr") {
            if let Some(c) = e.get("counter") {
                return c["packets"].as_u64().expect("packets");
            }
        }
    }
    panic!("no counter {comment} in {ns}: {v}");
}

/// `ip -j ARGS` inside `ns`, parsed.
pub fn ip_json(ns: &str, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["-n", ns, "-j"];
    full.extend_from_slice(args);
    serde_json::from_str(&super::output("ip", &full)).expect("ip -j")
}

/// `bridge -j fdb show dev DEV` inside `ns`: the entries with a remote (MAC, dst).
/// Empty when there is no such device.
pub fn fdb(ns: &str, dev: &str) -> Vec<(String, Ipv4Addr)> {
    let out = Command::new("ip").args(["netns", "exec", ns, "bridge", "-j", "fdb", "show", "dev", dev]).output();
    let Ok(out) = out.map(|o| o.stdout) else { return Vec::new() };
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
    let mut out: Vec<(String, Ipv4Addr)> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["mac"].as_str()?.to_string(), e["dst"].as_str()?.parse().ok()?)))
        .collect();
    out.sort();
    out
}
