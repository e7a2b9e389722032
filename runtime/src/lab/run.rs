//! Bringing a lab up and down, and killing and restoring one controller of it.
//!
//! Controllers are applied, run and destroyed by the real `meshwork` binary (`apply`, `agent`,
//! `destroy` with `--netns`), so the lab exercises exactly what a real host runs. Clients are
//! real OpenVPN processes started with their clientpacks inside their namespaces.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshwork_compiler::model::Expect;
use meshwork_compiler::network::Network;

use super::layout::{self, LabHost};
use super::{Lab, Record, locations, report, routed_everywhere, world};
use crate::agent;
use crate::clientpack::{self, PackOptions};
use crate::daemon::{self, Unit};
use crate::host::layout::Layout;
use crate::plural;

/// How long `lab up` (and `lab sync`) wait for the lab to be whole: every client connected and
/// routed everywhere, every controller hearing its peers.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

/// Reports progress: one line per step, for people watching.
pub type Progress<'a> = &'a mut dyn FnMut(&str);

pub(super) fn netlink_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))
}

/// `meshwork lab up`: everything, or nothing left half-made (a failure tears down what was made).
pub fn up(lab: &Lab, file: &Path, net: &Network, expects: &[Expect], progress: Progress) -> Result<Record, String> {
    if lab.record_path().exists() {
        return Err(format!("a lab is already up ({}); run `meshwork lab down` first", lab.record_path().display()));
    }
    let file = fs::canonicalize(file).map_err(|e| format!("cannot resolve {}: {e}", file.display()))?;
    let plan = layout::plan(net, expects)?;
    let nodes = super::nodes::plan(net, &super::nodes::tag_for(&lab.root))?;
    // Before the record: a failed `up` tears down what its record names, and namespaces of
    // the same name that another lab made are not this one's to remove.
    if let Err(e) = world::refuse_existing(&plan).and_then(|()| super::nodeworld::refuse_existing(&nodes)) {
        return Err(format!("{e}{}", labs_up(lab)));
    }
    let record = Record { file, layout: plan, killed: BTreeSet::new(), nodes, killed_nodes: BTreeSet::new() };
    lab.save(&record)?;
    let entry = super::registry::Entry { state_dir: lab.state_dir().to_path_buf(), file: record.file.clone() };
    if let Err(e) = super::registry::add(&lab.index, &entry) {
        progress(&format!(
            "note: {e}; from other directories, name the lab with --state-dir {}",
            entry.state_dir.display()
        ));
    }
    match bring_up(lab, &record, net, progress) {
        Ok(()) => Ok(record),
        Err(e) => {
            let problems = down(lab, &mut |_| {});
            let also =
                if problems.is_empty() { String::new() } else { format!("; tearing down: {}", problems.join("; ")) };
            Err(format!("{e}{also}"))
        }
    }
}

/// The labs up on this machine, as the end of a refusal ("; up: ...").
fn labs_up(lab: &Lab) -> String {
    let up: Vec<String> = super::registry::list(&lab.index)
        .into_iter()
        .map(|e| {
            format!(
                "{} (from {}; `meshwork lab down --state-dir {}`)",
                e.state_dir.display(),
                e.file.display(),
                e.state_dir.display()
            )
        })
        .collect();
    if up.is_empty() { String::new() } else { format!("; labs up on this machine: {}", up.join(", ")) }
}

fn bring_up(lab: &Lab, record: &Record, net: &Network, progress: Progress) -> Result<(), String> {
    let started = Instant::now();
    let step = |progress: &mut dyn FnMut(&str), what: &str| {
        progress(&format!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64()))
    };
    if !record.layout.has_hosts() {
        step(progress, "keys: a keyset for the topology (pre-shared keys of node pairs)");
        crate::keys::Keyset::init(&lab.state(), net, time::OffsetDateTime::now_utc())
            .map_err(|e| format!("cannot create the lab's keyset: {e}"))?;
        return super::noderun::up(lab, record, net, progress);
    }
    step(
        progress,
        &format!(
            "namespaces: underlay, {}, {}",
            plural::count(record.layout.controllers.len(), "controller"),
            plural::count(record.layout.clients.len(), "client")
        ),
    );
    let rt = netlink_runtime()?;
    rt.block_on(world::build(&record.layout, &mut |m| progress(&format!("         {m}"))))
        .map_err(|e| format!("cannot build the lab's namespaces: {e}"))?;

    step(progress, "keys: a keyset for the topology");
    let state = lab.state();
    crate::keys::Keyset::init(&state, net, time::OffsetDateTime::now_utc())
        .map_err(|e| format!("cannot create the lab's keyset: {e}"))?;

    step(progress, "controllers: meshwork apply, in parallel");
    apply_all(lab, record, &record.layout.controllers)?;
    step(progress, "agents: one per controller");
    for c in &record.layout.controllers {
        start_agent(lab, record, c)?;
    }
    step(
        progress,
        &format!("clients: {} with their clientpacks", plural::count(record.layout.clients.len(), "OpenVPN client")),
    );
    for c in &record.layout.clients {
        start_client(lab, net, c)?;
    }
    step(progress, "waiting until every client is connected and every controller routes to it");
    converge(lab, record, net, progress)?;
    if !record.nodes.is_empty() {
        super::noderun::up(lab, record, net, progress)?;
    }
    step(progress, "lab is up");
    Ok(())
}

