//! `meshwork apply FILE|PLANFILE --controller NAME|--node NAME` and `meshwork destroy`:
//! converge the host (or remove everything meshwork owns there), under the host's lock.
//!
//! Both refuse while the controller's agent runs (see [`refuse_if_agent_runs`]).
//!
//! `--try SECONDS` keeps the change only if it is confirmed in time (Enter on the terminal, or
//! `meshwork apply --confirm` from elsewhere); otherwise the previous topology is applied
//! again, or everything is removed if there was none, as `netplan try` does.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use meshwork::host::desired::Desired;
use meshwork::host::lock::Lock;
use meshwork::host::planfile::PlanFile;
use meshwork::host::render::{self, Context};
use meshwork::host::session;
use meshwork_compiler::source::SourceFile;

use serde::Serialize;

use super::host::{HostArgs, desired_from_file, desired_from_source, io_error};
use crate::OutputFormat;
use crate::input::CliError;

/// The verb of the apply that undoes an unconfirmed `apply --try`.
const ROLLBACK: &str = "apply (rollback)";

pub struct Options {
    pub auto_approve: bool,
    pub try_seconds: Option<u64>,
    /// Json: no text, no question; one object at the end ([`JsonReport`]).
    pub format: OutputFormat,
}

/// What `apply|destroy --format json` prints: the plan as `plan --format json` shows it, every
/// action done, and how it ended. Printed on failure too (with `error`), so a program sees
/// what was done before the failure.
#[derive(Serialize)]
struct JsonReport {
    verb: &'static str,
    plan: serde_json::Value,
    /// In the order done.
    done: Vec<JsonAction>,
    /// `applied`, `unchanged` (nothing to do) or `failed`.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct JsonAction {
    action: meshwork::host::plan::Action,
    kind: meshwork::host::resource::Kind,
    name: String,
}

/// What to apply: a topology (None: destroy) and, from a saved plan, what it was made against.
struct Target {
    source: Option<SourceFile>,
    /// The topology's lock file, kept with the applied source for a rollback.
    lock: Option<SourceFile>,
    desired: Option<Desired>,
    saved: Option<PlanFile>,
}

pub fn apply(target: &Path, host: &HostArgs, options: &Options) -> Result<ExitCode, CliError> {
    refuse_if_agent_runs(host, "apply")?;
    let rt = host.enter()?;
    let saved = PlanFile::load(target).map_err(io_error(&format!("cannot read {}", target.display())))?;
    let t = match saved {
        Some(plan) => {
            if plan.host != host.host() {
                return Err(CliError::Message(format!(
                    "{} is a plan for {}, not {}",
                    target.display(),
                    plan.host,
                    host.host()
                )));
            }
            let source = SourceFile::new(plan.topology_file.clone(), plan.source.clone());
            let lock_name = meshwork::lockfile::path_for(Path::new(&plan.topology_file)).display().to_string();
            let lock = plan.lock.clone().map(|text| SourceFile::new(lock_name, text));
            let desired = desired_from_source(source.clone(), lock.clone(), host)?;
            if plan.checksum.as_deref() != Some(desired.checksum.as_str()) {
                return Err(CliError::Message(format!(
                    "the saved plan {} was made for topology checksum {}, but its topology now compiles to {} \
                     (the keyset changed?); make a new plan",
                    target.display(),
                    plan.checksum.as_deref().unwrap_or("none"),
                    desired.checksum
                )));
            }
            Target { source: Some(source), lock, desired: Some(desired), saved: Some(plan) }
        }
        None => {
            let (source, desired) = desired_from_file(target, host)?;
            let lock = meshwork::lockfile::read(target, false).map_err(io_error("cannot read the lock file"))?.file;
            Target { source: Some(source), lock, desired: Some(desired), saved: None }
        }
    };
    converge(&rt, host, t, options, "apply")
}

pub fn destroy(host: &HostArgs, auto_approve: bool, format: OutputFormat) -> Result<ExitCode, CliError> {
    refuse_if_agent_runs(host, "destroy")?;
    let rt = host.enter()?;
    let options = Options { auto_approve, try_seconds: None, format };
    converge(&rt, host, Target { source: None, lock: None, desired: None, saved: None }, &options, "destroy")
}

