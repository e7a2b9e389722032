//! The keyset on disk: its fixed layout, the permission check, atomic writes and the lock.
//!
//! ```text
//! <state>/keyset/            0700
//!     ca.crt ca.key tls-crypt.key crl.pem index.json      0600
//!     issued/<cn>.crt        (dir 0700, files 0600)
//!     private/<cn>.key       (dir 0700, files 0600)
//!     psk/<low>+<high>.psk   (dir 0700, files 0600; only when the topology has node pairs)
//! ```
//!
//! A new keyset is built in a staging directory next to its final place and renamed into place
//! in one step (never over an existing one), so a failed `init` leaves nothing behind. Later
//! changes write every file to `.<name>.mw-tmp` in the same directory, flush the file system once
//! and rename each into place, certificates and keys first, then the CRL, then `index.json` (the
//! commit point).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Read;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use meshwork_compiler::vxlan::names::{NodePair, PSK_DIR};

use super::error::KeyError;

pub const KEYSET_DIR: &str = "keyset";
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CRYPT: &str = "tls-crypt.key";
pub const CRL: &str = "crl.pem";
pub const INDEX: &str = "index.json";
pub const ISSUED: &str = "issued";
pub const PRIVATE: &str = "private";
/// Every file of a keyset, certificates included.
pub const FILE_MODE: u32 = 0o600;
/// Every directory of a keyset.
pub const DIR_MODE: u32 = 0o700;
/// Suffix of files being written; a name never starts with '.', so they cannot collide.
const TMP_SUFFIX: &str = ".mw-tmp";
/// The files every keyset has.
const REQUIRED: [&str; 5] = [CA_CERT, CA_KEY, TLS_CRYPT, CRL, INDEX];

/// Paths inside one keyset directory.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    pub fn issued_dir(&self) -> PathBuf {
        self.root.join(ISSUED)
    }
    pub fn private_dir(&self) -> PathBuf {
        self.root.join(PRIVATE)
    }
    pub fn cert(&self, cn: &str) -> PathBuf {
        self.root.join(ISSUED).join(format!("{cn}.crt"))
    }
    pub fn key(&self, cn: &str) -> PathBuf {
        self.root.join(PRIVATE).join(format!("{cn}.key"))
    }
    pub fn psk_dir(&self) -> PathBuf {
        self.root.join(PSK_DIR)
    }
    /// The pair's key file; the name is the compiler's, which node artifacts reference.
    pub fn psk(&self, pair: &NodePair) -> PathBuf {
        self.psk_dir().join(pair.psk_file())
    }
}

/// A certificate name that is safe as a file stem: what the compiler accepts as a name
/// (letters, digits, '-', '_', '.', starting with a letter or digit), checked again here because
/// the keyset builds paths from it.
pub fn check_name(cn: &str) -> Result<(), KeyError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let first_ok = cn.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && cn.len() <= 128 && cn.chars().all(ok_char) {
        Ok(())
    } else {
        Err(KeyError::InvalidName { cn: cn.to_string() })
    }
}

/// Creates one directory, 0700 (fails if it exists).
pub fn create_dir(path: &Path) -> Result<(), KeyError> {
    DirBuilder::new().mode(DIR_MODE).create(path).map_err(KeyError::io("create directory", path))
}

/// Creates a directory and its missing parents, the new ones 0700.
pub fn create_dir_all(path: &Path) -> Result<(), KeyError> {
    DirBuilder::new().mode(DIR_MODE).recursive(true).create(path).map_err(KeyError::io("create directory", path))
}

/// Writes a file that must not exist yet, 0600. No fsync: callers flush the file system once.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(KeyError::io("create", path))?;
    f.write_all(bytes).map_err(KeyError::io("write", path))
}

/// Where `path` is written before it is renamed into place.
pub fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}{TMP_SUFFIX}"))
}

/// Writes `path`'s temporary file (replacing a stale one), 0600.
pub fn write_tmp(path: &Path) -> impl Fn(&[u8]) -> Result<(), KeyError> + '_ {
    move |bytes| {
        let tmp = tmp_path(path);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(KeyError::io("remove", &tmp)(e)),
        }
        write_new(&tmp, bytes)
    }
}

/// Renames staged files into place, in order, after one flush of the file system.
#[derive(Default)]
pub struct Commit {
    files: Vec<PathBuf>,
}

