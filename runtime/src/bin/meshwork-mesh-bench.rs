//! Issue 14, item 2: what the peers' exchange costs, the former 1 s poll against the stream,
//! in one run on one lab (root; it makes and removes its own namespaces `mws-*-<pid>`).
//!
//! The lab: --controllers real controllers (default 9, ids 1..9: peering ports 1195-1203), full
//! mesh, each a namespace on one underlay bridge with its OpenVPN server and its peering
//! tunnels (real OpenVPN), and a real agent. The clients are simulated: --clients names of the
//! topology, spread evenly. The bench stands in for each controller's OpenVPN management
//! interface: once the server runs, it takes the socket's path (the agent connects there)
//! and answers `status 3` with the clients that controller holds now, in OpenVPN's format. A
//! "move" takes a client from one controller's list to another's with a newer
//! "connected since", which is what a failover looks like to the agents. Nothing in the agent
//! knows it is benchmarked.
//!
//! For each exchange, poll then stream (`meshwork agent --mesh-exchange`), with the same
//! tunnels: the agents start, the routes converge, then
//! - at rest for --rest seconds;
//! - a burst of --rate moves per second for --burst seconds;
//! - --moves single moves, one at a time, each timed from the moment the new holder's agent
//!   read the client in its `status 3` (its announcement changes right then) to the moment
//!   every other controller has the route through the tunnel to the new holder (`ip monitor
//!   route` in each namespace).
//!
//! Bytes: an nft table of the bench's own (`inet mws_bench`) in each controller's namespace
//! counts what leaves it: TCP port 1194 (the agents' exchange, IP level, inside the tunnels:
//! TCP, TLS, HTTP and payload) and the peering tunnels' UDP on the underlay (encrypted,
//! OpenVPN's own keepalives included). CPU: utime+stime of each agent process, and of the
//! OpenVPN peering processes, from /proc. All per agent per second (means over agents).
//!
//! Run in a release build, next to the `meshwork` binary:
//!   cargo build --release -p meshwork --bins && target/release/meshwork-mesh-bench \
//!     [--controllers N] [--clients N] [--rest S] [--burst S] [--rate R] [--moves N]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshwork::bench_support::{Agents, capture_in, ip};

struct Options {
    controllers: usize,
    clients: usize,
    rest: u64,
    burst: u64,
    rate: u64,
    moves: usize,
}

fn main() {
    let mut o = Options { controllers: 9, clients: 450, rest: 20, burst: 10, rate: 50, moves: 10 };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value: u64 =
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| die(&format!("{flag} needs a number")));
        match flag.as_str() {
            "--controllers" => o.controllers = (value as usize).clamp(2, 9),
            "--clients" => o.clients = (value as usize).clamp(1, 1000),
            "--rest" => o.rest = value.max(1),
            "--burst" => o.burst = value.max(1),
            "--rate" => o.rate = value.clamp(1, 1000),
            "--moves" => o.moves = value as usize,
            _ => die(&format!("unknown argument {flag}")),
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        die("needs root (network namespaces, nftables, OpenVPN)");
    }
    let mut lab = Lab::new(o.controllers);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bench(&mut lab, &o)));
    lab.cleanup();
    if result.is_err() {
        std::process::exit(1);
    }
}

fn die(msg: &str) -> ! {
    eprintln!(
        "meshwork-mesh-bench: {msg}\nusage: meshwork-mesh-bench [--controllers N] [--clients N] [--rest S] [--burst S] [--rate R] [--moves N]"
    );
    std::process::exit(2)
}

fn name(i: usize) -> String {
    format!("mws{}", i + 1)
}

fn topology(controllers: usize, clients: usize) -> String {
    let mut t = String::from("topology \"mws-mesh\"\noverlay \"100.127.0.0/22\"\n");
    for i in 0..controllers {
        t.push_str(&format!("controller \"{}\" id={} {{ address \"192.0.2.{}\"; }}\n", name(i), i + 1, 11 + i));
    }
    t.push_str(&format!("peering \"full\"\nclients \"sim\" count={clients}\n"));
    t
}

