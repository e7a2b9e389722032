//! What the benchmark binaries do the same way: measure the peak memory of the processes they
//! ran and the size of a tree they wrote, run commands in namespaces, start and stop agents.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The largest resident set of any child process waited for so far, in KiB.
pub fn peak_rss_of_children_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss
    }
}

/// Files (symbolic links included, not followed) and their bytes under `dir`.
pub fn tree_size(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}

/// Runs `argv` inside network namespace `ns` and returns its standard output. A bench's setup
/// must work, so a failure panics with the command's standard error.
pub fn capture_in(ns: &str, argv: &[&str]) -> String {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    crate::netns::prepare_command(&mut cmd, ns).expect("the namespace");
    let out = cmd.output().unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(out.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The `meshwork agent` processes a bench started, one per controller; stopped together (all
/// signalled first, then waited for), also when dropped.
pub struct Agents {
    /// The `meshwork` binary.
    meshwork: PathBuf,
    running: Vec<Child>,
}

impl Agents {
    pub fn new(meshwork: &Path) -> Agents {
        Agents { meshwork: meshwork.to_path_buf(), running: Vec::new() }
    }

    /// Starts `meshwork agent FILE --controller C --netns NS --state-dir STATE EXTRA...`, its
    /// standard error into `log`.
    pub fn start(&mut self, file: &Path, controller: &str, netns: &str, state: &Path, extra: &[&str], log: &Path) {
        let log = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let child = Command::new(&self.meshwork)
            .arg("agent")
            .arg(file)
            .args(["--controller", controller, "--netns", netns])
            .arg("--state-dir")
            .arg(state)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.meshwork.display()));
        self.running.push(child);
    }

    /// The process id of the `i`th agent started.
    pub fn pid(&self, i: usize) -> u32 {
        self.running[i].id()
    }

    pub fn stop(&mut self) {
        for a in &self.running {
            // SAFETY: SIGTERM to our own child, not yet waited for.
            unsafe { libc::kill(a.id() as i32, libc::SIGTERM) };
        }
        for a in &mut self.running {
            let _ = a.wait();
        }
        self.running.clear();
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        self.stop();
    }
}
