//! The topology keyset: layout and modes, init/sync/renew semantics, the CRL, certificate
//! contents checked with x509-parser (and openssl when it is installed), expiry, and the CLI.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ::time::macros::datetime;
use ::time::{Duration, OffsetDateTime};
use meshwork::keys::{KeyError, Keyset, Policy, Subject};
use meshwork_compiler::identity::Kind;
use meshwork_compiler::network::Network;
use meshwork_compiler::source::SourceFile;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::{FromDer, parse_x509_crl};

const T0: OffsetDateTime = datetime!(2026-11-21 10:00 UTC);

/// Two controllers (one with two engines) and four clients, one of them already revoked.
const BASE: &str = r#"
topology "keys-test"
overlay "100.127.255.192/26"
controller "east" id=1 {
    address "192.0.2.10"
    engines 2 subnet="198.51.100.0/28"
}
controller "west" id=2 {
    address "192.0.2.20"
}
client "web-1" tags="web"
client "web-2" tags="web"
client "db-1" tags="db"
client "old" revoked=#true
"#;

/// Every identity of BASE that gets a certificate, with its kind.
const BASE_IDS: &[(&str, Kind)] = &[
    ("east", Kind::Controller),
    ("peer-east", Kind::Peer),
    ("east-e1", Kind::Engine),
    ("east-e2", Kind::Engine),
    ("west", Kind::Controller),
    ("peer-west", Kind::Peer),
    ("web-1", Kind::Client),
    ("web-2", Kind::Client),
    ("db-1", Kind::Client),
];

fn network(text: &str) -> Network {
    let a = meshwork_compiler::analyze(SourceFile::new("keys-test.kdl", text.to_string()));
    match a.network {
        Some(n) => n,
        None => panic!("topology does not compile: {:#?}", a.diagnostics),
    }
}

/// A scratch state directory of this test's own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshwork-keys-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn state(&self) -> PathBuf {
        self.0.join("state")
    }
    fn keyset(&self) -> PathBuf {
        self.state().join("keyset")
    }
    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file under `dir` with its bytes (relative paths).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn der(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    p.contents
}

fn serial_of(pem: &str) -> u64 {
    let d = der(pem);
    let (_, c) = X509Certificate::from_der(&d).unwrap();
    c.serial.to_u64_digits().first().copied().unwrap_or(0)
}

fn crl_serials(keyset: &Keyset) -> Vec<u64> {
    let d = der(&keyset.crl_pem().unwrap());
    let (_, crl) = parse_x509_crl(&d).unwrap();
    let mut s: Vec<u64> =
        crl.iter_revoked_certificates().map(|r| r.serial().to_u64_digits().first().copied().unwrap_or(0)).collect();
    s.sort();
    s
}

fn init(s: &Scratch, text: &str) -> Keyset {
    Keyset::init(&s.state(), &network(text), T0).unwrap();
    Keyset::open(&s.state()).unwrap()
}

#[test]
fn init_creates_the_layout_with_private_modes() {
    let s = Scratch::new("layout");
    let report = Keyset::init(&s.state(), &network(BASE), T0).unwrap();
    let ks = s.keyset();
    assert_eq!(report.dir, ks);
    assert_eq!(report.issued.len(), BASE_IDS.len());
    assert_eq!(report.unchanged, 1, "the revoked client gets nothing");
    assert!(report.crl_updated);
    for f in ["ca.crt", "ca.key", "tls-crypt.key", "crl.pem", "index.json"] {
        assert_eq!(mode(&ks.join(f)), 0o600, "{f}");
    }
    for d in ["", "issued", "private"] {
        assert_eq!(mode(&ks.join(d)), 0o700, "{d}/");
    }
    for (cn, _) in BASE_IDS {
        assert_eq!(mode(&ks.join("issued").join(format!("{cn}.crt"))), 0o600);
        assert_eq!(mode(&ks.join("private").join(format!("{cn}.key"))), 0o600);
    }
    assert!(!ks.join("issued/old.crt").exists());
    let names: Vec<String> =
        std::fs::read_dir(s.state()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["keyset"], "no staging directory left behind");

    let k = Keyset::open(&s.state()).unwrap();
    assert_eq!(k.topology(), "keys-test");
    assert_eq!(k.ca_fingerprint().len(), 64);
    assert_eq!(k.ca_fingerprint(), report.ca_fingerprint);
    let tls = k.tls_crypt().unwrap();
    let body: Vec<&str> = tls.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(body[0], "-----BEGIN OpenVPN Static key V1-----");
    assert_eq!(body[17], "-----END OpenVPN Static key V1-----");
    assert!(body[1..17].iter().all(|l| l.len() == 32 && l.bytes().all(|b| b.is_ascii_hexdigit())));
    assert!(k.key_pem("web-1").unwrap().contains("BEGIN PRIVATE KEY"));
    assert!(crl_serials(&k).is_empty(), "an empty CRL exists from the start");
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(ks.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["topology"], "keys-test");
    assert_eq!(index["identities"]["peer-east"]["kind"], "peer");
}

