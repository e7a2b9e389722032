//! Kernel tests for `meshwork::netns` and `meshwork::netlink`, as root, each in network
//! namespaces named `mwt-nl-<tag>-<pid>` that the test creates and deletes (a guard deletes them
//! on failure too). State is asserted with `ip -j -n NS ...` so the assertions do not depend on
//! the code under test. Nothing here changes the namespace of a test-harness thread: work in a
//! namespace goes through `Netlink::connect_in`, `netns::run_in`, `prepare_command` or a thread
//! spawned for the purpose. Skipped (with a note) when not root.

use std::io;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use ipnet::Ipv4Net;
use meshwork::netlink::{Netlink, RouteInfo, RuleInfo};
use meshwork::netns;
use serde_json::Value;

const PROTO: u8 = 77;
const TABLE: u32 = 100;
const BRIDGE: &str = "mwt-br0";
const VETH: &str = "mwt-ve0";
const VETH_PEER: &str = "mwt-ve0p";
const BRIDGE_ADDR: &str = "10.77.0.1/24";
const PEER_ADDR: &str = "10.77.0.2/24";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const OTHER_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
const ROUTE_DST: &str = "10.1.0.0/16";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("note: skipping kernel test (needs root)");
    }
    root
}

/// A named namespace for one test; deleted (by name) when dropped, also when the test fails.
struct TestNs(String);

impl TestNs {
    fn new(tag: &str) -> TestNs {
        let name = format!("mwt-nl-{tag}-{}", std::process::id());
        // A leftover from an earlier, killed run of the same pid is unlikely but harmless to clear.
        let _ = netns::delete(&name);
        netns::create(&name).unwrap_or_else(|e| panic!("create {name}: {e}"));
        TestNs(name)
    }

    fn name(&self) -> &str {
        &self.0
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Err(e) = netns::delete(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            eprintln!("warning: cannot delete network namespace {}: {e}", self.0);
        }
    }
}

