//! Programming FDB and neighbour entries on a VXLAN device: N of each through netlink in one
//! pass (`Netlink::replace_fdb` / `replace_neighbours`, concurrent requests on one socket)
//! against one `bridge fdb add` and one `ip neigh add` process per entry, as a script would.
//!
//! ```text
//! meshwork-fdb-bench [--entries N] [--runs R]
//! ```
//!
//! Needs root. Works in a network namespace of its own, `mwb-fdb-<pid>`, deleted at the end.

use std::net::Ipv4Addr;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use meshwork::netlink::{Fdb, Neighbour, Netlink, VxlanParams};
use meshwork::netns;
use meshwork_compiler::model::vxlan::Mac;

const DEV: &str = "mwb-vx0";

/// Deletes the namespace (by name) however the bench ends.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok()).unwrap_or(default)
}

fn entries(n: usize) -> (Vec<Fdb>, Vec<Neighbour>) {
    (0..n)
        .map(|i| {
            let i = i as u32;
            let mac = Mac([2, 0x42, (i >> 24) as u8, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            let host = 0x0a80_0000 + i + 1; // 10.128.0.1 upward
            (Fdb { mac, dst: Ipv4Addr::from(0xc613_0000 + (i % 200) + 1) }, Neighbour { ip: Ipv4Addr::from(host), mac })
        })
        .unzip()
}

async fn fresh_device(nl: &Netlink) -> std::io::Result<()> {
    nl.delete_link(DEV).await?;
    nl.add_vxlan(DEV, VxlanParams::node(42, 4790, None)).await?;
    nl.set_up(DEV).await
}

fn run(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (n, runs) = (arg(&args, "--entries", 10_000), arg(&args, "--runs", 3).max(1));
    let ns = Ns(format!("mwb-fdb-{}", std::process::id()));
    if let Err(e) = netns::create(&ns.0) {
        eprintln!("meshwork-fdb-bench: cannot create network namespace {} (root needed): {e}", ns.0);
        return ExitCode::FAILURE;
    }
    let nl = match Netlink::connect_in(&ns.0).await {
        Ok(nl) => nl,
        Err(e) => {
            eprintln!("meshwork-fdb-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (fdb, neigh) = entries(n);
    let mut times = Vec::new();
    for _ in 0..runs {
        if let Err(e) = fresh_device(&nl).await {
            eprintln!("meshwork-fdb-bench: {e}");
            return ExitCode::FAILURE;
        }
        let started = Instant::now();
        let done = async {
            nl.replace_fdb(DEV, &fdb).await?;
            nl.replace_neighbours(DEV, &neigh).await
        }
        .await;
        times.push(started.elapsed().as_secs_f64());
        if let Err(e) = done {
            eprintln!("meshwork-fdb-bench: {e}");
            return ExitCode::FAILURE;
        }
        let (f, g) = (nl.fdb_entries(DEV).await.map(|v| v.len()), nl.neighbours(DEV).await.map(|v| v.len()));
        if f.as_ref().ok() != Some(&n) || g.as_ref().ok() != Some(&n) {
            eprintln!("meshwork-fdb-bench: expected {n} of each, found {f:?} FDB and {g:?} neighbour entries");
            return ExitCode::FAILURE;
        }
    }
    times.sort_by(f64::total_cmp);
    let netlink = times[times.len() / 2];
    println!("netlink, one pass: {n} FDB + {n} neighbour entries in {netlink:.3} s (median of {runs})");

    if let Err(e) = fresh_device(&nl).await {
        eprintln!("meshwork-fdb-bench: {e}");
        return ExitCode::FAILURE;
    }
    let started = Instant::now();
    for (f, g) in fdb.iter().zip(&neigh) {
        let (mac, dst, ip) = (f.mac.to_string(), f.dst.to_string(), g.ip.to_string());
        let ok = run(Command::new("bridge").args([
            "-n",
            &ns.0,
            "fdb",
            "add",
            &mac,
            "dev",
            DEV,
            "dst",
            &dst,
            "self",
            "permanent",
        ])) && run(Command::new("ip").args([
            "-n",
            &ns.0,
            "neigh",
            "add",
            &ip,
            "lladdr",
            &mac,
            "dev",
            DEV,
            "nud",
            "permanent",
        ]));
        if !ok {
            eprintln!("meshwork-fdb-bench: bridge/ip failed on {mac}");
            return ExitCode::FAILURE;
        }
    }
    let processes = started.elapsed().as_secs_f64();
    println!("one process per entry: {} processes in {processes:.3} s", 2 * n);
    println!("ratio: netlink is {:.0}x faster", processes / netlink);
    ExitCode::SUCCESS
}
