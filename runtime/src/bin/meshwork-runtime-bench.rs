//! Benchmarks of issue 4, item 6, on a real kernel (run as root, in namespaces it makes and
//! removes: `mwb-*-<pid>`, and the engines' `mw-east-e<k>` / `mw-spread-e<k>`):
//!
//! - `plan` with nothing to change on the quickstart: wall time of the `meshwork plan` process
//!   (median and p95 of --runs);
//! - drift-repair latency: a firewall rule deleted with `nft delete rule` while the agent runs,
//!   until the kernel has it again, timed by `nft monitor` events (median and p95 of --repairs);
//! - spread: --clients real OpenVPN clients with their clientpacks, each in its own namespace,
//!   against a controller with 4 engines; where each lands (management interfaces), and the
//!   largest share over the smallest.
//!
//! Run in a release build, next to the `meshwork` binary:
//!   cargo build --release -p meshwork && target/release/meshwork-runtime-bench [--runs N] [--repairs N] [--clients N]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const QUICKSTART: &str = include_str!("../../../examples/quickstart.kdl");

struct Options {
    runs: usize,
    repairs: usize,
    clients: usize,
}

fn main() {
    let mut o = Options { runs: 20, repairs: 20, clients: 64 };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value: usize =
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| die(&format!("{flag} needs a number")));
        match flag.as_str() {
            "--runs" => o.runs = value.max(1),
            "--repairs" => o.repairs = value.max(1),
            "--clients" => o.clients = value.clamp(2, 100),
            _ => die(&format!("unknown argument {flag}")),
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        die("needs root (network namespaces, nftables, OpenVPN)");
    }
    let mut lab = Lab::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bench(&mut lab, &o)));
    lab.cleanup();
    if result.is_err() {
        std::process::exit(1);
    }
}

fn die(msg: &str) -> ! {
    eprintln!("meshwork-runtime-bench: {msg}\nusage: meshwork-runtime-bench [--runs N] [--repairs N] [--clients N]");
    std::process::exit(2)
}