/// `ip -j -n NS ARGS...`, parsed.
fn ip_json(ns: &str, args: &[&str]) -> Value {
    let out = Command::new("ip").arg("-j").arg("-n").arg(ns).args(args).output().expect("run ip");
    assert!(out.status.success(), "ip -j -n {ns} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    if text.trim().is_empty() { Value::Array(Vec::new()) } else { serde_json::from_str(&text).expect("ip -j JSON") }
}

fn ip_array(ns: &str, args: &[&str]) -> Vec<Value> {
    match ip_json(ns, args) {
        Value::Array(items) => items,
        other => panic!("expected a JSON array from ip {args:?}, got {other}"),
    }
}

fn link_names(ns: &str) -> Vec<String> {
    ip_array(ns, &["link", "show"]).iter().map(|l| l["ifname"].as_str().unwrap().to_owned()).collect()
}

fn has_flag(link: &Value, flag: &str) -> bool {
    link["flags"].as_array().unwrap().iter().any(|f| f == flag)
}

fn inet_addrs(ns: &str, dev: &str) -> Vec<String> {
    let links = ip_array(ns, &["-4", "addr", "show", "dev", dev]);
    links
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn route(gateway: Ipv4Addr) -> RouteInfo {
    RouteInfo {
        dst: net(ROUTE_DST),
        gateway: Some(gateway),
        dev: Some(BRIDGE.into()),
        table: TABLE,
        protocol: PROTO,
        source: None,
    }
}

#[test]
fn netns_create_list_delete() {
    if !is_root() {
        return;
    }
    let ns = TestNs::new("life");
    let name = ns.name().to_owned();
    assert!(netns::exists(&name));
    assert!(netns::list().unwrap().contains(&name));
    let ip_list = Command::new("ip").args(["-j", "netns", "list"]).output().unwrap();
    let ip_list: Value = serde_json::from_slice(&ip_list.stdout).unwrap();
    assert!(ip_list.as_array().unwrap().iter().any(|n| n["name"] == name.as_str()), "ip netns list: {ip_list}");

    let err = netns::create(&name).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    assert!(netns::create("bad/name").is_err());

    // A namespace of its own, with only an up loopback in it.
    assert_ne!(netns::inode(&name).unwrap(), netns::current_inode().unwrap());
    assert_eq!(netns::current_inode().unwrap(), netns::process_inode(std::process::id()).unwrap());
    let links = ip_array(&name, &["link", "show"]);
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["ifname"], "lo");
    assert!(has_flag(&links[0], "UP"), "lo is not up: {}", links[0]);

    netns::delete(&name).unwrap();
    assert!(!netns::exists(&name));
    assert!(!netns::list().unwrap().contains(&name));
    assert_eq!(netns::delete(&name).unwrap_err().kind(), io::ErrorKind::NotFound);
    assert_eq!(netns::open(&name).unwrap_err().kind(), io::ErrorKind::NotFound);
}

#[test]
fn run_in_enter_and_prepare_command() {
    if !is_root() {
        return;
    }
    let ns = TestNs::new("exec");
    let ino = netns::inode(ns.name()).unwrap();
    let here = netns::current_inode().unwrap();

    assert_eq!(netns::run_in(ns.name(), netns::current_inode).unwrap().unwrap(), ino);
    assert_eq!(netns::current_inode().unwrap(), here, "run_in must not move the calling thread");

    // enter() moves only the calling thread: use a thread of our own.
    let name = ns.name().to_owned();
    let entered = std::thread::spawn(move || {
        netns::enter(&name)?;
        netns::current_inode()
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(entered, ino);
    assert_eq!(netns::current_inode().unwrap(), here);

    // A child started with prepare_command lives in the namespace.
    let mut cmd = Command::new("readlink");
    cmd.arg("/proc/self/ns/net");
    netns::prepare_command(&mut cmd, ns.name()).unwrap();
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("net:[{ino}]"));

    let mut cmd = Command::new("ip");
    cmd.args(["-j", "link", "show"]);
    netns::prepare_command(&mut cmd, ns.name()).unwrap();
    let links: Value = serde_json::from_slice(&cmd.output().unwrap().stdout).unwrap();
    let names: Vec<&str> = links.as_array().unwrap().iter().map(|l| l["ifname"].as_str().unwrap()).collect();
    assert_eq!(names, ["lo"]);

    // The same for tokio, and process_inode agrees for the running child.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut child = tokio::process::Command::new("sleep");
        child.arg("5").kill_on_drop(true);
        netns::prepare_tokio_command(&mut child, ns.name()).unwrap();
        let mut child = child.spawn().unwrap();
        let pid = child.id().unwrap();
        assert_eq!(netns::process_inode(pid).unwrap(), ino);
        child.kill().await.unwrap();
    });

    let mut cmd = Command::new("true");
    let err = netns::prepare_command(&mut cmd, "mwt-nl-does-not-exist").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
}

