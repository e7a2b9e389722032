//! The daemons meshwork runs (OpenVPN servers and clients, strongSwan's charon) as processes
//! that outlive the CLI that starts them.
//!
//! A unit is started as its [`Program`] says (`openvpn --cd DIR --config CONFIG`;
//! `charon-systemd` with `STRONGSWAN_CONF=DIR/CONFIG` in `DIR`), detached: a session of its own
//! (setsid, so the terminal's hang-up and Ctrl-C never reach it), stdin `/dev/null`, stdout and
//! stderr appended to its log, and optionally inside a named network namespace. Its pid file is
//! a JSON [`ProcessRecord`] (written whole: temporary file, then rename) that carries the
//! process's start time, so a pid reused by another process is never mistaken for ours.
//!
//! Reaping. std's `Child` never kills on drop, so the process outlives whoever started it. To
//! keep it from lingering as a zombie of a long-lived starter (the agent), a thread per started
//! process waits on it; that thread also tells [`start`] when OpenVPN exits at once. When the
//! starter is a CLI that exits first, the thread goes with it and the process is re-parented to
//! init (or the nearest subreaper), which reaps it. A double fork would avoid the thread, but
//! then the pid is no longer the one `Command` knows and an immediate exit cannot be told
//! apart from a normal one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";
/// How long [`start`] watches for an immediate exit (a bad config, a missing key).
const STARTUP_GRACE: Duration = Duration::from_secs(1);
/// How long [`stop`] waits after SIGTERM, and again after SIGKILL.
const TERM_TIMEOUT: Duration = Duration::from_secs(5);
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// How many lines of the log an error quotes.
const LOG_TAIL_LINES: usize = 20;

/// What a unit runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Program {
    /// `openvpn --cd DIR --config CONFIG`.
    #[default]
    Openvpn,
    /// strongSwan's IKE daemon without systemd: `charon-systemd`, reading `STRONGSWAN_CONF`, in
    /// `DIR` (its vici socket and the files its configuration names are relative to it).
    Charon,
}

impl Program {
    /// The binary, found on `PATH`; also what `/proc/PID/cmdline` names.
    pub fn binary(self) -> &'static str {
        match self {
            Program::Openvpn => "openvpn",
            Program::Charon => "charon-systemd",
        }
    }

    /// The line its log shows once it is up; [`start`] stops watching early when it sees it.
    fn ready_line(self) -> Option<&'static str> {
        match self {
            Program::Openvpn => Some("Initialization Sequence Completed"),
            Program::Charon => None,
        }
    }

    fn command(self, unit: &Unit) -> Command {
        let mut cmd = Command::new(self.binary());
        match self {
            Program::Openvpn => {
                cmd.arg("--cd").arg(&unit.dir).arg("--config").arg(&unit.config);
            }
            Program::Charon => {
                cmd.env("STRONGSWAN_CONF", unit.dir.join(&unit.config)).current_dir(&unit.dir);
            }
        }
        cmd
    }

    fn install_hint(self) -> &'static str {
        match self {
            Program::Openvpn => "openvpn is not installed (no `openvpn` on PATH)",
            Program::Charon => {
                "strongSwan is not installed (no `charon-systemd` on PATH; Debian: charon-systemd \
                 strongswan-swanctl libstrongswan-standard-plugins libcharon-extra-plugins)"
            }
        }
    }
}

/// One daemon process meshwork runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub program: Program,
    /// "server", "engine-1", "peer-west", "charon", ...
    pub name: String,
    /// The daemon's working directory: paths in its configuration are relative to it.
    pub dir: PathBuf,
    /// The config file, relative to `dir` (e.g. "server.conf", "strongswan.conf").
    pub config: String,
    /// A named network namespace (under /run/netns) to start it in; None for the current one.
    pub netns: Option<String>,
    pub pidfile: PathBuf,
    pub log: PathBuf,
}

/// What a pid file holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ProcessRecord {
    pub pid: u32,
    /// Field 22 of /proc/<pid>/stat (clock ticks after boot): with the pid, it names one process.
    pub start_time: u64,
    /// SHA-256 of the config the process was started with, as the caller gave it.
    pub config_sha256: String,
    pub netns: Option<String>,
    /// What runs there (pid files written before there was a choice hold OpenVPN).
    #[serde(default)]
    pub program: Program,
}

