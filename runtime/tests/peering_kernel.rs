//! Issue 5, items 1 and 2: applying two peered controllers starts the point-to-point
//! OpenVPN tunnel between them, with the topology's peer certificates, on the port DESIGN §4
//! gives (for ids 1 < 2, east listens on 1196 and west dials it), and packets cross it. Their
//! agents then hear each other over `/v1/mesh/stream` and route to each other's overlay address
//! and LAN; a peer on another checksum is shown and not believed; a silent one is noticed.
//!
//! Namespaces `mwt-*-<pid>`: an underlay bridge and one per controller, deleted at the end;
//! OpenVPN processes meshwork started are killed by the pids in the test's state directory.

mod support;

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use support::*;

const TOPOLOGY: &str = r#"topology "pair"
overlay "100.127.255.192/26"
controller "east" id=1 { address "192.0.2.10"; lan "10.10.0.0/16"; }
controller "west" id=2 { address "192.0.2.11"; lan "10.20.0.0/16"; }
client "a"
"#;

struct Pids(PathBuf);

impl Drop for Pids {
    fn drop(&mut self) {
        for pid in meshwork_pids(&self.0) {
            // SAFETY: kill(2) on a pid from this test's own state directory.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

#[test]
fn two_controllers_bring_up_their_peering_tunnel() {
    if !kernel_tests_possible() {
        return;
    }
    let mut lab = Lab::new("peer");
    let underlay = lab.netns("pul");
    run("ip", &["-n", &underlay, "link", "add", "br0", "type", "bridge"]);
    run("ip", &["-n", &underlay, "link", "set", "br0", "up"]);
    let mut netns = Vec::new();
    for (name, addr) in [("east", "192.0.2.10/24"), ("west", "192.0.2.11/24")] {
        let ns = lab.netns(&format!("p{name}"));
        let port = format!("p-{name}");
        run("ip", &["-n", &underlay, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        run("ip", &["-n", &underlay, "link", "set", &port, "master", "br0", "up"]);
        run("ip", &["-n", &ns, "addr", "add", addr, "dev", "eth0"]);
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        netns.push(ns);
    }
    let file = lab.path("pair.kdl");
    fs::write(&file, TOPOLOGY).unwrap();
    let state = lab.path("state");
    let _pids = Pids(state.clone());
    let (f, s) = (file.to_str().unwrap(), state.to_str().unwrap());
    meshwork_ok(&["keys", "init", f, "--state-dir", s], 0);
    for (name, ns) in ["east", "west"].iter().zip(&netns) {
        let (code, plan) = {
            let out =
                meshwork(&["plan", f, "--controller", name, "--netns", ns, "--state-dir", s, "--detailed-exitcode"]);
            (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
        };
        assert_eq!(code, Some(2), "{plan}");
        let other = if *name == "east" { "west" } else { "east" };
        assert!(plan.contains(&format!("+ process peer-{other}")), "{plan}");
        assert!(plan.contains(&format!("+ file keys/peer-{name}.key")), "{plan}");
        meshwork_ok(&["apply", f, "--controller", name, "--netns", ns, "--state-dir", s, "--auto-approve"], 0);
    }
    // west's end of the tunnel to east (id 1) is mw-p1 with 169.254.2.1; east's is mw-p2.
    let has_address = |ns: &str, dev: &str, addr: &str| {
        std::process::Command::new("ip")
            .args(["-n", ns, "-j", "addr", "show", "dev", dev])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(addr))
    };
    wait_until("the tunnel devices", Duration::from_secs(30), || {
        (has_address(&netns[0], "mw-p2", "169.254.1.2") && has_address(&netns[1], "mw-p1", "169.254.2.1")).then_some(())
    });
    let answered = wait_until("ICMP across the peering tunnel", Duration::from_secs(30), || {
        let n = ping(&netns[1], Ipv4Addr::new(169, 254, 1, 2), 2, Duration::from_secs(1));
        (n > 0).then_some(n)
    });
    assert!(answered > 0);
    // The tunnel runs over UDP 1196 between the underlay addresses.
    let log = fs::read_to_string(state.join("controllers/west/log/peer-east.log")).unwrap_or_default();
    assert!(log.contains("192.0.2.10:1196"), "west dials east on 1196:\n{log}");

    agents_hear_each_other(&mut lab, &file, &state, &netns);

    for (name, ns) in ["east", "west"].iter().zip(&netns) {
        meshwork_ok(&["destroy", "--controller", name, "--netns", ns, "--state-dir", s, "--auto-approve"], 0);
    }
    assert!(!has_address(&netns[1], "mw-p1", "169.254.2.1"), "the tunnel is gone with its process");
}

fn status(state: &std::path::Path, controller: &str) -> serde_json::Value {
    let path = state.join("controllers").join(controller).join("status.json");
    fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// `ip -j route` of the agent's routes (protocol 78) in namespace `ns`, as "DST dev DEV src SRC".
fn agent_routes(ns: &str) -> Vec<String> {
    let out = output("ip", &["-n", ns, "-j", "route", "show", "proto", "78"]);
    let routes: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
    routes
        .iter()
        .map(|r| {
            format!(
                "{} dev {} src {}",
                r["dst"].as_str().unwrap_or("?"),
                r["dev"].as_str().unwrap_or("?"),
                r["prefsrc"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

fn agents_hear_each_other(lab: &mut Lab, file: &std::path::Path, state: &std::path::Path, netns: &[String]) {
    // West reads its own copy of the file, so it can be made to disagree later.
    let west_file = lab.path("pair-west.kdl");
    fs::copy(file, &west_file).unwrap();
    let s = state.to_str().unwrap();
    let mut agents = Vec::new();
    for ((name, f), ns) in [("east", file), ("west", west_file.as_path())].iter().zip(netns) {
        let log = lab.path(&format!("agent-{name}.log"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_meshwork"));
        cmd.args(["agent", f.to_str().unwrap(), "--controller", name, "--netns", ns, "--state-dir", s])
            .stdin(std::process::Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(&log).unwrap());
        agents.push(lab.spawn(&format!("agent-{name}"), &mut cmd, Some(log)));
    }

    // Each hears the other, agrees, and routes to its overlay address and LAN through the tunnel.
    wait_until("east hears west", Duration::from_secs(30), || {
        let st = status(state, "east");
        (st["peers"]["west"]["live"] == true && st["peers"]["west"]["agrees"] == true).then_some(())
    });
    let east_routes = wait_until("east's routes to west", Duration::from_secs(10), || {
        let r = agent_routes(&netns[0]);
        r.contains(&"10.20.0.0/16 dev mw-p2 src 100.127.255.253".to_string()).then_some(r)
    });
    assert!(east_routes.contains(&"100.127.255.252 dev mw-p2 src 100.127.255.253".to_string()), "{east_routes:?}");
    wait_until("west's route to east's LAN", Duration::from_secs(10), || {
        agent_routes(&netns[1]).contains(&"10.10.0.0/16 dev mw-p1 src 100.127.255.252".to_string()).then_some(())
    });
    // The controllers reach each other's overlay address (the source is the overlay address).
    assert!(ping(&netns[0], Ipv4Addr::new(100, 127, 255, 252), 2, Duration::from_secs(1)) > 0);

    // West on another checksum (one more LAN): east shows it and withdraws west's LAN.
    let changed = fs::read_to_string(&west_file)
        .unwrap()
        .replace("lan \"10.20.0.0/16\";", "lan \"10.20.0.0/16\"; lan \"10.21.0.0/16\";");
    fs::write(&west_file, changed).unwrap();
    wait_until("east sees west disagree", Duration::from_secs(30), || {
        (status(state, "east")["peers"]["west"]["agrees"] == false).then_some(())
    });
    wait_until("east withdraws west's LAN", Duration::from_secs(10), || {
        let r = agent_routes(&netns[0]);
        (!r.iter().any(|r| r.starts_with("10.20.0.0/16"))).then_some(())
    });
    let east_status = status(state, "east");
    assert_eq!(east_status["peers"]["west"]["live"], true, "heard, just not believed: {east_status}");
    assert_ne!(east_status["peers"]["west"]["checksum"], east_status["checksum"]);
    let log = fs::read_to_string(lab.path("agent-east.log")).unwrap();
    assert!(log.contains("peer west runs topology checksum"), "{log}");
    // The agents' own overlay addresses stay routed: that is how they keep talking.
    assert!(agent_routes(&netns[0]).contains(&"100.127.255.252 dev mw-p2 src 100.127.255.253".to_string()));

    // Back in agreement, then west's agent dies: east notices the silence within 5 s.
    fs::copy(file, &west_file).unwrap();
    wait_until("east believes west again", Duration::from_secs(30), || {
        agent_routes(&netns[0]).iter().any(|r| r.starts_with("10.20.0.0/16")).then_some(())
    });
    let killed = std::time::Instant::now();
    lab.child(agents[1]).kill().unwrap();
    let _ = lab.child(agents[1]).wait();
    wait_until("east notices west is silent", Duration::from_secs(10), || {
        (status(state, "east")["peers"]["west"]["live"] == false).then_some(())
    });
    let noticed = killed.elapsed();
    eprintln!("east noticed west's silence after {noticed:?}");
    assert!(noticed < Duration::from_secs(5), "silence noticed after {noticed:?}");
    wait_until("east withdraws west's LAN after the silence", Duration::from_secs(5), || {
        (!agent_routes(&netns[0]).iter().any(|r| r.starts_with("10.20.0.0/16"))).then_some(())
    });
    // Stop east's agent before destroy (destroy refuses while an agent runs).
    // SAFETY: SIGTERM to the test's own child.
    unsafe { libc::kill(lab.child(agents[0]).id() as i32, libc::SIGTERM) };
    let _ = lab.child(agents[0]).wait();
}
