//! Named network namespaces, managed the way `ip netns` does it, natively (libc).
//!
//! A named namespace is a bind mount of a namespace file (`/proc/thread-self/ns/net` of a thread
//! that unshared its network namespace) onto `/run/netns/NAME`, with `/run/netns` made a shared
//! mount point so the bind mounts propagate to other mount namespaces. This is byte-for-byte what
//! iproute2 does, so `ip netns`/`ip -n NAME` and these functions see the same namespaces.
//!
//! Network namespaces are per *thread*. Nothing in here ever changes the namespace of the calling
//! thread except [`enter`]; everything else ([`run_in`], [`create`], [`sysctl_write`] with a
//! namespace) works on a short-lived std thread.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where named network namespaces live (same place as iproute2).
pub const NETNS_DIR: &str = "/run/netns";

/// The network namespace of the calling thread.
const THREAD_SELF_NETNS: &str = "/proc/thread-self/ns/net";

/// Serialises the "make /run/netns a shared mount point" dance within this process, so concurrent
/// [`create`] calls do not stack several bind mounts on it.
static RUN_DIR_SETUP: Mutex<()> = Mutex::new(());

/// The path of the named namespace `name` (validated: not empty, no `/`, not `.` or `..`).
pub fn path(name: &str) -> io::Result<PathBuf> {
    validate_name(name)?;
    Ok(Path::new(NETNS_DIR).join(name))
}

fn validate_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') || name.len() > 255 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid network namespace name {name:?}")));
    }
    Ok(())
}

/// Add context to an io::Error while keeping its kind.
fn ctx(err: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("path {} contains NUL", path.display())))
}

/// `-1` → the last OS error.
fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn mount(src: &Path, target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let src = cstr(src)?;
    let target = cstr(target)?;
    // SAFETY: all pointers are valid NUL-terminated strings (or NULL for data) for the call.
    check(unsafe { libc::mount(src.as_ptr(), target.as_ptr(), c"none".as_ptr(), flags, std::ptr::null()) })
}

/// `mkdir -p /run/netns` and make it a shared mount point, as iproute2's `netns_add` does: try
/// `mount --make-shared`; when that fails with EINVAL (not a mount point yet), bind-mount the
/// directory onto itself and try again.
fn prepare_run_dir() -> io::Result<()> {
    let dir = Path::new(NETNS_DIR);
    let _guard = RUN_DIR_SETUP.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    std::fs::create_dir_all(dir).map_err(|e| ctx(e, format_args!("cannot create {NETNS_DIR}")))?;
    let mut made_mount = false;
    loop {
        match mount(Path::new(""), dir, libc::MS_SHARED | libc::MS_REC) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !made_mount => {
                mount(dir, dir, libc::MS_BIND | libc::MS_REC)
                    .map_err(|e| ctx(e, format_args!("cannot bind-mount {NETNS_DIR} onto itself")))?;
                made_mount = true;
            }
            Err(e) => return Err(ctx(e, format_args!("cannot make {NETNS_DIR} a shared mount point"))),
        }
    }
}

/// Create the named network namespace `name` (like `ip netns add NAME`) and bring its `lo` up.
///
/// Errors with [`io::ErrorKind::AlreadyExists`] if `/run/netns/NAME` exists.
pub fn create(name: &str) -> io::Result<()> {
    let path = path(name)?;
    prepare_run_dir()?;
    // The mount point: an empty file, created exclusively (this is what detects "already exists").
    std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o000).open(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            io::Error::new(io::ErrorKind::AlreadyExists, format!("network namespace {name} already exists"))
        } else {
            ctx(e, format_args!("cannot create {}", path.display()))
        }
    })?;
    let target = path.clone();
    let result = std::thread::Builder::new()
        .name(format!("netns-add-{name}"))
        .spawn(move || -> io::Result<()> {
            // SAFETY: plain syscall; only this (fresh, short-lived) thread changes namespace.
            check(unsafe { libc::unshare(libc::CLONE_NEWNET) }).map_err(|e| ctx(e, "unshare(CLONE_NEWNET)"))?;
            mount(Path::new(THREAD_SELF_NETNS), &target, libc::MS_BIND)
                .map_err(|e| ctx(e, format_args!("cannot bind-mount {THREAD_SELF_NETNS} onto {}", target.display())))?;
            set_loopback_up().map_err(|e| ctx(e, "cannot set lo up"))
        })
        .map_err(|e| ctx(e, "cannot spawn a thread"))
        .and_then(|thread| thread.join().unwrap_or_else(|_| Err(io::Error::other("thread panicked"))));
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = umount_detach(&path);
            let _ = std::fs::remove_file(&path);
            Err(ctx(e, format_args!("cannot create network namespace {name}")))
        }
    }
}