/// Starts `unit` detached (see the module's documentation) and writes its pid file. Fails with
/// `AlreadyExists` if the pid file names a running OpenVPN, and with the end of the log if
/// OpenVPN exits within about a second.
pub fn start(unit: &Unit, config_sha256: &str) -> io::Result<ProcessRecord> {
    if let Some(running) = status(&unit.pidfile)? {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} {} already runs (pid {}, {})",
                unit.program.binary(),
                unit.name,
                running.pid,
                unit.pidfile.display()
            ),
        ));
    }
    // Opened before the fork: the child may only make async-signal-safe calls.
    let netns = match &unit.netns {
        Some(ns) => Some(
            File::open(Path::new(NETNS_DIR).join(ns))
                .map_err(|e| io::Error::new(e.kind(), format!("network namespace {ns} ({NETNS_DIR}/{ns}): {e}")))?,
        ),
        None => None,
    };
    for path in [&unit.log, &unit.pidfile] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&unit.log)
        .map_err(|e| io::Error::new(e.kind(), format!("log {}: {e}", unit.log.display())))?;
    let log_start = log.metadata()?.len();

    let mut cmd = unit.program.command(unit);
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    let netns_fd = netns.as_ref().map(AsRawFd::as_raw_fd);
    let hosts = hosts_override(unit)?;
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe system
    // calls (setsid, setns, unshare, mount); it allocates nothing (the paths are C strings made
    // before the fork), and errno is read into an `Os` error.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            if let Some(fd) = netns_fd
                && libc::setns(fd, libc::CLONE_NEWNET) == -1
            {
                return Err(io::Error::last_os_error());
            }
            if let Some((source, target)) = &hosts {
                bind_hosts(source, target)?;
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => io::Error::new(e.kind(), unit.program.install_hint()),
        _ => io::Error::new(e.kind(), format!("start {} {}: {e}", unit.program.binary(), unit.name)),
    })?;
    drop(netns);
    let pid = child.id();

    let record = match proc_stat(pid) {
        Some(stat) => ProcessRecord {
            pid,
            start_time: stat.start_time,
            config_sha256: config_sha256.to_string(),
            netns: unit.netns.clone(),
            program: unit.program,
        },
        None => {
            let status = child.wait()?;
            return Err(exited_at_once(unit, status, log_start));
        }
    };
    let mut json = serde_json::to_string(&record).map_err(io::Error::other)?;
    json.push('\n');
    if let Err(e) = crate::private_file::replace(&unit.pidfile, json.as_bytes()) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io::Error::new(e.kind(), format!("pid file {}: {e}", unit.pidfile.display())));
    }

    let (exited, exit) = mpsc::channel();
    std::thread::Builder::new().name(format!("reap-{pid}")).spawn(move || {
        let _ = exited.send(child.wait());
    })?;

    let deadline = Instant::now() + STARTUP_GRACE;
    loop {
        match exit.recv_timeout(Duration::from_millis(50)) {
            Ok(status) => {
                let _ = fs::remove_file(&unit.pidfile);
                return Err(exited_at_once(unit, status?, log_start));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let ready = unit.program.ready_line().is_some_and(|line| log_since(&unit.log, log_start).contains(line));
        if Instant::now() >= deadline || ready {
            break;
        }
    }
    Ok(record)
}

/// The hosts file the unit resolves names with, as (source, `/etc/hosts`), when its namespace
/// has one under `/etc/netns/`: the namespace it starts in, or else the one the CLI entered
/// with `--netns`. This is what `ip netns exec` does, and how a lab gives the file's DNS names
/// addresses without touching the host's `/etc/hosts`.
fn hosts_override(unit: &Unit) -> io::Result<Option<(std::ffi::CString, std::ffi::CString)>> {
    let Some(ns) = unit.netns.as_deref().or(crate::netns::entered()) else { return Ok(None) };
    let Some(source) = crate::netns::hosts_file(ns) else { return Ok(None) };
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(io::Error::other);
    Ok(Some((c(&source)?, c(Path::new("/etc/hosts"))?)))
}

/// In the child, before exec: a mount namespace of its own, not propagating back to the
/// host's (slave), with `source` bind-mounted over `target`.
fn bind_hosts(source: &std::ffi::CStr, target: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: plain syscalls on NUL-terminated strings that outlive the call.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) == -1 {
            return Err(io::Error::last_os_error());
        }
        let root = c"/";
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_SLAVE | libc::MS_REC,
            std::ptr::null(),
        ) == -1
        {
            return Err(io::Error::last_os_error());
        }
        if libc::mount(source.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The record in `pidfile` if that process still runs: the pid is alive (not a zombie), its
/// start time is the recorded one and it is an `openvpn`. None otherwise, and also when there
/// is no pid file or it cannot be parsed (a stale file, which [`start`] replaces).
pub fn status(pidfile: &Path) -> io::Result<Option<ProcessRecord>> {
    let text = match fs::read_to_string(pidfile) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(record) = serde_json::from_str::<ProcessRecord>(&text) else { return Ok(None) };
    Ok(is_running(&record).then_some(record))
}

/// What a pid file says, checked against /proc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inspection {
    /// Our OpenVPN runs, in the network namespace its record names.
    Running(ProcessRecord),
    /// Our OpenVPN runs, but in another network namespace than the one it belongs to (its
    /// namespace was deleted and made again under it, say): it serves nobody.
    Elsewhere(ProcessRecord),
    /// The file names no OpenVPN of ours: the pid is gone, a zombie, started at another time
    /// or another program, or the file does not parse. Why, in words.
    Stale(String),
}

