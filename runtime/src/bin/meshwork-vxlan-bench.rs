//! Benchmark of issue 10: the VXLAN part at scale (128 nodes in 8 PDCs, 16 overlay rules, 256
//! overlays, 20,000 vNICs) in one file with the issue-2 topology (64 controllers, 50,000
//! clients). Measures, each as a separate process: `meshwork check` (wall time, peak RSS),
//! `meshwork build` against `cp -r` of its own output (the physical limit on this disk), and
//! counts the FDB and neighbour entries written into the nodes' `network.json`.
//!
//!   cargo build --release -p meshwork && target/release/meshwork-vxlan-bench [--runs N]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use meshwork::bench_support::{peak_rss_of_children_kib, tree_size};
use meshwork::bench_topology::{NODES, OVERLAY_RULES, OVERLAYS, PDCS, VNICS, topology, vxlan_part};

fn peak_rss_of_children_mib() -> f64 {
    peak_rss_of_children_kib() as f64 / 1024.0
}

fn timed(runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd.stdout(Stdio::null()).status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize =
        args.iter().position(|a| a == "--runs").and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok()).unwrap_or(5);
    let exe_dir = std::env::current_exe().expect("own path").parent().expect("bin dir").to_path_buf();
    let meshwork = exe_dir.join("meshwork");
    assert!(meshwork.exists(), "build the meshwork binary first: cargo build --release -p meshwork");
    let work = std::env::temp_dir().join(format!("meshwork-vxlan-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let file = work.join("bench.kdl");
    let text = format!("{}{}", topology(), vxlan_part());
    std::fs::write(&file, &text).expect("write topology");
    println!(
        "topology: {:.1} MiB; 64 controllers, 50000 clients; {NODES} nodes in {PDCS} PDCs, {OVERLAY_RULES} rules, {OVERLAYS} overlays, {VNICS} vNICs",
        text.len() as f64 / (1 << 20) as f64
    );

    let check = timed(runs, || run(Command::new(&meshwork).arg("check").arg(&file), "meshwork check"));
    println!(
        "check: median {:.3} s (min {:.3}, max {:.3}); peak RSS {:.1} MiB",
        check[runs / 2],
        check[0],
        check[runs - 1],
        peak_rss_of_children_mib()
    );

    let out = work.join("out");
    let build =
        timed(runs, || run(Command::new(&meshwork).arg("build").arg(&file).arg("-o").arg(&out), "meshwork build"));
    let copy_to = work.join("copy");
    let copy = timed(runs, || {
        let _ = std::fs::remove_dir_all(&copy_to);
        run(Command::new("cp").arg("-r").arg(&out).arg(&copy_to), "cp -r");
    });
    let (b, c) = (build[runs / 2], copy[runs / 2]);
    println!("build: median {b:.3} s; cp -r of its output: median {c:.3} s; ratio {:.2}x", b / c);
    println!("peak RSS of all children so far: {:.1} MiB", peak_rss_of_children_mib());
    report(&out);
    let _ = std::fs::remove_dir_all(&work);
}

fn report(out: &Path) {
    let (files, bytes) = tree_size(out);
    let (mut fdb, mut neigh) = (0usize, 0usize);
    for e in std::fs::read_dir(out.join("nodes")).expect("nodes dir").flatten() {
        let text = std::fs::read_to_string(e.path().join("network.json")).expect("network.json");
        let n = meshwork_compiler::emit::node::network::from_json(&text).expect("network.json parses");
        fdb += n.overlays.iter().map(|o| o.fdb.len()).sum::<usize>();
        neigh += n.overlays.iter().map(|o| o.neighbours.len()).sum::<usize>();
    }
    println!(
        "output: {files} files, {:.1} MiB; FDB entries {fdb}, neighbour entries {neigh}",
        bytes as f64 / (1 << 20) as f64
    );
}
