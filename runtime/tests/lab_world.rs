//! Kernel test of `meshwork::lab::world`: builds the lab of examples/three-controllers.kdl
//! (namespaces `mwl-*`, as root), proves with real TCP connections that the underlay, the LAN
//! site and the outside namespace route, reads the kernel state back with `ip -j`, then tears
//! the lab down and checks nothing is left. A guard tears the lab down when the test fails too.
//!
//! Skipped (with a note) when not root or without `ip`; under CI that is a failure.

mod support;

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use meshwork::lab::layout::{self, LabLayout};
use meshwork::lab::world;
use meshwork_compiler::source::SourceFile;
use serde_json::Value;

const NORTH_NS: &str = "mwl-ctl-north";
const EAST_NS: &str = "mwl-ctl-east";
const WEST_NS: &str = "mwl-ctl-west";
const WEB1_NS: &str = "mwl-cl-web-1";
const NORTH_LAN_NS: &str = "mwl-lan-north";
const NORTH: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 30);
const NORTH_LAN_HOST: Ipv4Addr = Ipv4Addr::new(10, 31, 2, 2);
const ADMIN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const WEST_NAME: &str = "west.example.net";
const PORT: u16 = 7000;
const PATIENCE: Duration = Duration::from_secs(5);

/// Root and `ip` (for reading back) are needed; like `support::kernel_tests_possible`, but the
/// lab needs neither `nft` nor `openvpn`.
fn lab_tests_possible() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if root && ip {
        return true;
    }
    let why = if root { "needs `ip`" } else { "needs root" };
    assert!(std::env::var_os("CI").is_none(), "kernel test {why}");
    eprintln!("skipping the kernel test: it {why}");
    false
}

fn three_controllers() -> LabLayout {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/three-controllers.kdl");
    let text = std::fs::read_to_string(&path).expect("read the example");
    let analysis = meshwork_compiler::analyze(SourceFile::new("three-controllers.kdl", text));
    let net = analysis.network.as_ref().expect("the example validates");
    let expects = &analysis.topology.as_ref().expect("a topology").expects;
    layout::plan(net, expects).expect("a lab layout")
}

/// Tears the lab down when dropped (the test failed, or it is over).
struct LabGuard(LabLayout);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            eprintln!("cannot start a runtime to tear the lab down");
            return;
        };
        for failure in rt.block_on(world::teardown(&self.0)) {
            eprintln!("teardown: {failure}");
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime")
}

/// `ip -j -n NS ARGS...`, parsed (an empty answer is an empty array).
fn ip_json(ns: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["-j", "-n", ns];
    all.extend_from_slice(args);
    let text = support::output("ip", &all);
    if text.trim().is_empty() { Vec::new() } else { serde_json::from_str(&text).expect("ip -j JSON") }
}

/// `ADDRESS/PREFIX` of every IPv4 address on `dev` in `ns`.
fn addresses(ns: &str, dev: &str) -> Vec<String> {
    ip_json(ns, &["-4", "addr", "show", "dev", dev])
        .iter()
        .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]))
        .collect()
}

/// `DST -> (gateway, dev, protocol)` of the main table's IPv4 routes in `ns`.
fn routes(ns: &str) -> BTreeMap<String, (String, String, String)> {
    ip_json(ns, &["-4", "route", "show", "table", "main"])
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or("").to_owned();
            (field("dst"), (field("gateway"), field("dev"), field("protocol")))
        })
        .collect()
}

fn sysctl_in(ns: &str, key: &str) -> String {
    support::output("ip", &["netns", "exec", ns, "cat", &format!("/proc/sys/{}", key.replace('.', "/"))])
        .trim()
        .to_owned()
}

fn lab_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(layout::NETNS_PREFIX))
        .collect()
}

