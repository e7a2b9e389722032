//! STUB — `meshwork keys export|import` (being written).
use std::path::Path;
use std::process::ExitCode;

use crate::input::CliError;

pub fn export(_state: &Path, _token_file: &Path, _out: &Path) -> Result<ExitCode, CliError> {
    Err(CliError::Message("keys export: not implemented yet".into()))
}
pub fn import(_bundle: &Path, _token_file: &Path, _state: &Path) -> Result<ExitCode, CliError> {
    Err(CliError::Message("keys import: not implemented yet".into()))
}