/// Runs `meshwork ARGS` to completion, its output into `log`; the end of the log on failure.
fn meshwork(lab: &Lab, args: &[&str], log: &Path) -> Result<(), String> {
    let status = spawn_logged(lab, args, log)?.wait().map_err(|e| e.to_string())?;
    if status.success() { Ok(()) } else { Err(format!("meshwork {} failed:\n{}", args.join(" "), tail(log, 15))) }
}

/// `meshwork ARGS` with stdout and stderr appended to `log`, not yet started.
pub(super) fn logged_command(lab: &Lab, args: &[&str], log: &Path) -> Result<Command, String> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let out =
        fs::OpenOptions::new().create(true).append(true).open(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&lab.exe);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    Ok(cmd)
}

pub(super) fn spawn_logged(lab: &Lab, args: &[&str], log: &Path) -> Result<std::process::Child, String> {
    logged_command(lab, args, log)?.spawn().map_err(|e| format!("cannot run {}: {e}", lab.exe.display()))
}

pub(super) fn tail(log: &Path, lines: usize) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn host_args<'a>(record: &'a Record, state: &'a str, c: &'a LabHost) -> Vec<&'a str> {
    let file = record.file.to_str().unwrap_or_default();
    vec![file, "--controller", &c.name, "--netns", &c.netns, "--state-dir", state]
}

/// Applies the controllers side by side (each is its own process in its own namespace).
fn apply_all(lab: &Lab, record: &Record, controllers: &[LabHost]) -> Result<(), String> {
    let state = lab.state().display().to_string();
    let mut running = Vec::new();
    for c in controllers {
        let mut args = vec!["apply"];
        args.extend(host_args(record, &state, c));
        args.push("--auto-approve");
        let log = lab.logs().join(format!("apply-{}.log", c.name));
        running.push((c, spawn_logged(lab, &args, &log)?, log));
    }
    let mut failures = Vec::new();
    for (c, mut child, log) in running {
        let ok = child.wait().is_ok_and(|s| s.success());
        if !ok {
            failures.push(format!("apply of controller {} failed:\n{}", c.name, tail(&log, 15)));
        }
    }
    if failures.is_empty() { Ok(()) } else { Err(failures.join("\n")) }
}

