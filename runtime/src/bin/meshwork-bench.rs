//! Benchmark: generates the large topology of issue 2 (64 controllers in a full mesh with 15
//! engines each, 50,000 clients, 200 fwsets, 1,000 firewall rules, 100 expects) and measures
//! `meshwork build` on it as a separate process: wall time and peak resident memory.
//!
//! Run in a release build, next to the `meshwork` binary:
//!   cargo build --release -p meshwork && target/release/meshwork-bench [--runs N] [--keep DIR]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use meshwork::bench_support::{peak_rss_of_children_kib, tree_size};
use meshwork::bench_topology::{CLIENTS, CONTROLLERS, ENGINES, EXPECTS, NET_FWSETS, PORT_FWSETS, RULES, topology};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize =
        args.iter().position(|a| a == "--runs").and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok()).unwrap_or(5);
    let keep = args.iter().position(|a| a == "--keep").and_then(|i| args.get(i + 1)).map(PathBuf::from);
    let exe_dir = std::env::current_exe().expect("own path").parent().expect("bin dir").to_path_buf();
    let meshwork = exe_dir.join("meshwork");
    assert!(meshwork.exists(), "build the meshwork binary first: cargo build --release -p meshwork");

    let keep_work = keep.is_some();
    let work = keep.unwrap_or_else(|| std::env::temp_dir().join(format!("meshwork-bench-{}", std::process::id())));
    std::fs::create_dir_all(&work).expect("work dir");
    let file = work.join("bench.kdl");
    let text = topology();
    std::fs::write(&file, &text).expect("write topology");
    println!(
        "topology: {} bytes, {CONTROLLERS} controllers x {ENGINES} engines, {CLIENTS} clients, {} fwsets, {} rules, {EXPECTS} expects",
        text.len(),
        NET_FWSETS + PORT_FWSETS,
        RULES + PORT_FWSETS
    );

    let mut times = Vec::new();
    for run in 0..runs {
        let out = work.join("out");
        let started = Instant::now();
        let status = Command::new(&meshwork)
            .arg("build")
            .arg(&file)
            .arg("-o")
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run meshwork");
        let elapsed = started.elapsed();
        assert!(status.success(), "meshwork build failed on the benchmark topology");
        times.push(elapsed.as_secs_f64());
        println!("run {}: {:.3} s", run + 1, elapsed.as_secs_f64());
        if run == 0 {
            report_output(&out);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "meshwork build: median {median:.3} s, min {:.3} s, max {:.3} s over {runs} runs",
        times[0],
        times[times.len() - 1]
    );
    println!("peak RSS: {:.1} MiB", peak_rss_of_children_kib() as f64 / 1024.0);
    if !keep_work {
        let _ = std::fs::remove_dir_all(&work);
    }
}

fn report_output(dir: &Path) {
    let (files, bytes) = tree_size(dir);
    println!("output: {files} files, {:.1} MiB", bytes as f64 / (1 << 20) as f64);
}
