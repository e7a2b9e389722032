//! Real OpenVPN with a real keyset (issue 3, item 6), driven through the `meshwork` CLI the way
//! a user would: `keys init`, `keys sync` after marking a client revoked, `build`, `clientpack`.
//! An OpenVPN server (the compiled `server.conf`) and its clients run in two network namespaces
//! joined by a veth pair; the test asserts that
//!
//! - the client `good` completes the handshake, gets the overlay address its ccd file pins and
//!   passes ICMP echo through the tunnel to the controller's overlay address (which nothing but
//!   the tunnel reaches: the same ping fails before the client connects);
//! - the revoked client `gone` (its old certificate and key, still in hand) is refused by the
//!   server's CRL check, and never completes;
//! - a client certificate issued by another topology's CA, for a name our topology knows
//!   (`spare`, which has a ccd file here), is refused by certificate verification even though
//!   it carries our CA and tls-crypt key, and never completes;
//! - through all of that, the server's management interface lists `good` alone.
//!
//! Kernel test: needs root, `ip` and `openvpn`. Traffic stays inside the two namespaces the
//! test creates, which are deleted at the end (also on failure), and every OpenVPN process it
//! starts is killed by PID.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{assemble_controller, directive, output, ping, run};

/// The controller's underlay address (`address` in the topology) on the server namespace's veth.
const SERVER_UNDERLAY: &str = "192.0.2.10/24";
/// The clients' underlay address on the client namespace's veth.
const CLIENT_UNDERLAY: &str = "192.0.2.100/24";
/// east (id 1) takes the overlay's last usable address minus 1.
const EAST_OVERLAY: Ipv4Addr = Ipv4Addr::new(100, 127, 255, 253);
/// `good` is the first client: the bottom of the overlay.
const GOOD_OVERLAY: &str = "100.127.255.193/26";

/// How long the server and a good client get to start.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a refused client is watched: it must not complete within this window.
const REFUSAL_WINDOW: Duration = Duration::from_secs(15);

const READY: &str = "Initialization Sequence Completed";

/// Our topology; `gone` is revoked in the second version.
fn topology(gone_revoked: bool) -> String {
    let gone = if gone_revoked { " revoked=#true" } else { "" };
    format!(
        r#"topology "real"
overlay "100.127.255.192/26"
controller "east" id=1 {{ address "192.0.2.10"; }}
client "good"
client "gone"{gone}
client "spare"
"#
    )
}

/// Another topology with its own CA, and a client named like one of ours.
const OTHER: &str = r#"topology "other"
overlay "100.127.255.192/26"
controller "west" id=1 { address "192.0.2.10"; }
client "spare"
"#;