fn bench(lab: &mut Lab, o: &Options) {
    // 1. plan with nothing to change.
    let ctl = lab.controller("east");
    let file = lab.dir.join("quickstart.kdl");
    fs::write(&file, QUICKSTART).unwrap();
    lab.meshwork(&["keys", "init", file.to_str().unwrap()]);
    let host = ["--controller", "east", "--netns", &ctl];
    lab.meshwork(&[&["apply", file.to_str().unwrap(), "--auto-approve"][..], &host].concat());
    let mut times = Vec::new();
    for _ in 0..o.runs {
        let started = Instant::now();
        let out = lab.meshwork(&[&["plan", file.to_str().unwrap(), "--detailed-exitcode"][..], &host].concat());
        times.push(started.elapsed());
        assert!(out.contains("No changes."), "{out}");
    }
    report("plan, nothing to change (quickstart)", &mut times);

    // 2. Drift repair with the agent running.
    lab.agent(&file, "east", &ctl);
    let mut monitor = lab.in_netns(&ctl, Command::new("nft").args(["-j", "monitor", "rules"]));
    let mut lines = BufReader::new(monitor.stdout.take().unwrap()).lines();
    std::thread::sleep(Duration::from_secs(2));
    let mut times = Vec::new();
    for _ in 0..o.repairs {
        let listing = lab.capture(&ctl, &["nft", "-a", "list", "chain", "inet", "meshwork", "firewall"]);
        let handle = listing
            .lines()
            .find(|l| l.contains("comment \"rule 6\""))
            .and_then(|l| l.rsplit("# handle ").next())
            .map(|h| h.trim().to_string())
            .expect("rule 6");
        let started = Instant::now();
        lab.capture(&ctl, &["nft", "delete", "rule", "inet", "meshwork", "firewall", "handle", &handle]);
        loop {
            let line = lines.next().expect("nft monitor ended").expect("read nft monitor");
            if line.contains("\"add\"") && line.contains("rule 6") {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no repair within 30 s");
        }
        times.push(started.elapsed());
        // Let the agent's own follow-up pass settle before the next deletion.
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
    report("drift repair: rule deleted -> rule back", &mut times);
    lab.stop_agents();
    lab.meshwork(&[&["destroy", "--auto-approve"][..], &host].concat());

    // 3. Spread of real clients over the server and 4 engines.
    let ctl = lab.controller("spread");
    let file = lab.dir.join("spread.kdl");
    fs::write(&file, spread_topology(o.clients)).unwrap();
    let state = lab.dir.join("spread-state");
    let s = state.to_str().unwrap();
    lab.meshwork_in(s, &["keys", "init", file.to_str().unwrap()]);
    let host = ["--controller", "spread", "--netns", &ctl];
    lab.meshwork_in(s, &[&["apply", file.to_str().unwrap(), "--auto-approve"][..], &host].concat());
    let packs = lab.dir.join("packs");
    lab.meshwork_in(s, &["clientpack", file.to_str().unwrap(), "--all", "-o", packs.to_str().unwrap()]);
    let started = Instant::now();
    for i in 1..=o.clients {
        let ns = lab.client(i);
        let pack = packs.join(format!("c-{i}.ovpn"));
        let log = lab.dir.join(format!("c-{i}.log"));
        let child = lab.in_netns(
            &ns,
            Command::new("openvpn").arg("--log").arg(&log).arg("--config").arg(&pack).stdout(Stdio::null()),
        );
        lab.children.push(child);
    }
    let units: Vec<String> =
        std::iter::once("server".to_string()).chain((1..=4).map(|k| format!("engine-{k}"))).collect();
    let run = state.join("controllers/spread/openvpn/run");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let counts = loop {
        let mut counts = BTreeMap::new();
        for unit in &units {
            let n = rt
                .block_on(meshwork::openvpn::management::status(&run.join(format!("{unit}.sock"))))
                .map_or(0, |c| c.len());
            counts.insert(unit.clone(), n);
        }
        if counts.values().sum::<usize>() == o.clients {
            break counts;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "only {counts:?} of {} clients connected", o.clients);
        std::thread::sleep(Duration::from_millis(500));
    };
    let largest = counts.values().max().copied().unwrap_or(0);
    let smallest = counts.values().min().copied().unwrap_or(0);
    println!(
        "spread: {} real clients connected in {:.1} s: {}",
        o.clients,
        started.elapsed().as_secs_f64(),
        counts.iter().map(|(u, n)| format!("{u} {n}")).collect::<Vec<_>>().join(", ")
    );
    if smallest > 0 {
        println!("spread: largest share / smallest = {largest} / {smallest} = {:.2}", largest as f64 / smallest as f64);
    } else {
        println!("spread: largest share {largest}, smallest 0 (a unit got no client)");
    }
    for c in &mut lab.children {
        let _ = c.kill();
        let _ = c.wait();
    }
    lab.children.clear();
    lab.meshwork_in(s, &[&["destroy", "--auto-approve"][..], &host].concat());
}

fn spread_topology(clients: usize) -> String {
    format!(
        r#"topology "spread"
overlay "100.127.255.128/25"
controller "spread" id=1 {{
    address "192.0.2.10"
    cores 5
    engines 4 subnet="198.51.100.0/28"
}}
clients "c" count={clients}
"#
    )
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p95 = times[((times.len() as f64 * 0.95).ceil() as usize).saturating_sub(1).min(times.len() - 1)];
    println!(
        "{what}: median {:.1} ms, p95 {:.1} ms, min {:.1} ms, max {:.1} ms ({} runs)",
        ms(times[times.len() / 2]),
        ms(p95),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len()
    );
}

/// Namespaces, processes and files of the benchmark, removed at the end.
struct Lab {
    dir: PathBuf,
    meshwork: PathBuf,
    underlay: String,
    netns: Vec<String>,
    engines: Vec<String>,
    children: Vec<Child>,
    agents: Vec<Child>,
    ports: usize,
}

impl Lab {
    fn new() -> Lab {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("mwb-runtime-{pid}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let meshwork = std::env::current_exe().unwrap().with_file_name("meshwork");
        assert!(meshwork.exists(), "build the meshwork binary next to this one: {}", meshwork.display());
        let mut lab = Lab {
            dir,
            meshwork,
            underlay: format!("mwb-ul-{pid}"),
            netns: Vec::new(),
            engines: Vec::new(),
            children: Vec::new(),
            agents: Vec::new(),
            ports: 0,
        };
        let ul = lab.underlay.clone();
        lab.add_netns(&ul);
        ip(&["-n", &ul, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &ul, "link", "set", "br0", "up"]);
        lab
    }

    fn add_netns(&mut self, name: &str) {
        ip(&["netns", "add", name]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
        self.netns.push(name.to_string());
    }

    /// A namespace on the underlay with address `addr`.
    fn attach(&mut self, name: &str, addr: &str) {
        self.add_netns(name);
        self.ports += 1;
        let port = format!("p{}", self.ports);
        ip(&["-n", &self.underlay, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", name]);
        ip(&["-n", &self.underlay, "link", "set", &port, "master", "br0", "up"]);
        ip(&["-n", name, "addr", "add", addr, "dev", "eth0"]);
        ip(&["-n", name, "link", "set", "eth0", "up"]);
    }

    fn controller(&mut self, name: &str) -> String {
        let ns = format!("mwb-{name}-{}", std::process::id());
        self.attach(&ns, "192.0.2.10/24");
        for k in 1..=4 {
            self.engines.push(format!("mw-{name}-e{k}"));
        }
        ns
    }

    fn client(&mut self, i: usize) -> String {
        let ns = format!("mwb-k{i}-{}", std::process::id());
        self.attach(&ns, &format!("192.0.2.{}/24", 100 + i));
        ns
    }

    fn meshwork(&self, args: &[&str]) -> String {
        let state = self.dir.join("state");
        self.meshwork_in(state.to_str().unwrap(), args)
    }

    fn meshwork_in(&self, state: &str, args: &[&str]) -> String {
        let out = Command::new(&self.meshwork).args(args).args(["--state-dir", state]).output().unwrap();
        assert!(
            out.status.code().is_some_and(|c| c == 0 || (c == 2 && args[0] == "plan")),
            "meshwork {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn agent(&mut self, file: &Path, controller: &str, ns: &str) {
        let state = self.dir.join("state");
        let child = Command::new(&self.meshwork)
            .arg("agent")
            .arg(file)
            .args(["--controller", controller, "--netns", ns, "--state-dir", state.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.dir.join("agent.log")).unwrap())
            .spawn()
            .unwrap();
        self.agents.push(child);
    }

    fn stop_agents(&mut self) {
        for a in &mut self.agents {
            // SAFETY: SIGTERM to our own child.
            unsafe { libc::kill(a.id() as i32, libc::SIGTERM) };
            let _ = a.wait();
        }
        self.agents.clear();
    }

    fn in_netns(&self, ns: &str, cmd: &mut Command) -> Child {
        meshwork::netns::prepare_command(cmd, ns).unwrap();
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap()
    }

    fn capture(&self, ns: &str, argv: &[&str]) -> String {
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]);
        meshwork::netns::prepare_command(&mut cmd, ns).unwrap();
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn cleanup(&mut self) {
        self.stop_agents();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // OpenVPN processes meshwork started, by their pid files.
        for state in ["state", "spread-state"] {
            for c in ["east", "spread"] {
                let run = self.dir.join(format!("{state}/controllers/{c}/openvpn/run"));
                for e in fs::read_dir(run).into_iter().flatten().flatten() {
                    if let Some(pid) = fs::read_to_string(e.path())
                        .ok()
                        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                        .and_then(|v| v["pid"].as_u64())
                    {
                        // SAFETY: kill(2) on a pid from this run's own state directory.
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    }
                }
            }
        }
        for ns in self.netns.iter().chain(&self.engines) {
            if Path::new("/run/netns").join(ns).exists() {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
