//! Kernel test: every controller ruleset of every example (and of a few extra topologies that
//! exercise what the examples may not: peers known by address and by name, many engines) is
//! checked by the real kernel in a private network namespace, without applying anything:
//! `unshare -rn nft -c -j -f nftables.json` and `unshare -rn nft -c -f nftables.nft`. Both forms
//! are then loaded, each in a fresh namespace, and must list back as the same table.
//!
//! Note: inside a user namespace nft cannot raise its netlink buffer past `net.core.wmem_max`, so a
//! very large ruleset (100k+ set elements) fails there with "Message too long" while it loads fine
//! as real root (`unshare -n`). The topologies here are small.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use meshwork_compiler::source::SourceFile;

const NFT: &str = "/usr/sbin/nft";

/// A partial mesh where one peer has a DNS address, engines on two controllers.
const MESH: &str = r#"
topology "kernel-mesh"
overlay "100.126.0.0/22"
controller "a" id=1 {
    address "192.0.2.1"
    interface "ens3"
    engines 10 subnet="198.51.100.0/27"
    lan "10.1.0.0/16"
    lan "10.2.0.0/16"
}
controller "b" id=2 {
    address "192.0.2.2"
    engines 1 subnet="198.51.100.32/29" seed=7 offset=0x4000
}
controller "c" id=3 {
    address "peer-c.example.net"
}
peering "partial" {
    link "a" "b"
    link "b" "c"
    link "a" "c" cost=5
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
    port "8080-8090"
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

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "kdl"))
        .collect();
    out.sort();
    out
}

/// A file under the temp dir with a name no other test (or run) uses, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(stem: &str, ext: &str, content: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let safe: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let path = std::env::temp_dir().join(format!("meshwork-nft-{}-{n}-{safe}.{ext}", std::process::id()));
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `unshare -rn nft -c [-j] -f FILE`; Err with nft's stderr when it refuses the file.
fn nft_check(label: &str, content: &str, json: bool) -> Result<(), String> {
    let file = TempFile::new(label, if json { "json" } else { "nft" }, content);
    let mut cmd = Command::new("unshare");
    cmd.args(["-rn", NFT, "-c"]);
    if json {
        cmd.arg("-j");
    }
    cmd.arg("-f").arg(&file.0);
    let out = cmd.output().map_err(|e| format!("{label}: cannot run unshare/nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{label}: nft refused it ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

/// Loads the ruleset in a fresh network namespace and lists the table back.
fn nft_load_and_list(label: &str, content: &str, json: bool) -> Result<String, String> {
    let file = TempFile::new(label, if json { "json" } else { "nft" }, content);
    let script = format!(r#"{NFT} {} -f "$1" && {NFT} list table inet meshwork"#, if json { "-j" } else { "" });
    let out = Command::new("unshare")
        .args(["-rn", "sh", "-c", &script, "sh"])
        .arg(&file.0)
        .output()
        .map_err(|e| format!("{label}: cannot run unshare/nft: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{label}: nft refused it ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

fn check_build(name: &str, text: &str) -> (usize, Vec<String>) {
    let artifacts = match meshwork_compiler::build(SourceFile::new(name, text)) {
        Ok(a) => a,
        Err(analysis) => panic!("{name} does not build: {:#?}", analysis.diagnostics),
    };
    let mut checked = 0;
    let mut failures = Vec::new();
    for (path, content) in &artifacts.0 {
        let json = if path.ends_with("/nftables.json") {
            true
        } else if path.ends_with("/nftables.nft") {
            false
        } else {
            continue;
        };
        checked += 1;
        if let Err(e) = nft_check(&format!("{name}:{path}"), content, json) {
            failures.push(e);
        }
    }
    (checked, failures)
}

#[test]
fn every_ruleset_passes_the_kernel_check() {
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut inputs: Vec<(String, String)> = examples()
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (p.display().to_string(), text)
        })
        .collect();
    assert!(!inputs.is_empty(), "no examples found");
    inputs.push(("kernel-mesh.kdl".into(), MESH.into()));
    for (name, text) in &inputs {
        let (n, f) = check_build(name, text);
        checked += n;
        failures.extend(f);
    }
    assert!(checked >= 2 * inputs.len(), "only {checked} rulesets found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn json_and_text_load_as_the_same_table() {
    let artifacts = meshwork_compiler::build(SourceFile::new("kernel-mesh.kdl", MESH)).expect("MESH builds");
    let mut compared = 0;
    for (path, json) in artifacts.iter().filter(|(p, _)| p.ends_with("/nftables.json")) {
        let nft_path = path.replace("/nftables.json", "/nftables.nft");
        let text = artifacts.get(&nft_path).unwrap_or_else(|| panic!("no {nft_path}"));
        let from_json = nft_load_and_list(path, json, true).unwrap_or_else(|e| panic!("{e}"));
        let from_text = nft_load_and_list(&nft_path, text, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_json, from_text, "{path} and {nft_path} differ once loaded");
        assert!(from_json.contains("chain firewall"), "{from_json}");
        compared += 1;
    }
    assert_eq!(compared, 3);
}

#[test]
fn a_broken_ruleset_is_refused() {
    // The check above is only worth something if nft really rejects bad input here.
    let bad = "add table inet meshwork\ntable inet meshwork { chain c { meta mark set jhashx ip saddr mod 2 } }\n";
    assert!(nft_check("broken", bad, false).is_err());
}

#[test]
fn node_rulesets_load_as_the_same_table_with_their_ipsec_matches() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/two-pdc.kdl");
    let text = std::fs::read_to_string(&path).expect("two-pdc example");
    let artifacts = meshwork_compiler::build(SourceFile::new("two-pdc.kdl", text)).expect("two-pdc builds");
    let mut compared = 0;
    for (path, json) in artifacts.iter().filter(|(p, _)| p.starts_with("nodes/") && p.ends_with("/nftables.json")) {
        let nft_path = path.replace("/nftables.json", "/nftables.nft");
        let text = artifacts.get(&nft_path).unwrap_or_else(|| panic!("no {nft_path}"));
        let from_json = nft_load_and_list(path, json, true).unwrap_or_else(|e| panic!("{e}"));
        let from_text = nft_load_and_list(&nft_path, text, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_json, from_text, "{path} and {nft_path} differ once loaded");
        // The kernel kept both IPsec-state matches (the JSON's `rt ipsec` is spelled by hand).
        assert!(from_json.contains("meta ipsec missing counter"), "{from_json}");
        assert!(from_json.contains("rt ipsec missing counter"), "{from_json}");
        assert!(from_json.contains("chain node-firewall"), "{from_json}");
        compared += 1;
    }
    assert_eq!(compared, 4);
}