#[test]
fn init_twice_refuses_and_changes_nothing() {
    let s = Scratch::new("twice");
    init(&s, BASE);
    let before = tree(&s.state());
    let e = Keyset::init(&s.state(), &network(BASE), T0).unwrap_err();
    assert!(matches!(e, KeyError::AlreadyExists { .. }));
    assert!(e.to_string().contains("already exists") && e.to_string().contains("meshwork keys sync"), "{e}");
    assert_eq!(tree(&s.state()), before);
    // Even an empty directory in the way is refused.
    let s2 = Scratch::new("twice-empty");
    std::fs::create_dir_all(s2.keyset()).unwrap();
    assert!(matches!(Keyset::init(&s2.state(), &network(BASE), T0), Err(KeyError::AlreadyExists { .. })));
}

#[test]
fn a_failed_init_leaves_nothing_behind() {
    let s = Scratch::new("failed-init");
    // A CRL whose next update precedes this update cannot be signed: init fails at its last step.
    let policy = Policy { crl_validity: Duration::hours(-2), ..Policy::default() };
    let e = Keyset::init_with(&s.state(), &network(BASE), T0, &policy).unwrap_err();
    assert!(e.to_string().contains("CRL"), "{e}");
    assert_eq!(std::fs::read_dir(s.state()).unwrap().count(), 0, "no keyset and no staging directory");
    Keyset::init(&s.state(), &network(BASE), T0).unwrap();
}

