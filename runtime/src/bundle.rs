//! Encrypted, authenticated keyset bundles: how the root controller hands the topology keyset to
//! the other controllers (`meshwork keys export` / `keys import`; the agent's HTTPS keyset
//! endpoint reuses [`seal`] and [`open`]).
//!
//! A bundle is the keyset directory as a tar archive, encrypted with XChaCha20-Poly1305 under a
//! key derived from the shared token with Argon2id. Format version 1, integers big-endian:
//!
//! ```text
//! offset  len  field
//!      0   10  magic "MWKEYSET1\n"
//!     10    4  Argon2id memory cost, KiB          (default 65536 = 64 MiB)
//!     14    4  Argon2id passes t                  (default 3)
//!     18    4  Argon2id lanes p                   (default 1)
//!     22   16  salt, random
//!     38   24  nonce, random
//!     62    8  n = length of what follows (ciphertext and its 16-byte tag)
//!     70    n  ciphertext || tag
//! ```
//!
//! key = Argon2id v1.3(password = token, salt, m, t, p), 32 bytes. The whole 70-byte header is
//! the AEAD's associated data, so changing any byte of it, of the ciphertext or of the tag makes
//! decryption fail. A wrong token and an altered bundle fail the same way: they cannot be told
//! apart. The KDF parameters are bounded on import ([`MAX_M_KIB`], [`MAX_T`], [`MAX_P`]) to what
//! meshwork itself writes, and checked before any key is derived, so a hostile header cannot make
//! meshwork allocate or spin for more than one ordinary import costs.
//!
//! The plaintext is a deterministic tar archive (sorted entries, mtime 0, uid/gid 0, modes
//! recorded) of regular files and directories only, paths relative to the keyset directory.
//! Import validates every entry in memory before writing anything, writes into a staging
//! directory next to the target (dirs 0700, files 0600) and renames it into place.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use ring::rand::{SecureRandom, SystemRandom};

/// The first bytes of every bundle; the digit is the format version.
pub const MAGIC: &[u8; 10] = b"MWKEYSET1\n";
/// The magic without its version, to recognise a bundle of another version.
const MAGIC_FAMILY: &[u8] = b"MWKEYSET";
pub const SALT_LEN: usize = 16;
pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const PARAMS_LEN: usize = 12;
const LENGTH_LEN: usize = 8;
/// Magic, KDF parameters, salt, nonce and ciphertext length: all authenticated as AAD.
pub const HEADER_LEN: usize = MAGIC.len() + PARAMS_LEN + SALT_LEN + NONCE_LEN + LENGTH_LEN;

/// Shortest token accepted, after trimming the token file's trailing newline.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest token file read.
pub const MAX_TOKEN_FILE_LEN: u64 = 4096;
/// Largest bundle written or read (a keyset is a few hundred KiB at most).
pub const MAX_BUNDLE_LEN: u64 = 64 << 20;
/// Import limits on the header's KDF parameters. The header is read before it can be
/// authenticated (the key comes from these very parameters), so anyone who can hand us a file
/// chooses them: accept no more memory and no more passes than [`KdfParams::DEFAULT`], which is
/// what meshwork writes, so the worst header costs one ordinary import (a 1 GiB, 16-pass header
/// used to cost 17 s and 1 GB before the token was even checked). Smaller values stay accepted
/// (tests seal with 8 KiB, 1 pass). Lanes do not add work in the sequential argon2 crate; a few
/// are allowed for bundles written by tools that parallelise.
pub const MAX_M_KIB: u32 = KdfParams::DEFAULT.m_kib;
pub const MAX_T: u32 = KdfParams::DEFAULT.t;
pub const MAX_P: u32 = 4;

