//! `meshwork graph FILE`: the peering mesh as Graphviz DOT on stdout.

use std::path::Path;
use std::process::ExitCode;

use crate::input::{self, CliError};

pub fn run(file: &Path) -> Result<ExitCode, CliError> {
    let (_analysis, net) = input::network(file)?;
    print!("{}", meshwork_compiler::graph::dot(&net));
    Ok(ExitCode::SUCCESS)
}
