//! Issue 4, item 5: a controller made from the quickstart on a real kernel, end to end, driven
//! through the `meshwork` CLI as an operator would.
//!
//! Namespaces (all `mwt-*-<pid>`, deleted at the end, also on failure): an underlay that
//! switches 192.0.2.0/24 (a bridge), the controller `east` (its `eth0` is 192.0.2.10) and one
//! namespace per client, each running real OpenVPN with its clientpack. meshwork itself makes
//! the engines' namespaces (`mw-east-e<k>`), which the test also deletes by name if left over.
//!
//! It asserts that: plan lists the objects to create and apply makes them (read back with `ip`
//! and `nft`); clients connect and are spread over the server and the engines by jhash (the
//! agent's /status shows where each sits, over its HTTPS API); clients on different units
//! reach each other through the controller, and what the firewall denies is refused; a rule
//! deleted by hand and an engine killed by hand are repaired by the agent; a changed topology
//! (one engine more, one client removed) shows in plan as exactly that and apply converges;
//! destroy leaves nothing of meshwork behind.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart.kdl");
const CONTROLLER_UNDERLAY: &str = "192.0.2.10/24";
const API_PORT: u16 = 7443;
const CLIENTS: [&str; 7] = ["web-1", "web-2", "db-1", "admin", "batch-1", "batch-2", "batch-3"];
const ENGINE_NETNS: [&str; 4] = ["mw-east-e1", "mw-east-e2", "mw-east-e3", "mw-east-e4"];

struct Controller {
    file: PathBuf,
    state: PathBuf,
    netns: String,
}

impl Controller {
    fn args<'a>(&'a self, verb: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![verb];
        if verb != "destroy" {
            v.push(self.file.to_str().unwrap());
        }
        v.extend(["--controller", "east", "--netns", &self.netns, "--state-dir", self.state.to_str().unwrap()]);
        v.extend_from_slice(extra);
        v
    }
    fn plan(&self) -> (i32, String) {
        let out = meshwork(&self.args("plan", &["--detailed-exitcode"]));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.code() != Some(1), "plan failed:\n{text}{}", String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }
    fn apply(&self) -> String {
        meshwork_ok(&self.args("apply", &["--auto-approve"]), 0)
    }
    fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["-j", "-n", &self.netns];
        full.extend_from_slice(args);
        serde_json::from_str(&output("ip", &full)).unwrap_or(serde_json::Value::Null)
    }
    fn nft_listing(&self) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns, "nft", "-s", "list", "table", "inet", "meshwork"])
            .output()
            .expect("nft");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
    fn pid(&self, unit: &str) -> Option<u32> {
        let path = self.state.join(format!("controllers/east/openvpn/run/{unit}.pid"));
        let rec: serde_json::Value = serde_json::from_str(&fs::read_to_string(path).ok()?).ok()?;
        rec["pid"].as_u64().map(|p| p as u32)
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Links, in a namespace, whose names meshwork owns.
fn owned_links(c: &Controller) -> Vec<String> {
    c.ip_json(&["link", "show"])
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["ifname"].as_str().map(str::to_string))
                .filter(|n| n == "plugin0" || n.starts_with("mw-"))
                .collect()
        })
        .unwrap_or_default()
}

fn engine_namespaces() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir("/run/netns")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.retain(|n| n.starts_with("mw-east-e"));
    v.sort();
    v
}

/// GET from the agent's API from the underlay side (a client namespace), with the read token.
fn api_get(client_ns: &str, ca: &Path, path: &str, token: &[u8]) -> Option<(u16, String)> {
    let path = path.to_string();
    let token = token.to_vec();
    let ca = fs::read_to_string(ca).ok()?;
    in_netns(client_ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        rt.block_on(meshwork::api::client::get(
            &format!("https://192.0.2.10:{API_PORT}"),
            &path,
            meshwork::api::client::ClientAuth::Bearer { token, ca_pem: ca },
        ))
        .ok()
    })
}