#[test]
fn lab_of_three_controllers_routes_real_packets() {
    if !lab_tests_possible() {
        return;
    }
    let plan = three_controllers();
    let rt = runtime();
    check_failed_build_rolls_back(&rt, &plan);
    let mut steps = Vec::new();
    // Build refuses (and removes nothing) when a lab is up: then this fails before the guard
    // exists, so someone's running lab is never torn down by the test.
    rt.block_on(world::build(&plan, &mut |s: &str| steps.push(s.to_owned()))).expect("build the lab");
    let guard = LabGuard(plan.clone());
    assert!(steps.iter().any(|s| s.contains("controller north")), "progress: {steps:?}");

    check_kernel_state(&plan);
    check_traffic(&plan);
    check_hosts_file();

    // A second build must refuse without touching the lab.
    let again = rt.block_on(world::build(&plan, &mut |_| {})).expect_err("a second build refuses");
    assert_eq!(again.kind(), io::ErrorKind::AlreadyExists, "{again}");
    assert!(again.to_string().contains("meshwork lab down"), "{again}");
    assert!(support::tcp_reaches(WEB1_NS, SocketAddr::from((NORTH, PORT)), PATIENCE), "lab intact after refusal");

    let failures = rt.block_on(world::teardown(&plan));
    assert!(failures.is_empty(), "teardown failures: {failures:?}");
    assert_eq!(lab_namespaces(), Vec::<String>::new(), "lab namespaces left behind");
    for host in plan.hosts() {
        let dir = Path::new(world::ETC_NETNS).join(&host.netns);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    // Tearing down what is gone is not an error.
    assert_eq!(rt.block_on(world::teardown(&plan)), Vec::<String>::new());
    drop(guard);
}

/// A build that fails halfway (here: a LAN site naming a controller the layout lacks, found
/// after every host namespace exists) removes what it made.
fn check_failed_build_rolls_back(rt: &tokio::runtime::Runtime, plan: &LabLayout) {
    if !lab_namespaces().is_empty() {
        // Someone's lab is up: leave it alone; the main build below reports it.
        return;
    }
    let mut broken = plan.clone();
    broken.lans[0].controller = "nowhere".into();
    let err = rt.block_on(world::build(&broken, &mut |_| {})).expect_err("the broken layout fails");
    assert!(err.to_string().contains("nowhere"), "{err}");
    assert_eq!(lab_namespaces(), Vec::<String>::new(), "a failed build left namespaces behind");
    assert!(!Path::new(world::ETC_NETNS).join(NORTH_NS).exists(), "a failed build left a hosts file");
}

fn check_kernel_state(plan: &LabLayout) {
    let gateway = plan.gateway.to_string();
    assert_eq!(addresses(NORTH_NS, "ens3"), ["192.0.2.30/32"]);
    assert_eq!(addresses(WEST_NS, "eth0"), ["172.31.0.1/32"]);
    assert_eq!(addresses(WEB1_NS, "eth0"), ["172.31.1.1/32"]);
    assert_eq!(addresses("mwl-underlay", "ul2"), [format!("{gateway}/32")]);
    assert_eq!(addresses(NORTH_NS, "lab-lan"), ["10.30.0.1/16", "10.31.0.1/16"]);
    assert_eq!(addresses(NORTH_LAN_NS, "eth0"), ["10.30.0.2/16", "10.31.0.2/16", "10.31.2.2/16"]);
    assert_eq!(addresses("mwl-outside", "eth0"), ["203.0.113.9/32"]);

    let north = routes(NORTH_NS);
    assert_eq!(north.get("default"), Some(&(gateway.clone(), "ens3".into(), "static".into())), "{north:?}");
    assert_eq!(north.get(gateway.as_str()), Some(&(String::new(), "ens3".into(), "static".into())), "{north:?}");
    let underlay = routes("mwl-underlay");
    assert_eq!(underlay.get("192.0.2.30").map(|r| r.1.as_str()), Some("ul2"), "{underlay:?}");
    assert_eq!(underlay.get("203.0.113.9").map(|r| r.1.as_str()), Some("ul-out"), "{underlay:?}");
    let lan = routes(NORTH_LAN_NS);
    assert_eq!(lan.get("default").map(|r| r.0.as_str()), Some("10.30.0.1"), "{lan:?}");

    assert_eq!(sysctl_in("mwl-underlay", "net.ipv4.ip_forward"), "1");
    assert_eq!(sysctl_in("mwl-underlay", "net.ipv4.conf.all.rp_filter"), "0");
    assert_eq!(sysctl_in(NORTH_NS, "net.ipv4.ip_forward"), "1");
}

fn check_traffic(plan: &LabLayout) {
    let north = SocketAddr::from((NORTH, PORT));
    support::tcp_server(NORTH_NS, north);
    assert!(support::tcp_reaches(WEB1_NS, north, PATIENCE), "web-1 reaches north over the underlay");
    assert!(support::tcp_reaches(EAST_NS, north, PATIENCE), "east reaches north over the underlay");

    let lan_host = SocketAddr::from((NORTH_LAN_HOST, PORT));
    support::tcp_server(NORTH_LAN_NS, lan_host);
    assert!(support::tcp_reaches(NORTH_NS, lan_host, PATIENCE), "north reaches its LAN host");

    // The DNS-named controller is reachable at its lab address, and the outside address too.
    let west = plan.names.get(WEST_NAME).copied().expect("west has a lab address");
    support::tcp_server(WEST_NS, SocketAddr::from((west, PORT)));
    assert!(support::tcp_reaches(NORTH_NS, SocketAddr::from((west, PORT)), PATIENCE), "north reaches west");
    support::tcp_server("mwl-outside", SocketAddr::from((ADMIN, PORT)));
    assert!(support::tcp_reaches(WEB1_NS, SocketAddr::from((ADMIN, PORT)), PATIENCE), "web-1 reaches 203.0.113.9");
}

/// The hosts file maps west's name, and `ip netns exec` (which bind-mounts it over /etc/hosts)
/// resolves it.
fn check_hosts_file() {
    let hosts = std::fs::read_to_string("/etc/netns/mwl-ctl-north/hosts").expect("north's hosts file");
    assert!(hosts.lines().any(|l| l == "172.31.0.1 west.example.net"), "{hosts}");
    assert!(hosts.lines().any(|l| l == "127.0.0.1 localhost"), "{hosts}");
    let resolved = support::output("ip", &["netns", "exec", NORTH_NS, "getent", "hosts", WEST_NAME]);
    assert!(resolved.starts_with("172.31.0.1"), "getent: {resolved}");
}
