//! Benchmark: generates the large topology of issue 2 (64 controllers in a full mesh with 15
//! engines each, 50,000 clients, 200 fwsets, 1,000 firewall rules, 100 expects) and measures
//! `meshwork build` on it as a separate process: wall time and peak resident memory.
//!
//! Run in a release build, next to the `meshwork` binary:
//!   cargo build --release -p meshwork && target/release/meshwork-bench [--runs N] [--keep DIR]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const CONTROLLERS: u32 = 64;
const ENGINES: u32 = 15;
const CLIENTS: u32 = 50_000;
const SINGLE_CLIENTS: u32 = 1_000;
const GROUP_SIZE: u32 = 490;
const TAGS: u32 = 50;
const NET_FWSETS: u32 = 150;
const PORT_FWSETS: u32 = 50;
const RULES: u32 = 1_000;
const EXPECTS: u32 = 100;

fn tag(i: u32) -> String {
    format!("t{}", i % TAGS)
}

/// The client that carries tag `t` first: single clients cycle through the tags.
fn client_with_tag(t: u32, nth: u32) -> String {
    format!("c{}", t % TAGS + TAGS * nth)
}

pub fn topology() -> String {
    let mut s = String::with_capacity(4 << 20);
    let w = &mut s;
    let _ = writeln!(w, "topology \"bench\"\noverlay \"100.64.0.0/16\"");
    let _ = writeln!(w, "license controllers={CONTROLLERS} clients={CLIENTS}");
    for k in 1..=CONTROLLERS {
        let _ = writeln!(
            w,
            "controller \"ctl-{k}\" id={k} {{\n    address \"192.0.2.{k}\"\n    cores 16\n    engines {ENGINES} subnet=\"172.16.{k}.0/27\"\n    lan \"10.{k}.0.0/16\"\n}}"
        );
    }
    let _ = writeln!(w, "peering \"full\"");
    for j in 0..SINGLE_CLIENTS {
        let _ = writeln!(w, "client \"c{j}\" tags=\"{}\"", tag(j));
    }
    let groups = (CLIENTS - SINGLE_CLIENTS) / GROUP_SIZE;
    for g in 0..groups {
        let _ = writeln!(w, "clients \"g{g}\" count={GROUP_SIZE} tags=\"{}\"", tag(g));
    }
    for f in 0..NET_FWSETS {
        let _ = writeln!(w, "fwset \"nets-{f}\" type=\"net\" {{");
        for n in 0..4 {
            let _ = writeln!(w, "    net \"198.18.{}.{}/30\"", f, n * 4);
        }
        let _ = writeln!(w, "}}");
    }
    for f in 0..PORT_FWSETS {
        let base = 20_000 + f * 10;
        let _ = writeln!(w, "fwset \"ports-{f}\" type=\"port\" {{ port {base}; port \"{}-{}\"; }}", base + 1, base + 5);
    }
    // Every rule has a port of its own (10000+i), so rule i alone decides flows to that port
    // and the expectations below know their verdicts.
    let _ = writeln!(w, "firewall policy=\"drop\" {{");
    for i in 0..RULES {
        let action = if i % 7 == 3 { "deny" } else { "allow" };
        let port = 10_000 + i;
        let line = match i % 4 {
            0 | 1 => format!("{action} from=\"tag:{}\" to=\"tag:{}\" proto=\"tcp\" port={port}", tag(i), tag(i + 1)),
            2 => format!(
                "{action} from=\"{}\" to=\"tag:{}\" proto=\"udp\" port={port}",
                client_with_tag(i, 1),
                tag(i + 1)
            ),
            _ => format!(
                "{action} from=\"fwset:nets-{}\" to=\"tag:{}\" proto=\"tcp\" port={port}",
                i % NET_FWSETS,
                tag(i + 1)
            ),
        };
        let _ = writeln!(w, "    {line}");
    }
    for f in 0..PORT_FWSETS {
        let _ = writeln!(
            w,
            "    allow from=\"overlay\" to=\"controller:ctl-{}\" proto=\"tcp\" port=\"fwset:ports-{f}\"",
            f + 1
        );
    }
    let _ = writeln!(w, "}}");
    for e in 0..EXPECTS {
        let i = e * (RULES / EXPECTS);
        let (action, proto) = (if i % 7 == 3 { "drop" } else { "allow" }, if i % 4 == 2 { "udp" } else { "tcp" });
        let from = match i % 4 {
            3 => format!("198.18.{}.1", i % NET_FWSETS),
            2 => client_with_tag(i, 1),
            _ => client_with_tag(i, 2),
        };
        let to = client_with_tag(i + 1, 3);
        let _ = writeln!(
            w,
            "expect \"e{e}\" from=\"{from}\" to=\"{to}\" proto=\"{proto}\" port={} verdict=\"{action}\"",
            10_000 + i
        );
    }
    s
}

fn peak_rss_of_children_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss
    }
}

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
    let mut files = 0u64;
    let mut bytes = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    println!("output: {files} files, {:.1} MiB", bytes as f64 / (1 << 20) as f64);
}
