//! Which lab a verb acts on, from any directory.
//!
//! In order: the state directory named by `--state-dir` or `$MESHWORK_STATE_DIR`; the lab of
//! the one brought up with FILE, when the verb names one; the lab in `./mw-state`; the only lab
//! in the machine's index ([`super::registry`]). Several labs and nothing to tell them apart
//! is an error that names them all. Without any lab, `./mw-state` (where `lab down` then has
//! nothing to do).

use std::path::{Path, PathBuf};

use super::registry::Entry;

/// How the lab was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// `--state-dir` or `$MESHWORK_STATE_DIR`.
    Named,
    /// `./mw-state`, or nothing found (then no lab is up there).
    WorkingDir,
    /// The machine's index of labs (by FILE, or the only one).
    Index,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The lab's state directory, absolute.
    pub state_dir: PathBuf,
    pub how: How,
}

/// A path made absolute and resolved through symbolic links as far as it exists (a state
/// directory not made yet resolves as it will once it is).
pub fn absolute(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let lexical = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (lexical.parent().map(std::fs::canonicalize), lexical.file_name()) {
        (Some(Ok(parent)), Some(name)) => parent.join(name),
        _ => lexical,
    }
}

/// Picks the lab. `explicit`: the state directory given; `here`: the lab in the working
/// directory's default state directory `default`, if one is up there; `index`: the labs up on
/// this machine; `file`: the topology file the verb names (absolute).
pub fn choose(
    explicit: Option<&Path>,
    here: Option<&Entry>,
    default: &Path,
    index: &[Entry],
    file: Option<&Path>,
) -> Result<Found, String> {
    if let Some(dir) = explicit {
        return Ok(Found { state_dir: absolute(dir), how: How::Named });
    }
    let mut candidates: Vec<(&Entry, How)> = here.into_iter().map(|e| (e, How::WorkingDir)).collect();
    candidates
        .extend(index.iter().filter(|e| here.is_none_or(|h| h.state_dir != e.state_dir)).map(|e| (e, How::Index)));
    if let Some(file) = file {
        let with_file: Vec<&(&Entry, How)> = candidates.iter().filter(|(e, _)| e.file == file).collect();
        match with_file.as_slice() {
            [(e, how)] => return Ok(Found { state_dir: e.state_dir.clone(), how: *how }),
            [] => {}
            more => return Err(ambiguous(&more.iter().map(|(e, _)| *e).collect::<Vec<_>>())),
        }
    }
    match (here, index) {
        (Some(h), _) => Ok(Found { state_dir: h.state_dir.clone(), how: How::WorkingDir }),
        (None, []) => Ok(Found { state_dir: default.to_path_buf(), how: How::WorkingDir }),
        (None, [only]) => Ok(Found { state_dir: only.state_dir.clone(), how: How::Index }),
        (None, more) => Err(ambiguous(&more.iter().collect::<Vec<_>>())),
    }
}

fn ambiguous(labs: &[&Entry]) -> String {
    let list: Vec<String> =
        labs.iter().map(|e| format!("  {} (brought up with {})", e.state_dir.display(), e.file.display())).collect();
    format!(
        "{} labs are up on this machine; name one with --state-dir DIR, or by the FILE it was brought up with:\n{}",
        labs.len(),
        list.join("\n")
    )
}

/// The refusal when a verb names another FILE than the one the lab was brought up with.
pub fn differs(state_dir: &Path, recorded: &Path, given: &Path) -> String {
    format!(
        "the lab at {} was brought up with {}, not {}: leave FILE out to use the lab's own file, or bring {} up \
         in a state directory of its own (`meshwork lab up {} --state-dir DIR`)",
        state_dir.display(),
        recorded.display(),
        given.display(),
        given.display(),
        given.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(state: &str, file: &str) -> Entry {
        Entry { state_dir: state.into(), file: file.into() }
    }

    #[test]
    fn the_named_state_directory_wins() {
        let index = [entry("/a", "/a.kdl")];
        let f = choose(Some(Path::new("/x")), None, Path::new("/cwd/mw-state"), &index, None).unwrap();
        assert_eq!(f, Found { state_dir: "/x".into(), how: How::Named });
    }

    #[test]
    fn the_working_directory_then_the_only_lab_of_the_machine() {
        let here = entry("/cwd/mw-state", "/q.kdl");
        let index = [entry("/a", "/a.kdl")];
        let default = Path::new("/cwd/mw-state");
        assert_eq!(choose(None, Some(&here), default, &index, None).unwrap().how, How::WorkingDir);
        let f = choose(None, None, default, &index, None).unwrap();
        assert_eq!(f, Found { state_dir: "/a".into(), how: How::Index });
        let f = choose(None, None, default, &[], None).unwrap();
        assert_eq!(f, Found { state_dir: default.into(), how: How::WorkingDir });
    }

    #[test]
    fn a_file_picks_among_several_labs_and_several_without_one_are_named() {
        let index = [entry("/a", "/a.kdl"), entry("/b", "/b.kdl")];
        let default = Path::new("/cwd/mw-state");
        let f = choose(None, None, default, &index, Some(Path::new("/b.kdl"))).unwrap();
        assert_eq!(f.state_dir, Path::new("/b"));
        let e = choose(None, None, default, &index, None).unwrap_err();
        assert!(e.starts_with("2 labs are up"), "{e}");
        assert!(e.contains("/a (brought up with /a.kdl)") && e.contains("/b (brought up with /b.kdl)"), "{e}");
        // A file no lab was brought up with: the usual choice, then `differs` says so.
        let e = choose(None, None, default, &index, Some(Path::new("/c.kdl"))).unwrap_err();
        assert!(e.starts_with("2 labs"), "{e}");
        let here = entry("/cwd/mw-state", "/q.kdl");
        let f = choose(None, Some(&here), default, &index, Some(Path::new("/a.kdl"))).unwrap();
        assert_eq!(f.state_dir, Path::new("/a"));
    }
}
