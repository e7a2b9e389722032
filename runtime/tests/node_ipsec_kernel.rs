//! Kernel test: the compiled artifacts of two nodes in different PDCs (cn-2 in prague and cn-3
//! in brno, from `examples/two-pdc.kdl`) carry a VM's traffic over the IPsec mesh on real
//! kernels. An "internet" namespace routes between the nodes' external addresses and counts
//! what crosses it; each node namespace gets its data plane from its `network.json` (through
//! `meshwork::node::dataplane`), its nft table from `nftables.json`, and a real `charon-systemd`
//! (userspace ESP, the `strongswan-userspace.conf` of the build) loaded with its `swanctl.conf`
//! and the pair's pre-shared key from a keyset made by `meshwork keys init`. Each VM is a
//! namespace behind the node's overlay bridge with the vNIC's MAC, address and MTU, on overlay
//! tenant-b: the kernels here have no 802.1Q at all (no `vlan` links, no bridge VLAN filtering,
//! no tc `vlan` action), so tenant-a's inner VLAN cannot be carried on them.
//!
//! Asserted: ICMP and TCP between the VMs; on the internet link, ESP in UDP 4500 only and not one
//! plaintext VXLAN packet; a DF packet of exactly the vNIC MTU crosses. Namespaces are
//! `mwt-<purpose>-<pid>`, deleted by name; charon processes are killed by pid.

mod support;

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use meshwork::daemon;
use meshwork::netlink::Netlink;
use meshwork::node::strongswan;
use meshwork_compiler::emit::node::network::{NodeNetwork, from_json};
use meshwork_compiler::source::SourceFile;
use support::node_hosts::counter;
use support::{Lab, kernel_tests_possible, ping, ping_df, run, tcp_reaches, tcp_server, wait_until};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/two-pdc.kdl");

/// One node of the test: its namespace, its directory (charon's working directory) and its
/// compiled network.
struct Node {
    name: &'static str,
    ns: String,
    dir: PathBuf,
    net: NodeNetwork,
}

fn ip_n(ns: &str, args: &[&str]) {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("ip", &full);
}