/// Modes of everything written by import, whatever the archive recorded.
pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Argon2id cost parameters, stored in every bundle's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// What `meshwork keys export` uses: 64 MiB, 3 passes, 1 lane.
    pub const DEFAULT: KdfParams = KdfParams { m_kib: 64 * 1024, t: 3, p: 1 };

    /// The argon2 crate's parameters, or why these are refused.
    fn argon2(self) -> Result<Params, BundleError> {
        let refuse = |why: String| Err(BundleError::KdfParams(format!("{self}: {why}")));
        if self.m_kib > MAX_M_KIB {
            return refuse(format!("memory above {} MiB, more than meshwork ever writes", MAX_M_KIB / 1024));
        }
        if self.t == 0 || self.t > MAX_T {
            return refuse(format!("passes must be 1..={MAX_T}, as meshwork writes them"));
        }
        if self.p == 0 || self.p > MAX_P {
            return refuse(format!("lanes must be 1..={MAX_P}"));
        }
        Params::new(self.m_kib, self.t, self.p, Some(KEY_LEN)).or_else(|e| refuse(e.to_string()))
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams::DEFAULT
    }
}

impl fmt::Display for KdfParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.m_kib.is_multiple_of(1024) {
            write!(f, "Argon2id m={} MiB t={} p={}", self.m_kib / 1024, self.t, self.p)
        } else {
            write!(f, "Argon2id m={} KiB t={} p={}", self.m_kib, self.t, self.p)
        }
    }
}

/// What `import` wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportReport {
    pub keyset_dir: PathBuf,
    /// Regular files written.
    pub files: usize,
    /// Directories written below the keyset directory.
    pub dirs: usize,
    /// Total size of the files.
    pub bytes: u64,
    /// The parameters the bundle was sealed with.
    pub kdf: KdfParams,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a meshwork keyset bundle: {0}")]
    NotABundle(String),
    #[error(
        "the bundle could not be decrypted: wrong token, or the bundle was altered \
         (the two cannot be told apart)"
    )]
    Authentication,
    #[error("refusing the bundle's key-derivation parameters ({0})")]
    KdfParams(String),
    #[error("the bundle decrypted, but its content is not a valid keyset: {0}")]
    Archive(String),
    #[error("{0}")]
    Token(String),
    #[error("a keyset already exists at {}; remove it first, or import into another state directory", .0.display())]
    KeysetExists(PathBuf),
    #[error("no keyset at {}: create one with `meshwork keys init`, or import a bundle", .0.display())]
    NoKeyset(PathBuf),
    #[error("{} is {kind}: a keyset holds only regular files and directories", path.display())]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error("the keyset is {0} bytes; a bundle holds at most {MAX_BUNDLE_LEN} bytes")]
    TooLarge(u64),
    #[error("{} already exists; refusing to overwrite it", .0.display())]
    OutputExists(PathBuf),
    #[error("{context} {}: {source}", path.display())]
    Io { context: &'static str, path: PathBuf, source: io::Error },
    #[error("the system's random number generator failed")]
    Random,
}

