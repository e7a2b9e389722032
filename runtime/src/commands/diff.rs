//! `meshwork diff OLD NEW`: what changes on each controller, for a pull-request review.

use std::path::Path;
use std::process::ExitCode;

use crate::OutputFormat;
use crate::input::{self, CliError};

pub fn run(old: &Path, new: &Path, format: OutputFormat, detailed_exitcode: bool) -> Result<ExitCode, CliError> {
    let (_a, old_net) = input::network(old)?;
    let (_b, new_net) = input::network(new)?;
    let diff = meshwork_compiler::diff::diff(&old_net, &new_net);
    match format {
        OutputFormat::Text => print!("{}", diff.render()),
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&diff).map_err(|e| CliError::Message(e.to_string()))?)
        }
    }
    Ok(if detailed_exitcode && !diff.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
