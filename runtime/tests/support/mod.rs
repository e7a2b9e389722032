//! Helpers for kernel tests that build small networks of namespaces: a scratch lab that undoes
//! itself (namespaces by name, processes by pid), traffic from inside a namespace (ICMP echo
//! over a raw socket, since `ping` may not be installed; TCP connect), and the `meshwork` CLI.
//! Shared topologies are in [`fixtures`].
#![allow(dead_code)]

pub mod fixtures;
pub mod lab;
pub mod loss;
pub mod node_hosts;
pub mod pair;

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Root, `ip`, `nft` and `openvpn` are needed. Without them the test is skipped, except under
/// CI, where it fails.
pub fn kernel_tests_possible() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "openvpn", "nft"].iter().all(|t| Command::new(t).arg("--version").output().is_ok());
    if root && tools {
        return true;
    }
    let why = if root { "needs `ip`, `nft` and `openvpn`" } else { "needs root" };
    assert!(std::env::var_os("CI").is_none(), "kernel test {why}");
    eprintln!("skipping the kernel test: it {why}");
    false
}

pub struct Lab {
    pub dir: PathBuf,
    /// Namespaces to delete on drop, by name.
    netns: Vec<String>,
    /// (name, process, log file)
    procs: Vec<(String, Child, Option<PathBuf>)>,
    /// Processes that are not our children (e.g. started by meshwork), killed by pid on drop.
    pids: Vec<u32>,
    /// Pid files read at drop, after the children stopped: what a supervisor started late.
    pid_files: Vec<PathBuf>,
    /// Logs to print if the test fails.
    logs: Vec<PathBuf>,
}

