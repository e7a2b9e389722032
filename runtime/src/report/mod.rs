//! Diagnostics for machines other than a person's terminal: GitHub Actions workflow commands
//! ([`github`]), SARIF 2.1.0 for code-scanning tools ([`sarif`]) and a pull-request comment
//! for `diff` ([`markdown`]).

pub mod github;
pub mod markdown;
pub mod sarif;

use meshwork_compiler::diagnostic::{Diagnostic, Severity};
use meshwork_compiler::source::SourceFile;

/// Everything one run found: the files it read, each with its diagnostics, and the notices that
/// are about no place in a file (a file that cannot be read, a certificate that expires).
#[derive(Default)]
pub struct Report<'a> {
    pub files: Vec<(&'a SourceFile, &'a [Diagnostic])>,
    pub notices: Vec<Notice>,
    /// The checkout's root ($GITHUB_WORKSPACE in a workflow). Absolute file names under it are
    /// written relative to it, as GitHub wants them.
    pub workspace: Option<String>,
}

/// A problem without a place in a topology file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub severity: Severity,
    /// A short heading, e.g. `meshwork keyset`.
    pub title: String,
    pub message: String,
    /// The file it is about, if any (e.g. the one that could not be read).
    pub file: Option<String>,
}

impl Report<'_> {
    /// A file's name as the CI system should see it: relative to the workspace when it is
    /// inside it, else as given.
    pub fn path(&self, name: &str) -> String {
        relative_to(name, self.workspace.as_deref())
    }
}

fn relative_to(name: &str, workspace: Option<&str>) -> String {
    let Some(root) = workspace.map(|w| w.trim_end_matches('/')).filter(|w| !w.is_empty()) else {
        return name.to_string();
    };
    match name.strip_prefix(root).and_then(|rest| rest.strip_prefix('/')) {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => name.to_string(),
    }
}

/// The workspace root from the environment: `GITHUB_WORKSPACE` when set.
pub fn workspace_from_env() -> Option<String> {
    std::env::var("GITHUB_WORKSPACE").ok().filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::relative_to;

    #[test]
    fn names_under_the_workspace_become_relative() {
        assert_eq!(relative_to("/w/repo/net/a.kdl", Some("/w/repo")), "net/a.kdl");
        assert_eq!(relative_to("/w/repo/net/a.kdl", Some("/w/repo/")), "net/a.kdl");
        assert_eq!(relative_to("/w/repository/a.kdl", Some("/w/repo")), "/w/repository/a.kdl");
        assert_eq!(relative_to("net/a.kdl", Some("/w/repo")), "net/a.kdl");
        assert_eq!(relative_to("/w/repo/a.kdl", None), "/w/repo/a.kdl");
        assert_eq!(relative_to("/a.kdl", Some("/")), "/a.kdl");
    }
}