fn io_err(context: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BundleError + use<> {
    let path = path.to_path_buf();
    move |source| BundleError::Io { context, path, source }
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// Reads a token file: one trailing newline (`\n` or `\r\n`) is trimmed; refuses a file that
/// group or others can access, an empty token and one shorter than [`MIN_TOKEN_LEN`].
pub fn read_token(path: &Path) -> Result<Vec<u8>, BundleError> {
    let file = File::open(path).map_err(io_err("cannot read token file", path))?;
    let meta = file.metadata().map_err(io_err("cannot read token file", path))?;
    if !meta.is_file() {
        return Err(BundleError::Token(format!("token file {} is not a regular file", path.display())));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(BundleError::Token(format!(
            "token file {} has mode {mode:04o}: group or others can access it; run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let mut token = Vec::new();
    file.take(MAX_TOKEN_FILE_LEN + 1).read_to_end(&mut token).map_err(io_err("cannot read token file", path))?;
    if token.len() as u64 > MAX_TOKEN_FILE_LEN {
        return Err(BundleError::Token(format!(
            "token file {} is longer than {MAX_TOKEN_FILE_LEN} bytes; is it the right file?",
            path.display()
        )));
    }
    if let Some(rest) = token.strip_suffix(b"\n") {
        let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
        token.truncate(rest.len());
    }
    check_token(&token).map_err(|why| BundleError::Token(format!("token file {}: {why}", path.display())))?;
    Ok(token)
}

fn check_token(token: &[u8]) -> Result<(), String> {
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "the token is {} bytes; at least {MIN_TOKEN_LEN} are required \
             (make one with `head -c 32 /dev/urandom | base64`)",
            token.len()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sealing

/// Encrypts and authenticates `plaintext` under `token` with the default KDF parameters.
pub fn seal(plaintext: &[u8], token: &[u8]) -> Result<Vec<u8>, BundleError> {
    seal_with(plaintext, token, KdfParams::DEFAULT)
}

/// [`seal`] with explicit KDF parameters (tests use cheap ones).
pub fn seal_with(plaintext: &[u8], token: &[u8], kdf: KdfParams) -> Result<Vec<u8>, BundleError> {
    check_token(token).map_err(BundleError::Token)?;
    let sealed_len = (plaintext.len() + HEADER_LEN + TAG_LEN) as u64;
    if sealed_len > MAX_BUNDLE_LEN {
        return Err(BundleError::TooLarge(plaintext.len() as u64));
    }
    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut salt).map_err(|_| BundleError::Random)?;
    rng.fill(&mut nonce).map_err(|_| BundleError::Random)?;

    let mut out = Vec::with_capacity(sealed_len as usize);
    out.extend_from_slice(MAGIC);
    for v in [kdf.m_kib, kdf.t, kdf.p] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&((plaintext.len() + TAG_LEN) as u64).to_be_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN);

    let cipher = XChaCha20Poly1305::new(&derive_key(token, &salt, kdf)?);
    let ciphertext = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &out })
        .map_err(|_| BundleError::TooLarge(plaintext.len() as u64))?;
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Decrypts a sealed bundle. Fails with [`BundleError::NotABundle`] on anything that is not a
/// complete version-1 bundle, and with [`BundleError::Authentication`] on a wrong token or any
/// altered byte.
pub fn open(sealed: &[u8], token: &[u8]) -> Result<Vec<u8>, BundleError> {
    open_with_params(sealed, token).map(|(plaintext, _)| plaintext)
}

fn open_with_params(sealed: &[u8], token: &[u8]) -> Result<(Vec<u8>, KdfParams), BundleError> {
    let header = Header::parse(sealed)?;
    check_token(token).map_err(BundleError::Token)?;
    let cipher = XChaCha20Poly1305::new(&derive_key(token, &header.salt, header.kdf)?);
    let (aad, ciphertext) = sealed.split_at(HEADER_LEN);
    let plaintext = cipher
        .decrypt(&XNonce::from(header.nonce), Payload { msg: ciphertext, aad })
        .map_err(|_| BundleError::Authentication)?;
    Ok((plaintext, header.kdf))
}

struct Header {
    kdf: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
}

impl Header {
    /// Checks magic, lengths and KDF bounds; the bytes are authenticated later, by decryption.
    fn parse(sealed: &[u8]) -> Result<Header, BundleError> {
        let not = |why: String| Err(BundleError::NotABundle(why));
        if !sealed.starts_with(MAGIC) {
            if sealed.starts_with(MAGIC_FAMILY) && sealed.get(MAGIC_FAMILY.len()).is_some_and(|v| *v != MAGIC[8]) {
                return not(format!(
                    "it has format version `{}`, this meshwork reads version 1",
                    String::from_utf8_lossy(&sealed[MAGIC_FAMILY.len()..MAGIC_FAMILY.len() + 1]).escape_debug()
                ));
            }
            if !sealed.is_empty() && MAGIC.starts_with(sealed) {
                return not(format!("the file is truncated ({} bytes)", sealed.len()));
            }
            return not("it does not start with the bundle magic `MWKEYSET1`".into());
        }
        if sealed.len() < HEADER_LEN {
            return not(format!(
                "the file is truncated: the header alone is {HEADER_LEN} bytes, the file has {}",
                sealed.len()
            ));
        }
        let be32 = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&sealed[at..at + 4]);
            u32::from_be_bytes(w)
        };
        let kdf = KdfParams { m_kib: be32(MAGIC.len()), t: be32(MAGIC.len() + 4), p: be32(MAGIC.len() + 8) };
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        let mut length = [0u8; LENGTH_LEN];
        let at = MAGIC.len() + PARAMS_LEN;
        salt.copy_from_slice(&sealed[at..at + SALT_LEN]);
        nonce.copy_from_slice(&sealed[at + SALT_LEN..at + SALT_LEN + NONCE_LEN]);
        length.copy_from_slice(&sealed[HEADER_LEN - LENGTH_LEN..HEADER_LEN]);
        let declared = u64::from_be_bytes(length);
        let present = (sealed.len() - HEADER_LEN) as u64;
        if declared < TAG_LEN as u64 {
            return not(format!("its declared length {declared} is shorter than the authentication tag"));
        }
        if present < declared {
            return not(format!(
                "the file is truncated: the header announces {declared} bytes of ciphertext, the file holds {present}"
            ));
        }
        if present > declared {
            return not(format!("{} unexpected bytes follow the end of the bundle", present - declared));
        }
        kdf.argon2()?;
        Ok(Header { kdf, salt, nonce })
    }
}

fn derive_key(token: &[u8], salt: &[u8], kdf: KdfParams) -> Result<Key, BundleError> {
    let mut key = [0u8; KEY_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, kdf.argon2()?)
        .hash_password_into(token, salt, &mut key)
        .map_err(|e| BundleError::KdfParams(format!("{kdf}: {e}")))?;
    Ok(Key::from(key))
}

// ---------------------------------------------------------------------------------------------
// Export

/// The keyset directory as a sealed bundle, with the default KDF parameters.
pub fn export(keyset_dir: &Path, token: &[u8]) -> Result<Vec<u8>, BundleError> {
    export_with(keyset_dir, token, KdfParams::DEFAULT)
}

/// [`export`] with explicit KDF parameters.
pub fn export_with(keyset_dir: &Path, token: &[u8], kdf: KdfParams) -> Result<Vec<u8>, BundleError> {
    check_token(token).map_err(BundleError::Token)?;
    seal_with(&archive(keyset_dir)?, token, kdf)
}

/// A deterministic tar archive of the tree: sorted, mtime 0, uid/gid 0, no owner names.
fn archive(keyset_dir: &Path) -> Result<Vec<u8>, BundleError> {
    let meta = match fs::symlink_metadata(keyset_dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BundleError::NoKeyset(keyset_dir.into())),
        Err(e) => return Err(io_err("cannot read", keyset_dir)(e)),
    };
    if !meta.is_dir() {
        let kind = if meta.is_file() { "a regular file, not a directory" } else { kind_of(meta.file_type()) };
        return Err(BundleError::Unsupported { path: keyset_dir.into(), kind });
    }
    let mut builder = tar::Builder::new(Vec::new());
    add_dir(&mut builder, keyset_dir, Path::new(""))?;
    builder.into_inner().map_err(io_err("cannot archive", keyset_dir))
}

fn add_dir(builder: &mut tar::Builder<Vec<u8>>, root: &Path, rel: &Path) -> Result<(), BundleError> {
    let dir = root.join(rel);
    let mut names: Vec<OsString> = Vec::new();
    for entry in fs::read_dir(&dir).map_err(io_err("cannot read", &dir))? {
        names.push(entry.map_err(io_err("cannot read", &dir))?.file_name());
    }
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path).map_err(io_err("cannot read", &path))?;
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, &rel, io::empty()).map_err(io_err("cannot archive", &path))?;
            add_dir(builder, root, &rel)?;
        } else if meta.is_file() {
            let mut file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(io_err("cannot read", &path))?;
            let mut data = Vec::new();
            file.read_to_end(&mut data).map_err(io_err("cannot read", &path))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, &rel, data.as_slice()).map_err(io_err("cannot archive", &path))?;
        } else {
            return Err(BundleError::Unsupported { path, kind: kind_of(meta.file_type()) });
        }
    }
    Ok(())
}