#[test]
fn two_nodes_in_two_pdcs_carry_vm_traffic_over_ipsec_only() {
    if !kernel_tests_possible() {
        return;
    }
    // (`charon-systemd --version` would start the daemon: look for the binary instead.)
    let charon_installed = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]).any(|d| d.join("charon-systemd").exists())
    });
    if !charon_installed {
        assert!(std::env::var_os("CI").is_none(), "kernel test needs charon-systemd (strongSwan)");
        eprintln!("skipping: needs charon-systemd");
        return;
    }
    let mut lab = Lab::new("vxipsec");
    let text = fs::read_to_string(EXAMPLE).expect("example");
    let artifacts = meshwork_compiler::build(SourceFile::new("two-pdc.kdl", text)).expect("two-pdc builds");

    // The keyset, made the way a user makes it.
    let state = lab.path("state");
    let out = support::meshwork(&["keys", "init", EXAMPLE, "--state-dir", state.to_str().unwrap()]);
    assert!(out.status.success(), "keys init: {}", String::from_utf8_lossy(&out.stderr));
    let psk_file = "cn-2+cn-3.psk";
    let keyset = meshwork::keys::Keyset::open(&state).expect("the keyset");
    let network = meshwork_compiler::analyze(SourceFile::new("two-pdc.kdl", fs::read_to_string(EXAMPLE).unwrap()))
        .network
        .expect("two-pdc validates");

    // The internet: routes between the PDCs' external networks and counts what crosses.
    let inet = lab.netns("vxi");
    let mut nodes: Vec<Node> = Vec::new();
    for (name, gateway) in [("cn-2", "198.18.0.1"), ("cn-3", "198.18.1.1")] {
        let ns = lab.netns(&format!("vx{}", &name[3..]));
        let dir = lab.path(name);
        fs::create_dir_all(&dir).unwrap();
        for file in ["swanctl.conf", "strongswan-userspace.conf", "nftables.json"] {
            let content = artifacts.get(&format!("nodes/{name}/{file}")).unwrap_or_else(|| panic!("no {file}"));
            fs::write(dir.join(file), content).unwrap();
        }
        // The node's pair keys from the keyset; a key of a pair that is gone is removed.
        let stray = strongswan::psk_dir(&dir).join("cn-2+cn-9.psk");
        fs::create_dir_all(strongswan::psk_dir(&dir)).unwrap();
        fs::write(&stray, "secret = 0x00\n").unwrap();
        let node = network.vxlan.node(name).expect("node in the network");
        let installed = meshwork::node::keys::install(&keyset, &network.vxlan, node, &dir).expect("install keys");
        let expected: Vec<String> = network.vxlan.ipsec_peers(node).map(|(p, _)| p.psk_file()).collect();
        assert_eq!(installed, expected);
        assert!(installed.contains(&psk_file.to_string()), "{installed:?}");
        assert!(!stray.exists(), "a key of a pair that is gone stays");
        for file in &installed {
            let mode = fs::metadata(strongswan::psk_dir(&dir).join(file)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
        let net = from_json(artifacts.get(&format!("nodes/{name}/network.json")).unwrap()).unwrap();
        let external = net.external.as_ref().unwrap().address.clone();
        let outside = format!("mwt-o{}", &name[3..]);
        run("ip", &["-n", &inet, "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        ip_n(&inet, &["addr", "add", &format!("{gateway}/24"), "dev", &outside]);
        ip_n(&inet, &["link", "set", &outside, "up"]);
        ip_n(&ns, &["addr", "add", &external, "dev", "eth0"]);
        ip_n(&ns, &["link", "set", "eth0", "up"]);
        ip_n(&ns, &["route", "add", "default", "via", gateway]);
        nodes.push(Node { name, ns, dir, net });
    }
    run("ip", &["netns", "exec", &inet, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let counters = lab.path("inet.nft");
    fs::write(
        &counters,
        "table inet mwtest {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n  \
         udp dport { 4790, 4791, 4793 } counter comment \"plaintext\"\n  udp dport 4500 counter comment \"esp-in-udp\"\n }\n}\n",
    )
    .unwrap();
    run("ip", &["netns", "exec", &inet, "nft", "-f", counters.to_str().unwrap()]);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for node in &nodes {
        // The node's own table (plaintext VXLAN dropped by IPsec state, IKE admitted).
        run("ip", &["netns", "exec", &node.ns, "nft", "-j", "-f", node.dir.join("nftables.json").to_str().unwrap()]);
        rt.block_on(async {
            let nl = Netlink::connect_in(&node.ns).await.unwrap();
            meshwork::node::dataplane::apply(&nl, &node.net).await.unwrap();
            // Twice: applying converges.
            meshwork::node::dataplane::apply(&nl, &node.net).await.unwrap();
        });
        // charon, supervised like the OpenVPN processes (pid file, log, killed by pid at the end).
        let unit = strongswan::unit(&node.dir, "strongswan-userspace.conf", Some(&node.ns));
        let record = daemon::start(&unit, "test").unwrap_or_else(|e| panic!("charon of {}: {e}", node.name));
        lab.kill_on_drop(record.pid);
        lab.show_log_on_failure(unit.log.clone());
    }
    // The responder (cn-3; the pair's lower name initiates) first: an initiator whose first
    // IKE_SA_INIT meets a peer without its configuration does not try again by itself.
    for node in nodes.iter().rev() {
        strongswan::load(&node.dir, Some(&node.ns)).unwrap_or_else(|e| panic!("load {}: {e}", node.name));
    }
    // cn-2 is the pair's initiator (start_action = start); the child's selectors are the VTEPs.
    let vtep = |n: &Node| format!("{}/32", n.net.vtep.expect("a VTEP"));
    let want =
        strongswan::InstalledChild { name: "peer-cn-3".into(), local_ts: vtep(&nodes[0]), remote_ts: vtep(&nodes[1]) };
    wait_until("the CHILD_SA between cn-2 and cn-3", Duration::from_secs(30), || {
        let children = strongswan::installed_children(&nodes[0].dir, Some(&nodes[0].ns)).expect("swanctl --list-sas");
        children.contains(&want).then_some(())
    });

    // The VMs of overlay tenant-b: b-web on cn-2, b-db on cn-3.
    let mut vms = Vec::new();
    for node in &nodes {
        let overlay = node.net.overlays.iter().find(|o| o.name == "tenant-b").expect("tenant-b on the node");
        let vnic = &overlay.vnics[0];
        let vm = lab.netns(&format!("vxvm{}", &node.name[3..]));
        let port = format!("mwt-p{}", &node.name[3..]);
        assert_eq!(overlay.vlan, None);
        let (mac, mtu) = (vnic.mac.to_string(), vnic.mtu.to_string());
        run(
            "ip",
            &["-n", &node.ns, "link", "add", &port, "mtu", &mtu, "type", "veth", "peer", "name", "eth0", "netns", &vm],
        );
        ip_n(&node.ns, &["link", "set", &port, "master", &overlay.bridge.name, "up"]);
        ip_n(&vm, &["link", "set", "eth0", "address", &mac, "mtu", &mtu, "up"]);
        ip_n(&vm, &["addr", "add", &format!("{}/{}", vnic.ip, vnic.prefix), "dev", "eth0"]);
        vms.push((vm, vnic.ip, vnic.mtu));
    }
    let (web, db) = (&vms[0], &vms[1]);
    assert_eq!(ping(&web.0, db.1, 5, Duration::from_secs(2)), 5, "ICMP b-web -> b-db across PDCs");
    let server = SocketAddr::from((db.1, 5432));
    tcp_server(&db.0, server);
    assert!(tcp_reaches(&web.0, server, Duration::from_secs(5)), "TCP b-web -> b-db:5432");
    // A DF packet of exactly the vNIC MTU crosses the tunnel (the MTU was computed to fit
    // libipsec's 1400-byte TUN); one byte more is refused.
    let mtu = web.2 as usize;
    assert_eq!(ping_df(&web.0, db.1, 3, Duration::from_secs(2), mtu), 3, "a DF packet of the vNIC MTU ({mtu})");
    assert_eq!(ping_df(&web.0, db.1, 1, Duration::from_millis(500), mtu + 1), 0, "a DF packet of {} bytes", mtu + 1);

    // The wire between the PDCs: ESP in UDP only, not one plaintext VXLAN packet.
    let esp = counter(&inet, "mwtest", "esp-in-udp");
    let plaintext = counter(&inet, "mwtest", "plaintext");
    assert!(esp >= 10, "only {esp} ESP-in-UDP packets crossed the internet");
    assert_eq!(plaintext, 0, "{plaintext} plaintext VXLAN packets crossed the internet");
    eprintln!("on the internet link: {esp} ESP-in-UDP packets, {plaintext} plaintext VXLAN packets");

    // A pre-shared key rotated under a running ping: the pair gets a new key, both nodes load
    // it, the initiator re-authenticates (make-before-break), and the ping carries on.
    //
    // At most one echo may be lost, and this is strongSwan's, not ours: a re-authentication
    // creates its CHILD_SAs in IKE_AUTH, where the responder installs the new outbound SA at once
    // (only a CHILD_SA rekey delays it until the old SA's delete: child_create.c, 5.9.8). A reply
    // sent in the moment before the initiator has processed the IKE_AUTH response and installed
    // the matching inbound SA is dropped; on a loaded 2-core CI machine that moment widened
    // enough to catch one echo in 33. An echo is given 2 s: a late echo on a loaded machine is
    // not a lost one. (With make_before_break = no, this lab lost no echo in 3 runs either: the
    // gap is a local IKE exchange of a few ms between echoes about 12 ms apart. So this part
    // proves that a rotation does not stop the traffic; the setting itself is pinned by the
    // reviewed strongswan.conf snapshot.)
    let before = strongswan::established_ike_sas(&nodes[0].dir, Some(&nodes[0].ns)).unwrap();
    let old_key = fs::read(strongswan::psk_dir(&nodes[0].dir).join(psk_file)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let (stop, vm, dst) = (stop.clone(), web.0.clone(), db.1);
        std::thread::spawn(move || {
            let (mut sent, mut answered) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sent += 1;
                answered += u32::from(ping(&vm, dst, 1, Duration::from_secs(2)));
                std::thread::sleep(Duration::from_millis(10));
            }
            (sent, answered)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let out =
        support::meshwork(&["keys", "rotate-psk", EXAMPLE, "cn-2", "cn-3", "--state-dir", state.to_str().unwrap()]);
    assert!(out.status.success(), "rotate-psk: {}", String::from_utf8_lossy(&out.stderr));
    let keyset = meshwork::keys::Keyset::open(&state).expect("the keyset");
    for node in &nodes {
        let n = network.vxlan.node(node.name).unwrap();
        meshwork::node::keys::install(&keyset, &network.vxlan, n, &node.dir).expect("install keys");
        strongswan::reload_secrets(&node.dir, Some(&node.ns)).expect("load-creds");
    }
    assert_ne!(fs::read(strongswan::psk_dir(&nodes[0].dir).join(psk_file)).unwrap(), old_key, "the key did not change");
    strongswan::reauthenticate(&nodes[0].dir, Some(&nodes[0].ns), "peer-cn-3").expect("reauth");
    wait_until("an IKE SA authenticated with the new key", Duration::from_secs(20), || {
        let now = strongswan::established_ike_sas(&nodes[0].dir, Some(&nodes[0].ns)).unwrap();
        let children = strongswan::installed_children(&nodes[0].dir, Some(&nodes[0].ns)).unwrap();
        (now.iter().any(|sa| sa.0 == "peer-cn-3" && !before.contains(sa)) && children.contains(&want)).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, answered) = pinger.join().expect("pinger");
    eprintln!("PSK rotation under ping: {sent} echoes, {} lost", sent - answered);
    assert!(sent >= 20, "only {sent} echoes sent");
    assert!(sent - answered <= 1, "{} echoes were lost while the key rotated", sent - answered);

    // Fault drill: cn-3's IPsec goes away. Traffic to it stops, and what cn-2 would now route in
    // clear is dropped by its own table: not one plaintext VXLAN packet reaches the internet.
    // Started again, charon takes the pair's traffic back (cn-2 keeps initiating).
    let cn3_unit = strongswan::unit(&nodes[1].dir, "strongswan-userspace.conf", Some(&nodes[1].ns));
    assert!(daemon::stop(&cn3_unit.pidfile).unwrap(), "charon of cn-3 was not running");
    wait_until("cn-2 to notice", Duration::from_secs(10), || {
        let children = strongswan::installed_children(&nodes[0].dir, Some(&nodes[0].ns)).unwrap();
        (!children.contains(&want)).then_some(())
    });
    assert_eq!(ping(&web.0, db.1, 3, Duration::from_millis(500)), 0, "traffic crossed without IPsec");
    let dropped = counter(&nodes[0].ns, "meshwork", meshwork_compiler::emit::node::nftables::PLAINTEXT_OUT);
    assert!(dropped > 0, "cn-2 sent no VXLAN at all while the tunnel was down");
    assert_eq!(counter(&inet, "mwtest", "plaintext"), 0, "plaintext VXLAN crossed the internet with the tunnel down");
    let record = daemon::start(&cn3_unit, "test").expect("charon of cn-3 again");
    lab.kill_on_drop(record.pid);
    strongswan::load(&nodes[1].dir, Some(&nodes[1].ns)).expect("load cn-3 again");
    let started = std::time::Instant::now();
    wait_until("the pair's SA back", Duration::from_secs(40), || {
        let children = strongswan::installed_children(&nodes[0].dir, Some(&nodes[0].ns)).unwrap();
        children.contains(&want).then_some(())
    });
    eprintln!("fault drill: the SA was back {:.1} s after cn-3's charon loaded again", started.elapsed().as_secs_f64());
    assert_eq!(ping(&web.0, db.1, 3, Duration::from_secs(2)), 3, "traffic did not come back");
    assert_eq!(counter(&inet, "mwtest", "plaintext"), 0);

    // charon is recognised as ours by its pid file, and stops.
    for node in &nodes {
        let pidfile = strongswan::unit(&node.dir, "strongswan-userspace.conf", Some(&node.ns)).pidfile;
        let record =
            daemon::status(&pidfile).unwrap().unwrap_or_else(|| panic!("charon of {} is not running", node.name));
        assert_eq!(record.program, daemon::Program::Charon);
        assert!(daemon::stop(&pidfile).unwrap(), "charon of {} was not stopped", node.name);
        assert!(!pidfile.exists());
    }
}
