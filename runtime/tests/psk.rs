//! Pre-shared keys between compute nodes in different PDCs: which pairs get one, the file's
//! shape and mode, sync and rotate-psk keeping every other key byte-identical, export/import,
//! refusing an open key file, and no verb ever printing a key.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use ::time::OffsetDateTime;
use ::time::macros::datetime;
use meshwork::bundle::{self, KdfParams};
use meshwork::keys::{KeyError, Keyset, Psk};
use meshwork_compiler::network::Network;
use meshwork_compiler::source::SourceFile;
use meshwork_compiler::vxlan::names::NodePair;
use support::fixtures::{TWO_PDCS, TWO_PDCS_CN4, TWO_PDCS_PAIRS};

const T0: OffsetDateTime = datetime!(2026-11-21 10:00 UTC);
const TOKEN: &[u8] = b"correct horse battery staple 42";
/// Cheap Argon2 parameters for the library round trip.
const FAST: KdfParams = KdfParams { m_kib: 8, t: 1, p: 1 };

fn network(text: &str) -> Network {
    let a = meshwork_compiler::analyze(SourceFile::new("two-pdcs.kdl", text.to_string()));
    a.network.unwrap_or_else(|| panic!("topology does not compile: {:#?}", a.diagnostics))
}

fn pair(a: &str, b: &str) -> NodePair {
    NodePair::new(a, b)
}

/// A scratch directory of this test's own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("psk-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn state(&self) -> PathBuf {
        self.0.join("state")
    }
    fn psk_dir(&self) -> PathBuf {
        self.state().join("keyset/psk")
    }
    fn psk_file(&self, p: &NodePair) -> PathBuf {
        self.psk_dir().join(p.psk_file())
    }
    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        fs::write(&p, text).unwrap();
        p.display().to_string()
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Every file under `dir` with its bytes, by relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The psk/ files only, by file name.
fn psk_files(s: &Scratch) -> BTreeMap<String, Vec<u8>> {
    tree(&s.psk_dir())
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn init(s: &Scratch, text: &str) -> Keyset {
    Keyset::init(&s.state(), &network(text), T0).unwrap();
    Keyset::open(&s.state()).unwrap()
}

/// Asserts the one-line swanctl format: `secret = 0x` and 64 lowercase hex digits.
fn assert_format(bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).unwrap();
    let hex = text.strip_prefix("secret = 0x").and_then(|t| t.strip_suffix('\n')).expect("one secret line");
    assert_eq!(hex.len(), 64);
    assert!(hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)), "lowercase hex");
}

#[test]
fn init_creates_exactly_the_cross_pdc_pairs_private_and_well_formed() {
    let s = Scratch::new("init");
    let report = Keyset::init(&s.state(), &network(TWO_PDCS), T0).unwrap();
    assert_eq!(report.psk_created, ["cn-1 and cn-3", "cn-2 and cn-3"]);
    let files = psk_files(&s);
    let want: Vec<String> = TWO_PDCS_PAIRS.iter().map(|(a, b)| pair(a, b).psk_file()).collect();
    assert_eq!(files.keys().cloned().collect::<Vec<_>>(), want, "one file per cross-PDC pair, none for cn-1+cn-2");
    assert_eq!(mode(&s.psk_dir()), 0o700);
    for (name, bytes) in &files {
        assert_eq!(mode(&s.psk_dir().join(name)), 0o600, "{name}");
        assert_format(bytes);
    }
    assert_ne!(files.values().next(), files.values().nth(1), "every pair has its own key");

    let k = Keyset::open(&s.state()).unwrap();
    let recorded: Vec<(String, String)> = k.psk_records().iter().map(|r| (r.low.clone(), r.high.clone())).collect();
    assert_eq!(recorded, TWO_PDCS_PAIRS.map(|(a, b)| (a.to_string(), b.to_string())));
    assert!(k.psk_records().iter().all(|r| r.created == T0));
    for (a, b) in TWO_PDCS_PAIRS {
        let p = pair(a, b);
        assert_eq!(k.psk(&p).unwrap().to_file(), fs::read(s.psk_file(&p)).unwrap());
    }
    assert!(matches!(k.psk(&pair("cn-1", "cn-2")), Err(KeyError::PskMissing { .. })));

    // A topology without nodes gets no psk/ at all, and an index without `psks`.
    let plain = TWO_PDCS.lines().filter(|l| !l.starts_with("node")).collect::<Vec<_>>().join("\n");
    let s2 = Scratch::new("init-no-nodes");
    let r = Keyset::init(&s2.state(), &network(&plain), T0).unwrap();
    assert!(r.psk_created.is_empty());
    assert!(!s2.psk_dir().exists());
    assert!(!fs::read_to_string(s2.state().join("keyset/index.json")).unwrap().contains("psks"));
}