#[test]
fn open_refuses_a_group_readable_key_naming_it() {
    let s = Scratch::new("perms");
    init(&s, BASE);
    let key = s.keyset().join("private/web-1.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = Keyset::open(&s.state()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, KeyError::Permissions { .. }), "{msg}");
    assert!(msg.contains(&key.display().to_string()) && msg.contains("0640"), "{msg}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dir = s.keyset().join("private");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let msg = Keyset::open(&s.state()).unwrap_err().to_string();
    assert!(msg.contains(&dir.display().to_string()) && msg.contains("0755"), "{msg}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    Keyset::open(&s.state()).unwrap();
    assert!(matches!(Keyset::open(&s.0.join("nowhere")), Err(KeyError::NotFound { .. })));
}

#[test]
fn sync_after_adding_a_client_issues_exactly_one_and_a_second_sync_changes_nothing() {
    let s = Scratch::new("sync-add");
    let mut k = init(&s, BASE);
    let crl_before = k.crl_pem().unwrap();
    let web1 = k.cert_pem("web-1").unwrap();
    let grown = format!("{BASE}client \"web-3\" tags=\"web\"\n");
    let r = k.sync(&network(&grown), T0 + Duration::days(1)).unwrap();
    assert_eq!(r.issued, ["web-3"]);
    assert!(r.revoked.is_empty() && r.removed.is_empty() && !r.crl_updated);
    assert_eq!(r.unchanged, BASE_IDS.len() + 1);
    assert_eq!(k.crl_pem().unwrap(), crl_before);
    assert_eq!(k.cert_pem("web-1").unwrap(), web1, "unchanged identities are never re-issued");
    assert_eq!(serial_of(&k.cert_pem("web-3").unwrap()), BASE_IDS.len() as u64 + 2, "serials are monotonic");

    let before = tree(&s.state());
    let r = k.sync(&network(&grown), T0 + Duration::days(2)).unwrap();
    assert!(!r.changed(), "{r}");
    assert_eq!(tree(&s.state()), before, "files byte-identical after a sync with nothing to do");
    let mut reopened = Keyset::open(&s.state()).unwrap();
    assert!(!reopened.sync(&network(&grown), T0 + Duration::days(3)).unwrap().changed());
    assert_eq!(tree(&s.state()), before);
}

#[test]
fn removed_and_revoked_clients_land_in_the_crl() {
    let s = Scratch::new("crl");
    let mut k = init(&s, BASE);
    let web2 = serial_of(&k.cert_pem("web-2").unwrap());
    let db1 = serial_of(&k.cert_pem("db-1").unwrap());
    let changed = BASE
        .replace("client \"web-2\" tags=\"web\"\n", "")
        .replace("client \"db-1\" tags=\"db\"", "client \"db-1\" tags=\"db\" revoked=#true");
    let r = k.sync(&network(&changed), T0 + Duration::days(1)).unwrap();
    assert_eq!(r.revoked, ["db-1", "web-2"]);
    assert_eq!(r.removed, ["web-2"]);
    assert!(r.issued.is_empty() && r.crl_updated);
    let mut want = vec![web2, db1];
    want.sort();
    assert_eq!(crl_serials(&k), want);
    // The revoked client's certificate stays; the removed one's files are gone.
    assert!(s.keyset().join("issued/db-1.crt").exists());
    assert!(!s.keyset().join("issued/web-2.crt").exists() && !s.keyset().join("private/web-2.key").exists());
    assert!(k.identity("db-1").unwrap().revoked);
    assert!(matches!(k.cert_pem("web-2"), Err(KeyError::UnknownIdentity { .. })));

    // The CRL is signed by the CA and numbered.
    let ca_der = der(&k.ca_pem().unwrap());
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let crl_der = der(&k.crl_pem().unwrap());
    let (_, crl) = parse_x509_crl(&crl_der).unwrap();
    crl.verify_signature(ca.public_key()).unwrap();
    assert_eq!(crl.crl_number().map(|n| n.to_u64_digits()), Some(vec![2]));

    // Un-revoking issues a new certificate with a new serial; the old serial stays revoked.
    let back = changed.replace("tags=\"db\" revoked=#true", "tags=\"db\"");
    let r = k.sync(&network(&back), T0 + Duration::days(2)).unwrap();
    assert_eq!(r.issued, ["db-1"]);
    assert!(!r.crl_updated);
    let new_serial = serial_of(&k.cert_pem("db-1").unwrap());
    assert!(new_serial > db1);
    assert!(crl_serials(&k).contains(&db1) && !crl_serials(&k).contains(&new_serial));
    assert!(!k.identity("db-1").unwrap().revoked);
}

#[test]
fn certificates_have_their_cn_ekus_and_verify_against_the_ca() {
    let s = Scratch::new("certs");
    let k = init(&s, BASE);
    let ca_der = der(&k.ca_pem().unwrap());
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    assert!(ca.is_ca());
    let ku = ca.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && ku.digital_signature());
    assert_eq!(ca.validity().not_after.timestamp(), (T0 + Duration::days(3652)).unix_timestamp());
    for (cn, kind) in BASE_IDS {
        let pem = k.cert_pem(cn).unwrap();
        let d = der(&pem);
        let (_, c) = X509Certificate::from_der(&d).unwrap();
        let got_cn: Vec<&str> = c.subject().iter_common_name().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(got_cn, [*cn]);
        c.verify_signature(Some(ca.public_key())).unwrap();
        assert!(!c.is_ca());
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert_eq!((eku.server_auth, eku.client_auth), (kind.server_auth(), kind.client_auth()), "{cn}");
        if *kind == Kind::Peer {
            assert!(eku.server_auth && eku.client_auth, "peer identities carry both EKUs");
        }
        let ku = c.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment());
        assert_eq!(c.validity().not_before.timestamp(), (T0 - Duration::hours(1)).unix_timestamp());
        assert_eq!(c.validity().not_after.timestamp(), (T0 + Duration::days(825)).unix_timestamp());
        // The key belongs to the certificate.
        let key = rcgen::KeyPair::from_pem(&k.key_pem(cn).unwrap()).unwrap();
        assert_eq!(key.public_key_raw(), c.public_key().subject_public_key.data.as_ref());
    }
}

/// `openssl verify` accepts the chain for the right purposes and, with the CRL, refuses a
/// revoked client. Runs at the real clock, as openssl does.
#[test]
fn openssl_verifies_the_chain_and_honours_the_crl() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not installed; skipping");
        return;
    }
    let s = Scratch::new("openssl");
    Keyset::init(&s.state(), &network(BASE), OffsetDateTime::now_utc()).unwrap();
    let mut k = Keyset::open(&s.state()).unwrap();
    let revoked = BASE.replace("client \"web-1\" tags=\"web\"", "client \"web-1\" tags=\"web\" revoked=#true");
    k.sync(&network(&revoked), OffsetDateTime::now_utc()).unwrap();
    let ks = s.keyset();
    let run = |cert: &str, purpose: &str, crl: bool| -> Output {
        let mut cmd = Command::new("openssl");
        cmd.arg("verify").arg("-CAfile").arg(ks.join("ca.crt")).arg("-purpose").arg(purpose);
        if crl {
            cmd.arg("-crl_check").arg("-CRLfile").arg(ks.join("crl.pem"));
        }
        cmd.arg(ks.join("issued").join(format!("{cert}.crt"))).output().unwrap()
    };
    for (cn, purpose, crl) in [
        ("east", "sslserver", false),
        ("east-e1", "sslserver", true),
        ("peer-west", "sslserver", true),
        ("peer-west", "sslclient", true),
        ("web-2", "sslclient", true),
    ] {
        let o = run(cn, purpose, crl);
        assert!(o.status.success(), "{cn} {purpose}: {}", text(&o));
    }
    assert!(!run("web-2", "sslserver", false).status.success(), "a client certificate is not a server's");
    assert!(!run("east", "sslclient", false).status.success(), "a controller certificate is not a client's");
    assert!(run("web-1", "sslclient", false).status.success());
    let o = run("web-1", "sslclient", true);
    assert!(!o.status.success(), "a revoked client passes the CRL check");
    assert!(text(&o).contains("revoked"), "{}", text(&o));
}