#[test]
fn quickstart_controller_on_a_real_kernel() {
    if !kernel_tests_possible() {
        return;
    }
    let mut lab = Lab::new("ctl");
    for ns in ENGINE_NETNS {
        // Engines' namespaces are meshwork's; if the test fails half-way they go by name.
        lab.forget_netns_on_drop(ns);
    }
    let underlay = lab.netns("ul");
    let ctl_ns = lab.netns("east");
    run("ip", &["-n", &underlay, "link", "add", "br0", "type", "bridge"]);
    run("ip", &["-n", &underlay, "link", "set", "br0", "up"]);
    let attach = |ns: &str, port: &str, addr: &str| {
        run("ip", &["-n", &underlay, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns]);
        run("ip", &["-n", &underlay, "link", "set", port, "master", "br0", "up"]);
        run("ip", &["-n", ns, "addr", "add", addr, "dev", "eth0"]);
        run("ip", &["-n", ns, "link", "set", "eth0", "up"]);
    };
    attach(&ctl_ns, "p-east", CONTROLLER_UNDERLAY);

    // Keys, clientpacks and the topology the operator edits.
    let state = lab.path("state");
    let file = lab.path("quickstart.kdl");
    fs::copy(EXAMPLE, &file).expect("copy the quickstart");
    let s = state.to_str().unwrap();
    meshwork_ok(&["keys", "init", file.to_str().unwrap(), "--state-dir", s], 0);
    let packs = lab.path("packs");
    meshwork_ok(&["clientpack", file.to_str().unwrap(), "--all", "-o", packs.to_str().unwrap(), "--state-dir", s], 0);
    let ca = state.join("keyset/ca.crt");
    let c = Controller { file: file.clone(), state: state.clone(), netns: ctl_ns.clone() };

    // 1. plan shows what apply will create; apply makes it.
    let (code, plan) = c.plan();
    assert_eq!(code, 2, "a fresh host needs changes:\n{plan}");
    for line in
        ["+ netns mw-east-e1", "+ link plugin0", "+ link mw-e3", "+ nftables inet meshwork", "+ process engine-2"]
    {
        assert!(plan.contains(line), "plan lacks `{line}`:\n{plan}");
    }
    // Everything is added; only forwarding, off in a new namespace, is changed.
    assert!(plan.contains(" to add, 1 to change, 0 to destroy."), "{plan}");
    assert!(plan.contains("~ sysctl net.ipv4.ip_forward"), "{plan}");
    assert!(!plan.contains("PRIVATE KEY"), "a plan never shows secrets");
    c.apply();
    let (code, plan) = c.plan();
    assert_eq!(code, 0, "right after apply nothing is left to do:\n{plan}");
    assert!(plan.contains("No changes."), "{plan}");
    assert_eq!(engine_namespaces(), ["mw-east-e1", "mw-east-e2", "mw-east-e3"]);
    let links = owned_links(&c);
    for l in ["plugin0", "mw-e1", "mw-e2", "mw-e3"] {
        assert!(links.iter().any(|x| x == l), "link {l} missing: {links:?}");
    }
    let listing = c.nft_listing().expect("table inet meshwork exists");
    assert!(listing.contains("jhash ip saddr . udp sport mod 4"), "{listing}");
    for unit in ["server", "engine-1", "engine-2", "engine-3"] {
        let pid = c.pid(unit).unwrap_or_else(|| panic!("no pid file for {unit}"));
        assert!(alive(pid), "{unit} runs");
        lab.kill_on_drop(pid);
    }

    // 2. The agent, with its API on the controller's underlay address.
    let token = lab.path("read.token");
    fs::write(&token, b"read-token-for-the-kernel-test\n").unwrap();
    fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let agent_log = lab.path("agent.log");
    let listen = format!("192.0.2.10:{API_PORT}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshwork"));
    cmd.args(c.args("agent", &["--listen", &listen, "--read-token-file", token.to_str().unwrap()]))
        .stdin(Stdio::null())
        .stdout(fs::File::create(&agent_log).unwrap())
        .stderr(fs::File::create(lab.path("agent.err")).unwrap());
    let agent = lab.spawn("agent", &mut cmd, Some(lab.path("agent.err")));

    // 3. Real clients.
    let mut client_ns = BTreeMap::new();
    for (i, name) in CLIENTS.iter().enumerate() {
        let ns = lab.netns(&format!("k{i}"));
        attach(&ns, &format!("p-k{i}"), &format!("192.0.2.{}/24", 100 + i));
        let (_, log) = lab.openvpn(name, &ns, &packs.join(format!("{name}.ovpn")));
        client_ns.insert(name.to_string(), (ns, log));
    }
    for (name, (_, log)) in &client_ns {
        wait_until(&format!("{name} to connect"), Duration::from_secs(60), || {
            fs::read_to_string(log).ok().filter(|t| t.contains("Initialization Sequence Completed")).map(|_| ())
        });
    }
    let any_client = client_ns["admin"].0.clone();
    let read_token = b"read-token-for-the-kernel-test".to_vec();
    let status = wait_until("the agent to locate all clients", Duration::from_secs(30), || {
        let (code, body) = api_get(&any_client, &ca, "/status", &read_token)?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200 && v["clients"].as_object().is_some_and(|m| m.len() == CLIENTS.len())).then_some(v)
    });
    let unit_of = |name: &str| status["clients"][name]["unit"].as_str().unwrap_or_default().to_string();
    let mut per_unit: BTreeMap<String, usize> = BTreeMap::new();
    for name in CLIENTS {
        *per_unit.entry(unit_of(name)).or_default() += 1;
    }
    eprintln!("clients per unit: {per_unit:?}");
    assert!(per_unit.len() >= 2, "jhash spreads 7 clients over more than one of 4 units: {per_unit:?}");
    let (code, metrics) = api_get(&any_client, &ca, "/metrics", &read_token).expect("metrics");
    assert_eq!(code, 200);
    for (unit, n) in &per_unit {
        assert!(metrics.contains(&format!("meshwork_clients{{unit=\"{unit}\"}} {n}")), "{metrics}");
    }
    let (code, _) = api_get(&any_client, &ca, "/status", b"not-the-read-token-at-all").expect("status");
    assert_eq!(code, 401, "a wrong token is refused");

    // 4. Traffic through the controller, between clients on different units.
    let overlay = |name: &str| -> Ipv4Addr {
        status["clients"][name]["address"].as_str().and_then(|a| a.parse().ok()).expect("client address")
    };
    let ns_of = |name: &str| client_ns[name].0.clone();
    let icmp_ok = |from: &str, to: &str| ping(&ns_of(from), overlay(to), 3, Duration::from_secs(2)) > 0;
    let mut pairs = 0;
    for a in ["web-1", "web-2", "admin", "batch-1"] {
        for b in ["web-1", "web-2", "admin", "batch-2"] {
            if a != b && unit_of(a) != unit_of(b) && pairs < 3 {
                assert!(icmp_ok(a, b), "ICMP {a} ({}) -> {b} ({}) is allowed by rule 6", unit_of(a), unit_of(b));
                pairs += 1;
            }
        }
    }
    assert!(pairs > 0 || per_unit.len() < 2, "found clients on different units");
    let db = SocketAddr::from((overlay("db-1"), 5432));
    tcp_server(&ns_of("db-1"), db);
    assert!(tcp_reaches(&ns_of("web-1"), db, Duration::from_secs(3)), "web-1 reaches db-1:5432 (rule 1)");
    assert!(!tcp_reaches(&ns_of("batch-1"), db, Duration::from_secs(2)), "batch-1 -> db-1:5432 is denied (rule 4)");
    assert!(!icmp_ok("batch-2", "db-1"), "batch -> critical is denied even for ICMP (rule 4)");
    let ssh = SocketAddr::from((overlay("web-2"), 22));
    tcp_server(&ns_of("web-2"), ssh);
    assert!(tcp_reaches(&ns_of("admin"), ssh, Duration::from_secs(3)), "admin reaches web-2:22 (rule 2)");
    assert!(!tcp_reaches(&ns_of("web-1"), ssh, Duration::from_secs(2)), "web-1 -> web-2:22 falls to policy drop");

    // 5. Drift: a rule deleted by hand comes back; a killed engine is restarted.
    let handles =
        output("ip", &["netns", "exec", &ctl_ns, "nft", "-a", "list", "chain", "inet", "meshwork", "firewall"]);
    let handle = handles
        .lines()
        .find(|l| l.contains("comment \"rule 6\""))
        .and_then(|l| l.rsplit("# handle ").next())
        .map(|h| h.trim().to_string())
        .expect("rule 6's handle");
    run("ip", &["netns", "exec", &ctl_ns, "nft", "delete", "rule", "inet", "meshwork", "firewall", "handle", &handle]);
    let before = Instant::now();
    wait_until("the agent to restore rule 6", Duration::from_secs(10), || {
        c.nft_listing().filter(|l| l.contains("comment \"rule 6\"")).map(|_| ())
    });
    eprintln!("rule 6 restored after {:?}", before.elapsed());
    let old = c.pid("engine-2").expect("engine-2 pid");
    // SAFETY: kill(2) on the pid meshwork recorded for engine-2.
    unsafe { libc::kill(old as i32, libc::SIGKILL) };
    let new = wait_until("the agent to restart engine-2", Duration::from_secs(15), || {
        c.pid("engine-2").filter(|p| *p != old && alive(*p))
    });
    lab.kill_on_drop(new);
    // The agent counts a repair once the pass that made it has finished.
    let status = wait_until("/status to count both repairs", Duration::from_secs(10), || {
        let v: serde_json::Value = serde_json::from_str(&api_get(&any_client, &ca, "/status", &read_token)?.1).ok()?;
        let count = |kind: &str| v["drift_repairs"][kind].as_u64().unwrap_or(0);
        (count("nftables") >= 1 && count("process") >= 1 && v["units"]["engine-2"] == true).then_some(v)
    });
    assert_eq!(status["reconcile_errors"], 0, "{status}");

    // 6. SIGTERM stops the agent and leaves the dataplane running.
    // SAFETY: SIGTERM to our child.
    unsafe { libc::kill(lab.child(agent).id() as i32, libc::SIGTERM) };
    let exited =
        wait_until("the agent to stop", Duration::from_secs(10), || lab.child(agent).try_wait().ok().flatten());
    assert!(exited.success(), "agent exit: {exited:?}");
    assert!(alive(c.pid("server").unwrap()), "the server keeps running without the agent");
    assert!(c.nft_listing().is_some());

    // 7. One engine more, one client removed: plan shows exactly that; apply converges.
    let text = fs::read_to_string(&file).unwrap();
    let changed = text
        .replace("engines 3 subnet=", "engines 4 subnet=")
        .replace("clients \"batch\" count=3", "clients \"batch\" count=2");
    assert_ne!(text, changed);
    fs::write(&file, changed).unwrap();
    meshwork_ok(&["keys", "sync", file.to_str().unwrap(), "--state-dir", s], 0);
    let (code, plan) = c.plan();
    assert_eq!(code, 2, "{plan}");
    for line in [
        "+ netns mw-east-e4",
        "+ link mw-e4",
        "+ process engine-4",
        "+ file engine-4.conf",
        "- file ccd/batch-3",
        "~ nftables inet meshwork",
    ] {
        assert!(plan.contains(line), "plan lacks `{line}`:\n{plan}");
    }
    for line in plan.lines().filter(|l| l.starts_with("  - ") || l.starts_with("  -/+ ")) {
        assert!(line.contains("batch-3"), "only batch-3 goes: {line}\n{plan}");
    }
    c.apply();
    let (code, plan) = c.plan();
    assert_eq!(code, 0, "converged:\n{plan}");
    assert_eq!(engine_namespaces(), ["mw-east-e1", "mw-east-e2", "mw-east-e3", "mw-east-e4"]);
    let pids: Vec<u32> =
        ["server", "engine-1", "engine-2", "engine-3", "engine-4"].iter().filter_map(|u| c.pid(u)).collect();
    assert_eq!(pids.len(), 5);
    for pid in &pids {
        lab.kill_on_drop(*pid);
    }

    // 8. destroy leaves nothing of meshwork behind.
    meshwork_ok(&c.args("destroy", &["--auto-approve"]), 0);
    assert!(engine_namespaces().is_empty(), "{:?}", engine_namespaces());
    assert!(owned_links(&c).is_empty(), "{:?}", owned_links(&c));
    assert!(c.nft_listing().is_none(), "table inet meshwork is gone");
    for proto in ["77", "78"] {
        let routes = output("ip", &["-n", &ctl_ns, "route", "show", "table", "all", "proto", proto]);
        assert!(routes.trim().is_empty(), "routes of proto {proto} left: {routes}");
    }
    for pid in pids {
        assert!(!alive(pid), "OpenVPN {pid} stopped");
    }
    assert!(!state.join("controllers/east/openvpn").exists());
    assert!(state.join("keyset/ca.crt").exists(), "destroy keeps the keyset");
}
