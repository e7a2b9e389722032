//! The lab's nodes brought up and down, killed and restored. Every node is made by the real
//! `meshwork apply FILE --node N --netns NS --state-dir S` and kept by the real `meshwork agent
//! --node N` (so the lab exercises what a host runs); the lab makes only what a host would have
//! before meshwork (its namespace, admin and external interfaces) and what the tests need
//! around it (segments, internet, VMs, counters).
//!
//! A node's state is under `<state>/nodes/<name>/` ([`Layout`]: charon's directory
//! `strongswan/`, its pid file `strongswan/run/charon.pid`, the agent's `agent.pid` and
//! `status.json`).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use meshwork_compiler::network::Network;

use super::nodes::{LabNode, NodeLayout};
use super::run::{Progress, logged_command, netlink_runtime, spawn_logged, tail};
use super::{Lab, Record, nodeworld};
use crate::agent;
use crate::daemon;
use crate::host::identity::HostId;
use crate::host::layout::Layout;
use crate::node::strongswan;

/// How long `lab up` waits for every IPsec pair's child SA.
pub const SA_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node's agent gets to write its first status.
const AGENT_START: Duration = Duration::from_secs(15);

/// A node's files in the lab's state (`<state>/nodes/<name>/`).
pub fn layout(lab: &Lab, node: &str) -> Layout {
    Layout::new(&lab.state(), &HostId::node(node))
}

/// charon's directory (working directory, vici socket, pid file) of a node.
pub fn charon_dir(lab: &Lab, node: &str) -> PathBuf {
    layout(lab, node).work()
}

pub fn charon_pidfile(lab: &Lab, node: &str) -> PathBuf {
    strongswan::unit(&charon_dir(lab, node), "", None).pidfile
}

/// The node agent's status (`status.json`), if it wrote one.
pub fn agent_status(lab: &Lab, node: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&fs::read_to_string(layout(lab, node).status_file()).ok()?).ok()
}

fn node_args<'a>(record: &'a Record, state: &'a str, n: &'a LabNode) -> Vec<&'a str> {
    let file = record.file.to_str().unwrap_or_default();
    vec![file, "--node", &n.name, "--netns", &n.netns, "--state-dir", state]
}

/// Brings the node part up: namespaces and interfaces, `meshwork apply --node` of every node
/// side by side, the VMs, an agent per node; then waits for every IPsec pair.
pub fn up(lab: &Lab, record: &Record, net: &Network, progress: Progress) -> Result<(), String> {
    let layout = &record.nodes;
    let started = Instant::now();
    let mut step = |what: &str| progress(&format!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64()));
    step(&format!(
        "nodes: {} in {} PDC(s), {} VM(s){}",
        layout.nodes.len(),
        layout.segments.len(),
        layout.vms.len(),
        if layout.internet.is_some() { ", an internet between the PDCs" } else { "" }
    ));
    nodeworld::refuse_existing(layout).map_err(|e| e.to_string())?;
    let rt = netlink_runtime()?;
    let mut lines = Vec::new();
    rt.block_on(nodeworld::build(layout, &mut |m| lines.push(format!("         {m}"))))
        .map_err(|e| format!("cannot build the nodes' namespaces: {e}"))?;
    for l in lines.drain(..) {
        step(l.trim_start());
    }
    step("nodes: meshwork apply --node, in parallel");
    apply(lab, record, &layout.nodes.iter().collect::<Vec<_>>())?;
    rt.block_on(nodeworld::build_vms(layout, &mut |m| lines.push(m.to_owned())))
        .map_err(|e| format!("cannot build the VMs: {e}"))?;
    for l in lines.drain(..) {
        step(&l);
    }
    step("node agents: meshwork agent --node, one per node");
    for n in &layout.nodes {
        start_agent(lab, record, n)?;
    }
    let pairs = net.vxlan.ipsec.pairs.len();
    step(&format!("waiting for the child SAs of {pairs} IPsec pair(s)"));
    wait_for_sas(lab, record, net, &layout.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), SA_TIMEOUT)?;
    step("nodes are up");
    Ok(())
}

