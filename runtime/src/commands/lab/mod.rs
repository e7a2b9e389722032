//! `meshwork lab up|status|test|kill|restore|sync|down`: the whole topology in network
//! namespaces on this machine (see `meshwork::lab`). Every verb finds its lab from any
//! directory ([`meshwork::lab::locate`]), takes the FILE it was brought up with, and writes one
//! JSON object on stdout with `--format json` (progress stays on stderr).

mod out;
mod wait;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use meshwork::lab::locate::{self, How};
use meshwork::lab::{Lab, Record, drill, expects, hints, noderun, registry, report, run, vnics};
use meshwork_compiler::model::Expect;
use meshwork_compiler::network::Network;
use serde_json::{Value, json};

use crate::OutputFormat;
use crate::input::{self, CliError};

/// Which lab a verb acts on: the state directory named (`--state-dir`, `$MESHWORK_STATE_DIR`)
/// and the FILE given.
pub struct Target {
    pub state_dir: Option<PathBuf>,
    pub file: Option<PathBuf>,
}

fn need_root() -> Result<(), CliError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(CliError::Message("meshwork lab needs root: it makes network namespaces".into()));
    }
    Ok(())
}

fn exe() -> Result<PathBuf, CliError> {
    std::env::current_exe().map_err(|e| CliError::Message(format!("cannot find the meshwork binary: {e}")))
}

/// The lab a verb means (see [`locate`]); a note on stderr when the machine's index found it.
fn find(target: &Target) -> Result<Lab, CliError> {
    let default = locate::absolute(Path::new(meshwork::state::DEFAULT_STATE_DIR));
    let here = Lab::new(&default, PathBuf::new());
    let here = run::is_up(&here)
        .then(|| registry::Entry { state_dir: default.clone(), file: here.load().map(|r| r.file).unwrap_or_default() });
    let file = target.file.as_deref().map(locate::absolute);
    let index = registry::list(Path::new(registry::DIR));
    let found = locate::choose(target.state_dir.as_deref(), here.as_ref(), &default, &index, file.as_deref())
        .map_err(CliError::Message)?;
    if found.how == How::Index {
        let of = index.iter().find(|e| e.state_dir == found.state_dir).map(|e| e.file.display().to_string());
        out::say(&format!(
            "lab at {} (brought up with {}; found in {})",
            found.state_dir.display(),
            of.unwrap_or_default(),
            registry::DIR
        ));
    }
    Ok(Lab::new(&found.state_dir, exe()?))
}

/// The network and the expects of a file (diagnostics printed on failure).
fn compile(file: &Path) -> Result<(Network, Vec<Expect>), CliError> {
    let (analysis, net) = input::network(file)?;
    let expects = analysis.topology.as_ref().map(|t| t.expects.clone()).unwrap_or_default();
    Ok((net, expects))
}

/// The lab, its record, and the network and expects of the file it was brought up with;
/// refused when the verb names another FILE.
fn loaded(target: &Target) -> Result<(Lab, Record, Network, Vec<Expect>), CliError> {
    let lab = find(target)?;
    let record = lab.load().map_err(CliError::Message)?;
    if let Some(given) = &target.file {
        let given = locate::absolute(given);
        if given != record.file {
            return Err(CliError::Message(locate::differs(lab.state_dir(), &record.file, &given)));
        }
    }
    need_root()?;
    let (net, list) = compile(&record.file)?;
    Ok((lab, record, net, list))
}

/// A JSON object with the lab's state directory and file added in front.
fn with_lab(lab: &Lab, record: &Record, body: Value) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("state_dir".into(), json!(lab.state_dir()));
    obj.insert("file".into(), json!(record.file));
    match body {
        Value::Object(m) => obj.extend(m),
        other => {
            obj.insert("result".into(), other);
        }
    }
    Value::Object(obj)
}

