//! Benchmarks of issue 4, item 6, on a real kernel (run as root, in namespaces it makes and
//! removes: `mwb-*-<pid>`, and the engines' `mw-bplan-e<k>`, `mw-dbench-e<k>`, `mw-spread-e<k>`):
//!
//! - `plan` with nothing to change on the quickstart: wall time of the `meshwork plan` process
//!   (median and p95 of --runs);
//! - drift-repair latency (issue 14, item 3), per kind of object the agent owns, --repairs times
//!   each while the agent runs: a route and the rule inside an engine's namespace, plugin0's and
//!   an engine's address, an engine's veth, an nft rule, the nft table flushed and deleted (each
//!   deleted in-process over netlink or with `nft`), and an engine's OpenVPN killed; timed until
//!   the kernel has the object back (netlink events of its namespace and a 5 ms poll; `nft
//!   monitor` events) or the engine runs again and has made its management socket (5 ms poll);
//!   median and p95 per kind. Controller `dbench` (engines `mw-dbench-e<k>`);
//! - spread: --clients real OpenVPN clients with their clientpacks, each in its own namespace,
//!   against a controller with 4 engines; where each lands (management interfaces), and the
//!   largest share over the smallest.
//!
//! Run in a release build, next to the `meshwork` binary:
//!   cargo build --release -p meshwork --bins && target/release/meshwork-runtime-bench [--runs N] [--repairs N] [--clients N]
//! (`--clients 0` leaves the spread out.)

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshwork::bench_support::{Agents, capture_in, ip};

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
            "--clients" => o.clients = if value == 0 { 0 } else { value.clamp(2, 100) },
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
    eprintln!(
        "meshwork-runtime-bench: {msg}\nusage: meshwork-runtime-bench [--runs N] [--repairs N] [--clients N]\n  \
         --runs N      plan runs (20)\n  \
         --repairs N   repairs per kind of drift (20)\n  \
         --clients N   real clients for the spread (64; 0: no spread)"
    );
    std::process::exit(2)
}