#[test]
fn syncing_another_topology_is_refused() {
    let s = Scratch::new("mismatch");
    let mut k = init(&s, BASE);
    let other = BASE.replace("topology \"keys-test\"", "topology \"other\"");
    let before = tree(&s.state());
    let e = k.sync(&network(&other), T0).unwrap_err();
    assert!(matches!(e, KeyError::TopologyMismatch { .. }), "{e}");
    assert!(e.to_string().contains("`keys-test`") && e.to_string().contains("`other`"), "{e}");
    assert_eq!(tree(&s.state()), before);
}

#[test]
fn renew_reissues_only_what_is_due() {
    let s = Scratch::new("renew");
    let mut k = init(&s, BASE);
    let later = T0 + Duration::days(800);
    let grown = format!("{BASE}client \"late\"\n");
    k.sync(&network(&grown), later).unwrap();
    let late = k.cert_pem("late").unwrap();
    let web1_serial = serial_of(&k.cert_pem("web-1").unwrap());

    // 805 days in: the init certificates expire in 20 days (day 825), `late` does not.
    let now = T0 + Duration::days(805);
    let notices = k.expiry(now);
    assert!(notices.iter().any(|n| n.cn == "web-1" && !n.expired && n.days_left == 20), "{notices:?}");
    assert!(notices.iter().any(|n| n.subject == Subject::Crl && n.expired), "CRL of day 0 expired at day 365");
    assert!(!notices.iter().any(|n| n.cn == "late"));

    let r = k.renew(&network(&grown), now, Duration::days(30)).unwrap();
    let mut want: Vec<&str> = BASE_IDS.iter().map(|(cn, _)| *cn).collect();
    want.sort();
    let mut got = r.renewed.clone();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(r.unchanged, 1);
    assert!(r.crl_updated);
    assert_eq!(k.cert_pem("late").unwrap(), late);
    assert!(serial_of(&k.cert_pem("web-1").unwrap()) > web1_serial);
    let rec = k.identity("web-1").unwrap();
    assert_eq!(rec.not_after, now + Duration::days(825));
    assert!(k.expiry(now).is_empty(), "nothing left to warn about: {:?}", k.expiry(now));

    // A second renew has nothing to do and writes nothing.
    let before = tree(&s.state());
    let r = k.renew(&network(&grown), now, Duration::days(30)).unwrap();
    assert!(!r.changed(), "{r}");
    assert_eq!(tree(&s.state()), before);
}

