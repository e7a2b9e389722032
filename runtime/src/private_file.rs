//! Files that hold secrets (clientpacks, keyset bundles): created 0600 and written whole or not
//! at all, through a synced temporary file next to the target.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const MODE: u32 = 0o600;

/// Replaces `path` (or creates it): readers see the old file or the whole new one.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    with_temporary(path, bytes, |tmp| fs::rename(tmp, path))
}

/// Creates `path`, failing with `AlreadyExists` if anything is there, even a dangling link.
pub fn create(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let exists = || io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display()));
    if fs::symlink_metadata(path).is_ok() {
        return Err(exists());
    }
    with_temporary(path, bytes, |tmp| match fs::hard_link(tmp, path) {
        // A link fails if the target appeared meanwhile; rename would silently replace it.
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists()),
        // A file system without hard links: check, then rename.
        Err(_) if fs::symlink_metadata(path).is_ok() => Err(exists()),
        Err(_) => fs::rename(tmp, path),
    })
}

/// Writes `bytes` to a new temporary file beside `path`, syncs it, hands it to `place`, and
/// removes whatever temporary file is left.
fn with_temporary(path: &Path, bytes: &[u8], place: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let tmp = temporary(path)?;
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(MODE).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        place(&tmp)
    })();
    let _ = fs::remove_file(&tmp);
    result
}

fn temporary(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{} does not name a file", path.display()))
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id())))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn create_never_overwrites_and_replace_does() {
        let dir = std::env::temp_dir().join(format!("mw-private-file-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("secret");
        create(&f, b"one").unwrap();
        assert_eq!(fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(create(&f, b"two").unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&f).unwrap(), b"one");
        replace(&f, b"three").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"three");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left");
        fs::remove_dir_all(&dir).unwrap();
    }
}
