//! `meshwork build FILE -o DIR`: compile and write every artifact. Files are written as they
//! are rendered into a staging directory beside the destination, which is swapped in at the
//! end, so a failure leaves the old directory intact and nothing half-written in its place.
//! The lock file is written last (with `--locked`, one that would change is refused instead).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use meshwork_compiler::artifacts::{self, Artifact, BuildOptions, CHECKSUM_PATH};

use crate::OutputFormat;
use crate::input::{self, CliError};

/// `build --format json`: what was written where (paths only, never contents: keys are among them).
#[derive(serde::Serialize)]
struct JsonBuild {
    out: String,
    checksum: String,
    /// Relative to `out`, sorted; symbolic links included.
    artifacts: Vec<String>,
    controllers: Vec<String>,
    nodes: Vec<String>,
}

pub fn run(file: &Path, out: &Path, locked: bool, state: &Path, format: OutputFormat) -> Result<ExitCode, CliError> {
    let (analysis, net) = input::network_locked(file, locked)?;
    let options = BuildOptions { ca_fingerprint: input::ca_fingerprint(state)? };
    let fail = |what: &str, path: &Path, e: std::io::Error| {
        CliError::Message(format!("cannot {what} {}: {e}", path.display()))
    };
    if out.exists()
        && !out.join(CHECKSUM_PATH).exists()
        && fs::read_dir(out).map_err(|e| fail("read", out, e))?.next().is_some()
    {
        return Err(CliError::Message(format!(
            "{} exists and is not a meshwork build directory (no `{CHECKSUM_PATH}` file); refusing to replace it",
            out.display()
        )));
    }
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "build".into());
    let staging = out.with_file_name(format!(".{name}.meshwork-{}", std::process::id()));
    let writer = Writer::new(staging.clone());
    let checksum = match artifacts::emit_all(&net, &options, &|path, artifact| writer.write(path, artifact)) {
        Ok(sum) => sum,
        Err((path, e)) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(fail("write", &path, e));
        }
    };
    if out.exists() {
        fs::remove_dir_all(out).map_err(|e| fail("replace", out, e))?;
    }
    fs::rename(&staging, out).map_err(|e| fail("move into place", out, e))?;
    if format == OutputFormat::Json {
        let mut artifacts = writer.paths.into_inner().unwrap_or_else(|e| e.into_inner());
        artifacts.sort();
        let report = JsonBuild {
            out: out.display().to_string(),
            checksum,
            artifacts,
            controllers: net.controllers.iter().map(|c| c.name.clone()).collect(),
            nodes: net.vxlan.nodes.iter().map(|n| n.name.clone()).collect(),
        };
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| CliError::Message(e.to_string()))?);
        super::lock::write(file, &analysis, true)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Built {} for {} and {} into {} (checksum {checksum}).",
        meshwork::plural::count(writer.files.load(Ordering::Relaxed), "file"),
        meshwork::plural::count(net.controllers.len(), "controller"),
        meshwork::plural::count(net.vxlan.nodes.len(), "node"),
        out.display(),
    );
    // After the artifacts, so that a failed build leaves the lock as it was.
    super::lock::write(file, &analysis, false)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes artifacts under a root, creating each directory once.
struct Writer {
    root: PathBuf,
    made: Mutex<HashSet<PathBuf>>,
    files: AtomicUsize,
    /// Every path written, relative to the root.
    paths: Mutex<Vec<String>>,
}

impl Writer {
    fn new(root: PathBuf) -> Self {
        Self { root, made: Mutex::new(HashSet::new()), files: AtomicUsize::new(0), paths: Mutex::default() }
    }

    fn write(&self, path: &str, artifact: Artifact<'_>) -> Result<(), (PathBuf, std::io::Error)> {
        let target = self.root.join(path);
        let with_path = |e| (target.clone(), e);
        if let Some(parent) = target.parent() {
            // Held while creating, so the other thread never writes into a directory that is
            // recorded but not yet made.
            let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
            if !made.contains(parent) {
                fs::create_dir_all(parent).map_err(with_path)?;
                made.insert(parent.to_path_buf());
            }
        }
        match artifact {
            Artifact::File(content) => {
                fs::write(&target, content).map_err(with_path)?;
                self.files.fetch_add(1, Ordering::Relaxed);
            }
            Artifact::Link(to) => std::os::unix::fs::symlink(to, &target).map_err(with_path)?,
        }
        self.paths.lock().unwrap_or_else(|e| e.into_inner()).push(path.to_string());
        Ok(())
    }
}