impl Commit {
    /// Stages `bytes` for `path` now and renames it at commit time.
    pub fn stage(&mut self, path: PathBuf, bytes: &[u8]) -> Result<(), KeyError> {
        write_tmp(&path)(bytes)?;
        self.files.push(path);
        Ok(())
    }
    /// Records a file whose temporary was already written (by a worker thread).
    pub fn staged(&mut self, path: PathBuf) {
        self.files.push(path);
    }
    /// Flushes, renames every file into place in staging order, then syncs the directories.
    pub fn commit(mut self, root: &Path) -> Result<(), KeyError> {
        flush_fs(root)?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for path in std::mem::take(&mut self.files) {
            fs::rename(tmp_path(&path), &path).map_err(KeyError::io("rename into place", &path))?;
            if let Some(parent) = path.parent()
                && !dirs.iter().any(|d| d == parent)
            {
                dirs.push(parent.to_path_buf());
            }
        }
        for d in dirs {
            sync_dir(&d)?;
        }
        Ok(())
    }
}

impl Drop for Commit {
    /// An abandoned commit removes its temporaries.
    fn drop(&mut self) {
        for path in &self.files {
            let _ = fs::remove_file(tmp_path(path));
        }
    }
}

/// Removes temporaries left by an interrupted run (the caller holds the lock).
pub fn remove_stale_tmp(layout: &Layout) -> Result<(), KeyError> {
    for dir in [layout.root().to_path_buf(), layout.issued_dir(), layout.private_dir(), layout.psk_dir()] {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Keysets without node pairs have no psk/.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == layout.psk_dir() => continue,
            Err(e) => return Err(KeyError::io("read directory", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(KeyError::io("read directory", &dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(TMP_SUFFIX) {
                let p = entry.path();
                fs::remove_file(&p).map_err(KeyError::io("remove", &p))?;
            }
        }
    }
    Ok(())
}

/// Refuses a keyset in which anything is open to group or others, or is not a plain file or
/// directory, or a required file is missing.
pub fn check_tree(layout: &Layout) -> Result<(), KeyError> {
    let root = layout.root();
    let meta = match fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyError::NotFound { dir: root.to_path_buf() });
        }
        Err(e) => return Err(KeyError::io("read", root)(e)),
    };
    check_entry(root, &meta, 0)?;
    for name in REQUIRED.iter().chain(&[ISSUED, PRIVATE]) {
        if fs::symlink_metadata(root.join(name)).is_err() {
            return Err(KeyError::Incomplete { dir: root.to_path_buf(), missing: name });
        }
    }
    Ok(())
}

/// The effective user: the one a keyset must belong to.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn check_owner(path: &Path, meta: &fs::Metadata) -> Result<(), KeyError> {
    if meta.uid() != euid() {
        return Err(KeyError::Owner { path: path.to_path_buf(), owner: meta.uid(), me: euid() });
    }
    Ok(())
}

fn check_entry(path: &Path, meta: &fs::Metadata, depth: usize) -> Result<(), KeyError> {
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_dir() || meta.is_file() {
        check_owner(path, meta)?;
    }
    if meta.is_dir() {
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: path.to_path_buf(), mode, want: DIR_MODE });
        }
        if depth >= 3 {
            return Ok(());
        }
        for entry in fs::read_dir(path).map_err(KeyError::io("read directory", path))? {
            let entry = entry.map_err(KeyError::io("read directory", path))?;
            let p = entry.path();
            let m = fs::symlink_metadata(&p).map_err(KeyError::io("read", &p))?;
            check_entry(&p, &m, depth + 1)?;
        }
        Ok(())
    } else if meta.is_file() {
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: path.to_path_buf(), mode, want: FILE_MODE });
        }
        Ok(())
    } else {
        Err(KeyError::NotRegular { path: path.to_path_buf() })
    }
}

/// Opens a keyset file for reading with the checks of [`check_tree`] made on the file actually
/// opened: a symbolic link is refused (O_NOFOLLOW), and so is anything but a regular file of
/// this user's that group and others cannot read. Every reader of a keyset goes through here,
/// so a check made once at open time cannot be dodged by swapping a file afterwards.
pub fn open_checked(path: &Path) -> Result<std::fs::File, KeyError> {
    // O_NONBLOCK: opening a FIFO planted in the keyset must not hang; it is refused below.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => KeyError::NotRegular { path: path.to_path_buf() },
            _ => KeyError::io("read", path)(e),
        })?;
    let meta = file.metadata().map_err(KeyError::io("read", path))?;
    if !meta.is_file() {
        return Err(KeyError::NotRegular { path: path.to_path_buf() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions { path: path.to_path_buf(), mode, want: FILE_MODE });
    }
    check_owner(path, &meta)?;
    Ok(file)
}