fn bench(lab: &mut Lab, o: &Options) {
    let file = lab.dir.join("mesh.kdl");
    let text = topology(o.controllers, o.clients);
    fs::write(&file, &text).unwrap();
    let analysis = meshwork_compiler::analyze(meshwork_compiler::source::SourceFile::new("mesh.kdl", text));
    let net =
        analysis.network.unwrap_or_else(|| panic!("the bench topology does not compile: {:?}", analysis.diagnostics));
    let clients: Vec<(String, Ipv4Addr)> = net.clients.iter().map(|c| (c.name.clone(), c.ip)).collect();
    let f = file.to_str().unwrap().to_string();
    lab.meshwork(&["keys", "init", &f]);
    let started = Instant::now();
    for i in 0..o.controllers {
        let ns = lab.netns[i + 1].clone();
        lab.meshwork(&["apply", &f, "--controller", &name(i), "--netns", &ns, "--auto-approve"]);
    }
    lab.wait_tunnels(o.controllers);
    eprintln!(
        "{} controllers applied, full mesh of tunnels up in {:.1} s",
        o.controllers,
        started.elapsed().as_secs_f64()
    );

    // The bench answers for every controller's OpenVPN management interface from now on.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let world = Arc::new(Mutex::new(World {
        holder: (0..clients.len()).map(|i| i % o.controllers).collect(),
        since: vec![now; clients.len()],
        clock: now,
        watch: None,
    }));
    for i in 0..o.controllers {
        let socket = lab.state.join(format!("controllers/{}/openvpn/run/server.sock", name(i)));
        fake_management(socket, i, clients.clone(), world.clone(), lab.stop.clone());
    }
    for i in 0..o.controllers {
        lab.counters(i);
    }

    let mut results = Vec::new();
    for mode in ["poll", "stream"] {
        eprintln!("--- exchange: {mode}");
        lab.start_agents(&f, o.controllers, mode);
        lab.wait_converged(o.controllers, clients.len());
        // A few seconds for start-up costs to pass.
        std::thread::sleep(Duration::from_secs(3));
        let rest = lab.measure(o.controllers, Duration::from_secs(o.rest), || {});
        let burst = lab.measure(o.controllers, Duration::from_secs(o.burst), || {
            let interval = Duration::from_secs_f64(1.0 / o.rate as f64);
            let until = Instant::now() + Duration::from_secs(o.burst);
            let mut next = Instant::now();
            let mut k = 0usize;
            while Instant::now() < until {
                let mut w = world.lock().unwrap();
                let c = (k * 7919) % clients.len();
                let to = (w.holder[c] + 1 + k % (o.controllers - 1)) % o.controllers;
                w.move_to(c, to);
                drop(w);
                k += 1;
                next += interval;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        });
        lab.wait_converged(o.controllers, clients.len());
        let latency = lab.latencies(o, &clients, &world);
        lab.agents.stop();
        results.push((mode, rest, burst, latency));
    }
    report(o, &results);
}

/// Where every simulated client is, as the fake management interfaces tell it.
struct World {
    /// Controller index holding each client.
    holder: Vec<usize>,
    /// Its "connected since".
    since: Vec<u64>,
    /// The last "connected since" handed out: each move gets a newer one.
    clock: u64,
    /// A timed move: (client, new holder, when that holder first told its agent).
    watch: Option<(usize, usize, Option<Instant>)>,
}

impl World {
    fn move_to(&mut self, client: usize, to: usize) {
        self.clock += 1;
        self.holder[client] = to;
        self.since[client] = self.clock;
    }

    /// `status 3` for controller `me`, as OpenVPN 2.6 words it.
    fn status(&mut self, me: usize, clients: &[(String, Ipv4Addr)]) -> String {
        let mut out = String::from("TITLE\tOpenVPN 2.6 (meshwork-mesh-bench)\r\nTIME\t-\t0\r\n");
        out.push_str("HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher\r\n");
        for (i, (name, ip)) in clients.iter().enumerate() {
            if self.holder[i] == me {
                let since = self.since[i];
                out.push_str(&format!(
                    "CLIENT_LIST\t{name}\t198.18.{}.{}:1194\t{ip}\t\t0\t0\t-\t{since}\tUNDEF\t{i}\t{i}\tAES-256-GCM\r\n",
                    i / 250,
                    i % 250 + 1
                ));
            }
        }
        out.push_str("GLOBAL_STATS\tMax bcast/mcast queue length\t0\r\nEND\r\n");
        if let Some((c, to, told @ None)) = &mut self.watch
            && *to == me
            && self.holder[*c] == me
        {
            *told = Some(Instant::now());
        }
        out
    }
}