fn kind_of(ft: fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "neither a regular file nor a directory"
    }
}

/// Writes `bytes` to a new file `out`, mode 0600, atomically. Never overwrites.
pub fn write_new(out: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    crate::private_file::create(out, bytes).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => BundleError::OutputExists(out.into()),
        _ => io_err("cannot write", out)(e),
    })
}

/// Reads a bundle file, refusing one larger than any bundle can be.
pub fn read_bundle(path: &Path) -> Result<Vec<u8>, BundleError> {
    let file = File::open(path).map_err(io_err("cannot read", path))?;
    let mut bytes = Vec::new();
    file.take(MAX_BUNDLE_LEN + 1).read_to_end(&mut bytes).map_err(io_err("cannot read", path))?;
    if bytes.len() as u64 > MAX_BUNDLE_LEN {
        return Err(BundleError::NotABundle(format!("the file is larger than {} MiB", MAX_BUNDLE_LEN >> 20)));
    }
    Ok(bytes)
}

/// A path's directory (`.` for a bare name) and file name.
fn split(path: &Path) -> Result<(&Path, &OsStr), BundleError> {
    let name = path.file_name().ok_or_else(|| BundleError::Io {
        context: "not a file name:",
        path: path.into(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((parent, name))
}

// ---------------------------------------------------------------------------------------------
// Import

/// One validated archive entry: a relative path and, for a file, its content.
struct Item {
    rel: PathBuf,
    content: Option<Vec<u8>>,
}

/// Restores a bundle to `keyset_dir`, which must not exist. Everything is decrypted and
/// validated in memory first; nothing is written unless all of it is good, and then the tree
/// appears at once (staging directory + rename).
pub fn import(bundle: &[u8], token: &[u8], keyset_dir: &Path) -> Result<ImportReport, BundleError> {
    refuse_existing(keyset_dir)?;
    let (plaintext, kdf) = open_with_params(bundle, token)?;
    let items = unpack(&plaintext)?;

    let (parent, name) = split(keyset_dir)?;
    let created_parent = fs::symlink_metadata(parent).is_err();
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(parent).map_err(io_err("cannot create", parent))?;
    // Again: the key derivation takes a while, and someone may have been quicker.
    refuse_existing(keyset_dir)?;
    let staging = parent.join(format!(".{}.import-{}", name.to_string_lossy(), std::process::id()));
    if fs::symlink_metadata(&staging).is_ok() {
        // Left by an earlier run that had our pid and crashed.
        fs::remove_dir_all(&staging).map_err(io_err("cannot remove", &staging))?;
    }
    let mut report = ImportReport { keyset_dir: keyset_dir.into(), files: 0, dirs: 0, bytes: 0, kdf };
    let result = write_tree(&staging, &items, &mut report).and_then(|()| {
        fs::rename(&staging, keyset_dir).map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST | libc::ENOTEMPTY | libc::ENOTDIR | libc::EISDIR) => {
                BundleError::KeysetExists(keyset_dir.into())
            }
            _ => io_err("cannot rename into place", keyset_dir)(e),
        })
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
        if created_parent {
            let _ = fs::remove_dir(parent);
        }
    }
    result?;
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(report)
}

fn refuse_existing(keyset_dir: &Path) -> Result<(), BundleError> {
    match fs::symlink_metadata(keyset_dir) {
        Ok(_) => Err(BundleError::KeysetExists(keyset_dir.into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot read", keyset_dir)(e)),
    }
}

fn write_tree(staging: &Path, items: &[Item], report: &mut ImportReport) -> Result<(), BundleError> {
    let mkdir = |path: &Path| -> Result<(), BundleError> {
        DirBuilder::new().mode(DIR_MODE).create(path).map_err(io_err("cannot create", path))?;
        fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE)).map_err(io_err("cannot chmod", path))
    };
    mkdir(staging)?;
    for item in items {
        let path = staging.join(&item.rel);
        match &item.content {
            None => {
                mkdir(&path)?;
                report.dirs += 1;
            }
            Some(content) => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(FILE_MODE)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(io_err("cannot create", &path))?;
                file.set_permissions(fs::Permissions::from_mode(FILE_MODE)).map_err(io_err("cannot chmod", &path))?;
                file.write_all(content).map_err(io_err("cannot write", &path))?;
                file.sync_all().map_err(io_err("cannot write", &path))?;
                report.files += 1;
                report.bytes += content.len() as u64;
            }
        }
    }
    Ok(())
}

