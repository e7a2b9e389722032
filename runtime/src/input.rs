//! Reading topology files and showing their diagnostics, shared by every verb.

use std::path::Path;

use meshwork_compiler::diagnostic::Diagnostic;
use meshwork_compiler::network::Network;
use meshwork_compiler::source::SourceFile;
use meshwork_compiler::{Analysis, analyze_bytes_with};

/// A failure that is not about the file's content (unreadable file, unwritable directory).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{0}")]
    Message(String),
}

/// Reads and analyses a topology file with its lock file (`NAME.lock`, when there is one).
/// Only a file that cannot be read is an error here; what is in it (text that is not UTF-8
/// included) comes back as located diagnostics. With `locked`, every change the lock file
/// would need is an error diagnostic.
pub fn load_locked(path: &Path, locked: bool) -> Result<Analysis, CliError> {
    let bytes = std::fs::read(path).map_err(|source| CliError::Read { path: path.display().to_string(), source })?;
    let lock = meshwork::lockfile::read(path, locked).map_err(|e| CliError::Message(e.to_string()))?;
    Ok(analyze_bytes_with(path.display().to_string(), bytes, lock))
}

/// Prints diagnostics for people on stderr: colours as `--color`, `NO_COLOR` and `TERM` say
/// (on a terminal by default), plain otherwise.
pub fn print_diagnostics(file: &SourceFile, diagnostics: &[Diagnostic]) {
    let theme = if meshwork::term::color_stderr() {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme);
    // One write per diagnostic: a report of thousands starts showing at once, and stays linear.
    let mut out = String::new();
    for d in diagnostics {
        out.clear();
        meshwork_compiler::render::render_one(&handler, file, d, &mut out);
        // Not eprint!: a lab verb keeps SIGPIPE ignored, and a closed stderr must not panic.
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), out.as_bytes());
    }
}

/// The resolved network of a file, or its diagnostics printed and an error.
pub fn network(path: &Path) -> Result<(Analysis, Network), CliError> {
    network_locked(path, false)
}

/// [`network`], refusing (with `locked`) a topology whose lock file would change.
pub fn network_locked(path: &Path, locked: bool) -> Result<(Analysis, Network), CliError> {
    let mut analysis = load_locked(path, locked)?;
    print_diagnostics(&analysis.file, &analysis.diagnostics);
    match analysis.network.take() {
        Some(net) => Ok((analysis, net)),
        None => {
            let errors = analysis.diagnostics.iter().filter(|d| d.is_error()).count();
            Err(CliError::Message(format!(
                "{} has {}; fix them first (meshwork check)",
                analysis.file.name,
                meshwork::plural::count(errors, "error")
            )))
        }
    }
}

/// The keyset in `state`, if there is one (a keyset that exists but cannot be used, e.g. key
/// files readable by others, is an error).
pub fn keyset(state: &Path) -> Result<Option<meshwork::keys::Keyset>, CliError> {
    match meshwork::keys::Keyset::open(state) {
        Ok(k) => Ok(Some(k)),
        Err(meshwork::keys::KeyError::NotFound { .. }) => Ok(None),
        Err(e) => Err(CliError::Message(e.to_string())),
    }
}

/// The CA fingerprint of the keyset in `state`, if there is one: it goes into the checksum.
pub fn ca_fingerprint(state: &Path) -> Result<Option<String>, CliError> {
    Ok(keyset(state)?.map(|k| k.ca_fingerprint()))
}