#[test]
fn sync_adds_and_removes_pairs_and_keeps_the_others_byte_identical() {
    let s = Scratch::new("sync");
    let mut k = init(&s, TWO_PDCS);
    let before = psk_files(&s);

    let grown = format!("{TWO_PDCS}{TWO_PDCS_CN4}");
    let r = k.sync(&network(&grown), T0 + ::time::Duration::days(1)).unwrap();
    assert_eq!(r.psk_created, ["cn-1 and cn-4", "cn-2 and cn-4"], "cn-3 and cn-4 share PDC b: no key");
    assert!(r.psk_removed.is_empty() && r.issued.is_empty());
    assert_eq!(r.psk_unchanged, 2);
    let grown_files = psk_files(&s);
    assert_eq!(grown_files.len(), 4);
    for (name, bytes) in &before {
        assert_eq!(grown_files.get(name), Some(bytes), "{name} kept");
    }

    // A second sync writes nothing at all.
    let whole = tree(&s.state());
    assert!(!k.sync(&network(&grown), T0 + ::time::Duration::days(2)).unwrap().changed());
    assert_eq!(tree(&s.state()), whole);

    // Without cn-3, its pairs' files go; the others stay byte-identical.
    let shrunk = grown.lines().filter(|l| !l.contains("\"cn-3\"")).collect::<Vec<_>>().join("\n");
    let r = k.sync(&network(&shrunk), T0 + ::time::Duration::days(3)).unwrap();
    assert_eq!(r.psk_removed, ["cn-1 and cn-3", "cn-2 and cn-3"]);
    assert!(r.psk_created.is_empty());
    let after = psk_files(&s);
    assert_eq!(after.keys().cloned().collect::<Vec<_>>(), ["cn-1+cn-4.psk", "cn-2+cn-4.psk"]);
    for (name, bytes) in &after {
        assert_eq!(grown_files.get(name), Some(bytes), "{name} kept");
    }
    let recorded: Vec<NodePair> = Keyset::open(&s.state()).unwrap().psk_records().iter().map(|r| r.pair()).collect();
    assert_eq!(recorded, [pair("cn-1", "cn-4"), pair("cn-2", "cn-4")]);
}

#[test]
fn sync_recreates_a_missing_file_with_a_warning_and_removes_strays() {
    let s = Scratch::new("sync-repair");
    let mut k = init(&s, TWO_PDCS);
    let kept = fs::read(s.psk_file(&pair("cn-2", "cn-3"))).unwrap();
    fs::remove_file(s.psk_file(&pair("cn-1", "cn-3"))).unwrap();
    let stray = s.psk_dir().join("cn-8+cn-9.psk");
    fs::write(&stray, b"secret = 0x00\n").unwrap();
    chmod(&stray, 0o600);
    let r = k.sync(&network(TWO_PDCS), T0).unwrap();
    assert_eq!(r.psk_created, ["cn-1 and cn-3"]);
    assert!(r.warnings.iter().any(|w| w.contains("cn-1 and cn-3") && w.contains("missing")), "{:?}", r.warnings);
    assert!(r.warnings.iter().any(|w| w.contains("cn-8+cn-9.psk")), "{:?}", r.warnings);
    assert!(!stray.exists());
    assert_format(&fs::read(s.psk_file(&pair("cn-1", "cn-3"))).unwrap());
    assert_eq!(fs::read(s.psk_file(&pair("cn-2", "cn-3"))).unwrap(), kept);
}

