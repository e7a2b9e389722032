//! `meshwork lock FILE`: write the topology's lock file (`NAME.lock` beside it), saying what
//! changes in it. `build` writes it the same way.

use std::path::Path;
use std::process::ExitCode;

use meshwork::plural;
use meshwork_compiler::Analysis;

use crate::input::{self, CliError};

pub fn run(file: &Path) -> Result<ExitCode, CliError> {
    let (analysis, _net) = input::network(file)?;
    write(file, &analysis, false)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the lock an analysis resolved to, listing each entry added, moved or removed (on
/// stderr when stdout is for a program).
pub fn write(file: &Path, analysis: &Analysis, stdout_is_json: bool) -> Result<(), CliError> {
    let say = |line: String| match stdout_is_json {
        true => eprintln!("{line}"),
        false => println!("{line}"),
    };
    let Some(lock) = &analysis.lock else { return Ok(()) };
    let path = meshwork::lockfile::path_for(file);
    let changes = analysis.lock_changes();
    let written = meshwork::lockfile::write(file, lock).map_err(|e| CliError::Message(e.to_string()))?;
    if !written {
        say(format!("{} is up to date ({}).", path.display(), plural::count(lock.len(), "locked object")));
        return Ok(());
    }
    let count = |kind| changes.iter().filter(|c| c.kind == kind).count();
    use meshwork_compiler::lock::ChangeKind::{Add, Move, Remove};
    say(format!("Wrote {}: {} added, {} moved, {} removed.", path.display(), count(Add), count(Move), count(Remove)));
    for c in &changes {
        say(format!("  {c}"));
    }
    Ok(())
}
