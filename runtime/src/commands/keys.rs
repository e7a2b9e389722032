//! STUB — `meshwork keys init|sync|renew` (being written).
use std::path::Path;
use std::process::ExitCode;

use crate::input::CliError;

pub fn init(_file: &Path, _state: &Path) -> Result<ExitCode, CliError> {
    Err(CliError::Message("keys init: not implemented yet".into()))
}
pub fn sync(_file: &Path, _state: &Path) -> Result<ExitCode, CliError> {
    Err(CliError::Message("keys sync: not implemented yet".into()))
}
pub fn renew(_file: &Path, _state: &Path, _within_days: u32) -> Result<ExitCode, CliError> {
    Err(CliError::Message("keys renew: not implemented yet".into()))
}
