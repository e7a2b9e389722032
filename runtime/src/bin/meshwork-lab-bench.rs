//! Issue 5's measurements, on a real lab (root; it makes and removes its own namespaces):
//!
//! - `lab up` time for a topology (default: examples/three-controllers.kdl);
//! - failover time, over several drills: `lab kill C --wait` (kill until every client C held
//!   is routed by every live controller and answers ICMP from each), then `lab restore C`;
//! - time from a client added to the file until every controller routes to it (`lab sync`,
//!   which waits for that).
//!
//! Usage: `meshwork-lab-bench [FILE] [--drills N] [--adds N]`; runs the `meshwork` binary next
//! to this one.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut file = PathBuf::from("examples/three-controllers.kdl");
    let (mut drills, mut adds) = (5usize, 3usize);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--drills" => drills = args.next().and_then(|n| n.parse().ok()).unwrap_or(drills),
            "--adds" => adds = args.next().and_then(|n| n.parse().ok()).unwrap_or(adds),
            other => file = PathBuf::from(other),
        }
    }
    let exe = std::env::current_exe().expect("own path").with_file_name("meshwork");
    let scratch = std::env::temp_dir().join(format!("meshwork-lab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    // The lab follows a copy, so the bench can add clients to it.
    let copy = scratch.join(file.file_name().expect("a file name"));
    std::fs::copy(&file, &copy).expect("copy the topology");
    let state = scratch.join("state");
    let bench = Bench { exe, state };

    let started = Instant::now();
    bench.ok(&["up", copy.to_str().unwrap()]);
    println!("lab up ({}): {:.2} s", file.display(), started.elapsed().as_secs_f64());

    let mut failovers = Vec::new();
    for i in 0..drills {
        let victim = bench.busiest_controller();
        let out = bench.ok(&["kill", &victim, "--wait", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("kill JSON");
        let seconds = v["seconds"].as_f64().unwrap_or(f64::NAN);
        let moved = v["clients"].as_object().map_or(0, |m| m.len());
        println!("drill {}: killed {victim} ({moved} clients): reachable again after {seconds:.2} s", i + 1);
        failovers.push(seconds);
        bench.ok(&["restore", &victim]);
        bench.wait_all_peers_ok();
    }

    let mut added = Vec::new();
    for i in 0..adds {
        let text = std::fs::read_to_string(&copy).expect("read the copy");
        let started = Instant::now();
        std::fs::write(&copy, format!("{text}client \"bench-added-{}\"\n", i + 1)).expect("write the copy");
        bench.ok(&["sync"]);
        let seconds = started.elapsed().as_secs_f64();
        println!("client bench-added-{} routed by every controller {seconds:.2} s after the file changed", i + 1);
        added.push(seconds);
    }

    bench.ok(&["down"]);
    let _ = std::fs::remove_dir_all(&scratch);
    summary("failover (kill -> reachable again)", &mut failovers);
    summary("client added -> routed everywhere", &mut added);
}

fn summary(what: &str, v: &mut [f64]) {
    if v.is_empty() {
        return;
    }
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    println!("{what}: median {median:.2} s, min {:.2} s, max {:.2} s over {} runs", v[0], v[v.len() - 1], v.len());
}

struct Bench {
    exe: PathBuf,
    state: PathBuf,
}

impl Bench {
    /// `meshwork lab ARGS --state-dir STATE`, which must succeed; its stdout. On failure the
    /// lab is taken down before exiting.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.lab(args);
        if !out.status.success() {
            eprintln!("meshwork lab {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
            let _ = self.lab(&["down"]);
            std::process::exit(1);
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn lab(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.exe)
            .arg("lab")
            .args(args)
            .arg("--state-dir")
            .arg(&self.state)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.exe.display()))
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--format", "json"])).expect("status JSON")
    }

    /// The controller that holds the most clients (the hardest drill).
    fn busiest_controller(&self) -> String {
        let st = self.status();
        let controllers = st["controllers"].as_array().cloned().unwrap_or_default();
        controllers
            .iter()
            .max_by_key(|c| c["clients"].as_u64().unwrap_or(0))
            .and_then(|c| c["name"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    fn wait_all_peers_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let st = self.status();
            let ok = st["controllers"].as_array().is_some_and(|cs| {
                cs.iter().all(|c| {
                    c["state"] == "up" && c["peers"].as_array().is_some_and(|p| p.iter().all(|p| p[1] == "ok"))
                })
            });
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("the mesh did not settle within 60 s after a restore");
    }
}
