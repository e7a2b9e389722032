//! `meshwork::nft` against the real kernel: each test works inside a network namespace of its
//! own (`mwt-nft-<test>-<pid>`, deleted on drop, also on failure). The test body runs on a
//! thread that has joined the namespace, and the `nft` children it starts inherit it; the
//! host's tables are never looked at.
//!
//! Kernel test: needs root, `ip` and `nft`. Without them it is skipped, except under CI.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use meshwork::nft::{self, NftError};
use meshwork_compiler::source::SourceFile;
use serde_json::Value;

/// The quickstart example's controller `east`, compiled.
fn quickstart_east() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart.kdl");
    let text = std::fs::read_to_string(path).expect("read the quickstart example");
    let artifacts = meshwork_compiler::build(SourceFile::new("examples/quickstart.kdl", text))
        .unwrap_or_else(|_| panic!("the quickstart example does not compile"));
    artifacts.get("controllers/east/nftables.json").expect("controllers/east/nftables.json").to_string()
}

#[test]
fn applies_the_quickstart_ruleset_and_reads_it_back() {
    let Some(ns) = Netns::new("apply") else { return };
    ns.run(|| {
        assert_eq!(nft::list_table().unwrap(), None, "a fresh namespace has no meshwork table");
        let ruleset = quickstart_east();
        nft::apply(&ruleset).expect("apply the quickstart ruleset");

        let listing = nft::list_table().unwrap().expect("the table exists after apply");
        for chain in ["chain prerouting {", "chain input {", "chain forward {", "chain firewall {"] {
            assert!(listing.contains(chain), "no `{chain}` in\n{listing}");
        }
        assert!(
            listing.contains("meta mark set jhash ip saddr . udp sport mod 4 seed 0xf1e2d3c4 offset 4096"),
            "no jhash rule in\n{listing}"
        );
        assert!(listing.contains("dnat ip to 198.51.100.2:1194"), "{listing}");
        assert!(!listing.contains("# handle"), "-s without -a lists no handles");
        assert!(!listing.contains("packets"), "-s lists no counter values");

        let json = nft::list_table_json().unwrap().expect("the table exists");
        let rules = objects(&json, "rule");
        let added = ruleset.matches("{\"add\":{\"rule\":").count();
        assert!(added > 10, "the quickstart ruleset has rules");
        assert_eq!(rules.len(), added, "every rule of the ruleset");
        assert!(rules.iter().all(|r| r["table"] == nft::TABLE && r["family"] == nft::FAMILY));
        let chains: Vec<&str> = objects(&json, "chain").iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(chains, ["prerouting", "input", "forward", "firewall"]);

        // Applying the same ruleset again replaces the table with an identical one.
        nft::apply(&ruleset).expect("apply again");
        let again = nft::list_table().unwrap().expect("still there");
        assert_eq!(again, listing, "the listing after a second apply");
        assert_eq!(nft::normalise_listing(&again), nft::normalise_listing(&listing));
        assert_eq!(objects(&nft::list_table_json().unwrap().unwrap(), "rule").len(), added, "no duplicate rules");

        // The async variant does the same.
        rt().block_on(nft::apply_async(&ruleset)).expect("apply_async");
        assert_eq!(nft::list_table().unwrap().unwrap(), listing);
    });
}

#[test]
fn a_rejected_ruleset_changes_nothing() {
    let Some(ns) = Netns::new("reject") else { return };
    ns.run(|| {
        let ruleset = quickstart_east();
        nft::apply(&ruleset).expect("apply the quickstart ruleset");
        let before = nft::list_table().unwrap().expect("the table exists");

        // Both begin with `add table; delete table; add table`: without one transaction the
        // old table would be gone once the error is found.
        let missing_set = ruleset.replace("\"@tag_critical\"", "\"@no_such_set\"");
        let bad_expression = ruleset.replace("\"jhash\"", "\"jhashx\"");
        assert_ne!(missing_set, ruleset);
        assert_ne!(bad_expression, ruleset);
        for (what, bad, says) in [
            ("a rule naming a missing set", &missing_set, "No such file or directory"),
            ("an unknown expression", &bad_expression, "Unknown expression type 'jhashx'"),
        ] {
            match nft::apply(bad) {
                Err(NftError::Rejected { stderr }) => {
                    assert!(stderr.contains("Error:") && stderr.contains(says), "{what}: nft's own text:\n{stderr}");
                    let message = NftError::Rejected { stderr: stderr.clone() }.to_string();
                    assert!(message.starts_with("the kernel rejected the ruleset:\n") && message.contains(says));
                }
                other => panic!("{what}: expected Rejected, got {other:?}"),
            }
            assert_eq!(nft::list_table().unwrap().as_deref(), Some(before.as_str()), "{what}: table unchanged");
        }
    });
}