/// Reads a keyset file as text, opened by [`open_checked`].
pub fn read_text(path: &Path) -> Result<String, KeyError> {
    let mut file = open_checked(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(KeyError::io("read", path))?;
    String::from_utf8(bytes).map_err(|_| KeyError::Index { path: path.to_path_buf(), message: "not UTF-8 text".into() })
}

/// Renames `from` to `to` unless `to` exists (even as an empty directory).
pub fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let cstr = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte"))
        };
        let (f, t) = (cstr(from)?, cstr(to)?);
        // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)) {
            return Err(err);
        }
    }
    // No renameat2 (old kernel or file system): check, then rename (racy, but a rename of a
    // directory onto a non-empty one still fails).
    if fs::symlink_metadata(to).is_ok() {
        return Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists));
    }
    fs::rename(from, to)
}

/// Writes everything cached for the file system holding `path` to disk (one syscall instead
/// of an fsync per file).
pub fn flush_fs(path: &Path) -> Result<(), KeyError> {
    let f = File::open(path).map_err(KeyError::io("open", path))?;
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the descriptor is open for the duration of the call.
        if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
            return Err(KeyError::io("flush", path)(std::io::Error::last_os_error()));
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = f.as_raw_fd();
        // SAFETY: sync takes no arguments.
        unsafe { libc::sync() };
    }
    Ok(())
}

/// Makes a directory's entries (new names, renames) durable.
pub fn sync_dir(path: &Path) -> Result<(), KeyError> {
    File::open(path).and_then(|f| f.sync_all()).map_err(KeyError::io("sync directory", path))
}

/// An exclusive lock on a directory, held until dropped.
pub struct DirLock {
    _file: File,
}

/// Locks `dir` (flock on the directory itself, so no lock file appears in the keyset).
pub fn lock_dir(dir: &Path) -> Result<DirLock, KeyError> {
    let file = File::open(dir).map_err(KeyError::io("open", dir))?;
    // SAFETY: the descriptor is open; flock does not touch memory.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(KeyError::Locked { dir: dir.to_path_buf() });
        }
        return Err(KeyError::io("lock", dir)(err));
    }
    Ok(DirLock { _file: file })
}

/// A staging directory removed on drop unless it was moved into place.
pub struct Staging {
    path: PathBuf,
    armed: bool,
}

impl Staging {
    /// Creates `<parent>/.keyset.staging-<pid>-<n>`, 0700.
    pub fn create(parent: &Path) -> Result<Staging, KeyError> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = parent.join(format!(".{KEYSET_DIR}.staging-{}-{nanos}", std::process::id()));
        create_dir(&path)?;
        Ok(Staging { path, armed: true })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Moves the staging directory to `to`; refuses if `to` exists.
    pub fn finish(mut self, to: &Path) -> Result<(), KeyError> {
        flush_fs(&self.path)?;
        match rename_noreplace(&self.path, to) {
            Ok(()) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::AlreadyExists
                    || matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) =>
            {
                return Err(KeyError::AlreadyExists { dir: to.to_path_buf() });
            }
            Err(e) => return Err(KeyError::io("move into place", to)(e)),
        }
        self.armed = false;
        if let Some(parent) = to.parent() {
            let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            sync_dir(parent)?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("meshwork-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn names_that_could_escape_are_refused() {
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a b", "a\0"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["web-1", "peer-east", "east-e3", "a.b_c"] {
            check_name(good).unwrap();
        }
    }

    #[test]
    fn noreplace_refuses_an_existing_empty_directory() {
        let d = scratch("noreplace");
        create_dir(&d.join("a")).unwrap();
        create_dir(&d.join("b")).unwrap();
        let e = rename_noreplace(&d.join("a"), &d.join("b")).unwrap_err();
        assert!(e.kind() == std::io::ErrorKind::AlreadyExists || e.raw_os_error() == Some(libc::EEXIST));
        assert!(d.join("a").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_abandoned_commit_leaves_no_temporaries() {
        let d = scratch("abandon");
        {
            let mut c = Commit::default();
            c.stage(d.join("x"), b"1").unwrap();
            assert!(tmp_path(&d.join("x")).exists());
        }
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
        let mut c = Commit::default();
        c.stage(d.join("x"), b"2").unwrap();
        c.commit(&d).unwrap();
        assert_eq!(fs::read(d.join("x")).unwrap(), b"2");
        assert_eq!(fs::metadata(d.join("x")).unwrap().permissions().mode() & 0o777, 0o600);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_second_lock_is_refused() {
        let d = scratch("lock");
        let held = lock_dir(&d).unwrap();
        assert!(matches!(lock_dir(&d), Err(KeyError::Locked { .. })));
        drop(held);
        lock_dir(&d).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }
}
