//! Kernel tests of `meshwork plan|apply|destroy|agent --node`: namespaces made into compute
//! nodes of `examples/two-pdc.kdl` by the real CLI, read back with `ip -j`, `bridge -j` and
//! `nft -j` against the node's compiled `network.json`, with real charon processes negotiating
//! IKEv2 between PDCs; then drift, repairs by the agent, edits of the file, PSK rotation and
//! destroy. Namespaces are `mwt-<purpose>-<pid>`, deleted by name; charon and the agents are
//! killed by pid.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use meshwork::node::strongswan;
use meshwork_compiler::emit::node::network::{NodeNetwork, from_json};
use meshwork_compiler::emit::node::nftables::{PLAINTEXT_IN, PLAINTEXT_OUT};
use meshwork_compiler::source::SourceFile;
use support::node_hosts::{NodeHosts, TWO_PDC, charon_installed, counter, fdb, ip_json};
use support::{Lab, kernel_tests_possible, meshwork, wait_until};

fn network_json(file: &Path, node: &str) -> NodeNetwork {
    let text = fs::read_to_string(file).expect("topology");
    let artifacts = meshwork_compiler::build(SourceFile::new("two-pdc.kdl", text)).expect("builds");
    from_json(artifacts.get(&format!("nodes/{node}/network.json")).expect("network.json")).expect("parses")
}

