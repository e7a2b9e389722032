//! STUB — `meshwork clientpack` (being written).
use std::path::Path;
use std::process::ExitCode;

use crate::input::CliError;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PackFormat {
    #[default]
    Ovpn,
    #[value(name = "tar.gz")]
    TarGz,
}

pub fn run(
    _file: &Path,
    _name: Option<&str>,
    _all: bool,
    _out: &Path,
    _remote_random: bool,
    _format: PackFormat,
    _state: &Path,
) -> Result<ExitCode, CliError> {
    Err(CliError::Message("clientpack: not implemented yet".into()))
}