/// Parses and validates the whole archive: plain relative paths, regular files and directories
/// only, no duplicates, every parent directory listed before what it holds.
fn unpack(plaintext: &[u8]) -> Result<Vec<Item>, BundleError> {
    let bad = |why: String| BundleError::Archive(why);
    let mut archive = tar::Archive::new(plaintext);
    let mut items = Vec::new();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for entry in archive.entries().map_err(|e| bad(format!("unreadable archive: {e}")))? {
        let mut entry = entry.map_err(|e| bad(format!("unreadable archive entry: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).escape_debug().to_string();
        let rel = relative_path(&raw).map_err(|why| bad(format!("entry `{shown}` {why}")))?;
        let content = match entry.header().entry_type() {
            tar::EntryType::Directory => None,
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).map_err(|e| bad(format!("entry `{shown}` is unreadable: {e}")))?;
                Some(data)
            }
            other => {
                return Err(bad(format!(
                    "entry `{shown}` is {}; a keyset holds only regular files and directories",
                    entry_kind(other)
                )));
            }
        };
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty())
            && !dirs.contains(parent)
        {
            return Err(bad(format!("entry `{shown}` comes before its directory `{}`", parent.display())));
        }
        if !seen.insert(rel.clone()) {
            return Err(bad(format!("entry `{shown}` appears twice")));
        }
        if content.is_none() {
            dirs.insert(rel.clone());
        }
        items.push(Item { rel, content });
    }
    Ok(items)
}

/// A tar entry's path as a plain relative path (one trailing `/` allowed), or why not.
fn relative_path(raw: &[u8]) -> Result<PathBuf, &'static str> {
    if raw.is_empty() {
        return Err("has an empty path");
    }
    if raw.starts_with(b"/") {
        return Err("has an absolute path");
    }
    let trimmed = raw.strip_suffix(b"/").unwrap_or(raw);
    for part in trimmed.split(|b| *b == b'/') {
        match part {
            b"" => return Err("has an empty path component"),
            b"." | b".." => return Err("has a `.` or `..` path component"),
            _ if part.contains(&0) => return Err("has a NUL byte in its path"),
            _ => {}
        }
    }
    Ok(PathBuf::from(OsStr::from_bytes(trimmed)))
}

fn entry_kind(t: tar::EntryType) -> &'static str {
    match t {
        tar::EntryType::Symlink => "a symbolic link",
        tar::EntryType::Link => "a hard link",
        tar::EntryType::Char | tar::EntryType::Block => "a device",
        tar::EntryType::Fifo => "a FIFO",
        _ => "of an unsupported type",
    }
}