#[test]
fn expiry_warns_within_thirty_days_and_errors_when_expired() {
    let s = Scratch::new("expiry");
    init(&s, BASE);
    let state = s.state();
    assert!(meshwork::keys::expiry_diagnostics(&state, T0).unwrap().is_empty());
    let n = meshwork::keys::expiry_diagnostics(&state, T0 + Duration::days(335)).unwrap();
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].subject, n[0].expired, n[0].days_left), (Subject::Crl, false, 30));
    let n = meshwork::keys::expiry_diagnostics(&state, T0 + Duration::days(826)).unwrap();
    let certs: Vec<_> = n.iter().filter(|n| matches!(n.subject, Subject::Certificate(_))).collect();
    assert_eq!(certs.len(), BASE_IDS.len());
    assert!(certs.iter().all(|n| n.expired && n.severity() == "error" && n.days_left == -1));
    assert!(n[0].to_string().contains("expired on"), "{}", n[0]);
    assert!(matches!(meshwork::keys::expiry_diagnostics(&s.0.join("none"), T0), Err(KeyError::NotFound { .. })));
}

fn meshwork(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshwork")).args(args).env_remove("MESHWORK_STATE_DIR").output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn cli_init_sync_renew_print_no_secrets() {
    let s = Scratch::new("cli");
    let file = s.file("t.kdl", BASE);
    let state = s.state().display().to_string();
    let o = meshwork(&["keys", "init", &file, "--state-dir", &state]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains(&format!("Issued {} certificates (CA fingerprint ", BASE_IDS.len())), "{out}");
    assert!(out.contains(&format!("into {}", s.keyset().display())), "{out}");

    let o = meshwork(&["keys", "init", &file, "--state-dir", &state]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("already exists"), "{}", text(&o));

    let grown = s.file("t.kdl", &format!("{BASE}client \"web-3\"\n"));
    let o = meshwork(&["keys", "sync", &grown, "--state-dir", &state]);
    let out2 = text(&o);
    assert!(o.status.success(), "{out2}");
    assert!(out2.contains("+ web-3 (issued)"), "{out2}");
    let o = meshwork(&["keys", "sync", &grown, "--state-dir", &state]);
    let out3 = text(&o);
    assert!(o.status.success() && out3.contains("in sync"), "{out3}");
    let o = meshwork(&["keys", "renew", &grown, "--within", "30", "--state-dir", &state]);
    let out4 = text(&o);
    assert!(o.status.success() && out4.contains("No certificate expires within 30 days"), "{out4}");

    // MESHWORK_STATE_DIR is honoured too.
    let o = Command::new(env!("CARGO_BIN_EXE_meshwork"))
        .args(["keys", "sync", &grown])
        .env("MESHWORK_STATE_DIR", &state)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    for out in [&out, &out2, &out3, &out4] {
        assert!(!out.contains("PRIVATE KEY") && !out.contains("Static key") && !out.contains("BEGIN"), "{out}");
    }
    let k = Keyset::open(&s.state()).unwrap();
    let secret_line = k.tls_crypt().unwrap().lines().nth(4).unwrap().to_string();
    assert!(!out.contains(&secret_line));

    // A group-readable key makes every keys verb refuse, naming the file.
    let key = s.keyset().join("ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = meshwork(&["keys", "sync", &grown, "--state-dir", &state]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains(&key.display().to_string()) && text(&o).contains("0644"), "{}", text(&o));
}

/// Times `Keyset::init` on the benchmark topology (51,088 identities). Run in release:
/// `cargo test --release -p meshwork --test keys -- --ignored --nocapture init_benchmark`.
#[test]
#[ignore]
fn init_benchmark_topology() {
    let net = network(&meshwork::bench_topology::topology());
    let s = Scratch::new("bench");
    let started = std::time::Instant::now();
    let r = Keyset::init(&s.state(), &net, OffsetDateTime::now_utc()).unwrap();
    let init = started.elapsed();
    let started = std::time::Instant::now();
    let mut k = Keyset::open(&s.state()).unwrap();
    let open = started.elapsed();
    let started = std::time::Instant::now();
    let again = k.sync(&net, OffsetDateTime::now_utc()).unwrap();
    let sync = started.elapsed();
    assert!(!again.changed());
    println!(
        "keys init: {} certificates in {:.2} s on {} threads; open {:.2} s; no-op sync {:.2} s",
        r.issued.len(),
        init.as_secs_f64(),
        Policy::default().threads,
        open.as_secs_f64(),
        sync.as_secs_f64()
    );
    assert!(init.as_secs() < 20);
}
