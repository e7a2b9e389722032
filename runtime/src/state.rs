//! Where meshwork keeps what it owns on a host or a workstation: keys, plans, locks.

use std::path::{Path, PathBuf};

/// Environment variable that moves the state directory (the `--state-dir` flag wins).
pub const STATE_DIR_ENV: &str = "MESHWORK_STATE_DIR";
/// The default, relative to the working directory.
pub const DEFAULT_STATE_DIR: &str = "mw-state";

/// The state directory: `--state-dir`, else `$MESHWORK_STATE_DIR`, else `./mw-state`.
pub fn resolve(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os(STATE_DIR_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_STATE_DIR),
    }
}

/// The topology keyset inside a state directory.
pub fn keyset_dir(state: &Path) -> PathBuf {
    state.join("keyset")
}