/// `meshwork VERB [FILE] <host args> EXTRA`, with its exit code and output.
fn host_verb(hosts: &NodeHosts, verb: &str, file: Option<&Path>, node: &str, extra: &[&str]) -> (i32, String) {
    let mut args: Vec<String> = vec![verb.into()];
    args.extend(file.map(|f| f.display().to_string()));
    args.extend(hosts.host_args(node));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = meshwork(&refs);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn apply(lab: &mut Lab, hosts: &NodeHosts, file: &Path, node: &str) {
    let (code, text) = host_verb(hosts, "apply", Some(file), node, &["--auto-approve"]);
    if let Some(pid) = hosts.charon_pid(node) {
        lab.kill_on_drop(pid);
    }
    assert_eq!(code, 0, "apply --node {node}:\n{text}");
    assert!(!text.contains("secret ="), "a key in apply's output");
}

/// The established IKE SAs of `node`'s charon: (connection, unique id).
fn sas(hosts: &NodeHosts, node: &str) -> Vec<(String, u32)> {
    strongswan::established_ike_sas(&hosts.charon_dir(node), Some(hosts.netns(node))).unwrap_or_default()
}

fn sa_id(hosts: &NodeHosts, node: &str, connection: &str) -> Option<u32> {
    sas(hosts, node).into_iter().find(|(c, _)| c == connection).map(|(_, id)| id)
}

/// Asserts that `ns` holds exactly what `net` says: devices, bridges, MTUs, FDB and neighbour
/// entries, the VTEP and the admin-overlay interface.
fn assert_node_matches(ns: &str, net: &NodeNetwork) {
    let links = ip_json(ns, &["-d", "link", "show"]);
    let link = |name: &str| {
        links.as_array().unwrap().iter().find(|l| l["ifname"] == name).unwrap_or_else(|| panic!("no {name} in {ns}"))
    };
    for o in &net.overlays {
        let d = link(&o.device.name);
        let info = &d["linkinfo"];
        assert_eq!(info["info_kind"], "vxlan", "{}", o.device.name);
        assert_eq!(info["info_data"]["id"], o.device.vni);
        assert_eq!(info["info_data"]["port"], o.device.port);
        assert_eq!(info["info_data"]["learning"], false, "nolearning");
        assert_eq!(info["info_data"]["proxy"], true, "proxy");
        match o.device.local {
            Some(local) => assert_eq!(info["info_data"]["local"], local.to_string()),
            None => assert!(info["info_data"].get("local").is_none(), "no listen address: {info}"),
        }
        assert_eq!(d["mtu"], o.device.mtu);
        assert_eq!(d["master"], o.bridge.name);
        assert!(d["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "{} up", o.device.name);
        let b = link(&o.bridge.name);
        assert_eq!(b["linkinfo"]["info_kind"], "bridge");
        assert_eq!(b["mtu"], o.bridge.mtu);
        let mut want: Vec<(String, std::net::Ipv4Addr)> = o.fdb.iter().map(|f| (f.mac.to_string(), f.dst)).collect();
        want.sort();
        assert_eq!(fdb(ns, &o.device.name), want, "FDB of {}", o.device.name);
        let neigh = ip_json(ns, &["neigh", "show", "dev", &o.device.name]);
        let mut got: Vec<(String, String)> = neigh
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"].as_array().is_some_and(|s| s.iter().any(|x| x == "PERMANENT")))
            .map(|n| (n["dst"].as_str().unwrap().to_string(), n["lladdr"].as_str().unwrap().to_string()))
            .collect();
        got.sort();
        let mut want: Vec<(String, String)> =
            o.neighbours.iter().map(|n| (n.ip.to_string(), n.mac.to_string())).collect();
        want.sort();
        assert_eq!(got, want, "neighbours of {}", o.device.name);
    }
    let lo = ip_json(ns, &["addr", "show", "dev", "lo"]);
    let vtep = net.vtep.expect("a VTEP").to_string();
    assert!(lo.to_string().contains(&format!("\"local\":\"{vtep}\"")), "VTEP {vtep} on lo: {lo}");
    let admin = net.admin_overlay.as_ref().expect("admin overlay");
    let a = link(&admin.name);
    assert_eq!(a["address"], admin.mac.to_string());
    assert_eq!(a["mtu"], admin.mtu);
    let addrs = ip_json(ns, &["addr", "show", "dev", &admin.name]).to_string();
    assert!(addrs.contains(&format!("\"local\":\"{}\"", admin.address.addr())), "{addrs}");
    let port = link(meshwork_compiler::vxlan::names::ADMIN_OVERLAY_PORT);
    assert_eq!(port["master"], admin.bridge);
}

#[test]
fn node_apply_reads_back_then_plan_shows_drift_and_destroy_leaves_nothing() {
    if !kernel_tests_possible() || !charon_installed() {
        return;
    }
    let mut lab = Lab::new("nodeapply");
    let file = Path::new(TWO_PDC);
    let hosts = NodeHosts::new(&mut lab, "na", file, &["cn-2", "cn-3"]);
    for node in ["cn-2", "cn-3"] {
        lab.show_log_on_failure(hosts.state.join(format!("nodes/{node}/log/charon.log")));
    }
    // The responder first: charon does not try again after its first try met a peer that did
    // not know it yet (starting SAs again is the agent's job; this test runs none).
    for node in ["cn-3", "cn-2"] {
        apply(&mut lab, &hosts, file, node);
    }

    let cn2 = hosts.netns("cn-2").to_string();
    assert_node_matches(&cn2, &network_json(file, "cn-2"));
    assert_node_matches(hosts.netns("cn-3"), &network_json(file, "cn-3"));
    // The node's table drops plaintext VXLAN both ways, with counters.
    assert_eq!(counter(&cn2, "meshwork", PLAINTEXT_IN), 0);
    assert_eq!(counter(&cn2, "meshwork", PLAINTEXT_OUT), 0);
    // Keys 0600 in a 0700 directory, named by pair.
    let psk_dir = strongswan::psk_dir(&hosts.charon_dir("cn-2"));
    assert_eq!(fs::metadata(&psk_dir).unwrap().permissions().mode() & 0o777, 0o700);
    for pair in ["cn-2+cn-3.psk", "cn-2+cn-4.psk"] {
        assert_eq!(fs::metadata(psk_dir.join(pair)).unwrap().permissions().mode() & 0o777, 0o600, "{pair}");
    }
    // charon on each side, the SA between them (cn-2 initiates: its name is the lower).
    wait_until("the cn-2/cn-3 SA", Duration::from_secs(20), || sa_id(&hosts, "cn-2", "peer-cn-3"));
    wait_until("the SA at cn-3", Duration::from_secs(5), || sa_id(&hosts, "cn-3", "peer-cn-2"));
    let children = strongswan::installed_children(&hosts.charon_dir("cn-2"), Some(&cn2)).unwrap();
    let child = children.iter().find(|c| c.name == "peer-cn-3").expect("child SA installed");
    let (v2, v3) = (network_json(file, "cn-2").vtep.unwrap(), network_json(file, "cn-3").vtep.unwrap());
    assert_eq!((child.local_ts.as_str(), child.remote_ts.as_str()), (&*format!("{v2}/32"), &*format!("{v3}/32")));

    // Applied: nothing left to do.
    let (code, text) = host_verb(&hosts, "plan", Some(file), "cn-2", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "a plan right after apply:\n{text}");
    assert!(text.contains("Node cn-2 of topology two-pdc"), "{text}");

    // Drift: an FDB entry deleted by hand shows first, then the repair.
    let tenant_b = network_json(file, "cn-2").overlays.into_iter().find(|o| o.name == "tenant-b").unwrap();
    let gone = &tenant_b.fdb[0];
    support::run(
        "ip",
        &[
            "netns",
            "exec",
            &cn2,
            "bridge",
            "fdb",
            "del",
            &gone.mac.to_string(),
            "dev",
            &tenant_b.device.name,
            "dst",
            &gone.dst.to_string(),
        ],
    );
    let (code, text) = host_verb(&hosts, "plan", Some(file), "cn-2", &["--detailed-exitcode"]);
    assert_eq!(code, 2, "{text}");
    let drift = text.split("meshwork will perform").next().unwrap();
    assert!(
        drift.contains(&format!("fdb {}", tenant_b.device.name)) && drift.contains(&gone.mac.to_string()),
        "{text}"
    );
    let (code, text) = host_verb(&hosts, "apply", Some(file), "cn-2", &["--auto-approve"]);
    assert_eq!(code, 0, "{text}");
    assert_node_matches(&cn2, &network_json(file, "cn-2"));
    // The SA was not touched by repairing the data plane.
    assert!(sa_id(&hosts, "cn-2", "peer-cn-3").is_some());

    // Destroy: nothing of meshwork's is left in the namespace, and charon is gone.
    let charon = hosts.charon_pid("cn-2").unwrap();
    let (code, text) = host_verb(&hosts, "destroy", None, "cn-2", &["--auto-approve"]);
    assert_eq!(code, 0, "{text}");
    let links = ip_json(&cn2, &["link", "show"]).to_string();
    assert!(!links.contains("mw-") && !links.contains("adminoverlay_0"), "left behind: {links}");
    let lo = ip_json(&cn2, &["addr", "show", "dev", "lo"]).to_string();
    assert!(!lo.contains(&v2.to_string()), "VTEP left on lo: {lo}");
    let tables = Command::new("ip").args(["netns", "exec", &cn2, "nft", "list", "tables"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&tables.stdout).contains("meshwork"), "table left");
    assert!(!Path::new(&format!("/proc/{charon}")).exists() || !is_charon(charon), "charon {charon} still runs");
    assert!(!hosts.charon_dir("cn-2").exists(), "the node's files are left");
    let (code, _) = host_verb(&hosts, "plan", Some(file), "cn-2", &["--detailed-exitcode"]);
    assert_eq!(code, 2, "after destroy, everything is to add again");
}

fn is_charon(pid: u32) -> bool {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains("charon") && !stat.contains(") Z ")
}

/// Starts the agent of `node` (killed on drop) and waits for its first status.
fn start_agent(lab: &mut Lab, hosts: &NodeHosts, file: &Path, node: &str) -> u32 {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshwork"));
    cmd.arg("agent").arg(file).args(hosts.host_args(node));
    let log = lab.path(&format!("agent-{node}.log"));
    let i = lab.spawn(&format!("agent {node}"), &mut cmd, Some(log));
    let pid = lab.child(i).id();
    let status = hosts.state.join("nodes").join(node).join("status.json");
    wait_until("the agent's status", Duration::from_secs(20), || status.exists().then_some(()));
    pid
}

fn node_status(hosts: &NodeHosts, node: &str) -> serde_json::Value {
    let path = hosts.state.join("nodes").join(node).join("status.json");
    serde_json::from_str(&fs::read_to_string(path).unwrap_or_default()).unwrap_or_default()
}

#[test]
fn node_agent_repairs_follows_edits_and_rotates_a_key_without_touching_other_sas() {
    if !kernel_tests_possible() || !charon_installed() {
        return;
    }
    let mut lab = Lab::new("nodeagent");
    // The agents follow this copy of the example, which the test edits.
    let file = lab.path("two-pdc.kdl");
    fs::copy(TWO_PDC, &file).unwrap();
    let nodes = ["cn-2", "cn-3", "cn-4"];
    let hosts = NodeHosts::new(&mut lab, "ng", &file, &nodes);
    for node in nodes {
        apply(&mut lab, &hosts, &file, node);
        lab.show_log_on_failure(hosts.state.join(format!("nodes/{node}/log/charon.log")));
        // The agents restart charon; whichever runs when they have stopped is killed too.
        lab.kill_pid_file_on_drop(hosts.charon_dir(node).join("run/charon.pid"));
    }
    let agents: Vec<u32> = nodes.iter().map(|n| start_agent(&mut lab, &hosts, &file, n)).collect();
    let cn2 = hosts.netns("cn-2").to_string();
    // cn-2 (prague) pairs with cn-3 and cn-4 (brno); both SAs come up and the agent says so.
    wait_until("cn-2's SAs in its status", Duration::from_secs(30), || {
        let s = node_status(&hosts, "cn-2");
        (s["node"]["sas"]["cn-3"] == true && s["node"]["sas"]["cn-4"] == true).then_some(())
    });
    let s = node_status(&hosts, "cn-2");
    let tenant_b = network_json(&file, "cn-2").overlays.into_iter().find(|o| o.name == "tenant-b").unwrap();
    assert_eq!(s["node"]["fdb_entries"][&tenant_b.device.name], tenant_b.fdb.len());
    assert_eq!(s["node"]["plaintext_drops"]["out"], 0);
    assert_eq!(s["controller"], serde_json::Value::Null, "a node's status names no controller");

    // Repairs: a deleted VXLAN device (with its FDB), a deleted bridge, a flushed nft table.
    let repaired = |what: &str, check: &dyn Fn() -> bool| {
        let started = Instant::now();
        wait_until(what, Duration::from_secs(10), || check().then_some(()));
        eprintln!("repaired {what} in {:?}", started.elapsed());
    };
    support::run("ip", &["-n", &cn2, "link", "del", &tenant_b.device.name]);
    repaired("the VXLAN device and its FDB", &|| fdb(&cn2, &tenant_b.device.name).len() == tenant_b.fdb.len());
    support::run("ip", &["-n", &cn2, "link", "del", &tenant_b.bridge.name]);
    repaired("the bridge, with its port", &|| {
        ip_json(&cn2, &["link", "show", &tenant_b.device.name])[0]["master"] == tenant_b.bridge.name.as_str()
    });
    support::run("ip", &["netns", "exec", &cn2, "nft", "flush", "table", "inet", "meshwork"]);
    repaired("the nft table", &|| {
        Command::new("ip")
            .args(["netns", "exec", &cn2, "nft", "list", "table", "inet", "meshwork"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(PLAINTEXT_OUT))
    });

    // A killed charon comes back, loaded, and its SAs with it.
    let old = hosts.charon_pid("cn-2").unwrap();
    // SAFETY: kill(2) on the pid charon's pid file names, a process this test started.
    unsafe { libc::kill(old as i32, libc::SIGKILL) };
    let started = Instant::now();
    wait_until("a new charon with both SAs", Duration::from_secs(40), || {
        let new = hosts.charon_pid("cn-2").filter(|p| *p != old)?;
        lab.kill_on_drop(new);
        (sa_id(&hosts, "cn-2", "peer-cn-3").is_some() && sa_id(&hosts, "cn-2", "peer-cn-4").is_some()).then_some(())
    });
    eprintln!("charon killed: both SAs back in {:?}", started.elapsed());

    // File edits: a vNIC added on cn-3 reaches cn-2's FDB; moved to cn-4, the entry follows;
    // removed, it goes.
    let text = fs::read_to_string(&file).unwrap();
    let with = |node: &str| {
        text.replace(
            "    vnic \"b-db\" node=\"cn-3\"\n",
            &format!("    vnic \"b-db\" node=\"cn-3\"\n    vnic \"b-new\" node=\"{node}\" ip=\"10.44.0.99\" mac=\"02:00:00:00:0b:99\"\n"),
        )
    };
    assert_ne!(with("cn-3"), text, "the example's tenant-b changed; update this test");
    let vtep = |node: &str| network_json(&file, node).vtep.unwrap();
    let entry = |dst| ("02:00:00:00:0b:99".to_string(), dst);
    fs::write(&file, with("cn-3")).unwrap();
    let started = Instant::now();
    let v3 = vtep("cn-3");
    wait_until("b-new in cn-2's FDB", Duration::from_secs(10), || {
        fdb(&cn2, &tenant_b.device.name).contains(&entry(v3)).then_some(())
    });
    eprintln!("vNIC added to the file: in cn-2's FDB after {:?}", started.elapsed());
    fs::write(&file, with("cn-4")).unwrap();
    let v4 = vtep("cn-4");
    wait_until("b-new moved to cn-4", Duration::from_secs(10), || {
        let entries = fdb(&cn2, &tenant_b.device.name);
        (entries.contains(&entry(v4)) && !entries.contains(&entry(v3))).then_some(())
    });
    fs::write(&file, &text).unwrap();
    wait_until("b-new gone", Duration::from_secs(10), || {
        (!fdb(&cn2, &tenant_b.device.name).iter().any(|e| e.0 == "02:00:00:00:0b:99")).then_some(())
    });

    // PSK rotation of cn-2/cn-3: that pair re-authenticates with the new key; cn-2/cn-4 keeps
    // its SA as it was.
    let before_34 = sa_id(&hosts, "cn-2", "peer-cn-4").expect("cn-2/cn-4 SA");
    let before_23 = sa_id(&hosts, "cn-2", "peer-cn-3").expect("cn-2/cn-3 SA");
    let key = hosts.charon_dir("cn-2").join("keys/psk/cn-2+cn-3.psk");
    let old_key = fs::read(&key).unwrap();
    let out = meshwork(&[
        "keys",
        "rotate-psk",
        file.to_str().unwrap(),
        "cn-2",
        "cn-3",
        "--state-dir",
        hosts.state.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "rotate-psk: {}", String::from_utf8_lossy(&out.stderr));
    wait_until("the new key on both nodes and a new cn-2/cn-3 SA", Duration::from_secs(30), || {
        let both = ["cn-2", "cn-3"]
            .iter()
            .all(|n| fs::read(hosts.charon_dir(n).join("keys/psk/cn-2+cn-3.psk")).is_ok_and(|k| k != old_key));
        let renewed = sa_id(&hosts, "cn-2", "peer-cn-3").is_some_and(|id| id != before_23);
        (both && renewed).then_some(())
    });
    assert_eq!(
        sa_id(&hosts, "cn-2", "peer-cn-4"),
        Some(before_34),
        "the cn-2/cn-4 SA was touched by another pair's rotation"
    );
    assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);

    // Every agent is still there; none printed a key.
    for (node, pid) in nodes.iter().zip(&agents) {
        assert!(Path::new(&format!("/proc/{pid}")).exists(), "agent of {node} died");
    }
    let new_key = fs::read_to_string(&key).unwrap();
    for node in nodes {
        let log = fs::read_to_string(lab.path(&format!("agent-{node}.log"))).unwrap_or_default();
        let hex = new_key.trim().trim_start_matches("secret = 0x");
        assert!(hex.len() == 64 && !log.contains(hex), "the agent of {node} logged a key");
    }
}
