//! Issue 11's measurements of compute nodes on real kernels (root; it makes and removes its own
//! namespaces and processes):
//!
//! - `lab up` time of the two-PDC example (`--ups N` runs, each followed by `lab down`);
//! - throughput of one TCP flow (iperf3, `--seconds S` each) VM→VM within a PDC (plain VXLAN
//!   over the admin network) and across PDCs (VXLAN in ESP, strongSwan's userspace data path),
//!   against a bare veth between two namespaces and against one OpenVPN tunnel as meshwork runs
//!   it (the peering tunnel of two controllers applied with `meshwork apply --controller`), all
//!   in one run;
//! - time from a vNIC added to the file until it answers from every other node of its overlay
//!   (`--adds N`);
//! - packets lost by a ping running across PDCs while the pair's key is rotated.
//!
//! Usage: `meshwork-vxlan-lab-bench [--ups N] [--seconds S] [--adds N]`; runs the `meshwork`
//! binary next to this one and `iperf3` from PATH.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshwork::lab::probe::{Flow, Outcome, Proto, probe};
use meshwork::lab::{Lab, Record};

const EXAMPLE: &str = "examples/two-pdc.kdl";
/// Within PDC prague: p-app (cn-1) → p-store (cn-2), overlay prague-backend.
const WITHIN: (&str, &str) = ("p-app", "p-store");
/// Across PDCs: b-web (cn-2, prague) → b-db (cn-3, brno), overlay tenant-b.
const ACROSS: (&str, &str) = ("b-web", "b-db");
/// The pair whose key is rotated under a running ping (the cn-2/cn-3 pair carries ACROSS).
const ROTATED: (&str, &str) = ("cn-2", "cn-3");

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (ups, seconds, adds) = (arg(&args, "--ups", 3).max(1), arg(&args, "--seconds", 5), arg(&args, "--adds", 3));
    let exe = std::env::current_exe().expect("own path").with_file_name("meshwork");
    let scratch = std::env::temp_dir().join(format!("meshwork-vxlan-lab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    let file = scratch.join("two-pdc.kdl");
    std::fs::copy(EXAMPLE, &file).expect("copy the example (run from the repository's root)");
    let state = scratch.join("state");
    let bench = Bench { exe, state, scratch: scratch.clone() };

    let mut up_times = Vec::new();
    for i in 0..ups {
        let started = Instant::now();
        bench.lab(&["up", file.to_str().unwrap()]);
        up_times.push(started.elapsed().as_secs_f64());
        if i + 1 < ups {
            bench.lab(&["down"]);
        }
    }
    println!("lab up ({EXAMPLE}): {} (median {:.2} s)", list(&up_times), median(&mut up_times.clone()));

    let record = bench.record();
    let vm = |name: &str| record.nodes.vm(name).unwrap_or_else(|| panic!("no VM {name} in the lab"));
    let within = iperf(&vm(WITHIN.0).netns, &vm(WITHIN.1).netns, vm(WITHIN.1).address.addr(), seconds);
    let across = iperf(&vm(ACROSS.0).netns, &vm(ACROSS.1).netns, vm(ACROSS.1).address.addr(), seconds);
    let veth = baseline_veth(seconds);
    let openvpn = bench.baseline_openvpn(seconds);
    println!("\none TCP flow, iperf3 -t {seconds} (Mbit/s received):");
    for (what, v) in [
        ("bare veth between two namespaces", veth),
        ("one OpenVPN tunnel (meshwork's peering tunnel)", openvpn),
        ("VM→VM within a PDC (plain VXLAN)", within),
        ("VM→VM across PDCs (VXLAN in ESP, userspace)", across),
    ] {
        println!("  {what:<50} {:>9.0}   {:>6.3}× veth   {:>6.2}× OpenVPN", v / 1e6, v / veth, v / openvpn);
    }

    let mut added = Vec::new();
    for i in 0..adds {
        added.push(bench.add_vnic(&file, &record, i as u8 + 1));
    }
    if !added.is_empty() {
        println!(
            "\nvNIC added to the file → answered from every other node of its overlay: {} (median {:.2} s)",
            list(&added),
            median(&mut added.clone())
        );
    }

    let (sent, lost) = bench.rotate_under_ping(&file, &record);
    println!("\nPSK rotation of {} and {} under a running ping: {sent} echoes, {lost} lost", ROTATED.0, ROTATED.1);

    bench.lab(&["down"]);
    let _ = std::fs::remove_dir_all(&scratch);
}

fn list(v: &[f64]) -> String {
    v.iter().map(|s| format!("{s:.2} s")).collect::<Vec<_>>().join(", ")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Bench {
    exe: PathBuf,
    state: PathBuf,
    scratch: PathBuf,
}

impl Bench {
    fn lab(&self, args: &[&str]) -> String {
        let out = Command::new(&self.exe)
            .arg("lab")
            .args(args)
            .arg("--state-dir")
            .arg(&self.state)
            .output()
            .expect("run meshwork");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "lab {args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
        text
    }

    fn record(&self) -> Record {
        Lab::new(&self.state, self.exe.clone()).load().expect("the lab's record")
    }

    /// One OpenVPN tunnel as meshwork runs it: two controllers in namespaces of their own,
    /// applied with `meshwork apply --controller`, their peering tunnel between them.
    fn baseline_openvpn(&self, seconds: u64) -> f64 {
        let dir = self.scratch.join("openvpn");
        std::fs::create_dir_all(&dir).expect("scratch");
        let file = dir.join("pair.kdl");
        std::fs::write(
            &file,
            "topology \"bench-pair\"\noverlay \"100.127.255.192/26\"\n\
             controller \"bench-a\" id=1 { address \"192.0.2.1\"; }\n\
             controller \"bench-b\" id=2 { address \"192.0.2.2\"; }\n",
        )
        .expect("write the pair");
        let state = dir.join("state");
        run(Command::new(&self.exe).args(["keys", "init"]).arg(&file).arg("--state-dir").arg(&state));
        let (a, b) = (Netns::new("ova"), Netns::new("ovb"));
        veth_pair(&a.0, &b.0, "192.0.2.1/24", "192.0.2.2/24");
        for (controller, ns) in [("bench-a", &a.0), ("bench-b", &b.0)] {
            run(Command::new(&self.exe)
                .arg("apply")
                .arg(&file)
                .args(["--controller", controller, "--netns", ns, "--auto-approve", "--state-dir"])
                .arg(&state));
        }
        let far = tunnel_address(&b.0);
        let ready = Instant::now();
        while probe(&icmp(&a.0, far), Duration::from_millis(500)).ok() != Some(Outcome::Reached) {
            assert!(ready.elapsed() < Duration::from_secs(30), "the peering tunnel did not come up");
        }
        let bps = iperf(&a.0, &b.0, far, seconds);
        for (controller, ns) in [("bench-a", &a.0), ("bench-b", &b.0)] {
            let _ = Command::new(&self.exe)
                .args(["destroy", "--controller", controller, "--netns", ns, "--auto-approve", "--state-dir"])
                .arg(&state)
                .output();
        }
        bps
    }

    /// Adds a vNIC on cn-3 to tenant-b in the file, with a VM namespace behind cn-3's bridge,
    /// and times until the VM of every other node of the overlay reaches it.
    fn add_vnic(&self, file: &Path, record: &Record, k: u8) -> f64 {
        let peer = record.nodes.vm(ACROSS.1).expect("b-db");
        let node = record.nodes.node(&peer.node).expect("its node");
        let (mac, ip) = (format!("02:00:00:00:0b:{:02x}", 0x40 + k), Ipv4Addr::new(10, 44, 0, 200 + k));
        let vm = Netns::new(&format!("vm{k}"));
        let port = format!("mw-bvm{k}");
        let mtu = peer.mtu.to_string();
        run(Command::new("ip")
            .args(["-n", &node.netns, "link", "add", &port, "mtu", &mtu, "type", "veth"])
            .args(["peer", "name", "eth0", "netns", &vm.0]));
        run(Command::new("ip").args(["-n", &node.netns, "link", "set", &port, "master", &peer.bridge, "up"]));
        run(Command::new("ip").args(["-n", &vm.0, "link", "set", "eth0", "address", &mac, "mtu", &mtu, "up"]));
        run(Command::new("ip").args(["-n", &vm.0, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]));
        let others: Vec<&str> = record
            .nodes
            .vms
            .iter()
            .filter(|v| v.overlay == peer.overlay && v.node != peer.node)
            .map(|v| v.netns.as_str())
            .collect();
        let text = std::fs::read_to_string(file).expect("the file");
        let line = format!("    vnic \"bench-{k}\" node=\"{}\" ip=\"{ip}\" mac=\"{mac}\"\n", peer.node);
        let anchor = format!("    vnic \"{}\" node=\"{}\"\n", peer.vnic, peer.node);
        assert!(text.contains(&anchor), "{anchor:?} not in the file");
        let started = Instant::now();
        std::fs::write(file, text.replacen(&anchor, &format!("{anchor}{line}"), 1)).expect("write the file");
        for from in &others {
            while probe(&icmp(from, ip), Duration::from_millis(200)).ok() != Some(Outcome::Reached) {
                assert!(started.elapsed() < Duration::from_secs(30), "bench-{k} never answered {from}");
            }
        }
        started.elapsed().as_secs_f64()
    }

    /// Pings b-db from b-web every 20 ms while `keys rotate-psk` changes the cn-2/cn-3 key and
    /// the agents load it; returns (sent, lost).
    fn rotate_under_ping(&self, file: &Path, record: &Record) -> (u32, u32) {
        let (from, to) = (record.nodes.vm(ACROSS.0).expect("b-web"), record.nodes.vm(ACROSS.1).expect("b-db"));
        let charon = self.state.join("lab/state/nodes").join(ROTATED.0).join("strongswan");
        let sas = || {
            Command::new("ip")
                .args(["netns", "exec", &record.nodes.node(ROTATED.0).unwrap().netns, "swanctl", "--list-sas", "--uri"])
                .arg("unix://charon.vici")
                .current_dir(&charon)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        let connection = format!("peer-{}", ROTATED.1);
        let id = |text: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{connection}: #")) && l.contains("ESTABLISHED"))
                .map(str::to_string)
        };
        let before = id(&sas());
        let (mut sent, mut lost) = (0, 0);
        let mut rotated_at = None;
        let started = Instant::now();
        loop {
            sent += 1;
            if probe(&icmp(&from.netns, to.address.addr()), Duration::from_millis(500)).ok() != Some(Outcome::Reached) {
                lost += 1;
            }
            if rotated_at.is_none() && started.elapsed() > Duration::from_secs(1) {
                run(Command::new(&self.exe)
                    .args(["keys", "rotate-psk"])
                    .arg(file)
                    .args([ROTATED.0, ROTATED.1, "--state-dir"])
                    .arg(self.state.join("lab/state")));
                rotated_at = Some(Instant::now());
            }
            if let Some(at) = rotated_at {
                let renewed = id(&sas()).is_some_and(|now| Some(&now) != before.as_ref());
                if (renewed && at.elapsed() > Duration::from_secs(2)) || at.elapsed() > Duration::from_secs(20) {
                    assert!(renewed, "the SA of {} and {} was not renewed", ROTATED.0, ROTATED.1);
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (sent, lost)
    }
}

fn icmp(netns: &str, destination: Ipv4Addr) -> Flow {
    Flow { netns: netns.to_string(), source: None, destination, proto: Proto::Icmp, port: None }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace of the bench's own, `mwb-<purpose>-<pid>`, deleted by name on drop.
struct Netns(String);

impl Netns {
    fn new(purpose: &str) -> Netns {
        let name = format!("mwb-{purpose}-{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]));
        run(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A veth `eth0` in each namespace with the addresses given.
fn veth_pair(a: &str, b: &str, a_addr: &str, b_addr: &str) {
    run(Command::new("ip").args(["-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b]));
    for (ns, addr) in [(a, a_addr), (b, b_addr)] {
        run(Command::new("ip").args(["-n", ns, "addr", "add", addr, "dev", "eth0"]));
        run(Command::new("ip").args(["-n", ns, "link", "set", "eth0", "up"]));
    }
}

fn baseline_veth(seconds: u64) -> f64 {
    let (a, b) = (Netns::new("tva"), Netns::new("tvb"));
    veth_pair(&a.0, &b.0, "10.201.0.1/24", "10.201.0.2/24");
    iperf(&a.0, &b.0, Ipv4Addr::new(10, 201, 0, 2), seconds)
}

/// The address of the first peering tunnel (`mw-p*`) in `ns`'s far end: the peer's side of the
/// point-to-point link.
fn tunnel_address(ns: &str) -> Ipv4Addr {
    let started = Instant::now();
    loop {
        let out = Command::new("ip").args(["-n", ns, "-j", "addr", "show"]).output().expect("ip");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let found = v.as_array().into_iter().flatten().find_map(|l| {
            let name = l["ifname"].as_str()?;
            name.starts_with("mw-p").then(|| l["addr_info"][0]["local"].as_str()?.parse().ok())?
        });
        if let Some(a) = found {
            return a;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no peering tunnel in {ns}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One TCP flow from `from` to an iperf3 server in `to` at `address`: bits per second received.
fn iperf(from: &str, to: &str, address: Ipv4Addr, seconds: u64) -> f64 {
    let mut server: Child = Command::new("ip")
        .args(["netns", "exec", to, "iperf3", "-s", "-1", "-B", &address.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 (Debian: iperf3)");
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("ip")
        .args(["netns", "exec", from, "iperf3", "-c", &address.to_string(), "-t", &seconds.to_string(), "-J"])
        .output()
        .expect("iperf3");
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("iperf3 {from} → {address}: {}", String::from_utf8_lossy(&out.stdout)))
}