fn bench(lab: &mut Lab, o: &Options) {
    // 1. plan with nothing to change.
    let ctl = lab.controller(PLAN_CONTROLLER);
    let file = lab.dir.join("quickstart.kdl");
    fs::write(&file, quickstart_as(PLAN_CONTROLLER)).unwrap();
    lab.meshwork(&["keys", "init", file.to_str().unwrap()]);
    let host = ["--controller", PLAN_CONTROLLER, "--netns", &ctl];
    lab.meshwork(&[&["apply", file.to_str().unwrap(), "--auto-approve"][..], &host].concat());
    let mut times = Vec::new();
    for _ in 0..o.runs {
        let started = Instant::now();
        let out = lab.meshwork(&[&["plan", file.to_str().unwrap(), "--detailed-exitcode"][..], &host].concat());
        times.push(started.elapsed());
        assert!(out.contains("No changes."), "{out}");
    }
    report("plan, nothing to change (quickstart)", &mut times);

    lab.meshwork(&[&["destroy", "--auto-approve"][..], &host].concat());

    // 2. Drift repair with the agent running, per kind of object the agent owns.
    repairs(lab, o);

    // 3. Spread of real clients over the server and 4 engines.
    if o.clients == 0 {
        return;
    }
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

/// The quickstart with its controller `east` named `name`: each part of the benchmark has a
/// controller of its own, so its engines' namespaces (`mw-<name>-e<k>`) are its own too, and
/// no test that runs the quickstart's `east` meanwhile collides with it.
fn quickstart_as(name: &str) -> String {
    QUICKSTART.replace("\"east\"", &format!("\"{name}\"")).replace("controller:east", &format!("controller:{name}"))
}

/// The controller of the plan benchmark.
const PLAN_CONTROLLER: &str = "bplan";
/// The controller the repair benchmark runs (its engines' namespaces are `mw-dbench-e<k>`).
const DRIFT_CONTROLLER: &str = "dbench";

/// Drift repair latency of every kind of object the agent owns, `--repairs` times each: the
/// object is deleted (or the process killed) while the agent runs, and the time runs until the
/// kernel has it back (netlink events of its namespace and a 5 ms poll; `nft monitor` for the
/// table) or the engine runs again and has made its management socket.
fn repairs(lab: &mut Lab, o: &Options) {
    let ctl = lab.controller(DRIFT_CONTROLLER);
    let file = lab.dir.join("drift.kdl");
    fs::write(&file, quickstart_as(DRIFT_CONTROLLER)).unwrap();
    let state = lab.dir.join("drift-state");
    let s = state.to_str().unwrap().to_string();
    lab.meshwork_in(&s, &["keys", "init", file.to_str().unwrap()]);
    let host = ["--controller", DRIFT_CONTROLLER, "--netns", &ctl];
    lab.meshwork_in(&s, &[&["apply", file.to_str().unwrap(), "--auto-approve"][..], &host].concat());
    lab.agent_in(&s, &file, DRIFT_CONTROLLER, &ctl);
    let engine = format!("mw-{DRIFT_CONTROLLER}-e1");
    let run_dir = state.join(format!("controllers/{DRIFT_CONTROLLER}/openvpn/run"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut results: Vec<(&str, Vec<Duration>)> = Vec::new();
    // Everything settled: the agent's first passes done.
    std::thread::sleep(Duration::from_secs(2));

    rt.block_on(async {
        use meshwork::netlink::Netlink;
        let inner = Netlink::connect_in(&engine).await.unwrap();
        let outer = Netlink::connect_in(&ctl).await.unwrap();
        let mut inner_events = Netlink::subscribe_changes_in(&engine).await.unwrap();
        let mut outer_events = Netlink::subscribe_changes_in(&ctl).await.unwrap();
        let engine_route = |nl: Netlink| async move {
            nl.routes(Some(meshwork::host::ROUTE_PROTO_STATIC), Some(meshwork::host::ENGINE_TABLE))
                .await
                .unwrap()
                .into_iter()
                .next()
        };
        let engine_rule = |nl: Netlink| async move {
            nl.rules().await.unwrap().into_iter().find(|r| r.table == meshwork::host::ENGINE_TABLE)
        };

        // A route inside an engine's namespace (its default route in the engine table).
        let route = engine_route(inner.clone()).await.expect("the engine's route");
        let mut times = Vec::new();
        for _ in 0..o.repairs {
            let started = Instant::now();
            inner.delete_route(&route).await.unwrap();
            times.push(until("route", started, &mut inner_events, || engine_route(inner.clone())).await);
            settle().await;
        }
        results.push(("route deleted (engine namespace)", times));

        // The engine's `iif tun0 lookup 1194` rule.
        let rule = engine_rule(inner.clone()).await.expect("the engine's rule");
        let mut times = Vec::new();
        for _ in 0..o.repairs {
            let started = Instant::now();
            inner.delete_rule(&rule).await.unwrap();
            times.push(until("rule", started, &mut inner_events, || engine_rule(inner.clone())).await);
            settle().await;
        }
        results.push(("rule deleted (engine namespace)", times));

        // plugin0's address in the controller's namespace, then the engine end's in its own.
        for (label, nl, link, events) in [
            ("address deleted (plugin0)", &outer, "plugin0", &mut outer_events),
            ("address deleted (engine eth0)", &inner, "eth0", &mut inner_events),
        ] {
            let net = *nl.addresses(link).await.unwrap().first().expect("an address");
            let mut times = Vec::new();
            for _ in 0..o.repairs {
                let started = Instant::now();
                nl.delete_address(link, net).await.unwrap();
                let has = || {
                    let nl = nl.clone();
                    async move { nl.addresses(link).await.unwrap().contains(&net).then_some(()) }
                };
                times.push(until(label, started, events, has).await);
                settle().await;
            }
            results.push((label, times));
        }

        // The engine's veth (its pair goes with it): back up and in plugin0.
        let veth = meshwork::host::engine_veth(1);
        let mut times = Vec::new();
        for _ in 0..o.repairs {
            let started = Instant::now();
            outer.delete_link(&veth).await.unwrap();
            let back = || {
                let (nl, veth) = (outer.clone(), veth.clone());
                async move {
                    let link = nl.link(&veth).await.unwrap()?;
                    (link.up && link.master.as_deref() == Some("plugin0")).then_some(())
                }
            };
            times.push(until("link", started, &mut outer_events, back).await);
            settle().await;
        }
        results.push(("link deleted (engine veth)", times));
    });

    // The nft table: a rule deleted, the table flushed, the table deleted; timed by nft monitor.
    let monitor = NftWatch::start(lab, &ctl);
    type Breaking = fn(&str) -> Vec<String>;
    let nft_cases: [(&str, Breaking); 3] = [
        ("nft rule deleted", |ctl| {
            let listing = capture_in(ctl, &["nft", "-a", "list", "chain", "inet", "meshwork", "firewall"]);
            let handle = listing
                .lines()
                .find(|l| l.contains("comment \"rule 6\""))
                .and_then(|l| l.rsplit("# handle ").next())
                .map(|h| h.trim().to_string())
                .expect("rule 6");
            ["nft", "delete", "rule", "inet", "meshwork", "firewall", "handle", &handle].map(String::from).to_vec()
        }),
        ("nft table flushed", |_| ["nft", "flush", "table", "inet", "meshwork"].map(String::from).to_vec()),
        ("nft table deleted", |_| ["nft", "delete", "table", "inet", "meshwork"].map(String::from).to_vec()),
    ];
    for (label, breaking) in nft_cases {
        let mut times = Vec::new();
        for _ in 0..o.repairs {
            let argv = breaking(&ctl);
            monitor.drain();
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let started = Instant::now();
            capture_in(&ctl, &argv);
            times.push(monitor.until_rule_added(started));
            std::thread::sleep(Duration::from_millis(300));
        }
        results.push((label, times));
    }
    drop(monitor);

    // An engine's OpenVPN killed: until another runs and has made its management socket.
    let mut times = Vec::new();
    let pidfile = run_dir.join("engine-1.pid");
    let socket = run_dir.join("engine-1.sock");
    let pid_of = || -> Option<u32> {
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&pidfile).ok()?).ok()?;
        v["pid"].as_u64().map(|p| p as u32)
    };
    // The agent holds each unit's one management connection, so the bench cannot ask the
    // socket; a socket made after the kill is the new OpenVPN's, past its initialisation.
    let made_since = |t: std::time::SystemTime| fs::metadata(&socket).and_then(|m| m.modified()).is_ok_and(|m| m >= t);
    for _ in 0..o.repairs {
        let old = pid_of().expect("engine-1 runs");
        let started = Instant::now();
        let killed_at = std::time::SystemTime::now();
        // SAFETY: kill(2) on the pid this run's own state directory names.
        unsafe { libc::kill(old as i32, libc::SIGKILL) };
        loop {
            let new = pid_of().filter(|p| *p != old && Path::new(&format!("/proc/{p}")).exists());
            if new.is_some() && made_since(killed_at) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "engine-1 not back within 30 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        times.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    results.push(("engine process killed", times));

    for (label, mut times) in results {
        report(&format!("drift repair: {label} -> back"), &mut times);
    }
    lab.agents.stop();
    lab.meshwork_in(&s, &[&["destroy", "--auto-approve"][..], &host].concat());
}

/// Lets the agent's follow-up pass (its own repair is an event too) settle before the next
/// deletion.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Time since `started` when `check` first finds the object back, looking after every netlink
/// event of the namespace and at least every 5 ms.
async fn until<F, Fut, T>(
    what: &str,
    started: Instant,
    events: &mut meshwork::netlink::Changes,
    mut check: F,
) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    use futures_util::StreamExt;
    loop {
        if check().await.is_some() {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{what}: no repair within 30 s");
        let _ = tokio::time::timeout(Duration::from_millis(5), events.next()).await;
    }
}

/// `nft -j monitor` in a namespace, its lines on a channel.
struct NftWatch {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl NftWatch {
    fn start(lab: &Lab, ns: &str) -> NftWatch {
        let mut child = lab.in_netns(ns, Command::new("nft").args(["-j", "monitor"]));
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        // nft subscribes as it starts.
        std::thread::sleep(Duration::from_millis(500));
        NftWatch { child, lines }
    }

    fn drain(&self) {
        while self.lines.try_recv().is_ok() {}
    }

    /// Until the monitor shows firewall rule 6 added (a ruleset loads in one transaction).
    fn until_rule_added(&self, started: Instant) -> Duration {
        loop {
            let left = Duration::from_secs(30).saturating_sub(started.elapsed());
            let line = self.lines.recv_timeout(left).expect("no repair within 30 s");
            if line.contains("\"add\"") && line.contains("rule 6") {
                return started.elapsed();
            }
        }
    }
}

impl Drop for NftWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    agents: Agents,
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
            agents: Agents::new(&meshwork),
            meshwork,
            underlay: format!("mwb-ul-{pid}"),
            netns: Vec::new(),
            engines: Vec::new(),
            children: Vec::new(),
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

    fn agent_in(&mut self, state: &str, file: &Path, controller: &str, ns: &str) {
        let log = self.dir.join(format!("agent-{controller}.log"));
        self.agents.start(file, controller, ns, Path::new(state), &[], &log);
    }

    fn in_netns(&self, ns: &str, cmd: &mut Command) -> Child {
        meshwork::netns::prepare_command(cmd, ns).unwrap();
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap()
    }

    fn cleanup(&mut self) {
        self.agents.stop();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // OpenVPN processes meshwork started, by their pid files.
        for state in ["state", "spread-state", "drift-state"] {
            for c in [PLAN_CONTROLLER, "spread", DRIFT_CONTROLLER] {
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
