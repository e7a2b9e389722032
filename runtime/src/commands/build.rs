//! `meshwork build FILE -o DIR`: compile and write every artifact. The directory is written
//! beside its destination and swapped in at the end, so a failure leaves the old one intact.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use meshwork_compiler::artifacts::{self, CHECKSUM_PATH};

use crate::input::{self, CliError};

pub fn run(file: &Path, out: &Path) -> Result<ExitCode, CliError> {
    let (_analysis, net) = input::network(file)?;
    let artifacts = artifacts::build(&net);
    let fail = |what: &str, path: &Path, e: std::io::Error| CliError::Message(format!("cannot {what} {}: {e}", path.display()));
    if out.exists() && !out.join(CHECKSUM_PATH).exists() && fs::read_dir(out).map_err(|e| fail("read", out, e))?.next().is_some() {
        return Err(CliError::Message(format!(
            "{} exists and is not a meshwork build directory (no `{CHECKSUM_PATH}` file); refusing to replace it",
            out.display()
        )));
    }
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "build".into());
    let staging = out.with_file_name(format!(".{name}.meshwork-{}", std::process::id()));
    let result = write_all(&staging, &artifacts);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&staging);
        return Err(fail("write", &staging, e));
    }
    if out.exists() {
        fs::remove_dir_all(out).map_err(|e| fail("replace", out, e))?;
    }
    fs::rename(&staging, out).map_err(|e| fail("move into place", out, e))?;
    println!(
        "Built {} files for {} controller(s) into {} (checksum {}).",
        artifacts.0.len(),
        net.controllers.len(),
        out.display(),
        artifacts.checksum()
    );
    Ok(ExitCode::SUCCESS)
}

fn write_all(dir: &Path, artifacts: &meshwork_compiler::Artifacts) -> std::io::Result<()> {
    let mut made = std::collections::BTreeSet::new();
    for (path, content) in artifacts.iter() {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            if made.insert(parent.to_path_buf()) {
                fs::create_dir_all(parent)?;
            }
        }
        fs::write(&target, content)?;
    }
    Ok(())
}
