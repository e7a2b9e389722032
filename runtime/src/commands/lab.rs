//! `meshwork lab up|status|test|kill|restore|down`: the whole topology in network namespaces
//! on this machine (see `meshwork::lab`).

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use meshwork::lab::probe::{self, Flow, Outcome, Proto};
use meshwork::lab::{self, Lab, Record, drill, expects, noderun, report, run, vnics};
use meshwork_compiler::model::{Expect, Proto as FileProto};
use meshwork_compiler::network::Network;

use crate::OutputFormat;
use crate::input::{self, CliError};

/// How long `lab kill --wait` waits for the killed controller's clients to be back.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(90);

fn lab(state: &Path) -> Result<Lab, CliError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(CliError::Message("meshwork lab needs root: it makes network namespaces".into()));
    }
    let exe =
        std::env::current_exe().map_err(|e| CliError::Message(format!("cannot find the meshwork binary: {e}")))?;
    Ok(Lab::new(state, exe))
}

/// The network and the expects of a file (diagnostics printed on failure).
fn compile(file: &Path) -> Result<(Network, Vec<Expect>), CliError> {
    let (analysis, net) = input::network(file)?;
    let expects = analysis.topology.as_ref().map(|t| t.expects.clone()).unwrap_or_default();
    Ok((net, expects))
}

fn progress() -> impl FnMut(&str) {
    |line: &str| eprintln!("{line}")
}

pub fn up(file: &Path, state: &Path) -> Result<ExitCode, CliError> {
    let lab = lab(state)?;
    let (net, list) = compile(file)?;
    let started = Instant::now();
    let record = run::up(&lab, file, &net, &list, &mut progress()).map_err(CliError::Message)?;
    eprintln!("lab up in {:.1} s", started.elapsed().as_secs_f64());
    print!("{}", report::status_text(&report::status(&lab, &record, &net)));
    Ok(ExitCode::SUCCESS)
}

fn loaded(state: &Path) -> Result<(Lab, Record, Network, Vec<Expect>), CliError> {
    let lab = lab(state)?;
    let record = lab.load().map_err(CliError::Message)?;
    let (net, list) = compile(&record.file)?;
    Ok((lab, record, net, list))
}