/// Starts the controller's agent, detached (its own session, so it outlives this command).
fn start_agent(lab: &Lab, record: &Record, c: &LabHost) -> Result<(), String> {
    let state = lab.state().display().to_string();
    let mut args = vec!["agent"];
    args.extend(host_args(record, &state, c));
    let log = lab.logs().join(format!("agent-{}.log", c.name));
    let mut cmd = logged_command(lab, &args, &log)?;
    // SAFETY: setsid is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| if libc::setsid() == -1 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start the agent of {}: {e}", c.name))?;
    let layout = lab.controller(&c.name);
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent::running(&layout).is_none() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the agent of {} exited ({status}):\n{}", c.name, tail(&log, 15)));
        }
        if Instant::now() > deadline {
            return Err(format!("the agent of {} did not start within 10 s:\n{}", c.name, tail(&log, 15)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The agent is its own session leader now; nobody waits for it here.
    drop(child);
    Ok(())
}

fn client_unit(lab: &Lab, c: &LabHost) -> Unit {
    let dir = lab.client_dir(&c.name);
    Unit {
        program: daemon::Program::Openvpn,
        name: c.name.clone(),
        config: format!("{}.ovpn", c.name),
        netns: Some(c.netns.clone()),
        pidfile: dir.join(format!("{}.pid", c.name)),
        log: dir.join(format!("{}.log", c.name)),
        dir,
    }
}

/// Writes the client's pack (0600: it holds its key) and starts OpenVPN with it.
fn start_client(lab: &Lab, net: &Network, c: &LabHost) -> Result<(), String> {
    let client = clientpack::client(net, &c.name).map_err(|e| e.to_string())?;
    let keyset = clientpack::open_keyset(&lab.state()).map_err(|e| e.to_string())?;
    let material = clientpack::load_material(&keyset, &c.name).map_err(|e| e.to_string())?;
    let pack = clientpack::ovpn(net, client, &material, &PackOptions::default());
    let unit = client_unit(lab, c);
    fs::create_dir_all(&unit.dir).map_err(|e| format!("cannot create {}: {e}", unit.dir.display()))?;
    crate::private_file::replace(&unit.dir.join(&unit.config), pack.as_bytes())
        .map_err(|e| format!("cannot write the pack of {}: {e}", c.name))?;
    let digest = crate::host::desired::digest(pack.as_bytes());
    daemon::start(&unit, &digest).map_err(|e| format!("cannot start the OpenVPN client {}: {e}", c.name))?;
    Ok(())
}

/// `meshwork lab sync`: the lab follows an edited file. Clients the file added get a namespace,
/// certificates (`keys sync`) and a running OpenVPN; clients it removed are stopped and their
/// namespaces removed. The agents follow the file by themselves. Anything else that changed
/// (controllers, addresses) needs `lab down` and `lab up`. Returns (added, removed) clients.
pub fn sync(
    lab: &Lab,
    net: &Network,
    expects: &[Expect],
    progress: Progress,
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut record = lab.load()?;
    let wanted = layout::plan(net, expects)?;
    if wanted.controllers != record.layout.controllers
        || wanted.lans != record.layout.lans
        || wanted.names != record.layout.names
    {
        return Err("the file changed more than its clients: run `meshwork lab down` and `meshwork lab up`".into());
    }
    let removed: Vec<LabHost> = record.layout.clients.iter().filter(|c| !wanted.clients.contains(c)).cloned().collect();
    let added: Vec<LabHost> = wanted.clients.iter().filter(|c| !record.layout.clients.contains(c)).cloned().collect();
    for c in &removed {
        progress(&format!("client {} leaves", c.name));
        daemon::stop(&client_unit(lab, c).pidfile).map_err(|e| format!("client {}: {e}", c.name))?;
        let problems = world::remove_client(&record.layout, c);
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let _ = fs::remove_dir_all(lab.client_dir(&c.name));
    }
    record.layout.clients.retain(|c| !removed.contains(c));
    lab.save(&record)?;
    if !added.is_empty() {
        let mut keyset = crate::keys::Keyset::open(&lab.state()).map_err(|e| format!("the lab's keyset: {e}"))?;
        keyset.sync(net, time::OffsetDateTime::now_utc()).map_err(|e| format!("keys sync: {e}"))?;
    }
    let rt = netlink_runtime()?;
    for c in &added {
        progress(&format!("client {} joins in {}", c.name, c.netns));
        // Recorded first, so `lab down` removes it even if starting it fails.
        record.layout.clients.push(c.clone());
        lab.save(&record)?;
        rt.block_on(world::add_client(&record.layout, c)).map_err(|e| format!("client {}: {e}", c.name))?;
        admitted_everywhere(lab, &record, &c.name)?;
        start_client(lab, net, c)?;
    }
    record.layout.outside = wanted.outside;
    lab.save(&record)?;
    converge(lab, &record, net, progress)?;
    Ok((added.into_iter().map(|c| c.name).collect(), removed.into_iter().map(|c| c.name).collect()))
}

/// Waits until every live controller's agent has written the client's ccd file: before that,
/// `ccd-exclusive` refuses the client, and an OpenVPN client gives up on AUTH_FAILED.
fn admitted_everywhere(lab: &Lab, record: &Record, client: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let live = || record.layout.controllers.iter().filter(|c| !record.killed.contains(&c.name));
    while !live()
        .all(|c| lab.controller(&c.name).work().join(meshwork_compiler::emit::openvpn::CCD_DIR).join(client).exists())
    {
        if Instant::now() > deadline {
            return Err(format!("the agents did not admit {client} within 60 s (see {})", lab.logs().display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Waits until the lab is whole: every client sits somewhere and every live controller routes
/// to it and hears every live peer.
fn converge(lab: &Lab, record: &Record, net: &Network, progress: Progress) -> Result<(), String> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let total = record.layout.clients.len();
    let mut shown = String::new();
    loop {
        let located = locations(lab, record);
        let routed = record
            .layout
            .clients
            .iter()
            .filter(|c| located.contains_key(&c.name) && routed_everywhere(lab, record, &c.name))
            .count();
        // Whole, as `restore --wait` means it: every controller also hears every peer (a
        // controller that holds no client is routed by nobody, yet its peers must hear it).
        let missing = report::not_whole(&report::status(lab, record, net));
        let line = if routed < total || missing.is_empty() {
            format!("         {}/{total} clients connected, {routed}/{total} routed by every controller", located.len())
        } else {
            format!("         every client routed; waiting for {}", missing.join(", "))
        };
        if line != shown {
            progress(&line);
            shown = line;
        }
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not converged after {} s: {} (see {} and {})",
                CONVERGE_TIMEOUT.as_secs(),
                missing.join(", "),
                lab.logs().display(),
                lab.root.join("clients").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether a lab is up in this state directory (its record is there).
pub fn is_up(lab: &Lab) -> bool {
    lab.record_path().exists()
}

/// `meshwork lab down`: stops clients and agents, destroys every controller, removes the
/// namespaces, the lab's directory and its entry in the machine's index. Clients and
/// controllers go side by side. Keeps going after a failure; returns every
/// failure. Without a lab there is nothing to do (and nothing fails): it is safe to run twice.
pub fn down(lab: &Lab, progress: Progress) -> Vec<String> {
    if !is_up(lab) {
        let _ = super::registry::remove(&lab.index, lab.state_dir());
        return Vec::new();
    }
    let record = match lab.load() {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    let started = Instant::now();
    let mut step = |what: &str| progress(&format!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64()));
    let mut problems = super::noderun::down(lab, &record.nodes, &mut step);
    if record.layout.has_hosts() {
        problems.extend(down_controllers(lab, &record, &mut step));
        step("namespaces: removing the underlay's, the controllers' and the clients'");
        match netlink_runtime() {
            Ok(rt) => problems.extend(rt.block_on(world::teardown(&record.layout))),
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        if let Err(e) = fs::remove_dir_all(&lab.root) {
            problems.push(format!("cannot remove {}: {e}", lab.root.display()));
        } else if let Err(e) = super::registry::remove(&lab.index, lab.state_dir()) {
            problems.push(e);
        }
    }
    problems
}

/// What `lab down` does to one host of the controller part.
enum Teardown<'a> {
    /// Its OpenVPN client stopped.
    Client(&'a LabHost),
    /// Its agent stopped (it would start again what destroy stops), then `meshwork destroy`.
    Controller(&'a LabHost),
}

/// Every client stopped and every controller's agent stopped and the controller destroyed, all
/// side by side: nothing a client does while it goes matters to a controller being destroyed.
fn down_controllers(lab: &Lab, record: &Record, step: Progress) -> Vec<String> {
    let live: Vec<&LabHost> = record.layout.controllers.iter().filter(|c| crate::netns::exists(&c.netns)).collect();
    let mut jobs: Vec<Teardown> = record.layout.clients.iter().map(Teardown::Client).collect();
    jobs.extend(live.iter().map(|c| Teardown::Controller(c)));
    step(&format!(
        "clients and controllers, side by side: stopping {}; stopping the agent of and destroying {}",
        plural::count(record.layout.clients.len(), "OpenVPN client"),
        names(&live)
    ));
    let state = lab.state().display().to_string();
    let total = jobs.len();
    let results = super::parallel::each(
        &jobs,
        |job| match job {
            Teardown::Client(c) => {
                daemon::stop(&client_unit(lab, c).pidfile).map(|_| ()).map_err(|e| format!("client {}: {e}", c.name))
            }
            Teardown::Controller(c) => {
                stop_agents(&[lab.controller(&c.name)], libc::SIGTERM);
                let args =
                    ["destroy", "--controller", &c.name, "--netns", &c.netns, "--state-dir", &state, "--auto-approve"];
                meshwork(lab, &args, &lab.logs().join(format!("destroy-{}.log", c.name)))
            }
        },
        |job, r, n| {
            let what = match job {
                Teardown::Client(c) => format!("client {} stopped", c.name),
                Teardown::Controller(c) => format!("controller {} destroyed", c.name),
            };
            if r.is_ok() {
                step(&format!("  {n}/{total} {what}"));
            }
        },
    );
    let mut problems: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    // Agents of controllers whose namespace was already gone.
    let layouts: Vec<Layout> = record.layout.controllers.iter().map(|c| lab.controller(&c.name)).collect();
    stop_agents(&layouts, libc::SIGTERM);
    // Whatever destroy could not remove of the engines' namespaces.
    let all = crate::netns::list().unwrap_or_default();
    for c in &live {
        let prefix = format!("mw-{}-e", c.name);
        for ns in all.iter().filter(|n| n.starts_with(&prefix)) {
            problems.extend(world::delete_netns(ns));
        }
    }
    problems
}

fn names(hosts: &[&LabHost]) -> String {
    if hosts.is_empty() {
        return "no controller".into();
    }
    hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Signals the agents of these hosts all at once and waits up to 5 s for them to go (then
/// SIGKILL to those left).
pub(super) fn stop_agents(layouts: &[Layout], signal: i32) {
    let pids: Vec<(u32, &Layout)> = layouts.iter().filter_map(|l| agent::running(l).map(|pid| (pid, l))).collect();
    for (pid, _) in &pids {
        // SAFETY: kill(2) on the pid an agent wrote for this host (checked to be an agent).
        unsafe { libc::kill(*pid as i32, signal) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|(_, l)| agent::running(l).is_some()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (pid, l) in &pids {
        if agent::running(l).is_some() {
            // SAFETY: as above.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        let _ = fs::remove_file(l.agent_pid());
    }
}

/// Signals a controller's agent and waits up to 5 s for it to go (then SIGKILL).
fn stop_agent(lab: &Lab, controller: &str, signal: i32) {
    stop_agents(&[lab.controller(controller)], signal);
}

/// `meshwork lab kill C`: the controller dies as a host does: its agent and every OpenVPN
/// process are killed (SIGKILL: no exit notification reaches the clients) and its underlay link
/// goes down. Returns the clients it held.
pub fn kill(lab: &Lab, controller: &str) -> Result<Vec<String>, String> {
    let mut record = lab.load()?;
    let host = record.layout.controller(controller).cloned().ok_or_else(|| unknown_controller(&record, controller))?;
    if record.killed.contains(controller) {
        return Err(format!(
            "controller {controller} is already down; `meshwork lab restore {controller}` brings it back"
        ));
    }
    let held: Vec<String> =
        locations(lab, &record).into_iter().filter(|(_, (c, _))| c == controller).map(|(client, _)| client).collect();
    stop_agent(lab, controller, libc::SIGKILL);
    let layout = lab.controller(controller);
    if let Ok(entries) = fs::read_dir(layout.run()) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pid")
                && let Ok(Some(p)) = daemon::status(&path)
            {
                // SAFETY: kill(2) on a pid whose start time the pid file checks.
                unsafe { libc::kill(p.pid as i32, libc::SIGKILL) };
            }
        }
    }
    set_underlay_link(&record, &host, false)?;
    record.killed.insert(controller.to_string());
    lab.save(&record)?;
    Ok(held)
}

/// `meshwork lab restore C`: its underlay link up, applied again (its processes start), its
/// agent started.
pub fn restore(lab: &Lab, controller: &str) -> Result<(), String> {
    let mut record = lab.load()?;
    let host = record.layout.controller(controller).cloned().ok_or_else(|| unknown_controller(&record, controller))?;
    set_underlay_link(&record, &host, true)?;
    // What the killed agent last wrote is not news: waits read only what the new one writes.
    let _ = fs::remove_file(lab.controller(controller).status_file());
    apply_all(lab, &record, std::slice::from_ref(&host))?;
    start_agent(lab, &record, &host)?;
    record.killed.remove(controller);
    lab.save(&record)
}

fn unknown_controller(record: &Record, name: &str) -> String {
    let known: Vec<&str> = record.layout.controllers.iter().map(|c| c.name.as_str()).collect();
    format!("the lab has no controller {name:?} (it has {})", known.join(", "))
}

fn set_underlay_link(record: &Record, host: &LabHost, up: bool) -> Result<(), String> {
    let rt = netlink_runtime()?;
    rt.block_on(world::set_host_link(&record.layout, host, up))
        .map_err(|e| format!("cannot set the underlay link of {} {}: {e}", host.name, if up { "up" } else { "down" }))
}
