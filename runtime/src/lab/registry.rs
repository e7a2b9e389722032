//! The labs up on this machine, so that every lab verb finds its lab from any directory.
//!
//! A lab is machine-wide (its namespaces are), so its index is too: `lab up` writes one small
//! file per lab into [`DIR`] (`/run/meshwork/labs/<digest of the state directory>.json`,
//! holding the lab's absolute state directory and topology file) and `lab down` removes it.
//! `/run` is a tmpfs, gone at reboot together with the namespaces it points to. An entry whose
//! lab record is gone (a lab removed by hand) is dropped when the index is read.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the index lives.
pub const DIR: &str = "/run/meshwork/labs";

/// One lab up on this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The lab's state directory (`--state-dir`), absolute.
    pub state_dir: PathBuf,
    /// The topology file it was brought up with, absolute.
    pub file: PathBuf,
}

impl Entry {
    /// Whether the lab's record is still there.
    pub fn is_up(&self) -> bool {
        self.state_dir.join("lab").join("lab.json").exists()
    }
}

/// The index file of a state directory.
fn entry_path(dir: &Path, state_dir: &Path) -> PathBuf {
    let digest = ring::digest::digest(&ring::digest::SHA256, state_dir.as_os_str().as_encoded_bytes());
    let hex: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{hex}.json"))
}

/// Records a lab (replacing an entry of the same state directory).
pub fn add(dir: &Path, entry: &Entry) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = entry_path(dir, &entry.state_dir);
    let body = serde_json::to_vec_pretty(entry).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, body)
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Forgets the lab of a state directory (nothing if it was not recorded).
pub fn remove(dir: &Path, state_dir: &Path) -> Result<(), String> {
    let path = entry_path(dir, state_dir);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

/// The labs up, by state directory; stale entries are dropped (and removed when possible).
pub fn list(dir: &Path) -> Vec<Entry> {
    let Ok(read) = fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for e in read.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Some(entry) = fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Entry>(&b).ok()) else {
            continue;
        };
        if entry.is_up() {
            out.push(entry);
        } else {
            let _ = fs::remove_file(&path);
        }
    }
    out.sort_by(|a, b| a.state_dir.cmp(&b.state_dir));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_listed_while_their_lab_is_up_and_removed_after() {
        let root = std::env::temp_dir().join(format!("mwh-registry-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let index = root.join("index");
        let state = root.join("state");
        fs::create_dir_all(state.join("lab")).unwrap();
        let entry = Entry { state_dir: state.clone(), file: root.join("t.kdl") };
        add(&index, &entry).unwrap();
        // No record yet: a stale entry, dropped.
        assert!(list(&index).is_empty());
        add(&index, &entry).unwrap();
        fs::write(state.join("lab/lab.json"), "{}").unwrap();
        assert_eq!(list(&index), vec![entry.clone()]);
        // The same state directory again replaces its entry.
        add(&index, &entry).unwrap();
        assert_eq!(list(&index).len(), 1);
        remove(&index, &state).unwrap();
        remove(&index, &state).unwrap();
        assert!(list(&index).is_empty());
        let _ = fs::remove_dir_all(&root);
    }
}