/// Inspects `pidfile`: `None` when there is none. [`status`] only asks whether the process is
/// ours (to stop it); this also asks whether it is where it belongs, which is what observing
/// the host needs (issue 12, item 6): an engine left in a deleted namespace, or a pid file left
/// by an apply killed while stopping engines, must show as drift, not as "running".
/// `here` is the inode of the namespace a unit without a namespace belongs to (the caller's).
pub fn inspect(pidfile: &Path, here: u64) -> io::Result<Option<Inspection>> {
    let text = match fs::read_to_string(pidfile) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io::Error::new(e.kind(), format!("pid file {}: {e}", pidfile.display()))),
    };
    let Ok(record) = serde_json::from_str::<ProcessRecord>(&text) else {
        return Ok(Some(Inspection::Stale("the pid file does not parse".into())));
    };
    if let Some(why) = not_ours(&record) {
        return Ok(Some(Inspection::Stale(why)));
    }
    let belongs = match &record.netns {
        Some(ns) => crate::netns::inode(ns).ok(),
        None => Some(here),
    };
    // The process may exit between the checks: then it is stale, not elsewhere.
    let Ok(actual) = crate::netns::process_inode(record.pid) else {
        return Ok(Some(Inspection::Stale(format!("pid {} has exited", record.pid))));
    };
    Ok(Some(if belongs == Some(actual) { Inspection::Running(record) } else { Inspection::Elsewhere(record) }))
}

/// A pidfd for the process `record` names, while it is still ours: it becomes readable once the
/// process exits, whoever its parent is (the agent that started it, or init after a CLI did),
/// which is how the agent notices a dead daemon at once. The check comes after the open, so a
/// pid that changed hands in between is never taken for ours. `None` when the process is gone
/// or not ours; `Unsupported` without pidfds (Linux < 5.3).
pub fn pidfd(record: &ProcessRecord) -> io::Result<Option<OwnedFd>> {
    if !is_running(record) {
        return Ok(None);
    }
    // SAFETY: pidfd_open(2) takes a pid (checked to fit pid_t above) and flags and returns a
    // new descriptor (close-on-exec) or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, record.pid as libc::pid_t, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(None),
            Some(libc::ENOSYS) => Err(io::Error::new(io::ErrorKind::Unsupported, "no pidfd_open (Linux < 5.3)")),
            _ => Err(e),
        };
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    Ok(is_running(record).then_some(pidfd))
}