#[test]
fn delete_table_removes_ours_alone() {
    let Some(ns) = Netns::new("delete") else { return };
    ns.run(|| {
        for args in [
            "add table inet other",
            "add chain inet other c { type filter hook forward priority 0; }",
            "add rule inet other c accept",
        ] {
            nft_cli(args);
        }
        let foreign = nft_cli("-s list table inet other");

        assert!(!nft::delete_table().unwrap(), "nothing to delete yet");
        nft::apply(&quickstart_east()).expect("apply the quickstart ruleset");
        assert!(nft::list_table().unwrap().is_some());

        assert!(nft::delete_table().unwrap(), "our table was there");
        assert_eq!(nft::list_table().unwrap(), None);
        assert_eq!(nft::list_table_json().unwrap(), None);
        assert!(!nft::delete_table().unwrap(), "already gone");
        assert_eq!(nft_cli("-s list table inet other"), foreign, "the foreign table survives untouched");
        assert_eq!(nft_cli("list tables").trim(), "table inet other");
    });
}

#[test]
fn monitor_reports_a_rule_deleted_by_hand() {
    let Some(ns) = Netns::new("monitor") else { return };
    ns.run(|| {
        nft::apply(&quickstart_east()).expect("apply the quickstart ruleset");
        let json = nft::list_table_json().unwrap().expect("the table exists");
        let handle = objects(&json, "rule")
            .into_iter()
            .find(|r| r["comment"] == "policy drop")
            .and_then(|r| r["handle"].as_u64())
            .expect("the firewall's policy rule and its handle");

        rt().block_on(async {
            let mut monitor = nft::monitor().await.expect("nft monitor");
            let pid = monitor.pid().expect("nft monitor runs");

            // A change to another table is not reported; the deletion by hand is, first.
            nft_cli("add table inet other");
            nft_cli(&format!("delete rule inet meshwork firewall handle {handle}"));
            let event = tokio::time::timeout(Duration::from_secs(5), monitor.recv())
                .await
                .expect("an event within 5 s")
                .expect("nft monitor still running");
            let v: Value = serde_json::from_str(&event).expect("a JSON event");
            let rule = &v["delete"]["rule"];
            assert_eq!(
                (&rule["family"], &rule["table"], &rule["chain"], rule["handle"].as_u64()),
                (&Value::from("inet"), &Value::from("meshwork"), &Value::from("firewall"), Some(handle)),
                "{event}"
            );

            // Re-applying the ruleset (what a reconcile loop does) is reported too.
            nft::apply_async(&quickstart_east()).await.expect("re-apply");
            let event = tokio::time::timeout(Duration::from_secs(5), monitor.recv()).await.unwrap().unwrap();
            assert!(nft::concerns_our_table(&event), "{event}");

            drop(monitor);
            assert!(gone_within(pid, Duration::from_secs(3)), "nft monitor (pid {pid}) outlived its Monitor");
        });
    });
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A network namespace for one test, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    /// None (the test is skipped) without root, `ip` or `nft`; under CI that is a failure.
    fn new(test: &str) -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let tools = ["ip", "nft"].iter().all(|t| Command::new(t).arg("--version").output().is_ok());
        if !(root && tools) {
            let why = if root { "needs `ip` and `nft`" } else { "needs root" };
            assert!(std::env::var_os("CI").is_none(), "kernel test {why}");
            eprintln!("skipping the nft kernel test: it {why}");
            return None;
        }
        let name = format!("mwt-nft-{test}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let out = Command::new("ip").args(["netns", "add", &name]).output().expect("run ip");
        assert!(out.status.success(), "ip netns add {name}: {}", String::from_utf8_lossy(&out.stderr));
        Some(Netns { name })
    }

    /// Runs `f` on a thread that has joined the namespace (and ends with `f`).
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            let thread = s.spawn(|| {
                let handle = File::open(format!("/run/netns/{}", self.name)).expect("the namespace's handle");
                // SAFETY: moves only this thread, which ends with `f`, into the namespace.
                let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {}: {}", self.name, std::io::Error::last_os_error());
                f()
            });
            thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let ok = Command::new("ip").args(["netns", "del", &self.name]).status().is_ok_and(|s| s.success());
        if !ok {
            eprintln!("could not delete network namespace {}", self.name);
        }
    }
}

/// A runtime on the calling thread, so that children it spawns share the thread's namespace.
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// `nft ARGS` (split on spaces outside braces is not needed: nft joins its arguments), which
/// must succeed; its stdout.
fn nft_cli(args: &str) -> String {
    let out = Command::new("nft").args(args.split(' ')).output().expect("run nft");
    assert!(out.status.success(), "nft {args}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The objects of one kind (`rule`, `chain`, ...) in `nft -j list` output.
fn objects<'a>(listing: &'a Value, kind: &str) -> Vec<&'a Value> {
    listing["nftables"].as_array().expect("an nftables array").iter().filter_map(|o| o.get(kind)).collect()
}

/// Whether process `pid` is gone (or a zombie) within `timeout`.
fn gone_within(pid: u32, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string)));
        if !matches!(state.as_deref(), Some(s) if s != "Z" && s != "X") {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