#[test]
fn sysctl_in_netns() {
    if !is_root() {
        return;
    }
    let ns = TestNs::new("sysctl");
    let host_before = netns::sysctl_read(None, "net.ipv4.ip_forward").unwrap();
    assert_eq!(netns::sysctl_read(Some(ns.name()), "net.ipv4.ip_forward").unwrap(), "0");
    netns::sysctl_write(Some(ns.name()), "net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(netns::sysctl_read(Some(ns.name()), "net.ipv4.ip_forward").unwrap(), "1");
    assert_eq!(netns::sysctl_read(Some(ns.name()), "net/ipv4/ip_forward").unwrap(), "1");

    let out =
        Command::new("ip").args(["netns", "exec", ns.name(), "cat", "/proc/sys/net/ipv4/ip_forward"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    assert_eq!(netns::sysctl_read(None, "net.ipv4.ip_forward").unwrap(), host_before, "host sysctl changed");

    let err = netns::sysctl_read(Some(ns.name()), "net.ipv4.no_such_key").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("net.ipv4.no_such_key"), "{err}");
    assert!(netns::sysctl_read(None, "net/../../etc/passwd").is_err());
}

#[tokio::test]
async fn links_addresses_routes_rules() {
    if !is_root() {
        return;
    }
    let ctl = TestNs::new("ctl");
    let eng = TestNs::new("eng");
    let nl = Netlink::connect_in(ctl.name()).await.unwrap();
    let nl_eng = Netlink::connect_in(eng.name()).await.unwrap();
    assert_eq!(nl.netns(), Some(ctl.name()));

    // --- links
    assert_eq!(nl.link(BRIDGE).await.unwrap(), None);
    nl.add_bridge(BRIDGE).await.unwrap();
    nl.add_bridge(BRIDGE).await.unwrap(); // idempotent
    nl.add_veth(VETH, VETH_PEER, Some(eng.name())).await.unwrap();
    let err = nl.add_veth(VETH, VETH_PEER, Some(eng.name())).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    let err = nl.add_bridge(VETH).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    nl.set_master(VETH, BRIDGE).await.unwrap();
    nl.set_up(BRIDGE).await.unwrap();
    nl.set_up(VETH).await.unwrap();
    nl_eng.set_up(VETH_PEER).await.unwrap();

    let veth = nl.link(VETH).await.unwrap().unwrap();
    assert_eq!(veth.kind.as_deref(), Some("veth"));
    assert_eq!(veth.master.as_deref(), Some(BRIDGE));
    assert!(veth.up);
    assert_eq!(veth.mtu, 1500);
    let bridge = nl.link(BRIDGE).await.unwrap().unwrap();
    assert_eq!((bridge.kind.as_deref(), bridge.master.as_deref(), bridge.up), (Some("bridge"), None, true));
    let links = nl.links().await.unwrap();
    let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["lo", BRIDGE, VETH]);
    assert_eq!(links.iter().find(|l| l.name == VETH), Some(&veth));
    assert_eq!(nl.link(VETH_PEER).await.unwrap(), None, "the peer must not be in the controller namespace");
    let peer = nl_eng.link(VETH_PEER).await.unwrap().unwrap();
    assert_eq!(peer.kind.as_deref(), Some("veth"));

    // ... as ip sees it
    let ip_veth = &ip_array(ctl.name(), &["link", "show", VETH])[0];
    assert_eq!(ip_veth["master"], BRIDGE);
    assert!(has_flag(ip_veth, "UP"));
    assert!(has_flag(&ip_array(ctl.name(), &["link", "show", BRIDGE])[0], "UP"));
    assert_eq!(link_names(eng.name()), ["lo", VETH_PEER]);
    assert!(!link_names(ctl.name()).contains(&VETH_PEER.to_owned()));

    // --- addresses (idempotent add)
    nl.add_address(BRIDGE, net(BRIDGE_ADDR)).await.unwrap();
    nl.add_address(BRIDGE, net(BRIDGE_ADDR)).await.unwrap();
    nl_eng.add_address(VETH_PEER, net(PEER_ADDR)).await.unwrap();
    assert_eq!(nl.addresses(BRIDGE).await.unwrap(), [net(BRIDGE_ADDR)]);
    assert_eq!(inet_addrs(ctl.name(), BRIDGE), [BRIDGE_ADDR]);
    assert_eq!(inet_addrs(eng.name(), VETH_PEER), [PEER_ADDR]);
    nl.add_address(BRIDGE, net("10.78.0.1/24")).await.unwrap();
    assert_eq!(inet_addrs(ctl.name(), BRIDGE), [BRIDGE_ADDR, "10.78.0.1/24"]);
    nl.delete_address(BRIDGE, net("10.78.0.1/24")).await.unwrap();
    nl.delete_address(BRIDGE, net("10.78.0.1/24")).await.unwrap(); // already gone: fine
    assert_eq!(inet_addrs(ctl.name(), BRIDGE), [BRIDGE_ADDR]);
    let err = nl.addresses("mwt-nope").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");

    // --- routes: protocol 77 in table 100 via a gateway; replace is idempotent
    nl.replace_route(&route(GATEWAY)).await.unwrap();
    nl.replace_route(&route(GATEWAY)).await.unwrap();
    let ip_routes = ip_array(ctl.name(), &["route", "show", "table", "100"]);
    assert_eq!(ip_routes.len(), 1, "{ip_routes:?}");
    assert_eq!(ip_routes[0]["dst"], ROUTE_DST);
    assert_eq!(ip_routes[0]["gateway"], "10.77.0.2");
    assert_eq!(ip_routes[0]["dev"], BRIDGE);
    assert_eq!(ip_routes[0]["protocol"], "77");
    // Replacing with another gateway changes the one route rather than adding a second.
    nl.replace_route(&route(OTHER_GATEWAY)).await.unwrap();
    let ip_routes = ip_array(ctl.name(), &["route", "show", "table", "100"]);
    assert_eq!(ip_routes.len(), 1, "{ip_routes:?}");
    assert_eq!(ip_routes[0]["gateway"], "10.77.0.3");
    // A directly connected route in the main table with the same protocol.
    let direct = RouteInfo {
        dst: net("10.2.0.0/16"),
        gateway: None,
        dev: Some(BRIDGE.into()),
        table: 254,
        protocol: PROTO,
        source: None,
    };
    nl.replace_route(&direct).await.unwrap();

    // Dumps filtered by protocol and table.
    assert_eq!(nl.routes(Some(PROTO), None).await.unwrap(), [route(OTHER_GATEWAY), direct.clone()]);
    assert_eq!(nl.routes(None, Some(TABLE)).await.unwrap(), [route(OTHER_GATEWAY)]);
    assert_eq!(nl.routes(Some(PROTO), Some(254)).await.unwrap(), std::slice::from_ref(&direct));
    let kernel_routes = nl.routes(Some(2), Some(254)).await.unwrap();
    assert_eq!(
        kernel_routes,
        [RouteInfo {
            dst: net("10.77.0.0/24"),
            gateway: None,
            dev: Some(BRIDGE.into()),
            table: 254,
            protocol: 2,
            source: Some(Ipv4Addr::new(10, 77, 0, 1))
        }]
    );
    assert!(nl.routes(Some(PROTO + 1), None).await.unwrap().is_empty());

    // Errors say what failed on which object, and keep the errno's kind.
    let unreachable = RouteInfo { gateway: Some(Ipv4Addr::new(192, 0, 2, 1)), ..route(GATEWAY) };
    let err = nl.replace_route(&unreachable).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "cannot add route 10.1.0.0/16 via 192.0.2.1 dev {BRIDGE} table 100 proto 77 in network namespace {}: ",
            ctl.name()
        )),
        "{msg}"
    );
    assert!(err.raw_os_error().is_none() && msg.contains("os error"), "{msg}");
    let missing_dev = RouteInfo { dev: Some("mwt-nope".into()), ..route(GATEWAY) };
    let err = nl.replace_route(&missing_dev).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("mwt-nope"), "{err}");

    // Delete (only ours), idempotently.
    nl.delete_route(&route(OTHER_GATEWAY)).await.unwrap();
    nl.delete_route(&route(OTHER_GATEWAY)).await.unwrap();
    nl.delete_route(&direct).await.unwrap();
    assert!(ip_array(ctl.name(), &["route", "show", "table", "100"]).is_empty());
    assert!(nl.routes(Some(PROTO), None).await.unwrap().is_empty());
    let main = ip_array(ctl.name(), &["route", "show", "table", "main"]);
    assert_eq!(main.len(), 1, "only the kernel's connected route is left: {main:?}");

    // --- policy rule: iif BRIDGE lookup 100 (idempotent add)
    let rule = RuleInfo { priority: 1000, iif: Some(BRIDGE.into()), table: TABLE };
    nl.add_rule(&rule).await.unwrap();
    nl.add_rule(&rule).await.unwrap();
    let ip_rules = ip_array(ctl.name(), &["rule", "show"]);
    let ours: Vec<&Value> = ip_rules.iter().filter(|r| r["priority"] == 1000).collect();
    assert_eq!(ours.len(), 1, "{ip_rules:?}");
    assert_eq!(ours[0]["iif"], BRIDGE);
    assert_eq!(ours[0]["table"], "100");
    let rules = nl.rules().await.unwrap();
    assert!(rules.contains(&rule), "{rules:?}");
    assert!(rules.contains(&RuleInfo { priority: 32766, iif: None, table: 254 }), "{rules:?}");
    // A rule with an extra selector is not mistaken for ours.
    let out = Command::new("ip")
        .args(["-n", ctl.name(), "rule", "add", "pref", "1001", "from", "10.9.0.0/16", "lookup", "100"])
        .status()
        .unwrap();
    assert!(out.success());
    let lookalike = RuleInfo { priority: 1001, iif: None, table: TABLE };
    nl.delete_rule(&lookalike).await.unwrap();
    let left: Vec<Value> =
        ip_array(ctl.name(), &["rule", "show"]).into_iter().filter(|r| r["priority"] == 1001).collect();
    assert_eq!(left.len(), 1, "the look-alike with a selector must survive: {left:?}");
    assert_eq!(left[0]["src"], "10.9.0.0");
    // ... nor does the look-alike block adding ours (the kernel's NLM_F_EXCL check would) ...
    nl.add_rule(&lookalike).await.unwrap();
    nl.add_rule(&lookalike).await.unwrap();
    assert_eq!(ip_array(ctl.name(), &["rule", "show"]).iter().filter(|r| r["priority"] == 1001).count(), 2);
    // ... and since the kernel would delete the first match (the look-alike), delete refuses.
    let err = nl.delete_rule(&lookalike).await.unwrap_err();
    assert!(err.to_string().contains("cannot delete rule priority 1001 lookup 100"), "{err}");
    assert_eq!(ip_array(ctl.name(), &["rule", "show"]).iter().filter(|r| r["priority"] == 1001).count(), 2);

    nl.delete_rule(&rule).await.unwrap();
    nl.delete_rule(&rule).await.unwrap();
    assert!(!ip_array(ctl.name(), &["rule", "show"]).iter().any(|r| r["priority"] == 1000));

    // --- delete links: the veth takes its peer in the other namespace along
    nl.delete_link(VETH).await.unwrap();
    nl.delete_link(VETH).await.unwrap();
    assert_eq!(link_names(ctl.name()), ["lo", BRIDGE]);
    assert_eq!(link_names(eng.name()), ["lo"]);
    nl.delete_link(BRIDGE).await.unwrap();
    assert_eq!(link_names(ctl.name()), ["lo"]);
    assert_eq!(nl.link(BRIDGE).await.unwrap(), None);
}

