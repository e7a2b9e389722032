//! Everything that can go wrong with a keyset, each with a message that says what to do.

use std::path::PathBuf;

/// A keyset failure. Messages name the file and never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("keyset already exists at {}; use `meshwork keys sync` to update it", dir.display())]
    AlreadyExists { dir: PathBuf },
    #[error("no keyset at {}; create one with `meshwork keys init FILE`", dir.display())]
    NotFound { dir: PathBuf },
    #[error(
        "{} has mode {mode:04o}, which lets group or others in; keyset files must be 0600 and \
         directories 0700 (chmod {want:o} {})",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32, want: u32 },
    #[error(
        "{} is not a regular file or directory (a symbolic link?); refusing to use it as part of a keyset",
        path.display()
    )]
    NotRegular { path: PathBuf },
    #[error(
        "{} belongs to uid {owner}, not to this user (uid {me}); a keyset is used by the user who owns it \
         (chown {me} {})",
        path.display(),
        path.display()
    )]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "the private key {} does not belong to the certificate {}; refusing to use it (re-issue with \
         `meshwork keys sync`, or restore the keyset from a bundle)",
        key.display(),
        cert.display()
    )]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("keyset at {} is incomplete: {} is missing", dir.display(), missing)]
    Incomplete { dir: PathBuf, missing: &'static str },
    #[error("cannot {op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Index { path: PathBuf, message: String },
    #[error(
        "the keyset at {} belongs to topology `{keyset}`, but the file is topology `{file}`; \
         one keyset serves one topology (use another --state-dir)",
        dir.display()
    )]
    TopologyMismatch { dir: PathBuf, keyset: String, file: String },
    #[error("{} does not match the CA in index.json (fingerprint {found}, index says {expected})", path.display())]
    CaMismatch { path: PathBuf, expected: String, found: String },
    #[error("no certificate for `{cn}` in the keyset; run `meshwork keys sync` if the topology declares it")]
    UnknownIdentity { cn: String },
    #[error("`{cn}` cannot be used as a certificate name or file name")]
    InvalidName { cn: String },
    #[error("`{cn}` appears twice among the topology's identities")]
    DuplicateIdentity { cn: String },
    #[error("another `meshwork keys` command is working on {}; try again when it has finished", dir.display())]
    Locked { dir: PathBuf },
    #[error("cannot {what}: {source}")]
    Crypto { what: String, source: rcgen::Error },
    #[error("{}: not a PEM certificate ({message})", path.display())]
    BadCertificate { path: PathBuf, message: String },
    #[error("{}: not a pre-shared key file: {why} (expected one line `secret = 0x` and 64 lowercase hex digits)", path.display())]
    BadPsk { path: PathBuf, why: String },
    #[error("`{a}` and `{b}` have no pre-shared key: {why}")]
    NotAPair { a: String, b: String, why: String },
    #[error("the keyset has no pre-shared key for {pair} yet; run `meshwork keys sync` first")]
    PskMissing { pair: String },
    #[error("the system random number generator failed")]
    Random,
    #[error("a certificate-issuing thread stopped unexpectedly")]
    WorkerPanicked,
}

impl KeyError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> KeyError {
        let path = path.into();
        move |source| KeyError::Io { op, path, source }
    }

    pub(crate) fn crypto(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> KeyError {
        let what = what.into();
        move |source| KeyError::Crypto { what, source }
    }
}
