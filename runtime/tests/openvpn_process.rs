//! `meshwork::daemon` and `::management` with a real OpenVPN 2.6:
//!
//! - a unit starts detached (own session, stdin /dev/null, output in its log) inside the named
//!   network namespace it asks for, its pid file records it, `status` sees it, `stop` ends it;
//! - pid files naming another process (a wrong start time, not an openvpn, no such pid, or
//!   garbage) are not "running";
//! - a config OpenVPN refuses is an error from `start` that quotes the log;
//! - a server compiled by meshwork (keys from `meshwork keys init`), started by `start`, lists
//!   no client on its management interface, then the one client that connects to it over a
//!   veth pair between two namespaces.
//!
//! Kernel test: needs root, `ip` and `openvpn`; skipped without them, except under CI. Every
//! namespace it makes (`mwt-ovp-*-<pid>`) is deleted on drop, and every process it starts is
//! killed by pid (after checking its start time) if a test fails before stopping it.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use meshwork::daemon::{self as process, ProcessRecord, Unit};
use meshwork::openvpn::management::{self, ConnectedClient};
use sha2::{Digest, Sha256};

mod support;

use support::assemble_controller;

/// A p2p OpenVPN without keys, peers or a real device: it starts and stays up.
const IDLE_CONF: &str = "dev null\nproto udp\nlport 0\nping 1\nverb 3\n";
const READY: &str = "Initialization Sequence Completed";
const START_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn starts_detached_in_a_namespace_and_stops() {
    let Some(mut lab) = Lab::new("run") else { return };
    let ns = lab.netns("run");
    fs::write(lab.path("idle.conf"), IDLE_CONF).unwrap();
    let unit = lab.unit("idle", "idle.conf", Some(&ns));

    let record = lab.start(&unit);
    assert_eq!(record.netns.as_deref(), Some(ns.as_str()));
    assert_eq!(record.config_sha256, sha256(IDLE_CONF.as_bytes()));
    assert_eq!(process::status(&unit.pidfile).unwrap(), Some(record.clone()), "running after start returned");
    let in_file: ProcessRecord = serde_json::from_str(&fs::read_to_string(&unit.pidfile).unwrap()).unwrap();
    assert_eq!(in_file, record, "the pid file is the record, as JSON");
    let pid = record.pid;

    // In the namespace, in a session of its own, detached from our stdin, writing to its log.
    assert_eq!(
        fs::metadata(format!("/proc/{pid}/ns/net")).unwrap().ino(),
        fs::metadata(format!("/run/netns/{ns}")).unwrap().ino(),
        "openvpn runs in {ns}"
    );
    assert_ne!(
        fs::metadata(format!("/proc/{pid}/ns/net")).unwrap().ino(),
        fs::metadata("/proc/self/ns/net").unwrap().ino()
    );
    assert_eq!(stat_field(pid, 6), pid.to_string(), "setsid: openvpn leads its own session");
    assert_eq!(fs::read_link(format!("/proc/{pid}/fd/0")).unwrap(), Path::new("/dev/null"));
    assert_eq!(fs::read_link(format!("/proc/{pid}/fd/1")).unwrap(), unit.log);
    assert_eq!(fs::read_link(format!("/proc/{pid}/fd/2")).unwrap(), unit.log);
    assert!(read(&unit.log).contains("OpenVPN 2."), "openvpn's output is in its log:\n{}", read(&unit.log));

    // A second start of a running unit is refused.
    let again = process::start(&unit, &record.config_sha256).unwrap_err();
    assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists, "{again}");

    // The same pid with another start time is not ours: pid reuse.
    let reused = lab.path("reused.pid");
    write_record(&reused, &ProcessRecord { start_time: record.start_time + 1, ..record.clone() });
    assert_eq!(process::status(&reused).unwrap(), None);
    assert!(!process::stop(&reused).unwrap(), "nothing of ours to stop");
    assert!(!reused.exists(), "stop removes a stale pid file");
    assert_eq!(process::status(&unit.pidfile).unwrap(), Some(record.clone()), "and the real one still runs");

    assert!(process::stop(&unit.pidfile).unwrap(), "stop ends a running unit");
    assert_eq!(process::status(&unit.pidfile).unwrap(), None);
    assert!(!unit.pidfile.exists(), "stop removes the pid file");
    assert!(!alive(&record), "pid {pid} is gone");
    assert!(read(&unit.log).contains("SIGTERM"), "a clean SIGTERM:\n{}", read(&unit.log));
    assert!(!process::stop(&unit.pidfile).unwrap(), "nothing left to stop");
}