pub fn up(file: &Path, state_dir: &Path, format: OutputFormat) -> Result<ExitCode, CliError> {
    need_root()?;
    let lab = Lab::new(state_dir, exe()?);
    let (net, list) = compile(file)?;
    let started = Instant::now();
    let record = run::up(&lab, file, &net, &list, &mut out::progress()).map_err(CliError::Message)?;
    let seconds = started.elapsed().as_secs_f64();
    out::say(&format!("lab up in {seconds:.1} s: {} (from {})", lab.state_dir().display(), record.file.display()));
    let status = report::status(&lab, &record, &net);
    match format {
        OutputFormat::Text => {
            out::print(&report::status_text(&status));
            out::say(&hints::text(&hints::next_steps(&lab, &record, &lab.exe)));
        }
        OutputFormat::Json => out::json(&with_lab(&lab, &record, json!({ "seconds": seconds, "status": status }))),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(target: &Target, format: OutputFormat) -> Result<ExitCode, CliError> {
    let (lab, record, net, _) = loaded(target)?;
    let s = report::status(&lab, &record, &net);
    match format {
        OutputFormat::Text => out::print(&report::status_text(&s)),
        OutputFormat::Json => out::json(&s),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn test(target: &Target, format: OutputFormat) -> Result<ExitCode, CliError> {
    let (lab, record, net, list) = loaded(target)?;
    let has_nodes = !record.nodes.is_empty();
    let rows = if list.is_empty() && !has_nodes { Vec::new() } else { expects::run(&lab, &record, &net, &list) };
    let nodes = has_nodes.then(|| vnics::checks(&record, &net));
    let holds = rows.iter().all(expects::Row::holds) && nodes.as_ref().is_none_or(vnics::NodeChecks::holds);
    match format {
        OutputFormat::Text => {
            if list.is_empty() && !has_nodes {
                out::say(&format!("{} has no `expect`: nothing to test", record.file.display()));
            }
            if !rows.is_empty() {
                out::print(&report::test_text(&rows));
            }
            if let Some(c) = &nodes {
                out::print(&report::node_checks_text(c));
            }
        }
        OutputFormat::Json => {
            out::json(&with_lab(&lab, &record, json!({ "holds": holds, "expects": rows, "nodes": nodes })))
        }
    }
    Ok(if holds { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// How long `lab restore NODE` (without --wait) waits for the node's SAs.
const RESTORE_SA_WAIT: Duration = Duration::from_secs(20);

/// How long the fault drill waits for a node's agent to bring its tunnel back.
const DRILL_TIMEOUT: Duration = Duration::from_secs(90);

/// What `lab kill` and `lab restore` act on.
pub struct Victim<'a> {
    pub name: &'a str,
    pub ipsec: bool,
    pub wait: bool,
}

/// `lab kill NODE [--ipsec] [--wait]`.
fn kill_node(
    lab: &Lab,
    record: &Record,
    net: &Network,
    v: &Victim,
    format: OutputFormat,
) -> Result<ExitCode, CliError> {
    let (fault, word) = if v.ipsec { (noderun::Fault::Ipsec, "ipsec") } else { (noderun::Fault::Node, "node") };
    if !v.wait {
        let was = noderun::kill(lab, v.name, fault).map_err(CliError::Message)?;
        let what = if v.ipsec { "charon stopped" } else { "agent and charon killed, links cut" };
        out::say(&format!("node {}: {what}{}", v.name, if was { "" } else { " (charon was not running)" }));
        if format == OutputFormat::Json {
            let body = json!({ "killed": v.name, "kind": "node", "fault": word, "charon_was_running": was });
            out::json(&with_lab(lab, record, body));
        }
        return Ok(ExitCode::SUCCESS);
    }
    out::say(&format!(
        "fault drill on node {}: probing its flows every {} ms for up to {} s",
        v.name,
        drill::TICK.as_millis(),
        DRILL_TIMEOUT.as_secs()
    ));
    let report = drill::run(lab, net, v.name, fault, DRILL_TIMEOUT).map_err(CliError::Message)?;
    match format {
        OutputFormat::Text => out::print(&drill::text(&report)),
        OutputFormat::Json => {
            let body = serde_json::to_value(&report).unwrap_or_default();
            out::json(&with_lab(lab, record, body))
        }
    }
    Ok(if report.holds { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Why `lab kill C --wait` cannot work, if it cannot: no other live controller can take C's
/// clients. Checked before anything is killed.
fn failover_impossible(lab: &Lab, record: &Record, controller: &str) -> Option<String> {
    let others: Vec<&str> = record
        .layout
        .controllers
        .iter()
        .map(|c| c.name.as_str())
        .filter(|c| *c != controller && !record.killed.contains(*c))
        .collect();
    if !others.is_empty() || record.layout.controller(controller).is_none() {
        return None;
    }
    let why = if record.layout.controllers.len() == 1 {
        format!("{controller} is the only controller of {}", record.file.display())
    } else {
        let killed: Vec<&str> = record.killed.iter().map(String::as_str).collect();
        format!("every other controller is down ({}; `meshwork lab restore` brings one back)", killed.join(", "))
    };
    let exe = lab.exe.display();
    let state = lab.state_dir().display();
    Some(format!(
        "refusing `lab kill {controller} --wait`: {why}, so its clients have nowhere to fail over to and the wait \
         could only time out after {} s. Nothing was killed. Try instead:\n  \
         {exe} lab kill {controller} --state-dir {state}\n  \
         {exe} lab restore {controller} --wait --state-dir {state}    # timed until its clients are back",
        wait::FAILOVER_TIMEOUT.as_secs()
    ))
}

pub fn kill(target: &Target, v: &Victim, format: OutputFormat) -> Result<ExitCode, CliError> {
    let (lab, record, net, _) = loaded(target)?;
    if record.nodes.node(v.name).is_some() {
        return kill_node(&lab, &record, &net, v, format);
    }
    if v.ipsec {
        return Err(CliError::Message(format!("--ipsec takes a node, and {} is not one of the lab's nodes", v.name)));
    }
    if v.wait
        && let Some(why) = failover_impossible(&lab, &record, v.name)
    {
        return Err(CliError::Message(why));
    }
    let killed_at = Instant::now();
    let held = run::kill(&lab, v.name).map_err(CliError::Message)?;
    out::say(&format!(
        "controller {} killed; it held: {}",
        v.name,
        if held.is_empty() { "-".into() } else { held.join(", ") }
    ));
    if !v.wait {
        if format == OutputFormat::Json {
            out::json(&with_lab(&lab, &record, json!({ "killed": v.name, "kind": "controller", "held": held })));
        }
        return Ok(ExitCode::SUCCESS);
    }
    out::say(&format!(
        "waiting up to {} s until {} reachable through the other controllers",
        wait::FAILOVER_TIMEOUT.as_secs(),
        meshwork::plural::count(held.len(), "client")
    ));
    let back = wait::failover(&lab, &net, &held, killed_at).map_err(CliError::Message)?;
    let seconds = killed_at.elapsed().as_secs_f64();
    match format {
        OutputFormat::Text => {
            let lines: String = back.iter().map(|(client, on)| format!("{client}: back on {on}\n")).collect();
            out::print(&format!(
                "{lines}failover: {} reachable again after {seconds:.1} s\n",
                meshwork::plural::count(back.len(), "client")
            ));
        }
        OutputFormat::Json => {
            let moved: serde_json::Map<String, Value> =
                back.iter().map(|(c, on)| (c.clone(), Value::from(on.clone()))).collect();
            let body = json!({ "controller": v.name, "kind": "controller", "seconds": seconds, "clients": moved });
            out::json(&with_lab(&lab, &record, body));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sync(target: &Target, format: OutputFormat) -> Result<ExitCode, CliError> {
    let (lab, record, net, list) = loaded(target)?;
    let started = Instant::now();
    let (added, removed) = run::sync(&lab, &net, &list, &mut out::progress()).map_err(CliError::Message)?;
    let seconds = started.elapsed().as_secs_f64();
    let names = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(", ") };
    match format {
        OutputFormat::Text => out::print(&format!(
            "lab in sync with {} after {seconds:.1} s: added {}, removed {}\n",
            record.file.display(),
            names(&added),
            names(&removed)
        )),
        OutputFormat::Json => {
            out::json(&with_lab(&lab, &record, json!({ "seconds": seconds, "added": added, "removed": removed })))
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn restore(target: &Target, v: &Victim, format: OutputFormat) -> Result<ExitCode, CliError> {
    let (lab, record, net, _) = loaded(target)?;
    let started = Instant::now();
    let node = record.nodes.node(v.name).is_some();
    let (kind, ready, detail) = if node {
        noderun::restore(&lab, v.name).map_err(CliError::Message)?;
        out::say(&format!("node {} restored (links up, applied again, agent started)", v.name));
        // The peers that initiate retry on IKE's retransmission backoff: after a long outage
        // the next try may be a minute away. Without --wait, say how far it got instead of failing.
        let timeout = if v.wait { wait::RESTORE_TIMEOUT } else { RESTORE_SA_WAIT };
        let missing = wait::restored_node(&lab, &net, v.name, started, timeout);
        let detail = if missing.is_empty() {
            "its SAs are up".to_string()
        } else {
            format!(
                "no child SA after {} s with {}; its peers will retry (see `meshwork lab status`)",
                timeout.as_secs(),
                missing.join(", ")
            )
        };
        ("node", missing.is_empty(), detail)
    } else {
        run::restore(&lab, v.name).map_err(CliError::Message)?;
        out::say(&format!("controller {} restored (applied again, agent started)", v.name));
        if v.wait {
            wait::restored_controller(&lab, &net, started).map_err(CliError::Message)?;
            ("controller", true, "every controller hears its peers; every client is connected and routed".into())
        } else {
            ("controller", false, "not waited for (--wait waits until the lab is whole again)".to_string())
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    match format {
        OutputFormat::Text => out::print(&format!("{kind} {} restored after {seconds:.1} s; {detail}\n", v.name)),
        OutputFormat::Json => {
            let body = json!({ "restored": v.name, "kind": kind, "seconds": seconds, "waited": v.wait,
                "ready": ready, "detail": detail });
            out::json(&with_lab(&lab, &record, body));
        }
    }
    Ok(if v.wait && !ready { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn down(target: &Target, format: OutputFormat) -> Result<ExitCode, CliError> {
    let lab = find(target)?;
    let state = lab.state_dir().display().to_string();
    let was_up = run::is_up(&lab);
    let mut file = None;
    if was_up {
        let record = lab.load().map_err(CliError::Message)?;
        if let Some(given) = &target.file {
            let given = locate::absolute(given);
            if given != record.file {
                return Err(CliError::Message(locate::differs(lab.state_dir(), &record.file, &given)));
            }
        }
        file = Some(record.file);
        need_root()?;
    }
    let started = Instant::now();
    let problems = if was_up { run::down(&lab, &mut out::progress()) } else { Vec::new() };
    let seconds = started.elapsed().as_secs_f64();
    let line = match (&file, problems.is_empty()) {
        (None, _) => format!("lab down: no lab is up in {state}; nothing to do"),
        (Some(f), true) => format!("lab down in {seconds:.1} s: nothing left of the lab of {} in {state}", f.display()),
        (Some(_), false) => format!("lab down left {} in {state}", meshwork::plural::count(problems.len(), "problem")),
    };
    for p in &problems {
        out::say(&format!("error: {p}"));
    }
    match format {
        OutputFormat::Text => out::say(&line),
        OutputFormat::Json => out::json(&json!({ "state_dir": lab.state_dir(), "file": file, "was_up": was_up,
            "seconds": seconds, "problems": problems })),
    }
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        let n = meshwork::plural::count(problems.len(), "problem");
        Err(CliError::Message(format!("lab down left {n} in {state}; see above")))
    }
}
