//! `meshwork diff OLD NEW`: what changes on each controller, for a pull-request review.

use std::path::Path;
use std::process::ExitCode;

use meshwork::report::{Report, github, markdown, sarif};
use meshwork_compiler::Analysis;

use crate::input::{self, CliError};

/// `diff --format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    /// `+`/`~`/`-` per object, per controller.
    #[default]
    Text,
    /// The changes as one JSON document.
    Json,
    /// GitHub Actions workflow commands: the files' diagnostics as annotations, the changes as
    /// one notice on NEW.
    Github,
    /// A SARIF 2.1.0 log of both files' diagnostics; the changes in the run's properties.
    Sarif,
    /// A pull-request comment (GitHub-flavoured Markdown).
    Markdown,
}

pub fn run(old: &Path, new: &Path, format: DiffFormat, detailed_exitcode: bool) -> Result<ExitCode, CliError> {
    let (a, b) = (input::load_locked(old, false)?, input::load_locked(new, false)?);
    // Diagnostics for people on stderr, whatever stdout carries.
    input::print_diagnostics(&a.file, &a.diagnostics);
    input::print_diagnostics(&b.file, &b.diagnostics);
    let diff = match (&a.network, &b.network) {
        (Some(x), Some(y)) => Some(meshwork_compiler::diff::diff(x, y)),
        _ => None,
    };
    let report = Report {
        files: vec![(&a.file, a.diagnostics.as_slice()), (&b.file, b.diagnostics.as_slice())],
        notices: vec![],
        workspace: meshwork::report::workspace_from_env(),
    };
    match (format, &diff) {
        (DiffFormat::Text, Some(d)) => print!("{}", d.render()),
        (DiffFormat::Json, Some(d)) => println!("{}", to_json(d)?),
        (DiffFormat::Text | DiffFormat::Json, None) => {}
        (DiffFormat::Github, _) => {
            print!("{}", github::render(&report));
            if let Some(d) = &diff {
                let path = report.path(&b.file.name);
                let s = &d.summary;
                let title = match d.is_empty() {
                    true => "meshwork diff: no changes".to_string(),
                    false => format!("meshwork diff: {} to add, {} to change, {} to remove", s.add, s.change, s.remove),
                };
                println!("{}", github::workflow_command("notice", &[("file", &path), ("title", &title)], &d.render()));
            }
        }
        (DiffFormat::Sarif, _) => {
            let properties = diff.as_ref().map(|d| {
                let mut bag = serde_sarif::sarif::PropertyBag::builder().build();
                bag.additional_properties.insert("meshwork/diff".into(), serde_json::to_value(d).unwrap_or_default());
                bag
            });
            println!("{}", to_json(&sarif::log(&report, properties))?);
        }
        (DiffFormat::Markdown, _) => {
            print!("{}", markdown::diff_comment(diff.as_ref(), &a.file.name, &b.file, &b.diagnostics));
        }
    }
    let Some(diff) = diff else {
        return Err(failed(if a.network.is_none() { &a } else { &b }));
    };
    Ok(if detailed_exitcode && !diff.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

fn failed(analysis: &Analysis) -> CliError {
    let errors = analysis.diagnostics.iter().filter(|d| d.is_error()).count();
    CliError::Message(format!(
        "{} has {}; fix them first (meshwork check)",
        analysis.file.name,
        meshwork::plural::count(errors, "error")
    ))
}

fn to_json(value: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(|e| CliError::Message(e.to_string()))
}