pub fn status(state: &Path, format: OutputFormat) -> Result<ExitCode, CliError> {
    let (lab, record, net, _) = loaded(state)?;
    let s = report::status(&lab, &record, &net);
    match format {
        OutputFormat::Text => print!("{}", report::status_text(&s)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default()),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn test(state: &Path, format: OutputFormat) -> Result<ExitCode, CliError> {
    let (lab, record, net, list) = loaded(state)?;
    let has_nodes = !record.nodes.is_empty();
    if list.is_empty() && !has_nodes {
        eprintln!("{} has no `expect`: nothing to test", record.file.display());
        return Ok(ExitCode::SUCCESS);
    }
    let rows = expects::run(&lab, &record, &net, &list);
    let nodes = has_nodes.then(|| vnics::checks(&record, &net));
    match format {
        OutputFormat::Text => {
            if !rows.is_empty() {
                print!("{}", report::test_text(&rows));
            }
            if let Some(c) = &nodes {
                print!("{}", report::node_checks_text(c));
            }
        }
        OutputFormat::Json => {
            let out = serde_json::json!({ "expects": rows, "nodes": nodes });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default())
        }
    }
    let holds = rows.iter().all(expects::Row::holds) && nodes.as_ref().is_none_or(vnics::NodeChecks::holds);
    Ok(if holds { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// How long `lab restore NODE` waits for the node's SAs.
const RESTORE_SA_WAIT: Duration = Duration::from_secs(20);

/// How long the fault drill waits for a node's agent to bring its tunnel back.
const DRILL_TIMEOUT: Duration = Duration::from_secs(90);

/// `lab kill NODE [--ipsec] [--wait]`.
fn kill_node(
    lab: &Lab,
    net: &Network,
    node: &str,
    ipsec: bool,
    wait: bool,
    format: OutputFormat,
) -> Result<ExitCode, CliError> {
    let fault = if ipsec { noderun::Fault::Ipsec } else { noderun::Fault::Node };
    if !wait {
        let was = noderun::kill(lab, node, fault).map_err(CliError::Message)?;
        let what = if ipsec { "charon stopped" } else { "agent and charon killed, links cut" };
        eprintln!("node {node}: {what}{}", if was { "" } else { " (charon was not running)" });
        return Ok(ExitCode::SUCCESS);
    }
    let report = drill::run(lab, net, node, fault, DRILL_TIMEOUT).map_err(CliError::Message)?;
    match format {
        OutputFormat::Text => print!("{}", drill::text(&report)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default()),
    }
    Ok(if report.holds { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub fn kill(
    state: &Path,
    controller: &str,
    ipsec: bool,
    wait: bool,
    format: OutputFormat,
) -> Result<ExitCode, CliError> {
    let (lab, record, net, _) = loaded(state)?;
    if record.nodes.node(controller).is_some() {
        return kill_node(&lab, &net, controller, ipsec, wait, format);
    }
    if ipsec {
        return Err(CliError::Message(format!("--ipsec takes a node, and {controller} is not one of the lab's nodes")));
    }
    let killed_at = Instant::now();
    let held = run::kill(&lab, controller).map_err(CliError::Message)?;
    eprintln!(
        "controller {controller} killed; it held: {}",
        if held.is_empty() { "-".into() } else { held.join(", ") }
    );
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    let back = wait_for_failover(&lab, &net, &held, killed_at)?;
    let seconds = killed_at.elapsed().as_secs_f64();
    match format {
        OutputFormat::Text => {
            for (client, on) in &back {
                println!("{client}: back on {on}");
            }
            println!("failover: {} client(s) reachable again after {seconds:.1} s", back.len());
        }
        OutputFormat::Json => {
            let moved: serde_json::Map<String, serde_json::Value> =
                back.iter().map(|(c, on)| (c.clone(), serde_json::Value::from(on.clone()))).collect();
            println!("{}", serde_json::json!({ "controller": controller, "seconds": seconds, "clients": moved }));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits until every client in `held` sits on a live controller, every live controller routes
/// to it, and every live controller's namespace gets an ICMP echo answer from it (where the
/// firewall allows that echo). Returns where each one landed.
fn wait_for_failover(
    lab: &Lab,
    net: &Network,
    held: &[String],
    since: Instant,
) -> Result<Vec<(String, String)>, CliError> {
    let mut shown = None;
    loop {
        let record = lab.load().map_err(CliError::Message)?;
        let located = lab::locations(lab, &record);
        let mut back = Vec::new();
        for client in held {
            let Some((on, unit)) = located.get(client) else { break };
            if !lab::routed_everywhere(lab, &record, client) || !answers_everywhere(&record, net, client) {
                break;
            }
            back.push((client.clone(), format!("{on}/{unit}")));
        }
        if back.len() != shown.unwrap_or(usize::MAX) && std::io::stderr().is_terminal() {
            eprintln!("[{:>5.1}s] {}/{} back", since.elapsed().as_secs_f64(), back.len(), held.len());
        }
        shown = Some(back.len());
        if back.len() == held.len() {
            return Ok(back);
        }
        if since.elapsed() > FAILOVER_TIMEOUT {
            return Err(CliError::Message(format!(
                "after {} s, not every client is back: {}",
                FAILOVER_TIMEOUT.as_secs(),
                held.iter().filter(|c| !back.iter().any(|(b, _)| b == *c)).cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// ICMP from every live controller's namespace (its overlay address) reaches `client`, unless
/// the firewall would drop that echo anyway.
fn answers_everywhere(record: &Record, net: &Network, client: &str) -> bool {
    let Some(ip) = net.clients.iter().find(|c| c.name == client).map(|c| c.ip) else { return false };
    net.controllers.iter().filter(|c| !record.killed.contains(&c.name)).all(|c| {
        let allowed = net.firewall.evaluate(c.overlay_ip, ip, Some(FileProto::Icmp), None).action
            == meshwork_compiler::model::Action::Accept;
        let Some(host) = record.layout.controller(&c.name) else { return false };
        let flow = Flow {
            netns: host.netns.clone(),
            source: Some(c.overlay_ip),
            destination: ip,
            proto: Proto::Icmp,
            port: None,
        };
        !allowed || probe::probe(&flow, Duration::from_millis(500)).is_ok_and(|o| o == Outcome::Reached)
    })
}

pub fn sync(state: &Path) -> Result<ExitCode, CliError> {
    let (lab, _, net, list) = loaded(state)?;
    let started = Instant::now();
    let (added, removed) = run::sync(&lab, &net, &list, &mut progress()).map_err(CliError::Message)?;
    let names = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(", ") };
    println!(
        "lab in sync with the file after {:.1} s: added {}, removed {}",
        started.elapsed().as_secs_f64(),
        names(&added),
        names(&removed)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn restore(state: &Path, controller: &str) -> Result<ExitCode, CliError> {
    let lab = lab(state)?;
    let record = lab.load().map_err(CliError::Message)?;
    if record.nodes.node(controller).is_some() {
        let started = Instant::now();
        noderun::restore(&lab, controller).map_err(CliError::Message)?;
        let net = compile(&record.file)?.0;
        let record = lab.load().map_err(CliError::Message)?;
        // The peers that initiate retry on IKE's retransmission backoff: after a long outage
        // the next try may be a minute away. Say how far it got instead of failing.
        let waited = noderun::wait_for_sas(&lab, &record, &net, &[controller], RESTORE_SA_WAIT);
        eprintln!(
            "node {controller} restored (links up, applied again, agent started) in {:.1} s; {}",
            started.elapsed().as_secs_f64(),
            match waited {
                Ok(()) => "its SAs are up".to_string(),
                Err(e) => format!("{e}; its peers will retry (see `meshwork lab status`)"),
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    run::restore(&lab, controller).map_err(CliError::Message)?;
    eprintln!("controller {controller} restored (applied again, agent started)");
    Ok(ExitCode::SUCCESS)
}

pub fn down(state: &Path) -> Result<ExitCode, CliError> {
    let lab = lab(state)?;
    let problems = run::down(&lab, &mut progress());
    if problems.is_empty() {
        eprintln!("lab down: nothing left");
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        Err(CliError::Message(format!("lab down left {} problem(s); see above", problems.len())))
    }
}