#[tokio::test]
async fn change_events() {
    if !is_root() {
        return;
    }
    let ns = TestNs::new("events");
    let mut changes = Netlink::subscribe_changes_in(ns.name()).await.unwrap();
    let nl = Netlink::connect_in(ns.name()).await.unwrap();
    nl.add_bridge(BRIDGE).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), changes.next()).await;
    assert_eq!(event, Ok(Some(())), "no event for a new link");
    // Drain what else the link add produced, then check an address add is seen too.
    while tokio::time::timeout(Duration::from_millis(200), changes.next()).await.is_ok() {}
    nl.set_up(BRIDGE).await.unwrap();
    nl.add_address(BRIDGE, net(BRIDGE_ADDR)).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), changes.next()).await;
    assert_eq!(event, Ok(Some(())), "no event for an address/up change");
}

/// `connect()` and `subscribe_changes()` work in the calling thread's namespace: run them on a
/// thread of our own that entered the test namespace (never the harness thread).
#[test]
fn connect_and_subscribe_in_current_netns() {
    if !is_root() {
        return;
    }
    let ns = TestNs::new("cur");
    let name = ns.name().to_owned();
    let result = std::thread::spawn(move || -> io::Result<Vec<String>> {
        netns::enter(&name)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            let mut changes = Netlink::subscribe_changes().await?;
            let nl = Netlink::connect().await?;
            assert_eq!(nl.netns(), None);
            nl.add_bridge(BRIDGE).await?;
            let event = tokio::time::timeout(Duration::from_secs(5), changes.next()).await;
            assert_eq!(event, Ok(Some(())), "no event for a new link");
            Ok(nl.links().await?.into_iter().map(|l| l.name).collect())
        })
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(result, ["lo", BRIDGE]);
    assert_eq!(link_names(ns.name()), ["lo", BRIDGE]);
}