/// Serves `status 3` on `socket` (in place of OpenVPN's own) until `stop`.
fn fake_management(
    socket: PathBuf,
    me: usize,
    clients: Vec<(String, Ipv4Addr)>,
    world: Arc<Mutex<World>>,
    stop: Arc<AtomicBool>,
) {
    let _ = fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).unwrap_or_else(|e| panic!("bind {}: {e}", socket.display()));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(conn) = conn else { continue };
            let (clients, world) = (clients.clone(), world.clone());
            std::thread::spawn(move || {
                let mut write = match conn.try_clone() {
                    Ok(w) => w,
                    Err(_) => return,
                };
                let _ =
                    write.write_all(b">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info\r\n");
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { return };
                    let reply = match line.trim() {
                        "status 3" => world.lock().unwrap().status(me, &clients),
                        "quit" | "exit" => return,
                        _ => "SUCCESS: ignored by the bench\r\n".to_string(),
                    };
                    if write.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// Counters and CPU time at one moment.
#[derive(Clone, Copy, Default)]
struct Sample {
    mesh_bytes: u64,
    mesh_packets: u64,
    peering_bytes: u64,
    agent_ticks: u64,
    openvpn_ticks: u64,
    /// The agent's reconcile passes so far (its status file).
    passes: u64,
}

/// Per agent per second over a window.
#[derive(Clone, Copy, Default)]
struct Rates {
    mesh_bytes: f64,
    mesh_packets: f64,
    peering_bytes: f64,
    agent_cpu: f64,
    openvpn_cpu: f64,
    passes: f64,
}

fn rates(a: &[Sample], b: &[Sample], seconds: f64) -> Rates {
    let n = a.len() as f64;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let sum = |f: fn(&Sample) -> u64| a.iter().zip(b).map(|(x, y)| f(y).saturating_sub(f(x)) as f64).sum::<f64>();
    Rates {
        mesh_bytes: sum(|s| s.mesh_bytes) / n / seconds,
        mesh_packets: sum(|s| s.mesh_packets) / n / seconds,
        peering_bytes: sum(|s| s.peering_bytes) / n / seconds,
        agent_cpu: sum(|s| s.agent_ticks) / hz / n / seconds * 100.0,
        openvpn_cpu: sum(|s| s.openvpn_ticks) / hz / n / seconds * 100.0,
        passes: sum(|s| s.passes) / n / seconds,
    }
}

fn report(o: &Options, results: &[(&str, Rates, Rates, Vec<f64>)]) {
    println!(
        "mesh exchange, {} controllers (full mesh, real tunnels and agents), {} simulated clients; per agent per second, mean over agents",
        o.controllers, o.clients
    );
    println!(
        "{:<7} {:<28} {:>12} {:>10} {:>16} {:>10} {:>14} {:>10}",
        "mode", "phase", "mesh B/s", "mesh pkt/s", "peering UDP B/s", "agent CPU", "OpenVPN CPU", "passes/s"
    );
    for (mode, rest, burst, _) in results {
        for (phase, r) in
            [(format!("rest ({} s)", o.rest), rest), (format!("burst ({}/s, {} s)", o.rate, o.burst), burst)]
        {
            println!(
                "{mode:<7} {phase:<28} {:>12.0} {:>10.1} {:>16.0} {:>9.2}% {:>13.2}% {:>10.2}",
                r.mesh_bytes, r.mesh_packets, r.peering_bytes, r.agent_cpu, r.openvpn_cpu, r.passes
            );
        }
    }
    if let [(_, pr, pb, pl), (_, sr, sb, sl)] = results {
        let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.1}x", a / b) } else { "-".into() };
        println!(
            "poll/stream at rest: mesh bytes {}, agent CPU {}; in the burst: mesh bytes {}, agent CPU {}",
            ratio(pr.mesh_bytes, sr.mesh_bytes),
            ratio(pr.agent_cpu, sr.agent_cpu),
            ratio(pb.mesh_bytes, sb.mesh_bytes),
            ratio(pb.agent_cpu, sb.agent_cpu)
        );
        for (mode, l) in [("poll", pl), ("stream", sl)] {
            summary(&format!("one move, new holder's agent reads it -> routed by all others ({mode})"), l);
        }
    }
}

fn summary(what: &str, v: &[f64]) {
    let mut v = v.to_vec();
    if v.is_empty() {
        println!("{what}: no measurement");
        return;
    }
    v.sort_by(f64::total_cmp);
    println!(
        "{what}: median {:.1} ms, min {:.1} ms, max {:.1} ms over {} moves",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1],
        v.len()
    );
}

/// Namespaces, processes and files of the bench, removed at the end.
struct Lab {
    dir: PathBuf,
    state: PathBuf,
    meshwork: PathBuf,
    /// The underlay, then one per controller.
    netns: Vec<String>,
    agents: Agents,
    monitors: Vec<Child>,
    stop: Arc<AtomicBool>,
}