#[test]
fn openvpn_admits_the_topologys_client_and_refuses_revoked_and_foreign_ones() {
    if !kernel_tests_possible() {
        return;
    }
    let mut lab = Lab::new("ovpn");
    let state = lab.path("state");
    let file = lab.path("real.kdl");

    // 1-2. Keys: init with every client, then revoke `gone` by editing the file and syncing.
    fs::write(&file, topology(false)).expect("write topology");
    meshwork(&["keys", "init"], &file, &state, &[]);
    let keyset = state.join("keyset");
    // What the user of `gone` still holds after the revocation.
    let gone_cert = read(&keyset.join("issued/gone.crt"));
    let gone_key = read(&keyset.join("private/gone.key"));
    fs::write(&file, topology(true)).expect("write topology");
    meshwork(&["keys", "sync"], &file, &state, &[]);

    let other_state = lab.path("other-state");
    let other_file = lab.path("other.kdl");
    fs::write(&other_file, OTHER).expect("write other topology");
    meshwork(&["keys", "init"], &other_file, &other_state, &[]);
    let other_keyset = other_state.join("keyset");
    assert_ne!(read(&keyset.join("ca.crt")), read(&other_keyset.join("ca.crt")), "each topology has a CA of its own");

    // 3. Build, and lay the controller's directory out as server.conf names it.
    let out = lab.path("out");
    meshwork(&["build"], &file, &state, &["-o", out.to_str().expect("utf-8 path")]);
    let controller = lab.path("east");
    let assembled = assemble_controller(&out, &keyset, "east", &controller);
    assert_eq!(assembled.clients, 3, "a ccd file for every client of the topology");
    let server_conf = assembled.conf;

    let good_pack = lab.path("good.ovpn");
    meshwork(&["clientpack"], &file, &state, &["good", "-o", good_pack.to_str().expect("utf-8 path")]);
    let good_text = read(&good_pack);

    // 4. Namespaces, the server, and the good client.
    let srv = lab.netns("ovs");
    let cli = lab.netns("ovc");
    run("ip", &["-n", &srv, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", &cli]);
    run("ip", &["-n", &srv, "addr", "add", SERVER_UNDERLAY, "dev", "veth0"]);
    run("ip", &["-n", &cli, "addr", "add", CLIENT_UNDERLAY, "dev", "veth1"]);
    for (ns, dev) in [(&srv, "veth0"), (&cli, "veth1")] {
        run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        run("ip", &["-n", ns, "link", "set", dev, "up"]);
    }

    let server_log = controller.join("server.log");
    let server = lab.openvpn("server", &srv, &controller, &server_conf, &server_log);
    lab.wait_for(server, &server_log, READY, START_TIMEOUT);
    assert!(
        read(&server_log).contains("CRL: loaded 1 CRLs from file"),
        "the server loads the keyset's CRL\n{}",
        read(&server_log)
    );

    assert_eq!(
        ping(&cli, EAST_OVERLAY, 1, Duration::from_secs(1)),
        0,
        "{EAST_OVERLAY} answers before the tunnel is up"
    );

    let good_log = lab.path("good.log");
    let good = lab.openvpn("good", &cli, &lab.dir.clone(), &good_pack, &good_log);
    lab.wait_for(good, &good_log, READY, START_TIMEOUT);
    let replies = ping(&cli, EAST_OVERLAY, 3, Duration::from_secs(2));
    assert_eq!(replies, 3, "ping through the tunnel to east's overlay address {EAST_OVERLAY}: {replies} of 3 replies");

    let log = read(&server_log);
    assert!(has_line(&log, &["VERIFY OK: depth=0", "CN=good"]), "server verified good\n{log}");
    assert!(log.contains("[good] Peer Connection Initiated"), "server admitted good\n{log}");
    assert!(log.contains("MULTI: Learn: 100.127.255.193 -> good/"), "server routes good's ccd address\n{log}");
    let addrs = output("ip", &["-n", &cli, "-4", "-o", "addr", "show"]);
    assert!(addrs.contains(GOOD_OVERLAY), "the client's tun has the address its ccd file pins:\n{addrs}");

    // 5-6. The revoked client and the foreign one, side by side.
    let gone_pack = lab.path("gone.ovpn");
    fs::write(&gone_pack, with_identity(&good_text, &gone_cert, &gone_key)).expect("write gone pack");
    let foreign_pack = lab.path("foreign.ovpn");
    let foreign = with_identity(
        &good_text,
        &read(&other_keyset.join("issued/spare.crt")),
        &read(&other_keyset.join("private/spare.key")),
    );
    fs::write(&foreign_pack, foreign).expect("write foreign pack");

    let started = Instant::now();
    let gone_log = lab.path("gone.log");
    let gone = lab.openvpn("gone", &cli, &lab.dir.clone(), &gone_pack, &gone_log);
    let foreign_log = lab.path("foreign.log");
    let foreign = lab.openvpn("foreign", &cli, &lab.dir.clone(), &foreign_pack, &foreign_log);

    // The server's verdicts, one line each, naming the certificate it refused.
    let revoked = ["VERIFY ERROR: depth=0, error=certificate revoked", "CN=gone"];
    let unknown_ca = ["VERIFY ERROR: depth=0, error=unable to get local issuer certificate", "CN=spare"];
    for (what, line) in [("gone (revoked)", &revoked), ("spare (another topology's CA)", &unknown_ca)] {
        let deadline = started + REFUSAL_WINDOW;
        while !has_line(&read(&server_log), line) {
            assert!(
                Instant::now() < deadline,
                "the server did not refuse {what} within {REFUSAL_WINDOW:?}: no line with {line:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let remaining = REFUSAL_WINDOW.saturating_sub(started.elapsed());
    std::thread::sleep(remaining);
    for (name, child, log) in [("gone", gone, &gone_log), ("foreign", foreign, &foreign_log)] {
        let text = read(log);
        assert!(
            !text.contains(READY) && !text.contains("Peer Connection Initiated"),
            "the {name} client connected within {REFUSAL_WINDOW:?}:\n{text}"
        );
        assert!(lab.running(child), "the {name} client stopped on its own:\n{text}");
    }
    let log = read(&server_log);
    assert!(log.contains("Sent fatal SSL alert: certificate revoked"), "{log}");
    assert!(log.contains("Sent fatal SSL alert: unknown CA"), "{log}");
    for cn in ["gone", "spare"] {
        assert!(!log.contains(&format!("[{cn}] Peer Connection Initiated")), "server admitted {cn}\n{log}");
    }

    // The server still serves good, and good alone.
    assert_eq!(connected_clients(&controller, &server_conf), ["good"]);
    assert_eq!(ping(&cli, EAST_OVERLAY, 1, Duration::from_secs(2)), 1, "good's tunnel still carries traffic");
}

// ---------------------------------------------------------------------------------------------
// The lab: scratch directory, namespaces and processes, all undone on drop.

struct Lab {
    dir: PathBuf,
    netns: Vec<String>,
    /// (name, process, log file)
    procs: Vec<(String, Child, PathBuf)>,
}

/// Index of a process in the lab.
#[derive(Clone, Copy)]
struct Proc(usize);

impl Lab {
    fn new(purpose: &str) -> Lab {
        let dir = std::env::temp_dir().join(format!("mwt-{purpose}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        Lab { dir, netns: Vec::new(), procs: Vec::new() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A new namespace `mwt-<purpose>-<pid>`, deleted on drop.
    fn netns(&mut self, purpose: &str) -> String {
        let name = format!("mwt-{purpose}-{}", std::process::id());
        run("ip", &["netns", "add", &name]);
        self.netns.push(name.clone());
        name
    }

    /// Starts `openvpn --cd DIR --config CONFIG` in namespace `ns`, logging to `log`.
    /// `ip netns exec` execs OpenVPN, so the child's PID is OpenVPN's.
    fn openvpn(&mut self, name: &str, ns: &str, dir: &Path, config: &Path, log: &Path) -> Proc {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "openvpn", "--log"])
            .arg(log)
            .arg("--cd")
            .arg(dir)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openvpn");
        self.procs.push((name.to_string(), child, log.to_path_buf()));
        Proc(self.procs.len() - 1)
    }

    fn running(&mut self, p: Proc) -> bool {
        matches!(self.procs[p.0].1.try_wait(), Ok(None))
    }

    /// Waits until `log` has `needle`; fails at once if the process exits.
    fn wait_for(&mut self, p: Proc, log: &Path, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if fs::read_to_string(log).is_ok_and(|t| t.contains(needle)) {
                return;
            }
            let (name, child, _) = &mut self.procs[p.0];
            if let Ok(Some(status)) = child.try_wait() {
                panic!("openvpn {name} exited ({status}) before `{needle}`");
            }
            assert!(Instant::now() < deadline, "openvpn {name}: no `{needle}` within {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        for (_, child, _) in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.netns {
            let ok = Command::new("ip").args(["netns", "del", ns]).status().is_ok_and(|s| s.success());
            if !ok {
                eprintln!("could not delete network namespace {ns}");
            }
        }
        if failed {
            for (name, _, log) in &self.procs {
                let text = fs::read_to_string(log).unwrap_or_else(|e| format!("({e})"));
                eprintln!("===== openvpn {name}: {} =====\n{text}", log.display());
            }
            eprintln!("scratch directory kept: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Root, `ip` and `openvpn` are needed. Without them the test is skipped, except under CI,
/// where it fails.
fn kernel_tests_possible() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "openvpn"].iter().all(|t| Command::new(t).arg("--version").output().is_ok());
    if root && tools {
        return true;
    }
    let why = if root { "needs `ip` and `openvpn`" } else { "needs root" };
    assert!(std::env::var_os("CI").is_none(), "kernel test {why}");
    eprintln!("skipping the OpenVPN kernel test: it {why}");
    false
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

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Whether one line of `text` contains every one of `parts`.
fn has_line(text: &str, parts: &[&str]) -> bool {
    text.lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

/// The good client's pack with another certificate and key in its `<cert>` and `<key>` blocks
/// (the CA and tls-crypt key stay ours).
fn with_identity(pack: &str, cert: &str, key: &str) -> String {
    replace_block(&replace_block(pack, "cert", cert), "key", key)
}

fn replace_block(text: &str, tag: &str, body: &str) -> String {
    let (open, close) = (format!("<{tag}>\n"), format!("</{tag}>"));
    let start = text.find(&open).unwrap_or_else(|| panic!("no <{tag}> in the pack")) + open.len();
    let end = start + text[start..].find(&close).unwrap_or_else(|| panic!("no </{tag}> in the pack"));
    let body = if body.ends_with('\n') { body.to_string() } else { format!("{body}\n") };
    format!("{}{body}{}", &text[..start], &text[end..])
}

/// Common names of the clients the server lists as connected, from its management interface.
fn connected_clients(dir: &Path, conf: &Path) -> Vec<String> {
    let socket = dir.join(directive(&read(conf), "management"));
    let mut stream = UnixStream::connect(&socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    stream.write_all(b"status 3\n").expect("send status");
    let mut names = Vec::new();
    for line in BufReader::new(stream.try_clone().expect("clone")).lines() {
        let line = line.expect("read the management interface");
        if line.trim_end() == "END" {
            break;
        }
        if let Some(rest) = line.strip_prefix("CLIENT_LIST\t") {
            names.push(rest.split('\t').next().unwrap_or_default().to_string());
        }
    }
    let _ = stream.write_all(b"quit\n");
    names
}
