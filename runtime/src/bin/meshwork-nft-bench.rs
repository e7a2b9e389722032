//! Applying N rules in one nft transaction (`meshwork::nft::apply`, one `nft -j -f -`) against
//! adding the same rules one `nft add rule` process at a time.
//!
//! ```text
//! meshwork-nft-bench [--rules N] [--one-by-one M] [--runs R]
//! ```
//!
//! `--rules` (default 10000) is the ruleset's size. `--one-by-one` caps how many of the rules are
//! added one at a time (default: all of them); when it is smaller, the total is extrapolated
//! from the measured rate and the output says so. `--runs` (default 3) is how many times the
//! transaction is timed; the median is reported.
//!
//! Needs root: the first thing it does is move itself into a private network namespace
//! (unshare(CLONE_NEWNET)), so it never touches the host's tables; the namespace goes when it
//! exits.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use meshwork::nft;

const CHAIN: &str = "bench";

struct Options {
    rules: usize,
    one_by_one: Option<usize>,
    runs: usize,
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("meshwork-nft-bench: {e}\nusage: meshwork-nft-bench [--rules N] [--one-by-one M] [--runs R]");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshwork-nft-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options { rules: 10_000, one_by_one: None, runs: 3 };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || -> Result<usize, String> {
            let v = args.next().ok_or(format!("{flag} needs a value"))?;
            v.parse().map_err(|_| format!("{flag}: not a count: {v}"))
        };
        match flag.as_str() {
            "--rules" => opts.rules = value()?,
            "--one-by-one" => opts.one_by_one = Some(value()?),
            "--runs" => opts.runs = value()?.max(1),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if opts.rules == 0 || opts.rules > 256 * 256 * 250 {
        return Err("--rules must be between 1 and 16,384,000".into());
    }
    Ok(opts)
}

fn run(opts: &Options) -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: unshare(2) with a plain flag; the process is still single-threaded here.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare(CLONE_NEWNET): {} (run as root)", std::io::Error::last_os_error()).into());
    }
    let n = opts.rules;
    let one_by_one = opts.one_by_one.unwrap_or(n).min(n);
    let rules: Vec<String> = (0..n).map(rule).collect();
    println!("nft: {}", nft_version());
    println!(
        "rules: {n} distinct rules in chain `{} {} {CHAIN}`, in a private network namespace",
        nft::FAMILY,
        nft::TABLE
    );

    // (a) One transaction, timed `runs` times from an empty namespace.
    let document = transaction(&rules);
    let mut times = Vec::new();
    for _ in 0..opts.runs {
        nft::delete_table()?;
        let t = Instant::now();
        nft::apply(&document)?;
        times.push(t.elapsed());
        check_count(n)?;
    }
    times.sort();
    let one = times[times.len() / 2];
    println!(
        "(a) one transaction (nft -j -f -, {} KiB of JSON): median {} of {} runs (all: {})",
        document.len() / 1024,
        secs(one),
        times.len(),
        times.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", ")
    );

    // (b) One `nft add rule` process per rule, into the same (empty) table and chain.
    nft::delete_table()?;
    nft_cmd(&["add", "table", nft::FAMILY, nft::TABLE])?;
    nft_cmd(&["add", "chain", nft::FAMILY, nft::TABLE, CHAIN])?;
    let t = Instant::now();
    let mut last_report = Instant::now();
    for (i, r) in rules.iter().take(one_by_one).enumerate() {
        let mut args = vec!["add", "rule", nft::FAMILY, nft::TABLE, CHAIN];
        args.extend(r.split(' '));
        nft_cmd(&args)?;
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("  ... {} of {one_by_one} after {}", i + 1, secs(t.elapsed()));
            last_report = Instant::now();
        }
    }
    let measured = t.elapsed();
    check_count(one_by_one)?;
    let sequential = if one_by_one == n {
        println!("(b) {n} separate `nft add rule` processes: {} (all measured)", secs(measured));
        measured
    } else {
        let total = measured.mul_f64(n as f64 / one_by_one as f64);
        println!(
            "(b) {one_by_one} separate `nft add rule` processes: {}; {n} extrapolated linearly: {} (NOT all measured)",
            secs(measured),
            secs(total)
        );
        total
    };
    println!(
        "per rule: (a) {:.1} us, (b) {:.2} ms",
        one.as_secs_f64() * 1e6 / n as f64,
        sequential.as_secs_f64() * 1e3 / n as f64
    );
    println!("ratio (b)/(a): {:.0}x", sequential.as_secs_f64() / one.as_secs_f64());
    nft::delete_table()?;
    Ok(())
}

/// Rule `i` in nft syntax: a distinct source address (10.x.y.z, never .0) and port each.
fn rule(i: usize) -> String {
    let (x, y, z) = (i / (256 * 250), (i / 250) % 256, i % 250 + 1);
    format!("ip saddr 10.{x}.{y}.{z} tcp dport {} accept", 1024 + i % 60_000)
}

/// The same rules as nft JSON: replace our table with one holding a chain and every rule.
fn transaction(rules: &[String]) -> String {
    let (f, t) = (nft::FAMILY, nft::TABLE);
    let mut doc = String::with_capacity(rules.len() * 260);
    doc.push_str("{\"nftables\": [\n");
    doc.push_str(&format!("{{\"add\":{{\"table\":{{\"family\":\"{f}\",\"name\":\"{t}\"}}}}}},\n"));
    doc.push_str(&format!("{{\"delete\":{{\"table\":{{\"family\":\"{f}\",\"name\":\"{t}\"}}}}}},\n"));
    doc.push_str(&format!("{{\"add\":{{\"table\":{{\"family\":\"{f}\",\"name\":\"{t}\"}}}}}},\n"));
    doc.push_str(&format!("{{\"add\":{{\"chain\":{{\"family\":\"{f}\",\"table\":\"{t}\",\"name\":\"{CHAIN}\"}}}}}}"));
    for r in rules {
        // "ip saddr A tcp dport P accept"
        let w: Vec<&str> = r.split(' ').collect();
        let (addr, port) = (w[2], w[5]);
        doc.push_str(&format!(
            ",\n{{\"add\":{{\"rule\":{{\"family\":\"{f}\",\"table\":\"{t}\",\"chain\":\"{CHAIN}\",\"expr\":[\
             {{\"match\":{{\"op\":\"==\",\"left\":{{\"payload\":{{\"protocol\":\"ip\",\"field\":\"saddr\"}}}},\"right\":\"{addr}\"}}}},\
             {{\"match\":{{\"op\":\"==\",\"left\":{{\"payload\":{{\"protocol\":\"tcp\",\"field\":\"dport\"}}}},\"right\":{port}}}}},\
             {{\"accept\":null}}]}}}}}}"
        ));
    }
    doc.push_str("\n]}\n");
    doc
}

/// Our table must hold exactly `n` rules.
fn check_count(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let listing = nft::list_table_json()?.ok_or("the table is missing")?;
    let rules = listing["nftables"].as_array().map_or(0, |a| a.iter().filter(|o| o.get("rule").is_some()).count());
    if rules != n {
        return Err(format!("expected {n} rules in the table, found {rules}").into());
    }
    Ok(())
}

fn nft_cmd(args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let out = Command::new("nft").args(args).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(format!("nft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()).into());
    }
    Ok(())
}

fn nft_version() -> String {
    Command::new("nft")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("({e})"))
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}
