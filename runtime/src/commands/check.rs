//! `meshwork check`: every problem in every file, for people or (`--format json`) programs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use meshwork_compiler::artifacts::BuildOptions;
use meshwork_compiler::diagnostic::{JsonDiagnostic, Severity};
use serde::Serialize;

use crate::OutputFormat;
use crate::input::{self, CliError};
use meshwork::plural;

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

pub fn run(
    files: &[PathBuf],
    format: OutputFormat,
    deny_warnings: bool,
    locked: bool,
    state: &Path,
) -> Result<ExitCode, CliError> {
    let keyset = input::keyset(state)?;
    let options = BuildOptions { ca_fingerprint: keyset.as_ref().map(|k| k.ca_fingerprint()) };
    let mut report = JsonReport { files: vec![], keys: vec![], errors: 0, warnings: 0 };
    if let Some(keyset) = &keyset {
        report.keys = keyset.expiry(time::OffsetDateTime::now_utc());
        let expired = report.keys.iter().filter(|n| n.expired).count();
        report.errors += expired;
        report.warnings += report.keys.len() - expired;
        if format == OutputFormat::Text {
            print_expiry(&report.keys, &keyset.dir().display().to_string());
        }
    }
    for path in files {
        // A file that cannot be read is one error; the other files are still checked.
        let analysis = match input::load_locked(path, locked) {
            Ok(a) => a,
            Err(e) => {
                report.errors += 1;
                match format {
                    OutputFormat::Text => eprintln!("error: {e}"),
                    OutputFormat::Json => report.files.push(JsonFile {
                        file: path.display().to_string(),
                        checksum: None,
                        diagnostics: vec![],
                        error: Some(e.to_string()),
                    }),
                }
                continue;
            }
        };
        let errors = analysis.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
        let warnings = analysis.diagnostics.len() - errors;
        report.errors += errors;
        report.warnings += warnings;
        let checksum = analysis.network.as_ref().map(|net| meshwork_compiler::artifacts::checksum(net, &options));
        match format {
            OutputFormat::Text => {
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
                println!("{line}");
            }
            OutputFormat::Json => report.files.push(JsonFile {
                file: analysis.file.name.clone(),
                checksum,
                diagnostics: analysis.diagnostics.iter().map(|d| JsonDiagnostic::new(&analysis.file, d)).collect(),
                error: None,
            }),
        }
    }
    if format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| CliError::Message(e.to_string()))?);
    }
    let failed = report.errors > 0 || (deny_warnings && report.warnings > 0);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
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