/// `ip link set lo up` for the calling thread's namespace, with the SIOCSIFFLAGS ioctl.
fn set_loopback_up() -> io::Result<()> {
    // SAFETY: plain syscall; the fd is wrapped into an OwnedFd right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor we own.
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: valid socket and a properly initialised ifreq that outlives the calls.
    unsafe {
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr))?;
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr))
    }
}

fn umount_detach(path: &Path) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: valid NUL-terminated path.
    check(unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) })
}

/// Delete the named network namespace (like `ip netns delete NAME`): lazy unmount + unlink.
/// The namespace itself disappears once no process or open fd uses it any more.
///
/// Errors with [`io::ErrorKind::NotFound`] if it does not exist.
pub fn delete(name: &str) -> io::Result<()> {
    let path = path(name)?;
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("network namespace {name} does not exist")));
    }
    if let Err(e) = umount_detach(&path) {
        // EINVAL: not a mount point (a leftover file from an interrupted create): just unlink it.
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(ctx(e, format_args!("cannot unmount {}", path.display())));
        }
    }
    std::fs::remove_file(&path).map_err(|e| ctx(e, format_args!("cannot remove {}", path.display())))
}

/// Whether `/run/netns/NAME` exists.
pub fn exists(name: &str) -> bool {
    path(name).is_ok_and(|p| std::fs::symlink_metadata(p).is_ok())
}

/// The names of all named network namespaces, sorted. Empty if `/run/netns` does not exist.
pub fn list() -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ctx(e, format_args!("cannot list {NETNS_DIR}"))),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ctx(e, format_args!("cannot list {NETNS_DIR}")))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Open the named namespace (an fd usable with `setns(2)` or `IFLA_NET_NS_FD`), close-on-exec.
pub fn open(name: &str) -> io::Result<OwnedFd> {
    let path = path(name)?;
    let file = File::open(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(io::ErrorKind::NotFound, format!("network namespace {name} does not exist"))
        } else {
            ctx(e, format_args!("cannot open network namespace {name}"))
        }
    })?;
    Ok(file.into())
}

fn setns(fd: &OwnedFd, name: &str) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    check(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) })
        .map_err(|e| ctx(e, format_args!("cannot enter network namespace {name}")))
}

/// Move the **calling thread** into the named namespace. Meant for process start (the CLI's
/// `--netns NS`), before any other thread exists: threads spawned later inherit it.
pub fn enter(name: &str) -> io::Result<()> {
    let fd = open(name)?;
    setns(&fd, name)?;
    let _ = ENTERED.set(name.to_string());
    Ok(())
}

/// The namespace [`enter`] moved this process into, if any.
static ENTERED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn entered() -> Option<&'static str> {
    ENTERED.get().map(String::as_str)
}

/// Directory of per-namespace `/etc` files (iproute2's convention: `ip netns exec NAME` bind-mounts
/// `/etc/netns/NAME/hosts` over `/etc/hosts`).
pub const ETC_NETNS: &str = "/etc/netns";

/// `/etc/netns/NAME/hosts`, when it exists: the hosts file processes started "in" namespace NAME
/// should resolve names with, as under `ip netns exec`.
pub fn hosts_file(name: &str) -> Option<PathBuf> {
    let path = Path::new(ETC_NETNS).join(name).join("hosts");
    path.is_file().then_some(path)
}