#[test]
fn rotate_one_pair_changes_only_its_file() {
    let s = Scratch::new("rotate-one");
    let mut k = init(&s, TWO_PDCS);
    let before = tree(&s.state().join("keyset"));
    // Either order names the same pair.
    let r = k.rotate_psk(&network(TWO_PDCS), Some(("cn-3", "cn-1")), T0 + ::time::Duration::days(1)).unwrap();
    assert_eq!(r.psk_rotated, ["cn-1 and cn-3"]);
    assert_eq!(r.psk_unchanged, 1);
    let after = tree(&s.state().join("keyset"));
    let changed: Vec<&String> = after.iter().filter(|(n, b)| before.get(*n) != Some(*b)).map(|(n, _)| n).collect();
    assert_eq!(changed, ["index.json", "psk/cn-1+cn-3.psk"]);
    assert_eq!(before.len(), after.len());
    assert_format(&after["psk/cn-1+cn-3.psk"]);
    assert_eq!(mode(&s.psk_file(&pair("cn-1", "cn-3"))), 0o600);
    let k = Keyset::open(&s.state()).unwrap();
    let created: Vec<_> = k.psk_records().iter().map(|r| r.created).collect();
    assert_eq!(created, [T0 + ::time::Duration::days(1), T0]);
}

#[test]
fn rotate_without_a_pair_changes_every_key() {
    let s = Scratch::new("rotate-all");
    let mut k = init(&s, TWO_PDCS);
    let before = tree(&s.state().join("keyset"));
    let r = k.rotate_psk(&network(TWO_PDCS), None, T0 + ::time::Duration::days(1)).unwrap();
    assert_eq!(r.psk_rotated, ["cn-1 and cn-3", "cn-2 and cn-3"]);
    let after = tree(&s.state().join("keyset"));
    let mut changed: Vec<&String> = after.iter().filter(|(n, b)| before.get(*n) != Some(*b)).map(|(n, _)| n).collect();
    changed.sort();
    assert_eq!(changed, ["index.json", "psk/cn-1+cn-3.psk", "psk/cn-2+cn-3.psk"]);
}

#[test]
fn rotate_refuses_what_is_not_a_cross_pdc_pair_naming_the_nodes() {
    let s = Scratch::new("rotate-refuses");
    let mut k = init(&s, TWO_PDCS);
    let before = tree(&s.state());
    let net = network(TWO_PDCS);
    let e = k.rotate_psk(&net, Some(("cn-2", "cn-1")), T0).unwrap_err().to_string();
    assert!(e.contains("`cn-2` and `cn-1`") && e.contains("PDC `a`"), "{e}");
    let e = k.rotate_psk(&net, Some(("cn-1", "cn-7")), T0).unwrap_err().to_string();
    assert!(e.contains("`cn-7` is not a node"), "{e}");
    let e = k.rotate_psk(&net, Some(("cn-1", "east")), T0).unwrap_err().to_string();
    assert!(e.contains("`east` is not a node"), "{e}");
    // A pair of the topology the keyset has no key for yet: sync first.
    let grown = network(&format!("{TWO_PDCS}{TWO_PDCS_CN4}"));
    let e = k.rotate_psk(&grown, Some(("cn-4", "cn-1")), T0).unwrap_err().to_string();
    assert!(e.contains("cn-1 and cn-4") && e.contains("keys sync"), "{e}");
    assert_eq!(tree(&s.state()), before, "nothing written");

    let file = s.file("t.kdl", TWO_PDCS);
    let state = s.state().display().to_string();
    let o = support::meshwork(&["keys", "rotate-psk", &file, "cn-1", "cn-2", "--state-dir", &state]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("`cn-1` and `cn-2`") && text(&o).contains("PDC `a`"), "{}", text(&o));
    assert_eq!(tree(&s.state()), before);
}