impl Lab {
    fn new(controllers: usize) -> Lab {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("mws-mesh-bench-{pid}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let meshwork = std::env::current_exe().unwrap().with_file_name("meshwork");
        assert!(meshwork.exists(), "build the meshwork binary next to this one: {}", meshwork.display());
        let mut lab = Lab {
            state: dir.join("state"),
            dir,
            agents: Agents::new(&meshwork),
            meshwork,
            netns: Vec::new(),
            monitors: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let ul = format!("mws-ul-{pid}");
        lab.add_netns(&ul);
        ip(&["-n", &ul, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &ul, "link", "set", "br0", "up"]);
        for i in 0..controllers {
            let ns = format!("mws-c{}-{pid}", i + 1);
            lab.add_netns(&ns);
            let port = format!("p{}", i + 1);
            ip(&["-n", &ul, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            ip(&["-n", &ul, "link", "set", &port, "master", "br0", "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("192.0.2.{}/24", 11 + i), "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        lab
    }

    fn add_netns(&mut self, name: &str) {
        ip(&["netns", "add", name]);
        self.netns.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    fn meshwork(&self, args: &[&str]) -> String {
        let out = Command::new(&self.meshwork).args(args).arg("--state-dir").arg(&self.state).output().unwrap();
        assert!(
            out.status.success(),
            "meshwork {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every controller has a tunnel to every other, with its address.
    fn wait_tunnels(&self, controllers: usize) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let up = (0..controllers)
                .map(|i| {
                    let links = capture_in(&self.netns[i + 1], &["ip", "-j", "-4", "addr", "show"]);
                    (1..=controllers).filter(|k| *k != i + 1 && links.contains(&format!("\"mw-p{k}\""))).count()
                })
                .sum::<usize>();
            if up == controllers * (controllers - 1) {
                return;
            }
            assert!(Instant::now() < deadline, "only {up} of {} tunnel ends up", controllers * (controllers - 1));
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The bench's own counters in controller `i`'s namespace.
    fn counters(&self, i: usize) {
        let script = "table inet mws_bench {\n\
            counter mesh { }\n\
            counter peering { }\n\
            chain out {\n\
              type filter hook output priority 0; policy accept;\n\
              tcp dport 1194 counter name \"mesh\"\n\
              tcp sport 1194 counter name \"mesh\"\n\
              oifname \"eth0\" udp dport 1195-1203 counter name \"peering\"\n\
              oifname \"eth0\" udp sport 1195-1203 counter name \"peering\"\n\
            }\n\
          }\n";
        let path = self.dir.join("counters.nft");
        fs::write(&path, script).unwrap();
        capture_in(&self.netns[i + 1], &["nft", "-f", path.to_str().unwrap()]);
    }

    fn start_agents(&mut self, file: &str, controllers: usize, mode: &str) {
        for i in 0..controllers {
            let log = self.dir.join(format!("agent-{}-{mode}.log", name(i)));
            let extra = ["--mesh-exchange", mode];
            self.agents.start(Path::new(file), &name(i), &self.netns[i + 1], &self.state, &extra, &log);
        }
    }

    /// Every agent hears every peer and routes to every client held elsewhere.
    fn wait_converged(&self, controllers: usize, clients: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ok = (0..controllers).all(|i| {
                let path = self.state.join(format!("controllers/{}/status.json", name(i)));
                let st: serde_json::Value =
                    fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
                let peers_ok = st["peers"].as_object().is_some_and(|p| {
                    p.len() == controllers - 1 && p.values().all(|p| p["live"] == true && p["agrees"] == true)
                });
                let local = st["clients"].as_object().map_or(0, |c| c.len());
                let remote = st["remote_clients"].as_object().map_or(0, |c| c.len());
                peers_ok && local + remote == clients
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the mesh did not converge within 120 s (agent logs in {})",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn sample(&self, controllers: usize) -> Vec<Sample> {
        (0..controllers)
            .map(|i| {
                let ns = &self.netns[i + 1];
                let listing = capture_in(ns, &["nft", "-j", "list", "counters", "table", "inet", "mws_bench"]);
                let v: serde_json::Value = serde_json::from_str(&listing).unwrap_or_default();
                let mut s = Sample::default();
                for item in v["nftables"].as_array().into_iter().flatten() {
                    let c = &item["counter"];
                    let (bytes, packets) = (c["bytes"].as_u64().unwrap_or(0), c["packets"].as_u64().unwrap_or(0));
                    match c["name"].as_str() {
                        Some("mesh") => (s.mesh_bytes, s.mesh_packets) = (bytes, packets),
                        Some("peering") => s.peering_bytes = bytes,
                        _ => {}
                    }
                }
                s.agent_ticks = cpu_ticks(self.agents.pid(i));
                let status = self.state.join(format!("controllers/{}/status.json", name(i)));
                s.passes = fs::read_to_string(status)
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .and_then(|v| v["reconciles"].as_u64())
                    .unwrap_or(0);
                let run = self.state.join(format!("controllers/{}/openvpn/run", name(i)));
                s.openvpn_ticks =
                    pids(&run).into_iter().filter(|(u, _)| u.starts_with("peer-")).map(|(_, p)| cpu_ticks(p)).sum();
                s
            })
            .collect()
    }

    /// Rates over `window`, while `during` runs (it returns by the end of the window).
    fn measure(&self, controllers: usize, window: Duration, during: impl FnOnce()) -> Rates {
        let before = self.sample(controllers);
        let started = Instant::now();
        during();
        if let Some(left) = window.checked_sub(started.elapsed()) {
            std::thread::sleep(left);
        }
        let after = self.sample(controllers);
        rates(&before, &after, started.elapsed().as_secs_f64())
    }

    /// Single moves, each timed to the route on every other controller, in milliseconds.
    fn latencies(&mut self, o: &Options, clients: &[(String, Ipv4Addr)], world: &Arc<Mutex<World>>) -> Vec<f64> {
        let (tx, rx) = mpsc::channel::<(usize, Instant, String)>();
        for i in 0..o.controllers {
            let mut cmd = Command::new("ip");
            cmd.args(["monitor", "route"]);
            meshwork::netns::prepare_command(&mut cmd, &self.netns[i + 1]).unwrap();
            let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
            let out = child.stdout.take().unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send((i, Instant::now(), line)).is_err() {
                        return;
                    }
                }
            });
            self.monitors.push(child);
        }
        std::thread::sleep(Duration::from_millis(300));
        let mut out = Vec::new();
        for m in 0..o.moves {
            // Start at another moment of the agents' 1 s ticks each time.
            std::thread::sleep(Duration::from_millis(700 + (m as u64 * 373) % 900));
            while rx.try_recv().is_ok() {}
            let c = (m * 104_729 + 13) % clients.len();
            let to = {
                let mut w = world.lock().unwrap();
                let to = (w.holder[c] + 1 + m % (o.controllers - 1)) % o.controllers;
                w.move_to(c, to);
                w.watch = Some((c, to, None));
                to
            };
            let want = format!("{} ", clients[c].1);
            let dev = format!("dev mw-p{} ", to + 1);
            let mut routed: BTreeMap<usize, Instant> = BTreeMap::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while routed.len() < o.controllers - 1 && Instant::now() < deadline {
                let Ok((i, at, line)) = rx.recv_timeout(Duration::from_millis(200)) else { continue };
                if i != to && line.starts_with(&want) && line.contains(&dev) {
                    routed.entry(i).or_insert(at);
                }
            }
            let told = world.lock().unwrap().watch.take().and_then(|(_, _, t)| t);
            match (told, routed.values().max()) {
                (Some(t0), Some(t1)) if routed.len() == o.controllers - 1 => {
                    out.push(t1.saturating_duration_since(t0).as_secs_f64() * 1000.0)
                }
                _ => eprintln!(
                    "move {m} of {}: routed by {} of {} controllers in 30 s",
                    clients[c].0,
                    routed.len(),
                    o.controllers - 1
                ),
            }
        }
        for mut child in self.monitors.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        out
    }

    fn cleanup(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.agents.stop();
        for mut child in self.monitors.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for e in fs::read_dir(self.state.join("controllers")).into_iter().flatten().flatten() {
            for (_, pid) in pids(&e.path().join("openvpn/run")) {
                // SAFETY: kill(2) on a pid from this run's own state directory.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        for ns in &self.netns {
            if Path::new("/run/netns").join(ns).exists() {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// (unit, pid) of the OpenVPN processes whose pid files are in `run`.
fn pids(run: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for e in fs::read_dir(run).into_iter().flatten().flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "pid") {
            continue;
        }
        let pid = fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["pid"].as_u64());
        if let (Some(pid), Some(unit)) = (pid, path.file_stem().and_then(|s| s.to_str())) {
            out.push((unit.to_string(), pid as u32));
        }
    }
    out
}

/// utime + stime of a process, in clock ticks (0 when it is gone).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return 0 };
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, utime field 14 and stime field 15 (1-based overall).
    let get = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(14) + get(15)
}
