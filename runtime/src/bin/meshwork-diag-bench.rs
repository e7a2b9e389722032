//! Benchmark of issue 12, item 2: what `meshwork check` costs on inputs that make many (or
//! huge) diagnostics: 10,000 and 20,000 duplicate clients, and a 10 MB comment. Each file is
//! checked by the `meshwork` binary next to this one as a separate process (text output on
//! stderr, as a person sees it); the best wall time of --runs is printed.
//!
//! Run in a release build:
//!   cargo build --release -p meshwork && target/release/meshwork-diag-bench [--runs N] [--meshwork PATH]
//! (--meshwork measures another build, e.g. an older one, on the same files.)

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HEAD: &str = "topology \"t\"\noverlay \"100.64.0.0/10\"\n\
    controller \"east\" id=1 { address \"192.0.2.10\"; }\nlicense clients=100000\n";

/// `n` duplicate-client diagnostics: the first `client "dup"` and `n` more.
fn duplicates(n: usize) -> String {
    format!("{HEAD}{}", "client \"dup\"\n".repeat(n + 1))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let runs: usize = arg("--runs").and_then(|n| n.parse().ok()).unwrap_or(3);
    let meshwork = arg("--meshwork")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_exe().expect("own path").parent().expect("bin dir").join("meshwork"));
    assert!(meshwork.exists(), "no {}: cargo build --release -p meshwork", meshwork.display());
    let dir = std::env::temp_dir().join(format!("meshwork-diag-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");

    let cases = [
        ("10,000 duplicate clients", "dup10000.kdl", duplicates(10_000)),
        ("20,000 duplicate clients", "dup20000.kdl", duplicates(20_000)),
        ("10 MB comment", "comment.kdl", format!("{HEAD}// {}\n", "x".repeat(10 << 20))),
    ];
    println!("{} check FILE (text), best of {runs}:", meshwork.display());
    for (what, name, text) in cases {
        let file = dir.join(name);
        std::fs::write(&file, text).expect("write input");
        let mut best = Duration::MAX;
        let mut stderr_len = 0;
        for _ in 0..runs {
            let start = Instant::now();
            let out = Command::new(&meshwork)
                .arg("check")
                .arg(&file)
                .stdout(Stdio::null())
                .output()
                .expect("run meshwork check");
            best = best.min(start.elapsed());
            stderr_len = out.stderr.len();
        }
        println!("  {what:<26} {:>8.3} s   ({} bytes of report)", best.as_secs_f64(), stderr_len);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