/// Applies the given nodes side by side (each its own process in its own namespace).
pub fn apply(lab: &Lab, record: &Record, nodes: &[&LabNode]) -> Result<(), String> {
    let state = lab.state().display().to_string();
    let mut running = Vec::new();
    for n in nodes {
        let mut args = vec!["apply"];
        args.extend(node_args(record, &state, n));
        args.push("--auto-approve");
        let log = lab.logs().join(format!("apply-node-{}.log", n.name));
        running.push((n, spawn_logged(lab, &args, &log)?, log));
    }
    let mut failures = Vec::new();
    for (n, mut child, log) in running {
        if !child.wait().is_ok_and(|s| s.success()) {
            failures.push(format!("apply of node {} failed:\n{}", n.name, tail(&log, 15)));
        }
    }
    if failures.is_empty() { Ok(()) } else { Err(failures.join("\n")) }
}

/// The node's agent, if one runs.
pub fn agent_pid(lab: &Lab, node: &str) -> Option<u32> {
    agent::running(&layout(lab, node))
}

/// Starts `meshwork agent --node` for a node, detached (its own session), and waits until it
/// wrote its status.
pub fn start_agent(lab: &Lab, record: &Record, n: &LabNode) -> Result<(), String> {
    if agent_pid(lab, &n.name).is_some() {
        return Ok(());
    }
    let state = lab.state().display().to_string();
    let mut args = vec!["agent"];
    args.extend(node_args(record, &state, n));
    let log = lab.logs().join(format!("agent-node-{}.log", n.name));
    let mut cmd = logged_command(lab, &args, &log)?;
    // SAFETY: setsid is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| if libc::setsid() == -1 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start the agent of node {}: {e}", n.name))?;
    let deadline = Instant::now() + AGENT_START;
    while agent_pid(lab, &n.name).is_none() {
        if let Ok(Some(exit)) = child.try_wait() {
            return Err(format!("the agent of node {} exited ({exit}):\n{}", n.name, tail(&log, 15)));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the agent of node {} did not start within {} s:\n{}",
                n.name,
                AGENT_START.as_secs(),
                tail(&log, 15)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its own session leader now; nobody waits for it here.
    drop(child);
    Ok(())
}

/// Signals the node's agent and waits up to 5 s for it to go (then SIGKILL).
pub fn stop_agent(lab: &Lab, node: &str, signal: i32) {
    let Some(pid) = agent_pid(lab, node) else { return };
    // SAFETY: kill(2) on the pid the node's agent wrote (checked to be an agent).
    unsafe { libc::kill(pid as i32, signal) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while agent_pid(lab, node).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if agent_pid(lab, node).is_some() {
        // SAFETY: as above.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let _ = fs::remove_file(layout(lab, node).agent_pid());
}

/// The IPsec peers of a node whose child SA charon has installed, and those it has not.
pub fn sa_state(lab: &Lab, net: &Network, n: &LabNode) -> (Vec<String>, Vec<String>) {
    let Some(node) = net.vxlan.node(&n.name) else { return (Vec::new(), Vec::new()) };
    let children = strongswan::installed_children(&charon_dir(lab, &n.name), Some(&n.netns)).unwrap_or_default();
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for (_, peer) in net.vxlan.ipsec_peers(node) {
        let name = meshwork_compiler::vxlan::names::ike_connection(&peer.name);
        if children.iter().any(|c| c.name == name) { up.push(peer.name.clone()) } else { down.push(peer.name.clone()) }
    }
    (up, down)
}

/// Waits until every pair of the given nodes has its child SA installed on both ends.
pub fn wait_for_sas(
    lab: &Lab,
    record: &Record,
    net: &Network,
    names: &[&str],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let missing: Vec<String> = names
            .iter()
            .filter_map(|name| record.nodes.node(name))
            .flat_map(|n| sa_state(lab, net, n).1.into_iter().map(move |peer| format!("{} -> {peer}", n.name)))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no child SA after {} s: {} (see {})",
                timeout.as_secs(),
                missing.join(", "),
                lab.logs().display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `lab down` for the nodes: agents stopped, every node destroyed with `meshwork destroy
/// --node`, any charon left stopped by its pid file, the namespaces removed. Keeps going after
/// a failure; returns every failure.
pub fn down(lab: &Lab, layout: &NodeLayout, progress: Progress) -> Vec<String> {
    if layout.is_empty() {
        return Vec::new();
    }
    let mut problems = Vec::new();
    progress(&format!("node agents: stopping {}, all at once", layout.nodes.len()));
    let layouts: Vec<Layout> = layout.nodes.iter().map(|n| self::layout(lab, &n.name)).collect();
    super::run::stop_agents(&layouts, libc::SIGTERM);
    progress("nodes: meshwork destroy --node, in parallel");
    let state = lab.state().display().to_string();
    let mut running = Vec::new();
    for n in layout.nodes.iter().filter(|n| crate::netns::exists(&n.netns)) {
        let args = ["destroy", "--node", &n.name, "--netns", &n.netns, "--state-dir", &state, "--auto-approve"];
        let log = lab.logs().join(format!("destroy-node-{}.log", n.name));
        match spawn_logged(lab, &args, &log) {
            Ok(child) => running.push((n, child, log)),
            Err(e) => problems.push(e),
        }
    }
    let total = running.len();
    for (i, (n, mut child, log)) in running.into_iter().enumerate() {
        if child.wait().is_ok_and(|s| s.success()) {
            progress(&format!("  {}/{total} node {} destroyed", i + 1, n.name));
        } else {
            problems.push(format!("destroy of node {} failed:\n{}", n.name, tail(&log, 15)));
        }
    }
    for n in &layout.nodes {
        match daemon::stop(&charon_pidfile(lab, &n.name)) {
            Ok(false) => {}
            Ok(true) => problems.push(format!("node {}: charon was still running after destroy (stopped)", n.name)),
            Err(e) => problems.push(format!("node {}: cannot stop charon: {e}", n.name)),
        }
    }
    progress("namespaces: removing the nodes', the PDC segments', the internet's and the VMs'");
    problems.extend(nodeworld::teardown(layout));
    problems
}

/// What `lab kill` takes from a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Only its charon (stopped by its pid file): its agent is there to bring it back.
    Ipsec,
    /// The whole host: agent and charon killed, its links cut.
    Node,
}

/// `lab kill [--ipsec] NODE`. Returns whether charon was running.
pub fn kill(lab: &Lab, node: &str, fault: Fault) -> Result<bool, String> {
    let mut record = lab.load()?;
    let n = record.nodes.node(node).cloned().ok_or_else(|| unknown_node(&record, node))?;
    if record.killed_nodes.contains(node) {
        return Err(format!("node {node} is already down; `meshwork lab restore {node}` brings it back"));
    }
    if fault == Fault::Node {
        stop_agent(lab, node, libc::SIGKILL);
    }
    let was_running = stop_charon(lab, node)?;
    if fault == Fault::Node {
        let rt = netlink_runtime()?;
        rt.block_on(nodeworld::set_node_links(&record.nodes, &n, false))
            .map_err(|e| format!("cannot cut node {node} off: {e}"))?;
        record.killed_nodes.insert(node.to_owned());
        lab.save(&record)?;
    }
    Ok(was_running)
}

/// Stops a node's charon as a crash would: SIGTERM to the pid its pid file names (checked to be
/// charon, started when the file says), and the pid file left where it is. Removing it would
/// race with the agent, which may already have started the next charon and written its own.
fn stop_charon(lab: &Lab, node: &str) -> Result<bool, String> {
    let pidfile = charon_pidfile(lab, node);
    let record = daemon::status(&pidfile).map_err(|e| format!("cannot read {}: {e}", pidfile.display()))?;
    let Some(record) = record.filter(|r| r.program == daemon::Program::Charon) else { return Ok(false) };
    // SAFETY: kill(2) on the pid of a running charon, as its pid file and start time say.
    if unsafe { libc::kill(record.pid as i32, libc::SIGTERM) } == -1 {
        return Err(format!("cannot stop the charon of {node}: {}", std::io::Error::last_os_error()));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while daemon::status(&pidfile).ok().flatten().is_some_and(|r| r.pid == record.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}

/// `lab restore NODE`: its links up, applied again (charon starts), its agent started.
pub fn restore(lab: &Lab, node: &str) -> Result<(), String> {
    let mut record = lab.load()?;
    let n = record.nodes.node(node).cloned().ok_or_else(|| unknown_node(&record, node))?;
    let rt = netlink_runtime()?;
    rt.block_on(nodeworld::set_node_links(&record.nodes, &n, true))
        .map_err(|e| format!("cannot connect node {node} again: {e}"))?;
    // apply does not act under a running agent.
    stop_agent(lab, node, libc::SIGTERM);
    apply(lab, &record, &[&n])?;
    start_agent(lab, &record, &n)?;
    record.killed_nodes.remove(node);
    lab.save(&record)
}

fn unknown_node(record: &Record, name: &str) -> String {
    let known: Vec<&str> = record.nodes.nodes.iter().map(|n| n.name.as_str()).collect();
    format!("the lab has no node {name:?} (it has {})", known.join(", "))
}