#[test]
fn import_of_an_export_restores_the_keys() {
    let s = Scratch::new("bundle");
    init(&s, TWO_PDCS);
    let sealed = bundle::export_with(&s.state().join("keyset"), TOKEN, FAST).unwrap();
    let other = s.0.join("other");
    bundle::import(&sealed, TOKEN, &other.join("keyset")).unwrap();
    assert_eq!(tree(&other.join("keyset")), tree(&s.state().join("keyset")));
    assert_eq!(mode(&other.join("keyset/psk")), 0o700);
    let (mine, theirs) = (Keyset::open(&s.state()).unwrap(), Keyset::open(&other).unwrap());
    for (a, b) in TWO_PDCS_PAIRS {
        let p = pair(a, b);
        assert_eq!(theirs.psk(&p).unwrap(), mine.psk(&p).unwrap());
        assert_eq!(mode(&other.join("keyset/psk").join(p.psk_file())), 0o600);
    }
}

#[test]
fn an_open_or_linked_key_file_is_refused() {
    let s = Scratch::new("open-file");
    let k = init(&s, TWO_PDCS);
    let p = pair("cn-1", "cn-3");
    let path = s.psk_file(&p);

    chmod(&path, 0o644);
    let e = Keyset::open(&s.state()).unwrap_err();
    assert!(matches!(e, KeyError::Permissions { .. }), "{e}");
    assert!(e.to_string().contains(&path.display().to_string()) && e.to_string().contains("0644"), "{e}");
    // A keyset opened before the change reads the key with the same checks.
    let e = k.psk(&p).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()) && e.contains("0644"), "{e}");

    // Every verb that reads keys refuses, naming the file, and writes nothing.
    let file = s.file("t.kdl", TWO_PDCS);
    let state = s.state().display().to_string();
    let before = tree(&s.state());
    for args in [
        vec!["keys", "sync", &file, "--state-dir", &state],
        vec!["keys", "renew", &file, "--state-dir", &state],
        vec!["keys", "rotate-psk", &file, "--state-dir", &state],
        vec!["keys", "rotate-psk", &file, "cn-1", "cn-3", "--state-dir", &state],
    ] {
        let o = support::meshwork(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(&path.display().to_string()) && text(&o).contains("0644"), "{}", text(&o));
    }
    assert_eq!(tree(&s.state()), before);
    chmod(&path, 0o600);
    Keyset::open(&s.state()).unwrap();

    // A symbolic link in place of the file (even to a private, well-formed key) is refused.
    let elsewhere = s.0.join("elsewhere.psk");
    fs::copy(&path, &elsewhere).unwrap();
    chmod(&elsewhere, 0o600);
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    assert!(matches!(Keyset::open(&s.state()), Err(KeyError::NotRegular { .. })));
    assert!(matches!(k.psk(&p), Err(KeyError::NotRegular { .. })));
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Standard base64 with padding (the form a key would take if printed as base64).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every key in psk/ now, in the forms it could leak as: hex, its first half, uppercase hex,
/// and base64 of the raw bytes.
fn leak_forms(s: &Scratch, into: &mut Vec<String>) {
    for bytes in psk_files(s).values() {
        let k = Psk::parse(Path::new("x.psk"), bytes).unwrap();
        let hex: String = k.bytes().iter().map(|b| format!("{b:02x}")).collect();
        into.push(hex[..32].to_string());
        into.push(hex.to_uppercase());
        into.push(base64(k.bytes()));
        into.push(hex);
    }
}