/// Why `record` names no running daemon of ours, or `None` when it does.
fn not_ours(record: &ProcessRecord) -> Option<String> {
    if record.pid == 0 || libc::pid_t::try_from(record.pid).is_err() {
        return Some(format!("pid {} is not a process id", record.pid));
    }
    let Some(stat) = proc_stat(record.pid) else { return Some(format!("pid {} is gone", record.pid)) };
    if matches!(stat.state, 'Z' | 'X') {
        return Some(format!("pid {} has exited", record.pid));
    }
    if stat.start_time != record.start_time {
        return Some(format!("pid {} is another process now (started at another time)", record.pid));
    }
    if !runs(record.pid, record.program) {
        return Some(format!("pid {} is not {}", record.pid, record.program.binary()));
    }
    None
}

/// Stops the process of `pidfile`: SIGTERM, up to 5 s for it to exit, then SIGKILL. Removes the
/// pid file (also a stale one). False if nothing was running.
pub fn stop(pidfile: &Path) -> io::Result<bool> {
    let Some(record) = status(pidfile)? else {
        remove_if_there(pidfile)?;
        return Ok(false);
    };
    terminate(&record)?;
    // Only if it still names the process stopped: a supervisor may have started a successor
    // meanwhile, whose pid file this must not take away.
    if read_record(pidfile).is_none_or(|now| now.pid == record.pid && now.start_time == record.start_time) {
        remove_if_there(pidfile)?;
    }
    Ok(true)
}

/// The record a pid file holds now, if it parses.
fn read_record(pidfile: &Path) -> Option<ProcessRecord> {
    serde_json::from_str(&fs::read_to_string(pidfile).ok()?).ok()
}

// ---------------------------------------------------------------------------------------------
// Signals.

/// SIGTERM, then SIGKILL, to exactly the recorded process. A pidfd pins the process, so the
/// signals cannot reach another one that took over the pid; without pidfds (Linux < 5.3),
/// plain kill(2) after checking the start time again.
fn terminate(record: &ProcessRecord) -> io::Result<()> {
    let pid = record.pid as libc::pid_t;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(()),
            Some(libc::ENOSYS) => terminate_by_pid(record),
            _ => Err(e),
        };
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The pid might have changed hands between the check and pidfd_open.
    if !is_running(record) {
        return Ok(());
    }
    for (signal, timeout) in [(libc::SIGTERM, TERM_TIMEOUT), (libc::SIGKILL, KILL_TIMEOUT)] {
        // SAFETY: pidfd_send_signal(2) with a valid pidfd, no siginfo, no flags.
        let rc =
            unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, std::ptr::null::<u8>(), 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Ok(());
            }
            return Err(e);
        }
        if exits_within(&pidfd, timeout)? {
            wait_until_reaped(record);
            return Ok(());
        }
    }
    Err(io::Error::new(io::ErrorKind::TimedOut, format!("openvpn (pid {}) survived SIGKILL", record.pid)))
}