#[test]
fn stale_pid_files_are_not_running() {
    let Some(lab) = Lab::new("stale") else { return };
    let me = std::process::id();
    let my_start: u64 = stat_field(me, 22).parse().unwrap();
    let record = |pid, start_time| ProcessRecord {
        pid,
        start_time,
        config_sha256: "x".into(),
        netns: None,
        program: process::Program::Openvpn,
    };
    let cases = [
        ("our own pid, another start time", Some(record(me, my_start + 1))),
        ("our own pid and start time, but not openvpn", Some(record(me, my_start))),
        ("no such pid", Some(record(u32::MAX - 1, 1))),
        ("garbage", None),
    ];
    for (what, rec) in cases {
        let pidfile = lab.path("stale.pid");
        match &rec {
            Some(r) => write_record(&pidfile, r),
            None => fs::write(&pidfile, "not json\n").unwrap(),
        }
        assert_eq!(process::status(&pidfile).unwrap(), None, "{what}");
        assert!(!process::stop(&pidfile).unwrap(), "{what}: nothing to stop");
        assert!(!pidfile.exists(), "{what}: stop removes the stale pid file");
    }
    assert_eq!(process::status(&lab.path("none.pid")).unwrap(), None, "no pid file");
    assert!(!process::stop(&lab.path("none.pid")).unwrap());
}

#[test]
fn a_config_that_fails_at_once_is_an_error_quoting_the_log() {
    let Some(lab) = Lab::new("fail") else { return };
    fs::write(lab.path("bad.conf"), "dev null\nno-such-option-here 1\n").unwrap();
    let unit = lab.unit("bad", "bad.conf", None);
    let started = Instant::now();
    let err = process::start(&unit, "sha").unwrap_err();
    let message = err.to_string();
    assert!(message.contains("openvpn bad exited at once"), "{message}");
    assert!(message.contains(&unit.log.display().to_string()), "names the log: {message}");
    assert!(message.contains("Unrecognized option") && message.contains("no-such-option-here"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!unit.pidfile.exists(), "no pid file for a process that is gone");
    assert_eq!(process::status(&unit.pidfile).unwrap(), None);

    let missing = lab.unit("nowhere", "bad.conf", Some("mwt-ovp-no-such-namespace"));
    let err = process::start(&missing, "sha").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("mwt-ovp-no-such-namespace"), "{err}");
}

