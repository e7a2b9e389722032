//! One apply at a time per host: an exclusive `flock` on the host's lock file,
//! which also records who holds it so the one refused can be told.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::identity::HostId;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another meshwork holds the lock on {host}: {holder}")]
    Held { host: HostId, holder: String },
    #[error("cannot lock {path}: {source}")]
    Io { path: String, source: io::Error },
}

/// Held until dropped (the kernel releases the lock when the file closes, also on a crash).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock without waiting; `what` describes the holder (e.g. "apply", "agent").
    pub fn acquire(path: &Path, host: &HostId, what: &str) -> Result<Lock, LockError> {
        let io_err = |source| LockError::Io { path: path.display().to_string(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io_err)?;
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() { "unknown process".to_string() } else { holder.to_string() };
                return Err(LockError::Held { host: host.clone(), holder });
            }
            return Err(io_err(err));
        }
        let since =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        writeln!(file, "pid {} (meshwork {what}) since {since}", std::process::id()).map_err(io_err)?;
        Ok(Lock { _file: file })
    }
}