/// Whether the process behind `pidfd` exits within `timeout` (the pidfd becomes readable).
fn exits_within(pidfd: &OwnedFd, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        match n {
            n if n > 0 => return Ok(true),
            0 => return Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

fn terminate_by_pid(record: &ProcessRecord) -> io::Result<()> {
    for (signal, timeout) in [(libc::SIGTERM, TERM_TIMEOUT), (libc::SIGKILL, KILL_TIMEOUT)] {
        if !is_running(record) {
            return Ok(());
        }
        // SAFETY: kill(2) on the pid we just checked.
        unsafe { libc::kill(record.pid as libc::pid_t, signal) };
        let deadline = Instant::now() + timeout;
        while is_running(record) {
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    match is_running(record) {
        true => Err(io::Error::new(io::ErrorKind::TimedOut, format!("openvpn (pid {}) survived SIGKILL", record.pid))),
        false => Ok(()),
    }
}

/// After the process has exited: a moment for its parent (our reaper thread, or init) to reap
/// it, so its pid is gone when [`stop`] returns. Not an error if it stays a zombie.
fn wait_until_reaped(record: &ProcessRecord) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while proc_stat(record.pid).is_some_and(|s| s.start_time == record.start_time) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// /proc.

struct Stat {
    /// Field 3: R, S, D, Z, X, ...
    state: char,
    /// Field 22.
    start_time: u64,
}

fn proc_stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ')' ends it.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat { state: fields.first()?.chars().next()?, start_time: fields.get(22 - 3)?.parse().ok()? })
}

fn is_running(record: &ProcessRecord) -> bool {
    // Never 0 or beyond pid_t (kill(2) would read those as process groups): `not_ours` says so.
    not_ours(record).is_none()
}

/// Whether the program of `pid` (argv[0] in /proc/<pid>/cmdline) is `program`'s.
fn runs(pid: u32, program: Program) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    argv0.rsplit(|&b| b == b'/').next() == Some(program.binary().as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Files.

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What was appended to `log` from byte `from` on.
fn log_since(log: &Path, from: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut f) = File::open(log)
        && f.seek(SeekFrom::Start(from)).is_ok()
    {
        let _ = f.read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}

fn exited_at_once(unit: &Unit, status: ExitStatus, log_start: u64) -> io::Error {
    let text = log_since(&unit.log, log_start);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    io::Error::other(format!(
        "{} {} exited at once ({status}); the end of its log {}:\n{}",
        unit.program.binary(),
        unit.name,
        unit.log.display(),
        if tail.is_empty() { "(empty)" } else { &tail }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_stat_parses_and_is_not_openvpn() {
        let me = std::process::id();
        let stat = proc_stat(me).expect("our own /proc/<pid>/stat");
        assert!(stat.start_time > 0);
        assert!(matches!(stat.state, 'R' | 'S'));
        assert!(!runs(me, Program::Openvpn));
        let record = ProcessRecord {
            pid: me,
            start_time: stat.start_time,
            config_sha256: String::new(),
            netns: None,
            program: Program::Openvpn,
        };
        assert!(!is_running(&record), "alive with the right start time, but not openvpn");
    }

    #[test]
    fn stop_leaves_a_successors_pid_file_alone() {
        use std::os::unix::process::CommandExt;
        let dir = std::env::temp_dir().join(format!("mwt-daemon-stop-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("server.pid");
        let successor = r#"{"pid":999999,"start_time":1,"config_sha256":"x","netns":null}"#;
        let next = dir.join("next.pid");
        fs::write(&next, successor).unwrap();
        // Reads as an OpenVPN (argv[0]); on SIGTERM it puts a successor's record in place, as a
        // supervisor restarting the unit would, and exits.
        let mut child = Command::new("sh")
            .arg0("openvpn")
            .arg("-c")
            .arg(format!(
                "trap 'cp {} {}; exit 0' TERM; while :; do sleep 0.05; done",
                next.display(),
                pidfile.display()
            ))
            .spawn()
            .unwrap();
        let pid = child.id();
        // Until it has exec'd, /proc shows the test's own command line.
        let started = std::time::Instant::now();
        while !runs(pid, Program::Openvpn) && started.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let record = ProcessRecord {
            pid,
            start_time: proc_stat(pid).unwrap().start_time,
            config_sha256: String::new(),
            netns: None,
            program: Program::Openvpn,
        };
        fs::write(&pidfile, serde_json::to_string(&record).unwrap()).unwrap();
        assert!(stop(&pidfile).unwrap(), "it was running");
        let _ = child.wait();
        let left = fs::read_to_string(&pidfile);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(left.ok().as_deref(), Some(successor), "the successor's pid file was removed");
    }

    #[test]
    fn a_record_round_trips_through_json() {
        let r = ProcessRecord {
            pid: 42,
            start_time: 123456,
            config_sha256: "ab".repeat(32),
            netns: Some("mw-e1".into()),
            program: Program::Charon,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ProcessRecord>(&text).unwrap(), r);
        // Pid files written before there was a choice of program are OpenVPN's.
        let old = r#"{"pid":42,"start_time":1,"config_sha256":"x","netns":null}"#;
        assert_eq!(serde_json::from_str::<ProcessRecord>(old).unwrap().program, Program::Openvpn);
    }
}
