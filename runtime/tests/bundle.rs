//! Keyset bundles: round trip, wrong tokens, tampering, truncation, hostile archives and the
//! `meshwork keys export|import` CLI. Most tests use cheap Argon2 parameters; one runs the real
//! defaults (through the CLI).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use meshwork::bundle::{self, BundleError, HEADER_LEN, KdfParams, TAG_LEN};

const TOKEN: &[u8] = b"correct horse battery staple 42";
const WRONG: &[u8] = b"correct horse battery staple 43";
/// Cheap parameters so debug builds stay fast: 8 KiB, one pass.
const FAST: KdfParams = KdfParams { m_kib: 8, t: 1, p: 1 };
/// Marks secret content in the fake keyset, so output can be searched for it.
const SECRET: &str = "SECRET-KEY-MATERIAL";

/// A scratch directory of this test's own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bundle-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
    /// A file with the given mode.
    fn file(&self, rel: &str, content: &[u8], mode: u32) -> PathBuf {
        let p = self.path(rel);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A keyset-like tree: top-level files, nested directories, an empty one, an empty file, binary
/// content and a name longer than tar's 100-byte field.
fn fake_keyset(dir: &Path) {
    let mk = |rel: &str| fs::DirBuilder::new().recursive(true).mode(0o700).create(dir.join(rel)).unwrap();
    let put = |rel: &str, content: &[u8]| {
        let p = dir.join(rel);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    };
    mk("");
    mk("issued");
    mk("issued/archive");
    mk("private");
    mk("empty");
    put("ca.crt", b"-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n");
    put("ca.key", format!("-----BEGIN PRIVATE KEY-----\n{SECRET}-ca\n-----END PRIVATE KEY-----\n").as_bytes());
    put("tls-crypt.key", format!("{SECRET}-tls-crypt\n").as_bytes());
    put("crl.pem", b"");
    put("index.json", br#"{"serial": 7}"#);
    put("issued/web-1.crt", b"web-1 cert\n");
    put("issued/archive/web-1.2024.crt", &(0..=255u8).collect::<Vec<_>>());
    put("private/web-1.key", format!("{SECRET}-web-1\n").as_bytes());
    let long = format!("private/{}.key", "a-very-long-client-name".repeat(6));
    put(&long, format!("{SECRET}-long\n").as_bytes());
}

#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir { mode: u32 },
    File { mode: u32, content: Vec<u8> },
}

/// Every path below `root` with its kind, mode and content.
fn tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if meta.is_dir() {
                out.insert(rel, Node::Dir { mode });
                walk(root, &p, out);
            } else {
                assert!(meta.is_file(), "{} is neither a file nor a directory", p.display());
                out.insert(rel, Node::File { mode, content: fs::read(&p).unwrap() });
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    v.sort();
    v
}

/// A sealed bundle of a fresh fake keyset, made with cheap parameters.
fn fast_bundle(s: &Scratch) -> Vec<u8> {
    let src = s.path("src-keyset");
    fake_keyset(&src);
    bundle::export_with(&src, TOKEN, FAST).unwrap()
}

/// Asserts that importing failed without leaving anything: no state directory at all.
fn assert_nothing_written(state: &Path) {
    assert!(!state.exists(), "{} was created", state.display());
}

#[test]
fn round_trip_is_byte_identical_with_modes() {
    let s = Scratch::new("round-trip");
    let src = s.path("src-keyset");
    fake_keyset(&src);
    let sealed = bundle::export_with(&src, TOKEN, FAST).unwrap();
    assert!(sealed.starts_with(b"MWKEYSET1\n"));
    assert!(!String::from_utf8_lossy(&sealed).contains(SECRET), "the bundle holds plaintext");

    let state = s.path("other/state");
    let keyset = state.join("keyset");
    let report = bundle::import(&sealed, TOKEN, &keyset).unwrap();
    assert_eq!(tree(&src), tree(&keyset));
    assert_eq!((report.files, report.dirs, report.kdf), (9, 4, FAST));
    assert_eq!(report.keyset_dir, keyset);
    assert_eq!(fs::metadata(&keyset).unwrap().permissions().mode() & 0o7777, 0o700);
    assert_eq!(fs::metadata(&state).unwrap().permissions().mode() & 0o077, 0, "state dir created private");
    assert_eq!(names(&state), ["keyset"], "no staging directory left");

    // Fresh salt and nonce each time, the same deterministic archive inside.
    let again = bundle::export_with(&src, TOKEN, FAST).unwrap();
    assert_ne!(sealed, again);
    assert_eq!(bundle::open(&sealed, TOKEN).unwrap(), bundle::open(&again, TOKEN).unwrap());
    // And a re-export of the imported tree is the same archive too.
    let reexported = bundle::export_with(&keyset, TOKEN, FAST).unwrap();
    assert_eq!(bundle::open(&reexported, TOKEN).unwrap(), bundle::open(&sealed, TOKEN).unwrap());
}

#[test]
fn import_forces_private_modes() {
    let s = Scratch::new("modes");
    let src = s.path("src-keyset");
    fake_keyset(&src);
    fs::set_permissions(src.join("ca.crt"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(src.join("issued"), fs::Permissions::from_mode(0o755)).unwrap();
    let sealed = bundle::export_with(&src, TOKEN, FAST).unwrap();
    let keyset = s.path("state/keyset");
    bundle::import(&sealed, TOKEN, &keyset).unwrap();
    for (rel, node) in tree(&keyset) {
        match node {
            Node::Dir { mode } => assert_eq!(mode, 0o700, "{}", rel.display()),
            Node::File { mode, .. } => assert_eq!(mode, 0o600, "{}", rel.display()),
        }
    }
}

#[test]
fn wrong_token_is_an_authentication_error_and_writes_nothing() {
    let s = Scratch::new("wrong-token");
    let sealed = fast_bundle(&s);
    let state = s.path("state");
    let err = bundle::import(&sealed, WRONG, &state.join("keyset")).unwrap_err();
    assert!(matches!(err, BundleError::Authentication), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("wrong token") && msg.contains("altered"), "{msg}");
    assert_nothing_written(&state);

    // With an existing state directory: no keyset, no staging.
    fs::create_dir(&state).unwrap();
    assert!(matches!(bundle::import(&sealed, WRONG, &state.join("keyset")), Err(BundleError::Authentication)));
    assert!(names(&state).is_empty(), "{:?}", names(&state));
    assert!(matches!(bundle::open(&sealed, WRONG), Err(BundleError::Authentication)));
}

#[test]
fn any_flipped_byte_is_refused_and_writes_nothing() {
    let s = Scratch::new("tamper");
    let sealed = fast_bundle(&s);
    let n = sealed.len();
    let state = s.path("state");
    // (position, what it is, whether it must be the authentication error)
    let positions = [
        (0, "magic", false),
        (9, "magic newline", false),
        (13, "memory cost", false),
        (17, "passes", false),
        (21, "lanes", false),
        (22, "salt start", true),
        (37, "salt end", true),
        (38, "nonce start", true),
        (50, "nonce middle", true),
        (61, "nonce end", true),
        (69, "ciphertext length", false),
        (HEADER_LEN, "ciphertext start", true),
        (HEADER_LEN + (n - HEADER_LEN) / 2, "ciphertext middle", true),
        (n - TAG_LEN - 1, "ciphertext end", true),
        (n - TAG_LEN, "tag start", true),
        (n - 1, "tag end", true),
    ];
    for (at, what, auth) in positions {
        let mut bad = sealed.clone();
        bad[at] ^= 0x01;
        let err = bundle::import(&bad, TOKEN, &state.join("keyset")).expect_err(what);
        if auth {
            assert!(matches!(err, BundleError::Authentication), "{what}: {err:?}");
        }
        assert_nothing_written(&state);
    }
    // Every bit of the header, with the right token: always refused.
    for at in 0..HEADER_LEN {
        let mut bad = sealed.clone();
        bad[at] ^= 0x80;
        assert!(bundle::open(&bad, TOKEN).is_err(), "byte {at} flipped still opens");
    }
}

#[test]
fn hostile_kdf_parameters_are_refused_before_deriving() {
    let s = Scratch::new("hostile-kdf");
    let sealed = fast_bundle(&s);
    for (offset, value) in [(10, 2u32 << 20), (10, u32::MAX), (14, 1000), (14, 0), (18, 0), (18, 1 << 20)] {
        let mut bad = sealed.clone();
        bad[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
        let err = bundle::open(&bad, TOKEN).unwrap_err();
        assert!(matches!(err, BundleError::KdfParams(_)), "{offset}={value}: {err:?}");
    }
}

/// Regression (issue 12, item 9): a header asking for Argon2 m=1 GiB, t=16, p=16 was within the
/// old bounds, so it was derived (17 s, 1 GB) before the bundle was refused. Anything costlier
/// than what meshwork writes is now refused from the header alone, with the reason.
#[test]
fn costly_kdf_parameters_are_refused_before_deriving() {
    let s = Scratch::new("costly-kdf");
    let sealed = fast_bundle(&s);
    let state = s.path("state");
    let with = |m: u32, t: u32, p: u32| {
        let mut bad = sealed.clone();
        bad[10..14].copy_from_slice(&m.to_be_bytes());
        bad[14..18].copy_from_slice(&t.to_be_bytes());
        bad[18..22].copy_from_slice(&p.to_be_bytes());
        bad
    };
    for (m, t, p) in [(1 << 20, 16, 16), (1 << 20, 1, 1), (64 * 1024, 4, 1), (128 * 1024, 3, 1), (64 * 1024, 3, 16)] {
        let err = bundle::import(&with(m, t, p), TOKEN, &state.join("keyset")).unwrap_err();
        assert!(matches!(err, BundleError::KdfParams(_)), "m={m} t={t} p={p}: {err:?}");
        let text = err.to_string();
        assert!(text.contains("refusing the bundle's key-derivation parameters"), "{text}");
        assert_nothing_written(&state);
    }
    // The bundle as sealed (small parameters) still opens.
    assert!(bundle::open(&with(8, 1, 1), TOKEN).is_ok());
}

#[test]
fn truncated_or_foreign_files_are_not_bundles() {
    let s = Scratch::new("truncated");
    let sealed = fast_bundle(&s);
    let state = s.path("state");
    let n = sealed.len();
    let mut longer = sealed.clone();
    longer.push(0);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("half magic", sealed[..5].to_vec()),
        ("magic only", sealed[..10].to_vec()),
        ("header minus one", sealed[..HEADER_LEN - 1].to_vec()),
        ("header only", sealed[..HEADER_LEN].to_vec()),
        ("one byte short", sealed[..n - 1].to_vec()),
        ("half", sealed[..n / 2].to_vec()),
        ("one byte more", longer),
        ("text", b"hello, this is not a bundle at all, just some text\n".to_vec()),
        ("tar", bundle::open(&sealed, TOKEN).unwrap()),
        ("newer version", [b"MWKEYSET2\n".as_slice(), &sealed[10..]].concat()),
    ];
    for (what, bytes) in cases {
        let err = bundle::import(&bytes, TOKEN, &state.join("keyset")).expect_err(what);
        assert!(matches!(err, BundleError::NotABundle(_)), "{what}: {err:?}");
        assert!(err.to_string().starts_with("not a meshwork keyset bundle"), "{what}: {err}");
        assert_nothing_written(&state);
    }
}

#[test]
fn an_existing_keyset_is_refused_and_left_alone() {
    let s = Scratch::new("existing");
    let sealed = fast_bundle(&s);
    let keyset = s.path("state/keyset");
    fs::create_dir_all(&keyset).unwrap();
    s.file("state/keyset/ca.key", b"the original", 0o600);
    let err = bundle::import(&sealed, TOKEN, &keyset).unwrap_err();
    assert!(matches!(err, BundleError::KeysetExists(_)), "{err:?}");
    assert!(err.to_string().contains("a keyset already exists at"), "{err}");
    assert_eq!(fs::read(keyset.join("ca.key")).unwrap(), b"the original");
    assert_eq!(names(&s.path("state")), ["keyset"]);

    // An empty directory counts too, and so does a file.
    fs::remove_dir_all(&keyset).unwrap();
    fs::create_dir(&keyset).unwrap();
    assert!(matches!(bundle::import(&sealed, TOKEN, &keyset), Err(BundleError::KeysetExists(_))));
    fs::remove_dir(&keyset).unwrap();
    fs::write(&keyset, b"").unwrap();
    assert!(matches!(bundle::import(&sealed, TOKEN, &keyset), Err(BundleError::KeysetExists(_))));
}

#[test]
fn token_files() {
    let s = Scratch::new("token");
    let good = s.file("good", b"0123456789abcdef0123\n", 0o600);
    assert_eq!(bundle::read_token(&good).unwrap(), b"0123456789abcdef0123");
    let crlf = s.file("crlf", b"0123456789abcdef0123\r\n", 0o400);
    assert_eq!(bundle::read_token(&crlf).unwrap(), b"0123456789abcdef0123");
    let bare = s.file("bare", b"0123456789abcdef0123\n\n", 0o600);
    assert_eq!(bundle::read_token(&bare).unwrap(), b"0123456789abcdef0123\n", "only one newline is trimmed");

    let open = s.file("open", b"0123456789abcdef0123\n", 0o644);
    let msg = bundle::read_token(&open).unwrap_err().to_string();
    assert!(msg.contains(&open.display().to_string()) && msg.contains("0644"), "{msg}");
    let group = s.file("group", b"0123456789abcdef0123\n", 0o640);
    assert!(bundle::read_token(&group).unwrap_err().to_string().contains("0640"));

    let empty = s.file("empty", b"\n", 0o600);
    let msg = bundle::read_token(&empty).unwrap_err().to_string();
    assert!(msg.contains("empty") && msg.contains(&empty.display().to_string()), "{msg}");
    let short = s.file("short", b"0123456789abcde\n", 0o600);
    let msg = bundle::read_token(&short).unwrap_err().to_string();
    assert!(msg.contains("15 bytes") && msg.contains("at least 16"), "{msg}");
    let missing = s.path("missing");
    assert!(bundle::read_token(&missing).unwrap_err().to_string().contains("missing"));

    // The library refuses short tokens too.
    assert!(matches!(bundle::seal_with(b"x", b"short", FAST), Err(BundleError::Token(_))));
}

/// Raw tar entries: name and type.
type RawEntries<'a> = &'a [(&'a [u8], tar::EntryType)];

/// A tar entry with a raw name, written without the tar crate's own path checks.
fn raw_entry(builder: &mut tar::Builder<Vec<u8>>, name: &[u8], kind: tar::EntryType, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    if kind == tar::EntryType::Symlink || kind == tar::EntryType::Link {
        h.set_link_name("/etc/passwd").unwrap();
    }
    h.set_cksum();
    builder.append(&h, data).unwrap();
}

#[test]
fn hostile_archives_are_refused_and_write_nothing() {
    use tar::EntryType::{Directory as D, Link, Regular as F, Symlink};
    let s = Scratch::new("traversal");
    let state = s.path("state");
    let cases: &[(&str, RawEntries)] = &[
        ("parent", &[(b"ca.crt", F), (b"../evil", F)]),
        ("nested parent", &[(b"issued/", D), (b"issued/../../evil", F)]),
        ("absolute", &[(b"/tmp/evil", F)]),
        ("dot", &[(b"./ca.crt", F)]),
        ("empty component", &[(b"issued/", D), (b"issued//x", F)]),
        ("symlink", &[(b"ca.key", Symlink)]),
        ("hard link", &[(b"ca.key", Link)]),
        ("fifo", &[(b"fifo", tar::EntryType::Fifo)]),
        ("file before its directory", &[(b"issued/x.crt", F)]),
        ("file as a directory", &[(b"issued", F), (b"issued/x.crt", F)]),
        ("duplicate", &[(b"ca.crt", F), (b"ca.crt", F)]),
    ];
    for (what, entries) in cases {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind) in *entries {
            raw_entry(&mut builder, name, *kind, if *kind == F { b"data" } else { b"" });
        }
        let sealed = bundle::seal_with(&builder.into_inner().unwrap(), TOKEN, FAST).unwrap();
        let err = bundle::import(&sealed, TOKEN, &state.join("keyset")).expect_err(what);
        assert!(matches!(err, BundleError::Archive(_)), "{what}: {err:?}");
        assert_nothing_written(&state);
        assert!(!s.path("evil").exists() && !Path::new("/tmp/evil").exists(), "{what}");
    }
    // Garbage that decrypts fine but is no archive.
    let sealed = bundle::seal_with(&[0x55; 1024], TOKEN, FAST).unwrap();
    assert!(matches!(bundle::import(&sealed, TOKEN, &state.join("keyset")), Err(BundleError::Archive(_))));
    assert_nothing_written(&state);
}

#[test]
fn export_refuses_what_is_not_a_file_or_directory() {
    let s = Scratch::new("export-refuses");
    let src = s.path("keyset");
    assert!(matches!(bundle::export_with(&src, TOKEN, FAST), Err(BundleError::NoKeyset(_))));
    fake_keyset(&src);
    std::os::unix::fs::symlink("/etc/passwd", src.join("issued/link.crt")).unwrap();
    let err = bundle::export_with(&src, TOKEN, FAST).unwrap_err();
    assert!(matches!(err, BundleError::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("link.crt") && err.to_string().contains("symbolic link"), "{err}");
    fs::remove_file(src.join("issued/link.crt")).unwrap();

    let linked = s.path("linked-keyset");
    std::os::unix::fs::symlink(&src, &linked).unwrap();
    assert!(matches!(bundle::export_with(&linked, TOKEN, FAST), Err(BundleError::Unsupported { .. })));
    assert!(bundle::export_with(&src, TOKEN, FAST).is_ok());
}

#[test]
fn write_new_is_private_and_never_overwrites() {
    let s = Scratch::new("write-new");
    let out = s.path("out.bundle");
    bundle::write_new(&out, b"bytes").unwrap();
    assert_eq!(fs::metadata(&out).unwrap().permissions().mode() & 0o7777, 0o600);
    assert!(matches!(bundle::write_new(&out, b"other"), Err(BundleError::OutputExists(_))));
    assert_eq!(fs::read(&out).unwrap(), b"bytes");
    assert_eq!(names(&s.0), ["out.bundle"], "no temporary file left");
}

// ---------------------------------------------------------------------------------------------
// The CLI

fn meshwork(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshwork"))
        .args(args)
        .env_remove("MESHWORK_STATE_DIR")
        .output()
        .expect("run meshwork")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn assert_no_secrets(o: &Output) {
    let t = text(o);
    assert!(!t.contains(SECRET), "secret on the terminal: {t}");
    assert!(!t.contains(&String::from_utf8_lossy(TOKEN).into_owned()), "token on the terminal: {t}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The one test at the real parameters: what the CLI always uses to export.
#[test]
fn cli_export_then_import_at_default_parameters() {
    let sc = Scratch::new("cli-defaults");
    let (root, other) = (sc.path("root-state"), sc.path("other-state"));
    fake_keyset(&root.join("keyset"));
    let token = sc.file("token", &[TOKEN, b"\n"].concat(), 0o600);
    let out = sc.path("keyset.bundle");

    let o = meshwork(&["keys", "export", "--token-file", s(&token), "-o", s(&out), "--state-dir", s(&root)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_no_secrets(&o);
    assert!(text(&o).contains("Argon2id m=64 MiB t=3 p=1"), "{}", text(&o));
    assert_eq!(fs::metadata(&out).unwrap().permissions().mode() & 0o7777, 0o600);
    let sealed = fs::read(&out).unwrap();
    let params: Vec<u32> = sealed[10..22].chunks(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(params, [65536, 3, 1]);

    // Never overwrites.
    let o = meshwork(&["keys", "export", "--token-file", s(&token), "-o", s(&out), "--state-dir", s(&root)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    assert_eq!(fs::read(&out).unwrap(), sealed);

    let o = meshwork(&["keys", "import", s(&out), "--token-file", s(&token), "--state-dir", s(&other)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_no_secrets(&o);
    assert!(text(&o).contains("9 files, 4 directories"), "{}", text(&o));
    assert_eq!(tree(&root.join("keyset")), tree(&other.join("keyset")));
}

#[test]
fn cli_import_failures() {
    let sc = Scratch::new("cli-import");
    let bundle_file = sc.path("keyset.bundle");
    fs::write(&bundle_file, fast_bundle(&sc)).unwrap();
    let token = sc.file("token", TOKEN, 0o600);
    let wrong = sc.file("wrong", WRONG, 0o600);
    let open_token = sc.file("open-token", TOKEN, 0o644);
    let state = sc.path("state");
    let import = |token: &Path| {
        meshwork(&["keys", "import", s(&bundle_file), "--token-file", s(token), "--state-dir", s(&state)])
    };

    let o = import(&wrong);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("wrong token, or the bundle was altered"), "{}", text(&o));
    assert_no_secrets(&o);
    assert_nothing_written(&state);

    let o = import(&open_token);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("0644") && text(&o).contains("open-token"), "{}", text(&o));
    assert_nothing_written(&state);

    let not_bundle = sc.file("notes.txt", b"just notes\n", 0o600);
    let o = meshwork(&["keys", "import", s(&not_bundle), "--token-file", s(&token), "--state-dir", s(&state)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not a meshwork keyset bundle"), "{}", text(&o));
    assert_nothing_written(&state);

    let o = import(&token);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_no_secrets(&o);
    let o = import(&token);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("a keyset already exists at"), "{}", text(&o));
}

#[test]
fn cli_export_failures() {
    let sc = Scratch::new("cli-export");
    let state = sc.path("state");
    let token = sc.file("token", TOKEN, 0o600);
    let short = sc.file("short", b"tooshort\n", 0o600);
    let out = sc.path("out.bundle");
    let export =
        |token: &Path| meshwork(&["keys", "export", "--token-file", s(token), "-o", s(&out), "--state-dir", s(&state)]);

    let o = export(&token);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no keyset at"), "{}", text(&o));
    fake_keyset(&state.join("keyset"));
    let o = export(&short);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("at least 16"), "{}", text(&o));
    assert!(!out.exists());
}