impl Lab {
    pub fn new(purpose: &str) -> Lab {
        let dir = std::env::temp_dir().join(format!("mwt-{purpose}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        Lab { dir, netns: Vec::new(), procs: Vec::new(), pids: Vec::new(), pid_files: Vec::new(), logs: Vec::new() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A new namespace `mwt-<purpose>-<pid>` with loopback up, deleted on drop.
    pub fn netns(&mut self, purpose: &str) -> String {
        let name = format!("mwt-{purpose}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        self.netns.push(name.clone());
        name
    }

    /// A new namespace named exactly `name` (a test's own prefix and pid in it), loopback up,
    /// deleted on drop.
    pub fn named_netns(&mut self, name: &str) -> String {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        run("ip", &["netns", "add", name]);
        run("ip", &["-n", name, "link", "set", "lo", "up"]);
        self.netns.push(name.to_string());
        name.to_string()
    }

    /// Also deletes namespace `name` on drop (one a test's subject made, if it is left over).
    pub fn forget_netns_on_drop(&mut self, name: &str) {
        self.netns.push(name.to_string());
    }

    pub fn kill_on_drop(&mut self, pid: u32) {
        self.pids.push(pid);
    }

    /// Kill, when dropped, whatever `pid_file` names then (meshwork's JSON pid files, or a bare
    /// number). A supervisor (an agent) may restart a process after the test last looked, up
    /// to the moment it is stopped itself; the file read after it stopped names the last one.
    pub fn kill_pid_file_on_drop(&mut self, pid_file: PathBuf) {
        self.pid_files.push(pid_file);
    }

    pub fn show_log_on_failure(&mut self, log: PathBuf) {
        self.logs.push(log);
    }

    pub fn spawn(&mut self, name: &str, cmd: &mut Command, log: Option<PathBuf>) -> usize {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.procs.push((name.to_string(), child, log));
        self.procs.len() - 1
    }

    pub fn child(&mut self, i: usize) -> &mut Child {
        &mut self.procs[i].1
    }

    /// Starts `openvpn --config CONFIG` in namespace `ns` (`ip netns exec` execs it, so the
    /// child's pid is OpenVPN's).
    pub fn openvpn(&mut self, name: &str, ns: &str, config: &Path) -> (usize, PathBuf) {
        let dir = self.dir.clone();
        self.openvpn_in(name, ns, &dir, config)
    }

    /// Like [`Lab::openvpn`], in directory `dir` (`--cd`: a compiled server.conf names its keys
    /// relative to it).
    pub fn openvpn_in(&mut self, name: &str, ns: &str, dir: &Path, config: &Path) -> (usize, PathBuf) {
        let log = self.path(&format!("{name}.log"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "openvpn", "--log"])
            .arg(&log)
            .arg("--cd")
            .arg(dir)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let i = self.spawn(name, &mut cmd, Some(log.clone()));
        (i, log)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        for (_, child, _) in &mut self.procs {
            // SAFETY: SIGTERM to our own child, so it can clean up (OpenVPN, the agent).
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        // The children (agents among them) stop first: one still running would start again
        // what is killed below (it notices an exit at once), and that one would outlive the test.
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child, _) in &mut self.procs {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let from_files = self.pid_files.iter().filter_map(|f| pid_in(f));
        for pid in self.pids.iter().copied().chain(from_files) {
            // SAFETY: kill(2) on a pid the test recorded, or its own state's pid file names.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        for ns in &self.netns {
            if Path::new("/run/netns").join(ns).exists() {
                let ok = Command::new("ip").args(["netns", "del", ns]).status().is_ok_and(|s| s.success());
                if !ok {
                    eprintln!("could not delete network namespace {ns}");
                }
            }
        }
        if failed {
            let logs = self.procs.iter().filter_map(|(n, _, l)| l.clone().map(|l| (n.clone(), l)));
            let extra = self.logs.iter().map(|l| (String::new(), l.clone()));
            for (name, log) in logs.chain(extra) {
                let text = fs::read_to_string(&log).unwrap_or_else(|e| format!("({e})"));
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                eprintln!("===== {name} {} (last lines) =====", log.display());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
            eprintln!("scratch directory kept: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn output(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn run(cmd: &str, args: &[&str]) {
    output(cmd, args);
}

/// Whether process `pid` still runs: a zombie (dead, waiting for whichever parent inherited
/// it to reap it) does not.
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name, which is in parentheses and may hold spaces.
    stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()).is_some_and(|state| state != 'Z')
}

/// `meshwork ARGS`, whatever its exit status.
pub fn meshwork(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshwork")).args(args).stdin(Stdio::null()).output().expect("run meshwork")
}

/// `meshwork ARGS`, which must exit with `code`; its stdout.
pub fn meshwork_ok(args: &[&str], code: i32) -> String {
    let out = meshwork(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "meshwork {args:?} exited {:?}:\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Polls `f` every 100 ms until it returns Some, or fails after `timeout` with `what`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `f` on a thread that has joined namespace `ns`.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        let handle = fs::File::open(Path::new("/run/netns").join(&ns)).unwrap_or_else(|e| panic!("netns {ns}: {e}"));
        // SAFETY: moves only this thread, which ends after `f`, into the namespace.
        let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread")
}

/// A TCP server in namespace `ns` on `addr` that answers every connection with `hello`, on
/// its own thread for the rest of the test (the namespace's deletion ends it).
pub fn tcp_server(ns: &str, addr: SocketAddr) {
    let ns = ns.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let handle = fs::File::open(Path::new("/run/netns").join(&ns)).expect("netns handle");
        // SAFETY: moves only this thread into the namespace.
        let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns");
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr} in {ns}: {e}"));
        tx.send(()).expect("ready");
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"hello");
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("tcp server ready");
}

/// Whether a TCP connection from namespace `ns` to `addr` gets the server's greeting.
pub fn tcp_reaches(ns: &str, addr: SocketAddr, timeout: Duration) -> bool {
    in_netns(ns, move || {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else { return false };
        let _ = s.set_read_timeout(Some(timeout));
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).is_ok() && &buf == b"hello"
    })
}

/// The pid a pid file names: meshwork's JSON (`{"pid": N, …}`) or a bare number.
fn pid_in(file: &Path) -> Option<u32> {
    let text = fs::read_to_string(file).ok()?;
    let pid = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => v["pid"].as_u64().or_else(|| v.as_u64())?,
        Err(_) => text.trim().parse().ok()?,
    };
    u32::try_from(pid).ok().filter(|p| *p > 1)
}

/// Pids of the OpenVPN processes meshwork started for any controller in `state` (from their
/// pid files), for tests to kill what they did not get to destroy.
pub fn meshwork_pids(state: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for controller in fs::read_dir(state.join("controllers")).into_iter().flatten().flatten() {
        for e in fs::read_dir(controller.path().join("openvpn/run")).into_iter().flatten().flatten() {
            if let Some(pid) = fs::read_to_string(e.path())
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["pid"].as_u64())
            {
                out.push(pid as u32);
            }
        }
    }
    out
}

/// The value of directive `name` in an OpenVPN config (its first argument).
pub fn directive<'a>(conf: &'a str, name: &str) -> &'a str {
    conf.lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(name)).then(|| words.next()).flatten()
        })
        .unwrap_or_else(|| panic!("no `{name}` in the config:\n{conf}"))
}

/// A controller's directory laid out by [`assemble_controller`].
pub struct Assembled {
    /// Its server.conf.
    pub conf: PathBuf,
    /// The management socket server.conf names.
    pub socket: PathBuf,
    /// How many ccd files were copied.
    pub clients: usize,
}