/// Run `f` on a new std thread inside the named namespace and return its result.
/// A panic in `f` is propagated to the caller.
pub fn run_in<T, F>(name: &str, f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let fd = open(name)?;
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn_scoped(scope, move || -> io::Result<T> {
                setns(&fd, name)?;
                drop(fd);
                Ok(f())
            })
            .map_err(|e| ctx(e, "cannot spawn a thread"))?;
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Make `cmd` start its child inside the named namespace: the namespace is opened now (so a
/// missing namespace is reported here) and a `pre_exec` hook `setns()`es the child into it.
///
/// Only the network namespace changes (the child keeps the parent's mount namespace, so unlike
/// `ip netns exec` there is no `/sys` remount and no `/etc/netns/NAME` bind mounts).
/// For `tokio::process::Command` use [`prepare_tokio_command`].
pub fn prepare_command(cmd: &mut std::process::Command, name: &str) -> io::Result<()> {
    let hook = pre_exec_hook(name)?;
    // SAFETY: the hook only calls setns(2), which is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(hook);
    }
    Ok(())
}

/// [`prepare_command`] for a `tokio::process::Command`.
pub fn prepare_tokio_command(cmd: &mut tokio::process::Command, name: &str) -> io::Result<()> {
    prepare_command(cmd.as_std_mut(), name)
}

fn pre_exec_hook(name: &str) -> io::Result<impl FnMut() -> io::Result<()> + Send + Sync + 'static> {
    // O_CLOEXEC: the fd does not leak into the child's program.
    let fd = open(name)?;
    Ok(move || {
        // SAFETY: plain syscall on an fd owned by this closure; async-signal-safe.
        if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    })
}

/// `/proc/sys/...` path of a sysctl key: `net.ipv4.ip_forward` (dots) or `net/ipv4/ip_forward`.
fn sysctl_path(key: &str) -> io::Result<PathBuf> {
    let rel = if key.contains('/') { key.to_owned() } else { key.replace('.', "/") };
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c.is_empty() || c == "." || c == "..") || rel.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid sysctl key {key:?}")));
    }
    Ok(Path::new("/proc/sys").join(rel))
}

fn in_netns_or_here<T: Send>(netns: Option<&str>, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    match netns {
        Some(name) => run_in(name, f)?,
        None => f(),
    }
}

fn where_(netns: Option<&str>) -> String {
    netns.map(|n| format!(" in network namespace {n}")).unwrap_or_default()
}

/// Write a sysctl (`key` like `net.ipv4.ip_forward`), in the named namespace or (None) in the
/// calling thread's. `/proc/sys/net` belongs to the namespace of the thread that opens it.
pub fn sysctl_write(netns: Option<&str>, key: &str, value: &str) -> io::Result<()> {
    let path = sysctl_path(key)?;
    in_netns_or_here(netns, || std::fs::write(&path, value))
        .map_err(|e| ctx(e, format_args!("cannot set sysctl {key}={value}{}", where_(netns))))
}

/// Read a sysctl, trimmed (see [`sysctl_write`]).
pub fn sysctl_read(netns: Option<&str>, key: &str) -> io::Result<String> {
    let path = sysctl_path(key)?;
    in_netns_or_here(netns, || std::fs::read_to_string(&path))
        .map(|s| s.trim().to_owned())
        .map_err(|e| ctx(e, format_args!("cannot read sysctl {key}{}", where_(netns))))
}

/// The inode number identifying the named namespace (compare with [`process_inode`]).
pub fn inode(name: &str) -> io::Result<u64> {
    let path = path(name)?;
    let meta = std::fs::metadata(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(io::ErrorKind::NotFound, format!("network namespace {name} does not exist"))
        } else {
            ctx(e, format_args!("cannot stat {}", path.display()))
        }
    })?;
    Ok(meta.ino())
}

/// The inode number of the calling thread's network namespace.
pub fn current_inode() -> io::Result<u64> {
    std::fs::metadata(THREAD_SELF_NETNS)
        .map(|m| m.ino())
        .map_err(|e| ctx(e, format_args!("cannot stat {THREAD_SELF_NETNS}")))
}

/// The inode number of the network namespace of process `pid` (`/proc/PID/ns/net`).
pub fn process_inode(pid: u32) -> io::Result<u64> {
    let path = format!("/proc/{pid}/ns/net");
    std::fs::metadata(&path).map(|m| m.ino()).map_err(|e| ctx(e, format_args!("cannot stat {path}")))
}
