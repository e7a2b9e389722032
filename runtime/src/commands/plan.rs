//! `meshwork plan FILE --controller NAME|--node NAME`: what apply would change on this host,
//! drift first.

use std::path::Path;
use std::process::ExitCode;

use meshwork::host::planfile::{self, PlanFile};
use meshwork::host::render::{self, Context};
use meshwork::host::session;

use super::host::{HostArgs, desired_from_file, io_error};
use crate::OutputFormat;
use crate::input::CliError;

pub fn run(
    file: &Path,
    host: &HostArgs,
    out: Option<&Path>,
    detailed_exitcode: bool,
    format: OutputFormat,
) -> Result<ExitCode, CliError> {
    let rt = host.enter()?;
    let (source, desired) = desired_from_file(file, host)?;
    let layout = host.layout();
    let refreshed = rt
        .block_on(session::refresh(&layout, &host.host(), Some(&desired)))
        .map_err(io_error("cannot read the host's state"))?;
    let plan = &refreshed.plan;
    let cx = Context { desired: Some(&desired), observed: &refreshed.observed, applied: refreshed.applied.as_ref() };
    match format {
        OutputFormat::Text => print!("{}", render::text(plan, &cx)),
        OutputFormat::Json => println!("{}", render::json(plan, &cx)),
    }
    if let Some(out) = out {
        let saved = PlanFile {
            format: planfile::FORMAT.into(),
            host: host.host(),
            topology_file: source.name.clone(),
            source: source.text.to_string(),
            lock: meshwork::lockfile::read(file, false)
                .map_err(io_error("cannot read the lock file"))?
                .file
                .map(|f| f.text.to_string()),
            checksum: Some(desired.checksum.clone()),
            live: refreshed.observed.fingerprint(),
            summary: plan.summary.clone(),
        };
        saved.save(out).map_err(io_error(&format!("cannot write {}", out.display())))?;
        if format == OutputFormat::Text {
            println!(
                "\nSaved the plan to {}; `meshwork apply {}` performs exactly these actions.",
                out.display(),
                out.display()
            );
        }
    }
    Ok(if detailed_exitcode && !plan.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