/// Runs every `keys` verb (and the failures) on the two-PDC topology and greps everything they
/// printed, and every file `build` wrote, for every key that ever existed.
#[test]
fn no_verb_ever_prints_a_key() {
    assert_eq!(base64(b"foob"), "Zm9vYg==");
    let s = Scratch::new("no-leak");
    let file = s.file("t.kdl", TWO_PDCS);
    let grown = s.file("grown.kdl", &format!("{TWO_PDCS}{TWO_PDCS_CN4}"));
    let state = s.state().display().to_string();
    let other = s.path("other-state");
    let token = s.file("token", "correct horse battery staple 42\n");
    chmod(Path::new(&token), 0o600);
    let bundle_file = s.path("keyset.bundle");
    let out_dir = s.path("out");

    let mut outputs: Vec<(String, Output)> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let mut run = |args: &[&str], code: i32, s: &Scratch, keys: &mut Vec<String>| {
        let o = support::meshwork(args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o));
        outputs.push((args.join(" "), o));
        leak_forms(s, keys);
    };
    run(&["keys", "init", &file, "--state-dir", &state], 0, &s, &mut keys);
    run(&["keys", "sync", &file, "--state-dir", &state], 0, &s, &mut keys);
    run(&["keys", "sync", &grown, "--state-dir", &state], 0, &s, &mut keys);
    run(&["keys", "rotate-psk", &grown, "cn-4", "cn-1", "--state-dir", &state], 0, &s, &mut keys);
    run(&["keys", "rotate-psk", &grown, "--state-dir", &state], 0, &s, &mut keys);
    run(&["keys", "rotate-psk", &grown, "cn-3", "cn-4", "--state-dir", &state], 1, &s, &mut keys);
    run(&["keys", "renew", &grown, "--within", "3000", "--state-dir", &state], 0, &s, &mut keys);
    run(&["keys", "sync", &file, "--state-dir", &state], 0, &s, &mut keys);
    run(&["keys", "export", "--token-file", &token, "-o", &bundle_file, "--state-dir", &state], 0, &s, &mut keys);
    run(&["keys", "import", &bundle_file, "--token-file", &token, "--state-dir", &other], 0, &s, &mut keys);
    run(&["build", &file, "-o", &out_dir, "--state-dir", &state], 0, &s, &mut keys);
    chmod(&s.psk_file(&pair("cn-1", "cn-3")), 0o644);
    run(&["keys", "sync", &file, "--state-dir", &state], 1, &s, &mut keys);
    run(&["keys", "rotate-psk", &file, "--state-dir", &state], 1, &s, &mut keys);

    keys.sort();
    keys.dedup();
    assert!(keys.len() >= 4 * 6, "every key of every step was collected ({})", keys.len());
    let mut seen = outputs.iter().map(|(what, o)| (what.clone(), text(o))).collect::<Vec<_>>();
    // Build artifacts reference keys by path; none may hold one.
    for (name, bytes) in tree(Path::new(&out_dir)) {
        seen.push((format!("artifact {name}"), String::from_utf8_lossy(&bytes).into_owned()));
    }
    for (what, printed) in &seen {
        for k in &keys {
            assert!(!printed.contains(k.as_str()), "`{what}` printed a pre-shared key:\n{printed}");
        }
        assert!(!printed.contains("secret = 0x"), "`{what}` printed a key line:\n{printed}");
    }
    // The verbs did say which pairs they touched.
    let all: String = seen.iter().map(|(_, t)| t.as_str()).collect();
    assert!(all.contains("pre-shared key of cn-1 and cn-4 (created)"), "{all}");
    assert!(all.contains("pre-shared key of cn-1 and cn-4 (rotated)"), "{all}");
    assert!(all.contains("pre-shared key of cn-2 and cn-4 (removed)"), "{all}");
}
