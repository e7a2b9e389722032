//! `meshwork check`: every problem in every file, for people or (`--format json`) programs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use meshwork_compiler::artifacts::BuildOptions;
use meshwork_compiler::diagnostic::{JsonDiagnostic, Severity};
use serde::Serialize;

use crate::OutputFormat;
use crate::input::{self, CliError};

#[derive(Serialize)]
struct JsonReport {
    files: Vec<JsonFile>,
    errors: usize,
    warnings: usize,
}

#[derive(Serialize)]
struct JsonFile {
    file: String,
    checksum: Option<String>,
    diagnostics: Vec<JsonDiagnostic>,
}

pub fn run(files: &[PathBuf], format: OutputFormat, deny_warnings: bool, state: &Path) -> Result<ExitCode, CliError> {
    let options = BuildOptions { ca_fingerprint: input::ca_fingerprint(state)? };
    let mut report = JsonReport { files: vec![], errors: 0, warnings: 0 };
    for path in files {
        let analysis = input::load(path)?;
        let errors = analysis.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
        let warnings = analysis.diagnostics.len() - errors;
        report.errors += errors;
        report.warnings += warnings;
        let checksum = analysis.network.as_ref().map(|net| meshwork_compiler::artifacts::checksum(net, &options));
        match format {
            OutputFormat::Text => {
                input::print_diagnostics(&analysis.file, &analysis.diagnostics);
                let verdict = if errors > 0 { "invalid" } else { "valid" };
                let mut line = format!("{}: {verdict}, {errors} error(s), {warnings} warning(s)", analysis.file.name);
                if let Some(sum) = &checksum {
                    line += &format!(", checksum {}", &sum[..16.min(sum.len())]);
                }
                println!("{line}");
            }
            OutputFormat::Json => report.files.push(JsonFile {
                file: analysis.file.name.clone(),
                checksum,
                diagnostics: analysis.diagnostics.iter().map(|d| JsonDiagnostic::new(&analysis.file, d)).collect(),
            }),
        }
    }
    if format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| CliError::Message(e.to_string()))?);
    }
    let failed = report.errors > 0 || (deny_warnings && report.warnings > 0);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
