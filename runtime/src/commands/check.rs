//! `meshwork check`: every problem in every file, for people or (`--format json`) programs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use meshwork_compiler::artifacts::BuildOptions;
use meshwork_compiler::diagnostic::{JsonDiagnostic, Severity};
use serde::Serialize;

use crate::input::{self, CliError};
use meshwork::plural;
use meshwork::report::{Notice, Report};

#[derive(Serialize)]
struct JsonReport {
    files: Vec<JsonFile>,
    /// Certificates (and the CRL) of the keyset that expire within 30 days or have expired.
    keys: Vec<meshwork::keys::ExpiryNotice>,
    errors: usize,
    warnings: usize,
}

#[derive(Serialize)]
struct JsonFile {
    file: String,
    checksum: Option<String>,
    diagnostics: Vec<JsonDiagnostic>,
    /// Why the file could not be read at all (then there are no diagnostics).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `check --format`: for people, for programs, for CI systems.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    /// Reports with the source and labels (stderr) and a verdict per file (stdout).
    #[default]
    Text,
    /// One JSON document: every file's diagnostics with start and end positions and labels.
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`) on stdout; the text report on stderr.
    Github,
    /// A SARIF 2.1.0 log on stdout (for code scanning); the text report on stderr.
    Sarif,
}

pub fn run(
    files: &[PathBuf],
    format: CheckFormat,
    deny_warnings: bool,
    locked: bool,
    state: &Path,
) -> Result<ExitCode, CliError> {
    let keyset = input::keyset(state)?;
    let options = BuildOptions { ca_fingerprint: keyset.as_ref().map(|k| k.ca_fingerprint()) };
    let mut report = JsonReport { files: vec![], keys: vec![], errors: 0, warnings: 0 };
    let mut notices = Vec::new();
    // Text goes where people look: stdout for `text`, stderr when stdout is for a machine.
    let verdicts_to_stderr = matches!(format, CheckFormat::Github | CheckFormat::Sarif);
    if let Some(keyset) = &keyset {
        report.keys = keyset.expiry(time::OffsetDateTime::now_utc());
        let expired = report.keys.iter().filter(|n| n.expired).count();
        report.errors += expired;
        report.warnings += report.keys.len() - expired;
        if format != CheckFormat::Json {
            print_expiry(&report.keys, &keyset.dir().display().to_string());
        }
        notices.extend(report.keys.iter().map(|n| Notice {
            severity: if n.expired { Severity::Error } else { Severity::Warning },
            title: "meshwork keyset".into(),
            message: format!("{n} (run `meshwork keys renew FILE`)"),
            file: None,
        }));
    }
    let mut analyses = Vec::new();
    for path in files {
        // A file that cannot be read is one error; the other files are still checked.
        let analysis = match input::load_locked(path, locked) {
            Ok(a) => a,
            Err(e) => {
                report.errors += 1;
                match format {
                    CheckFormat::Json => report.files.push(JsonFile {
                        file: path.display().to_string(),
                        checksum: None,
                        diagnostics: vec![],
                        error: Some(e.to_string()),
                    }),
                    _ => eprintln!("error: {e}"),
                }
                notices.push(Notice {
                    severity: Severity::Error,
                    title: "meshwork".into(),
                    message: e.to_string(),
                    file: Some(path.display().to_string()),
                });
                continue;
            }
        };
        let errors = analysis.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
        let warnings = analysis.diagnostics.len() - errors;
        report.errors += errors;
        report.warnings += warnings;
        let checksum = analysis.network.as_ref().map(|net| meshwork_compiler::artifacts::checksum(net, &options));
        if format == CheckFormat::Json {
            report.files.push(JsonFile {
                file: analysis.file.name.clone(),
                checksum,
                diagnostics: analysis.diagnostics.iter().map(|d| JsonDiagnostic::new(&analysis.file, d)).collect(),
                error: None,
            });
            continue;
        }
        input::print_diagnostics(&analysis.file, &analysis.diagnostics);
        let verdict = match (errors, warnings) {
            (0, 0) => "valid",
            (0, _) if deny_warnings => "invalid (warnings are denied)",
            (0, _) => "valid",
            _ => "invalid",
        };
        let mut line = format!(
            "{}: {verdict}, {}, {}",
            analysis.file.name,
            plural::count(errors, "error"),
            plural::count(warnings, "warning")
        );
        if let Some(sum) = &checksum {
            line += &format!(", checksum {}", &sum[..16.min(sum.len())]);
        }
        if verdicts_to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        analyses.push(analysis);
    }
    let machine = Report {
        files: analyses.iter().map(|a| (&a.file, a.diagnostics.as_slice())).collect(),
        notices,
        workspace: meshwork::report::workspace_from_env(),
    };
    match format {
        CheckFormat::Text => {}
        CheckFormat::Json => println!("{}", to_json(&report)?),
        CheckFormat::Github => print!("{}", meshwork::report::github::render(&machine)),
        CheckFormat::Sarif => println!("{}", to_json(&meshwork::report::sarif::log(&machine, None))?),
    }
    let failed = report.errors > 0 || (deny_warnings && report.warnings > 0);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn to_json(value: &impl Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(|e| CliError::Message(e.to_string()))
}

/// Expiry notices for people: the first few in full, then a count, since a topology's clients
/// often expire on the same day.
fn print_expiry(notices: &[meshwork::keys::ExpiryNotice], dir: &str) {
    const SHOWN: usize = 10;
    for n in notices.iter().take(SHOWN) {
        eprintln!("{}: {n}", n.severity());
    }
    if notices.len() > SHOWN {
        eprintln!("... and {} more", notices.len() - SHOWN);
    }
    if !notices.is_empty() {
        eprintln!("keyset {dir}: run `meshwork keys renew FILE` to re-issue what is due");
    }
}
