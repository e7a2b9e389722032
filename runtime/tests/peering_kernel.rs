//! Issue 5, item 1 (first part): applying two peered controllers starts the point-to-point
//! OpenVPN tunnel between them, with the topology's peer certificates, on the port DESIGN §4
//! gives (for ids 1 < 2, east listens on 1196 and west dials it), and packets cross it.
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
controller "east" id=1 { address "192.0.2.10"; }
controller "west" id=2 { address "192.0.2.11"; }
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

    for (name, ns) in ["east", "west"].iter().zip(&netns) {
        meshwork_ok(&["destroy", "--controller", name, "--netns", ns, "--state-dir", s, "--auto-approve"], 0);
    }
    assert!(!has_address(&netns[1], "mw-p1", "169.254.2.1"), "the tunnel is gone with its process");
}