/// `bridge -j -n NS ARGS...`, parsed.
fn bridge_array(ns: &str, args: &[&str]) -> Vec<Value> {
    let out = Command::new("bridge").arg("-j").arg("-n").arg(ns).args(args).output().expect("run bridge");
    assert!(out.status.success(), "bridge -j -n {ns} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    if text.trim().is_empty() { Vec::new() } else { serde_json::from_str(&text).expect("bridge -j JSON") }
}

#[tokio::test]
async fn vxlan_devices_fdb_and_neighbours() {
    use meshwork::netlink::{Fdb, Neighbour, VxlanParams};
    use meshwork_compiler::model::vxlan::Mac;
    if !is_root() {
        return;
    }
    let ns = TestNs::new("vx");
    let nl = Netlink::connect_in(ns.name()).await.unwrap();
    const DEV: &str = "mwt-vx0";
    let params = VxlanParams::node(123, 4790, None);
    nl.add_vxlan(DEV, params).await.unwrap();
    nl.add_vxlan(DEV, params).await.expect("the same device again is fine");
    let other = nl.add_vxlan(DEV, VxlanParams::node(124, 4790, None)).await.unwrap_err();
    assert_eq!(other.kind(), io::ErrorKind::AlreadyExists, "{other}");
    nl.set_mtu(DEV, 1384).await.unwrap();
    nl.set_up(DEV).await.unwrap();
    let link = &ip_array(ns.name(), &["-d", "link", "show", DEV])[0];
    let info = &link["linkinfo"]["info_data"];
    assert_eq!(info["id"], 123, "{link}");
    assert_eq!(info["port"], 4790, "{link}");
    assert_eq!(info["learning"], false, "{link}");
    assert_eq!(info["proxy"], true, "{link}");
    assert_eq!(link["mtu"], 1384, "{link}");
    assert_eq!(nl.vxlan(DEV).await.unwrap(), Some(params));

    let mac = |i: u8| Mac([2, 0, 0, 0, 0, i]);
    let fdb: Vec<Fdb> = (1..=3).map(|i| Fdb { mac: mac(i), dst: Ipv4Addr::new(198, 19, 254, i) }).collect();
    let neigh: Vec<Neighbour> = (1..=3).map(|i| Neighbour { ip: Ipv4Addr::new(10, 44, 0, i), mac: mac(i) }).collect();
    nl.replace_fdb(DEV, &fdb).await.unwrap();
    nl.replace_fdb(DEV, &fdb).await.expect("replacing is idempotent");
    nl.replace_neighbours(DEV, &neigh).await.unwrap();
    let mut seen: Vec<(String, String)> = bridge_array(ns.name(), &["fdb", "show", "dev", DEV])
        .iter()
        .filter(|e| e["dst"].is_string() && e["mac"] != "00:00:00:00:00:00")
        .map(|e| (e["mac"].as_str().unwrap().to_owned(), e["dst"].as_str().unwrap().to_owned()))
        .collect();
    seen.sort();
    let want: Vec<(String, String)> = fdb.iter().map(|f| (f.mac.to_string(), f.dst.to_string())).collect();
    assert_eq!(seen, want);
    let mut seen: Vec<(String, String)> = ip_array(ns.name(), &["-4", "neigh", "show", "dev", DEV])
        .iter()
        .map(|e| {
            assert!(e["state"].as_array().unwrap().iter().any(|s| s == "PERMANENT"), "{e}");
            (e["dst"].as_str().unwrap().to_owned(), e["lladdr"].as_str().unwrap().to_owned())
        })
        .collect();
    seen.sort();
    let want: Vec<(String, String)> = neigh.iter().map(|n| (n.ip.to_string(), n.mac.to_string())).collect();
    assert_eq!(seen, want);
    assert_eq!(nl.fdb_entries(DEV).await.unwrap(), fdb);
    assert_eq!(nl.neighbours(DEV).await.unwrap(), neigh);

    nl.delete_fdb(DEV, &fdb[..1]).await.unwrap();
    nl.delete_fdb(DEV, &fdb[..1]).await.expect("deleting what is gone is fine");
    nl.delete_neighbours(DEV, &neigh[..1]).await.unwrap();
    assert_eq!(nl.fdb_entries(DEV).await.unwrap(), fdb[1..]);
    assert_eq!(nl.neighbours(DEV).await.unwrap(), neigh[1..]);
}
