//! `meshwork keys export|import`: the keyset as an encrypted, authenticated bundle, so the root
//! controller can hand it to the others with a shared token (format in `meshwork::bundle`).
//! Only paths, sizes and parameters are printed; never a key or the token.

use std::path::Path;
use std::process::ExitCode;

use meshwork::bundle::{self, BundleError, KdfParams};
use meshwork::state::keyset_dir;

use crate::input::CliError;

fn fail(what: &str) -> impl FnOnce(BundleError) -> CliError + '_ {
    move |e| CliError::Message(format!("{what}: {e}"))
}

pub fn export(state: &Path, token_file: &Path, out: &Path) -> Result<ExitCode, CliError> {
    let what = format!("cannot export the keyset to {}", out.display());
    let token = bundle::read_token(token_file).map_err(fail(&what))?;
    // Before the (deliberately slow) key derivation.
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(fail(&what)(BundleError::OutputExists(out.into())));
    }
    let dir = keyset_dir(state);
    let sealed = bundle::export(&dir, &token).map_err(fail(&what))?;
    bundle::write_new(out, &sealed).map_err(fail(&what))?;
    println!(
        "Exported the keyset at {} to {} ({} bytes; {} + XChaCha20-Poly1305).",
        dir.display(),
        out.display(),
        sealed.len(),
        KdfParams::DEFAULT
    );
    println!("Import it on another controller with: meshwork keys import {} --token-file FILE", out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn import(bundle_file: &Path, token_file: &Path, state: &Path) -> Result<ExitCode, CliError> {
    let what = format!("cannot import {}", bundle_file.display());
    let token = bundle::read_token(token_file).map_err(fail(&what))?;
    let sealed = bundle::read_bundle(bundle_file).map_err(fail(&what))?;
    let report = bundle::import(&sealed, &token, &keyset_dir(state)).map_err(fail(&what))?;
    println!(
        "Imported the keyset into {}: {}, {}, {} bytes.",
        report.keyset_dir.display(),
        count(report.files, "file"),
        count(report.dirs, "directory"),
        report.bytes
    );
    Ok(ExitCode::SUCCESS)
}

fn count(n: usize, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {noun}s"),
    }
}

/// `meshwork keys fetch --from URL --token-file F`: the keyset from a running agent.
pub fn fetch(url: &str, token_file: &Path, state: &Path) -> Result<ExitCode, CliError> {
    let report = meshwork::api::client::fetch_and_import(url, token_file, state)
        .map_err(|e| CliError::Message(format!("cannot fetch the keyset: {e}")))?;
    println!(
        "Fetched the keyset of topology {} from {} ({} bytes) into {}; CA fingerprint {}.",
        report.topology,
        report.url,
        report.bytes,
        report.import.keyset_dir.display(),
        report.ca_fingerprint
    );
    println!("Compare the fingerprint with `meshwork check --state-dir` output on the root controller.");
    Ok(ExitCode::SUCCESS)
}