/// Lays out a controller's directory from `meshwork build` output and the keyset at the paths
/// its server.conf names (config, ccd files, keys, the management socket's directory).
pub fn assemble_controller(out: &Path, keyset: &Path, name: &str, dir: &Path) -> Assembled {
    let built = out.join("controllers").join(name).join("openvpn");
    let conf = fs::read_to_string(built.join("server.conf")).expect("the built server.conf");
    let place = |rel: &str, from: &Path| {
        let to = dir.join(rel);
        fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
    };
    place(directive(&conf, "ca"), &keyset.join("ca.crt"));
    place(directive(&conf, "cert"), &keyset.join(format!("issued/{name}.crt")));
    place(directive(&conf, "key"), &keyset.join(format!("private/{name}.key")));
    place(directive(&conf, "crl-verify"), &keyset.join("crl.pem"));
    place(directive(&conf, "tls-crypt"), &keyset.join("tls-crypt.key"));

    // The build's ccd link points at the topology-wide ccd directory; copy what it holds.
    let ccd = directive(&conf, "client-config-dir");
    let mut clients = 0;
    for entry in fs::read_dir(built.join(ccd)).expect("read the built ccd directory") {
        let entry = entry.expect("ccd entry");
        place(&format!("{ccd}/{}", entry.file_name().to_string_lossy()), &entry.path());
        clients += 1;
    }

    let socket = dir.join(directive(&conf, "management"));
    fs::create_dir_all(socket.parent().expect("parent")).expect("mkdir run");
    let path = dir.join("server.conf");
    fs::write(&path, &conf).expect("write server.conf");
    Assembled { conf: path, socket, clients }
}

// ---------------------------------------------------------------------------------------------
// ICMP echo from inside a namespace (no `ping` binary needed): a raw socket on a thread that
// has joined the namespace.

/// Sends `count` echo requests to `dst` from namespace `ns`, waiting up to `wait` for each
/// reply; returns how many were answered.
pub fn ping(ns: &str, dst: Ipv4Addr, count: u16, wait: Duration) -> u16 {
    let ns = ns.to_string();
    std::thread::spawn(move || ping_from(&ns, dst, count, wait, None)).join().expect("ping thread")
}

/// Like [`ping`], with IPv4 packets of exactly `packet_len` bytes (header included) and DF set:
/// a packet that does not fit some link on the way is lost (or refused at once), not fragmented.
pub fn ping_df(ns: &str, dst: Ipv4Addr, count: u16, wait: Duration, packet_len: usize) -> u16 {
    let ns = ns.to_string();
    std::thread::spawn(move || ping_from(&ns, dst, count, wait, Some(packet_len))).join().expect("ping thread")
}

/// IPv4 header (no options) and ICMP echo header.
const IP_ICMP_HEADERS: usize = 20 + 8;

fn ping_from(ns: &str, dst: Ipv4Addr, count: u16, wait: Duration, packet_len: Option<usize>) -> u16 {
    let handle = ["/run/netns", "/var/run/netns"]
        .iter()
        .find_map(|d| fs::File::open(Path::new(d).join(ns)).ok())
        .unwrap_or_else(|| panic!("no handle for namespace {ns}"));
    // SAFETY: moves only this thread, which ends after the ping, into the namespace.
    let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    assert!(fd >= 0, "raw ICMP socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    if packet_len.is_some() {
        let df: libc::c_int = libc::IP_PMTUDISC_DO;
        // SAFETY: the option value is a c_int of the size passed.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&df as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    let tick = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
    // SAFETY: the option value is a timeval of the size passed.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tick as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(dst).to_be() },
        sin_zero: [0; 8],
    };
    let ident = (std::process::id() & 0xffff) as u16;
    let mut answered = 0;
    for seq in 1..=count {
        let request = echo_request(ident, seq, packet_len.map(|l| l.saturating_sub(IP_ICMP_HEADERS)));
        // SAFETY: buffer and address are valid for the lengths passed.
        let sent = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            // No route (the tunnel is down): a lost request, like ping's.
            std::thread::sleep(wait);
            continue;
        }
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 65536];
        while Instant::now() < deadline {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            if is_echo_reply(&buf[..n as usize], dst, ident, seq) {
                answered += 1;
                break;
            }
        }
    }
    answered
}

fn echo_request(ident: u16, seq: u16, payload_len: Option<usize>) -> Vec<u8> {
    let mut p = vec![8, 0, 0, 0];
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    match payload_len {
        Some(n) => p.extend((0..n).map(|i| b"meshwork kernel test ping "[i % 26])),
        None => p.extend_from_slice(b"meshwork kernel test ping"),
    }
    let sum = checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// An IPv4 packet from `from` carrying ICMP echo reply `ident`/`seq`.
fn is_echo_reply(packet: &[u8], from: Ipv4Addr, ident: u16, seq: u16) -> bool {
    let Some(&first) = packet.first() else { return false };
    let header = usize::from(first & 0x0f) * 4;
    if packet.len() < header + 8 || packet.len() < 20 || packet[12..16] != from.octets() {
        return false;
    }
    let icmp = &packet[header..];
    icmp[0] == 0 && icmp[4..6] == ident.to_be_bytes() && icmp[6..8] == seq.to_be_bytes()
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