/// A running agent keeps the controller as *its* topology file says: it would undo an apply
/// of another file (or of a plan) on its next pass, and put back what destroy removes. So
/// both refuse, naming the agent, rather than fight it; the operator edits the agent's file
/// (it reloads on its own) or stops the agent first. Checked again under the lock, because an
/// agent may have started while the plan was read.
fn refuse_if_agent_runs(host: &HostArgs, verb: &str) -> Result<(), CliError> {
    match meshwork::agent::running(&host.layout()) {
        None => Ok(()),
        Some(pid) => Err(CliError::Message(format!(
            "an agent (pid {pid}) keeps {} as its topology file says and would undo what {verb} \
             changes; edit the agent's file instead (it reloads by itself), or stop the agent first \
             (SIGTERM leaves the dataplane running)",
            host.host()
        ))),
    }
}

/// `apply --confirm`: keeps what a running `apply --try` applied.
pub fn confirm(host: &HostArgs) -> Result<ExitCode, CliError> {
    let path = host.layout().confirm();
    std::fs::write(&path, b"confirmed\n").map_err(io_error(&format!("cannot write {}", path.display())))?;
    println!("Confirmed; the pending `apply --try` on {} keeps its change.", host.host());
    Ok(ExitCode::SUCCESS)
}

fn converge(
    rt: &tokio::runtime::Runtime,
    host: &HostArgs,
    t: Target,
    options: &Options,
    verb: &str,
) -> Result<ExitCode, CliError> {
    let layout = host.layout();
    let _lock = Lock::acquire(&layout.lock(), &host.host(), verb).map_err(|e| CliError::Message(e.to_string()))?;
    refuse_if_agent_runs(host, verb)?;
    let refreshed = rt
        .block_on(session::refresh(&layout, &host.host(), t.desired.as_ref()))
        .map_err(io_error("cannot read the host's state"))?;
    if let Some(saved) = &t.saved
        && saved.live != refreshed.observed.fingerprint()
    {
        return Err(CliError::Message(
            "the host changed since this plan was made; it would no longer do what it showed. \
             Run `meshwork plan` again."
                .into(),
        ));
    }
    let cx =
        Context { desired: t.desired.as_ref(), observed: &refreshed.observed, applied: refreshed.applied.as_ref() };
    let json = options.format == OutputFormat::Json;
    if json {
        if !refreshed.plan.is_empty() && t.saved.is_none() && !options.auto_approve {
            return Err(CliError::Message(format!(
                "{verb} --format json cannot ask for confirmation: pass --auto-approve, or apply a saved plan"
            )));
        }
    } else {
        print!("{}", render::text(&refreshed.plan, &cx));
    }
    let mut report = JsonReport {
        verb: if t.desired.is_some() { "apply" } else { "destroy" },
        plan: render::json(&refreshed.plan, &cx),
        done: Vec::new(),
        outcome: "unchanged",
        error: None,
    };
    let previous_source = std::fs::read_to_string(layout.applied_source()).ok();
    let applied_lock = meshwork::lockfile::path_for(&layout.applied_source());
    let previous_lock = std::fs::read_to_string(&applied_lock).ok();
    // A confirmation counts only for this apply: one may come while it is still applying.
    if options.try_seconds.is_some() {
        let _ = std::fs::remove_file(layout.confirm());
    }
    if refreshed.plan.is_empty() && refreshed.applied.is_some() {
        if json {
            print_json(&report)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !refreshed.plan.is_empty() && t.saved.is_none() && !options.auto_approve {
        ask(&host.host(), verb)?;
    }
    let done = &mut report.done;
    let mut on_done = |c: &meshwork::host::plan::Change| {
        if json {
            done.push(JsonAction { action: c.action, kind: c.id.kind, name: c.id.name.clone() });
        } else {
            println!("  {} {}: done", c.action.symbol(), c.id);
        }
    };
    if !refreshed.plan.is_empty() && !json {
        println!();
    }
    let result = rt.block_on(session::apply(
        &layout,
        &host.host(),
        t.desired.as_ref(),
        &refreshed,
        &refreshed.plan,
        &mut on_done,
    ));
    if let Err(e) = result {
        let message = format!(
            "{e}\nThe host is partly changed; what was done is recorded, and `meshwork plan` shows what is left."
        );
        if json {
            report.outcome = "failed";
            report.error = Some(message.clone());
            print_json(&report)?;
        }
        return Err(CliError::Message(message));
    }
    match &t.source {
        Some(source) => {
            std::fs::write(layout.applied_source(), source.text.as_bytes())
                .map_err(io_error("cannot record the applied topology"))?;
            match &t.lock {
                Some(lock) => std::fs::write(&applied_lock, lock.text.as_bytes())
                    .map_err(io_error("cannot record the applied lock file"))?,
                None => {
                    let _ = std::fs::remove_file(&applied_lock);
                }
            }
        }
        None => {
            let _ = std::fs::remove_dir_all(layout.work());
            let _ = std::fs::remove_dir_all(layout.logs());
        }
    }
    let s = &refreshed.plan.summary;
    let done = match (verb, t.desired.is_some()) {
        (ROLLBACK, _) => "Rollback",
        (_, true) => "Apply",
        (_, false) => "Destroy",
    };
    if json {
        report.outcome = "applied";
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("\n{done} complete! Resources: {} added, {} changed, {} destroyed.", s.add, s.change, s.destroy);
    if let Some(seconds) = options.try_seconds {
        if !wait_for_confirmation(host, seconds)? {
            println!("\nNot confirmed within {seconds} s: rolling back.");
            let previous = match previous_source {
                Some(text) => {
                    let source = SourceFile::new(layout.applied_source().display().to_string(), text);
                    let lock = previous_lock.map(|text| SourceFile::new(applied_lock.display().to_string(), text));
                    Target {
                        desired: Some(desired_from_source(source.clone(), lock.clone(), host)?),
                        source: Some(source),
                        lock,
                        saved: None,
                    }
                }
                None => Target { source: None, lock: None, desired: None, saved: None },
            };
            drop(_lock);
            let back = Options { auto_approve: true, try_seconds: None, format: OutputFormat::Text };
            let had_previous = previous.source.is_some();
            converge(rt, host, previous, &back, ROLLBACK)?;
            println!("{}", super::countdown::rolled_back(had_previous));
            return Ok(ExitCode::from(1));
        }
        println!("Confirmed: keeping the change.");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(report: &JsonReport) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(report).map_err(|e| CliError::Message(e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn ask(host: &meshwork::host::identity::HostId, verb: &str) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Message(format!(
            "refusing to {verb} without confirmation: stdin is not a terminal (pass --auto-approve, or apply a saved plan)"
        )));
    }
    print!("\nDo you want to {verb} these actions on {host}? Only 'yes' will be accepted: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(io_error("cannot read the answer"))?;
    if answer.trim() != "yes" {
        return Err(CliError::Message(format!("{verb} cancelled")));
    }
    Ok(())
}

/// Enter on a terminal, or the confirm file written by `apply --confirm`.
fn wait_for_confirmation(host: &HostArgs, seconds: u64) -> Result<bool, CliError> {
    let path = host.layout().confirm();
    println!(
        "\nKeep this change? Press Enter, or run `meshwork apply --confirm {}`, within {seconds} s.",
        host.host().as_flag()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    if std::io::stdin().is_terminal() {
        std::thread::spawn(move || {
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line).is_ok() {
                let _ = tx.send(());
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut countdown = super::countdown::Countdown::new(std::io::stdout().is_terminal());
    while Instant::now() < deadline {
        if path.exists() || rx.try_recv().is_ok() {
            countdown.end();
            let _ = std::fs::remove_file(&path);
            return Ok(true);
        }
        countdown.show(deadline.saturating_duration_since(Instant::now()));
        std::thread::sleep(Duration::from_millis(100));
    }
    countdown.end();
    Ok(false)
}
