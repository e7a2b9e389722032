//! `meshwork lab` from tests: the CLI run against a state directory, and a guard that brings the
//! lab down when the test ends, also when it fails.

use std::path::{Path, PathBuf};

use super::{meshwork, meshwork_ok};

/// Runs `meshwork lab down` on drop, so a failing test leaves nothing behind either. A failing
/// test's lab logs (agents, applies, charon, OpenVPN) are kept first, in `lab-logs/` next to the
/// state directory, since `lab down` removes them with the lab.
pub struct LabDown(pub PathBuf);

impl Drop for LabDown {
    fn drop(&mut self) {
        if std::thread::panicking() {
            keep_logs(&self.0.join("lab"), &self.0.with_file_name("lab-logs"));
        }
        if self.0.join("lab/lab.json").exists() {
            let out = meshwork(&["lab", "down", "--state-dir", self.0.to_str().unwrap()]);
            if !out.status.success() {
                eprintln!("lab down failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
}

/// Copies every `*.log` under `from` to `to`, named by its path under `from`.
fn keep_logs(from: &Path, to: &Path) {
    let mut stack = vec![from.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "log")
                && let Ok(relative) = path.strip_prefix(from)
            {
                let _ = std::fs::create_dir_all(to);
                let name = relative.to_string_lossy().replace('/', "__");
                let _ = std::fs::copy(&path, to.join(name));
            }
        }
    }
    eprintln!("lab logs kept: {}", to.display());
}

/// `meshwork lab ARGS --state-dir STATE`, which must succeed; its stdout.
pub fn lab(state: &Path, args: &[&str]) -> String {
    let mut all = vec!["lab"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--state-dir", state.to_str().unwrap()]);
    meshwork_ok(&all, 0)
}

/// `lab status --format json`.
pub fn status(state: &Path) -> serde_json::Value {
    serde_json::from_str(&lab(state, &["status", "--format", "json"])).expect("status JSON")
}

/// A lab record for `file` in `state`, as `lab up` writes it first, with nothing made: for
/// testing what a verb refuses before it touches the kernel. Returns the file, absolute.
pub fn record_only(state: &Path, file: &Path) -> PathBuf {
    let file = std::fs::canonicalize(file).expect("the topology file");
    let analysis =
        meshwork_compiler::analyze_bytes(file.display().to_string(), std::fs::read(&file).expect("read the file"));
    let net = analysis.network.expect("a valid topology");
    let expects = analysis.topology.map(|t| t.expects).unwrap_or_default();
    let record = meshwork::lab::Record {
        file: file.clone(),
        layout: meshwork::lab::layout::plan(&net, &expects).expect("the lab's layout"),
        killed: Default::default(),
        nodes: Default::default(),
        killed_nodes: Default::default(),
    };
    meshwork::lab::Lab::new(state, PathBuf::from(env!("CARGO_BIN_EXE_meshwork"))).save(&record).expect("lab.json");
    file
}
