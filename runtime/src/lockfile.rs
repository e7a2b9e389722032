//! The lock file on disk: where it lives, reading it with its topology, writing it.
//!
//! A topology `NAME.kdl` (or `NAME.toml`) has its lock at `NAME.lock` beside it. The lock holds
//! object names and addresses only, never the file's format, so the KDL and TOML forms of one
//! topology share one lock (and give the same artifacts and checksum). Every verb that compiles
//! a topology reads its lock; `meshwork lock` and `meshwork build` write it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use meshwork_compiler::lock::Lock;
use meshwork_compiler::{Analysis, LockInput};

/// The extension of lock files.
pub const EXTENSION: &str = "lock";

/// `dir/NAME.lock` for `dir/NAME.kdl`; `NAME.lock.lock` for a topology that is itself named
/// `*.lock`, so a lock never overwrites its topology.
pub fn path_for(topology: &Path) -> PathBuf {
    if topology.extension().is_some_and(|e| e == EXTENSION) {
        let mut name = topology.as_os_str().to_owned();
        name.push(format!(".{EXTENSION}"));
        return PathBuf::from(name);
    }
    topology.with_extension(EXTENSION)
}

/// The lock file of `topology` as the compiler takes it: absent is fine (addresses then follow
/// declaration order); unreadable for another reason is an error.
pub fn read(topology: &Path, locked: bool) -> io::Result<LockInput> {
    let path = path_for(topology);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(LockInput::from_bytes(path.display().to_string(), bytes, locked)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(LockInput::new(None, locked)),
        Err(e) => Err(io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))),
    }
}

/// Reads and analyses a topology with its lock file. Only files that cannot be read are errors
/// here; what is in them comes back as located diagnostics.
pub fn analyze(topology: &Path, locked: bool) -> io::Result<Analysis> {
    let bytes = std::fs::read(topology)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", topology.display())))?;
    let lock = read(topology, locked)?;
    Ok(meshwork_compiler::analyze_bytes_with(topology.display().to_string(), bytes, lock))
}

/// Writes `lock` as the lock file of `topology` unless the file already says exactly that.
/// Readers see the old file or the whole new one. Returns whether the file was written.
pub fn write(topology: &Path, lock: &Lock) -> io::Result<bool> {
    let path = path_for(topology);
    let text = meshwork_compiler::lock::render(lock);
    if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(false);
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| true).map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_sits_beside_its_topology_and_twins_share_it() {
        assert_eq!(path_for(Path::new("ex/quickstart.kdl")), Path::new("ex/quickstart.lock"));
        assert_eq!(path_for(Path::new("ex/quickstart.toml")), Path::new("ex/quickstart.lock"));
        assert_eq!(path_for(Path::new("topo")), Path::new("topo.lock"));
        assert_eq!(path_for(Path::new("odd.lock")), Path::new("odd.lock.lock"));
    }
}