#[test]
fn a_real_server_lists_its_clients_on_the_management_interface() {
    let Some(mut lab) = Lab::new("mgmt") else { return };
    let topology = lab.path("real.kdl");
    let state = lab.path("state");
    fs::write(
        &topology,
        "topology \"real\"\noverlay \"100.127.255.192/26\"\n\
         controller \"east\" id=1 { address \"192.0.2.10\"; }\nclient \"good\"\n",
    )
    .unwrap();
    meshwork(&["keys", "init"], &topology, &state, &[]);
    let out = lab.path("out");
    meshwork(&["build"], &topology, &state, &["-o", out.to_str().unwrap()]);
    meshwork(&["clientpack"], &topology, &state, &["good", "-o", lab.path("good.ovpn").to_str().unwrap()]);
    let controller = lab.path("east");
    let socket = assemble_controller(&out, &state.join("keyset"), "east", &controller).socket;

    let srv = lab.netns("srv");
    let cli = lab.netns("cli");
    run("ip", &["-n", &srv, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", &cli]);
    run("ip", &["-n", &srv, "addr", "add", "192.0.2.10/24", "dev", "veth0"]);
    run("ip", &["-n", &cli, "addr", "add", "192.0.2.100/24", "dev", "veth1"]);
    for (ns, dev) in [(&srv, "veth0"), (&cli, "veth1")] {
        run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        run("ip", &["-n", ns, "link", "set", dev, "up"]);
    }

    let mut server = lab.unit("server", "server.conf", Some(&srv));
    server.dir = controller.clone();
    let server_rec = lab.start(&server);
    wait_for(&server, READY);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(rt.block_on(management::status(&socket)).unwrap(), [], "a real server with nobody connected");

    let client = lab.unit("good", "good.ovpn", Some(&cli));
    let client_rec = lab.start(&client);
    wait_for(&client, READY);
    let since = now();
    let deadline = Instant::now() + Duration::from_secs(5);
    let clients: Vec<ConnectedClient> = loop {
        let clients = rt.block_on(management::status(&socket)).unwrap();
        if !clients.is_empty() || Instant::now() > deadline {
            break clients;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(clients.len(), 1, "{clients:?}");
    let good = &clients[0];
    assert_eq!(good.common_name, "good");
    assert_eq!(good.virtual_address, Some(Ipv4Addr::new(100, 127, 255, 193)), "the address good's ccd file pins");
    assert!(good.real_address.starts_with("192.0.2.100:"), "{good:?}");
    assert!(good.connected_since.abs_diff(since) < 60, "{good:?} (now {since})");

    for (unit, rec) in [(&client, &client_rec), (&server, &server_rec)] {
        assert!(process::stop(&unit.pidfile).unwrap(), "{} was running", unit.name);
        assert!(!alive(rec), "{} is gone", unit.name);
    }
    let err = rt.block_on(management::status(&socket)).unwrap_err();
    assert!(err.to_string().contains(&socket.display().to_string()), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The lab: a scratch directory, namespaces and started processes, undone on drop.

struct Lab {
    dir: PathBuf,
    netns: Vec<String>,
    started: Vec<(Unit, ProcessRecord)>,
}

impl Lab {
    /// None (the test is skipped) without root, `ip` or `openvpn`; under CI that is a failure.
    fn new(test: &str) -> Option<Lab> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let tools = ["ip", "openvpn"].iter().all(|t| Command::new(t).arg("--version").output().is_ok());
        if !(root && tools) {
            let why = if root { "needs `ip` and `openvpn`" } else { "needs root" };
            assert!(std::env::var_os("CI").is_none(), "kernel test {why}");
            eprintln!("skipping the OpenVPN process test: it {why}");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("mwt-ovp-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch directory");
        Some(Lab { dir, netns: Vec::new(), started: Vec::new() })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A new namespace `mwt-ovp-<purpose>-<pid>`, deleted on drop.
    fn netns(&mut self, purpose: &str) -> String {
        let name = format!("mwt-ovp-{purpose}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        self.netns.push(name.clone());
        name
    }

    /// A unit run from the scratch directory, its pid file and log in `run/` and `log/`.
    fn unit(&self, name: &str, config: &str, netns: Option<&str>) -> Unit {
        Unit {
            program: process::Program::Openvpn,
            name: name.into(),
            dir: self.dir.clone(),
            config: config.into(),
            netns: netns.map(str::to_string),
            pidfile: self.dir.join("run").join(format!("{name}.pid")),
            log: self.dir.join("log").join(format!("{name}.log")),
        }
    }

    /// `process::start`, which must succeed; remembered for the clean-up.
    fn start(&mut self, unit: &Unit) -> ProcessRecord {
        let config = fs::read(unit.dir.join(&unit.config)).expect("the unit's config");
        let record = process::start(unit, &sha256(&config)).unwrap_or_else(|e| panic!("start {}: {e}", unit.name));
        self.started.push((unit.clone(), record.clone()));
        record
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        for (unit, record) in &self.started {
            if alive(record) {
                // SAFETY: kill(2) on a pid whose start time we just checked.
                unsafe { libc::kill(record.pid as libc::pid_t, libc::SIGKILL) };
                eprintln!("killed openvpn {} (pid {})", unit.name, record.pid);
            }
        }
        for ns in &self.netns {
            let ok = Command::new("ip").args(["netns", "del", ns]).status().is_ok_and(|s| s.success());
            if !ok {
                eprintln!("could not delete network namespace {ns}");
            }
        }
        if failed {
            for (unit, _) in &self.started {
                let text = fs::read_to_string(&unit.log).unwrap_or_else(|e| format!("({e})"));
                eprintln!("===== openvpn {}: {} =====\n{text}", unit.name, unit.log.display());
            }
            eprintln!("scratch directory kept: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Field `n` (1-based, as in proc(5)) of /proc/<pid>/stat.
fn stat_field(pid: u32, n: usize) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    let (_, rest) = text.rsplit_once(')').expect("stat format");
    rest.split_whitespace().nth(n - 3).expect("stat field").to_string()
}

/// Whether the recorded process still exists (a zombie counts as gone).
fn alive(record: &ProcessRecord) -> bool {
    let Ok(text) = fs::read_to_string(format!("/proc/{}/stat", record.pid)) else { return false };
    let Some((_, rest)) = text.rsplit_once(')') else { return false };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields.first() != Some(&"Z") && fields.get(19).and_then(|s| s.parse().ok()) == Some(record.start_time)
}

fn write_record(path: &Path, record: &ProcessRecord) {
    fs::write(path, serde_json::to_string(record).unwrap()).unwrap();
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Waits until the unit's log has `needle`; fails at once if the process is gone.
fn wait_for(unit: &Unit, needle: &str) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if fs::read_to_string(&unit.log).is_ok_and(|t| t.contains(needle)) {
            return;
        }
        assert!(process::status(&unit.pidfile).unwrap().is_some(), "openvpn {} exited before `{needle}`", unit.name);
        assert!(Instant::now() < deadline, "openvpn {}: no `{needle}` within {START_TIMEOUT:?}", unit.name);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `meshwork ARGS FILE --state-dir STATE EXTRA`, which must succeed.
fn meshwork(args: &[&str], file: &Path, state: &Path, extra: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshwork"))
        .args(args)
        .arg(file)
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .output()
        .expect("run meshwork");
    assert!(
        out.status.success(),
        "meshwork {args:?} {extra:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
