//! Clientpacks: remote order and failover, options, stability when clients are added, the
//! archive form, key material loading and the `meshwork clientpack` command.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use meshwork::clientpack::{self, Material, PackOptions};
use meshwork::keys::Keyset;
use meshwork_compiler::emit::openvpn::{DATA_CIPHERS, TLS_VERSION_MIN};
use meshwork_compiler::network::Network;
use meshwork_compiler::source::SourceFile;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

const THREE: &str = r#"
topology "t"
overlay "100.127.255.192/26"
controller "east" id=1 { address "192.0.2.10"; }
controller "west" id=2 { address "west.example.net"; }
controller "north" id=3 { address "192.0.2.30"; }
client "web-1"
client "web-2" redirect-gateway=#true
client "db-1"
clients "worker" count=6
client "gone" revoked=#true
"#;

const WITH_ENGINES: &str = r#"
topology "e"
overlay "100.127.255.192/26"
controller "east" id=1 {
    address "192.0.2.10"
    cores 2
    engines 1 subnet="198.51.100.0/28"
}
controller "west" id=2 { address "192.0.2.20"; }
client "laptop"
client "server" redirect-gateway=#false
"#;

fn network(text: &str) -> Network {
    let analysis = meshwork_compiler::analyze(SourceFile::new("t.kdl", text));
    let errors: Vec<String> = analysis.diagnostics.iter().filter(|d| d.is_error()).map(|d| format!("{d:?}")).collect();
    analysis.network.unwrap_or_else(|| panic!("topology does not resolve: {errors:?}"))
}

fn fake_material(cn: &str) -> Material {
    Material {
        ca_pem: "-----BEGIN CERTIFICATE-----\nQ0EgY2VydA==\n-----END CERTIFICATE-----\n".into(),
        cert_pem: format!("-----BEGIN CERTIFICATE-----\n{cn}-cert\n-----END CERTIFICATE-----\n"),
        key_pem: format!("-----BEGIN PRIVATE KEY-----\n{cn}-key\n-----END PRIVATE KEY-----\n"),
        tls_crypt: "-----BEGIN OpenVPN Static key V1-----\n00112233\n-----END OpenVPN Static key V1-----\n".into(),
    }
}

fn pack(net: &Network, name: &str, opts: &PackOptions) -> String {
    let client = clientpack::client(net, name).expect("client");
    clientpack::ovpn(net, client, &fake_material(name), opts)
}

/// The `remote` lines of a pack, in order.
fn remote_lines(pack: &str) -> Vec<&str> {
    pack.lines().filter(|l| l.starts_with("remote ")).collect()
}

/// The primary controller's index in id order, computed independently of the library.
fn expected_primary(name: &str, n: usize) -> usize {
    let d = Sha256::digest(name.as_bytes());
    let head: [u8; 8] = d[..8].try_into().expect("8 bytes");
    (u64::from_be_bytes(head) % n as u64) as usize
}

#[test]
fn three_controllers_three_remotes_primary_first_then_rotation() {
    let net = network(THREE);
    let by_id = ["192.0.2.10", "west.example.net", "192.0.2.30"];
    let mut primaries = std::collections::BTreeSet::new();
    for client in net.clients.iter().filter(|c| !c.revoked) {
        let p = expected_primary(&client.name, 3);
        primaries.insert(p);
        let expected: Vec<(String, u16)> = (0..3).map(|k| (by_id[(p + k) % 3].to_string(), 1194)).collect();
        assert_eq!(clientpack::remotes(&net, client), expected, "{}", client.name);

        let text = clientpack::ovpn(&net, client, &fake_material(&client.name), &PackOptions::default());
        let lines: Vec<String> = expected.iter().map(|(h, port)| format!("remote {h} {port} udp")).collect();
        assert_eq!(remote_lines(&text), lines, "{}", client.name);
        let primary = &net.controllers[p];
        assert!(
            text.contains(&format!("# primary controller: {} (id {}, {})", primary.name, primary.id, primary.address)),
            "{text}"
        );
    }
    assert!(primaries.len() > 1, "clients spread over controllers: {primaries:?}");
}

#[test]
fn pack_matches_the_server_side() {
    let net = network(THREE);
    let text = pack(&net, "web-1", &PackOptions::default());
    let first = text.lines().next().unwrap_or_default();
    assert_eq!(first, "# meshwork clientpack for web-1 (100.127.255.193) of topology t");
    for line in [
        "client",
        "dev tun",
        "proto udp",
        "nobind",
        "persist-key",
        "persist-tun",
        "remote-cert-tls server",
        "resolv-retry infinite",
        "server-poll-timeout 1",
        "connect-retry 0 5",
        "ping 1",
        "ping-restart 3",
        "pull-filter ignore \"ping\"",
        "verb 3",
        &format!("tls-version-min {TLS_VERSION_MIN}"),
        &format!("data-ciphers {DATA_CIPHERS}"),
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
    for block in ["ca", "cert", "key", "tls-crypt"] {
        assert_eq!(text.matches(&format!("\n<{block}>\n-----BEGIN ")).count(), 1, "<{block}> in\n{text}");
        assert_eq!(text.matches(&format!("-----\n</{block}>\n")).count(), 1, "</{block}> in\n{text}");
    }
    assert!(text.contains("web-1-key"));
    assert!(!text.contains("verify-x509-name"));
    assert!(!text.contains("keepalive"), "keepalive is for servers");
}

/// The pack keeps its own timers over the pushed ones (`pull-filter ignore "ping"`), so they
/// must be the ones every controller's server pushes: `keepalive PING RESTART` pushes `ping
/// PING` and `ping-restart RESTART`.
#[test]
fn pack_timers_are_the_pushed_keepalive() {
    let net = network(THREE);
    let text = pack(&net, "web-1", &PackOptions::default());
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no `{name}` in\n{text}"))
            .to_string()
    };
    for c in &net.controllers {
        let configs = meshwork_compiler::emit::openvpn::configs(&net, c);
        let server = &configs.iter().find(|(name, _)| name == "server.conf").expect("server.conf").1;
        let keepalive = server.lines().find_map(|l| l.strip_prefix("keepalive ")).expect("keepalive");
        assert_eq!(keepalive, format!("{} {}", value("ping"), value("ping-restart")), "{}", c.name);
    }
}

#[test]
fn remote_random_only_on_request() {
    let net = network(THREE);
    let plain = pack(&net, "db-1", &PackOptions::default());
    let random = pack(&net, "db-1", &PackOptions { remote_random: true });
    assert!(!plain.lines().any(|l| l == "remote-random"));
    assert_eq!(random.lines().filter(|l| *l == "remote-random").count(), 1);
    assert_eq!(remote_lines(&plain), remote_lines(&random), "same controllers either way");
}

#[test]
fn redirect_gateway_follows_the_topology() {
    let has =
        |net: &Network, name: &str| pack(net, name, &PackOptions::default()).contains("\nredirect-gateway def1\n");
    let three = network(THREE);
    assert!(!has(&three, "web-1"), "no engines: off by default");
    assert!(has(&three, "web-2"), "asked for");
    let engines = network(WITH_ENGINES);
    assert!(has(&engines, "laptop"), "engines: on by default");
    assert!(!has(&engines, "server"), "turned off");

    // With the tunnel as default route (kept over restarts by persist-tun), every controller
    // is routed outside it, or failover would dial the next controller through the dead tunnel.
    let text = pack(&three, "web-2", &PackOptions::default());
    let remotes: Vec<String> =
        remote_lines(&text).iter().map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_string()).collect();
    assert_eq!(remotes.len(), 3);
    for host in &remotes {
        let line = format!("route {host} 255.255.255.255 net_gateway");
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
    assert!(!pack(&three, "web-1", &PackOptions::default()).contains("net_gateway"), "no default route, no need");
}

#[test]
fn adding_a_client_changes_no_other_pack() {
    let before = network(THREE);
    let after = network(&format!("{THREE}client \"new-1\"\nclient \"new-2\" redirect-gateway=#true\n"));
    assert_eq!(after.clients.len(), before.clients.len() + 2);
    for opts in [PackOptions::default(), PackOptions { remote_random: true }] {
        for client in before.clients.iter().filter(|c| !c.revoked) {
            let later = clientpack::client(&after, &client.name).expect("still there");
            let m = fake_material(&client.name);
            assert_eq!(
                clientpack::ovpn(&before, client, &m, &opts),
                clientpack::ovpn(&after, later, &m, &opts),
                "{}",
                client.name
            );
            assert_eq!(
                clientpack::tar_gz(&before, client, &m, &opts).expect("tar"),
                clientpack::tar_gz(&after, later, &m, &opts).expect("tar"),
                "{}",
                client.name
            );
        }
    }
}

#[test]
fn packs_are_deterministic() {
    let (a, b) = (network(THREE), network(THREE));
    for name in ["web-1", "worker-4"] {
        let (ca, cb) = (clientpack::client(&a, name).expect("a"), clientpack::client(&b, name).expect("b"));
        let m = fake_material(name);
        let opts = PackOptions::default();
        assert_eq!(clientpack::ovpn(&a, ca, &m, &opts), clientpack::ovpn(&b, cb, &m, &opts));
        assert_eq!(
            clientpack::tar_gz(&a, ca, &m, &opts).expect("tar"),
            clientpack::tar_gz(&b, cb, &m, &opts).expect("tar")
        );
    }
}

#[test]
fn revoked_and_unknown_clients_get_no_pack() {
    let net = network(THREE);
    let e = clientpack::client(&net, "gone").expect_err("revoked");
    assert_eq!(e.to_string(), "client gone is revoked");
    let e = clientpack::client(&net, "nobody").expect_err("unknown");
    assert!(e.to_string().contains("nobody"), "{e}");
}

/// (path, mode, mtime, content) of every entry of a .tar.gz.
fn unpack(bytes: &[u8]) -> Vec<(String, u32, u64, Vec<u8>)> {
    let mut gz = flate2::read::GzDecoder::new(bytes);
    let mut raw = Vec::new();
    gz.read_to_end(&mut raw).expect("gunzip");
    let header = gz.header().expect("gzip header");
    assert_eq!(header.mtime(), 0, "gzip mtime");
    let mut archive = tar::Archive::new(raw.as_slice());
    let mut out = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        let (mode, mtime) = (entry.header().mode().expect("mode"), entry.header().mtime().expect("mtime"));
        assert_eq!(entry.header().entry_type(), tar::EntryType::Regular);
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read");
        out.push((path, mode, mtime, data));
    }
    out
}

#[test]
fn tar_gz_holds_separate_files() {
    let net = network(THREE);
    let client = clientpack::client(&net, "web-2").expect("client");
    let m = fake_material("web-2");
    let opts = PackOptions::default();
    let bytes = clientpack::tar_gz(&net, client, &m, &opts).expect("tar");
    let entries = unpack(&bytes);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        ["web-2/ca.crt", "web-2/tls-crypt.key", "web-2/web-2.crt", "web-2/web-2.key", "web-2/web-2.ovpn"]
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for (path, mode, mtime, data) in &entries {
        assert_eq!(*mtime, 0, "{path}");
        let expected_mode = if path.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(*mode, expected_mode, "{path}");
        let text = String::from_utf8(data.clone()).expect("utf-8");
        match path.rsplit('/').next().unwrap_or_default() {
            "ca.crt" => assert_eq!(text, m.ca_pem),
            "tls-crypt.key" => assert_eq!(text, m.tls_crypt),
            "web-2.crt" => assert_eq!(text, m.cert_pem),
            "web-2.key" => assert_eq!(text, m.key_pem),
            "web-2.ovpn" => {
                for line in ["ca ca.crt", "cert web-2.crt", "key web-2.key", "tls-crypt tls-crypt.key"] {
                    assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
                }
                assert!(!text.contains("-----BEGIN"), "nothing inline:\n{text}");
                // Apart from how keys are reached, the same config as the single file.
                let inline = clientpack::ovpn(&net, client, &m, &opts);
                assert_eq!(remote_lines(&text), remote_lines(&inline));
                assert!(text.contains("\nredirect-gateway def1\n"));
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(bytes, clientpack::tar_gz(&net, client, &m, &opts).expect("tar"), "deterministic");
}

/// A scratch directory of this test's own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshwork-clientpack-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real keyset of `THREE` in `state`.
fn init_keyset(state: &Path) {
    Keyset::init(state, &network(THREE), OffsetDateTime::now_utc()).expect("keys init");
}

#[test]
fn load_material_names_what_is_missing() {
    let s = Scratch::new("load");
    let state = s.path("state");
    let keyset = meshwork::state::keyset_dir(&state);
    let e = clientpack::open_keyset(&state).expect_err("no keyset");
    let msg = e.to_string();
    assert!(msg.contains(&keyset.join("ca.crt").display().to_string()), "{msg}");
    assert!(msg.contains("meshwork keys init"), "{msg}");

    init_keyset(&state);
    let opened = clientpack::open_keyset(&state).expect("keyset");
    let m = clientpack::load_material(&opened, "web-1").expect("material");
    assert!(m.key_pem.contains("PRIVATE KEY") && m.cert_pem.contains("CERTIFICATE"));
    assert!(!format!("{m:?}").contains("PRIVATE KEY"), "Debug hides the key");

    let e = clientpack::load_material(&opened, "web-9").expect_err("not issued");
    let msg = e.to_string();
    assert!(msg.contains(&keyset.join("issued").join("web-9.crt").display().to_string()), "{msg}");
    assert!(msg.contains("meshwork keys sync"), "{msg}");
}

fn meshwork(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshwork")).args(args).env_remove("MESHWORK_STATE_DIR").output().expect("run")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn cli_writes_private_packs_and_prints_no_secret() {
    let s = Scratch::new("cli");
    let topo = s.file("t.kdl", THREE);
    let topo = topo.to_str().expect("utf-8 path");
    let state = s.path("state");
    let state_s = state.to_str().expect("utf-8 path");
    let live: Vec<String> = network(THREE).clients.iter().filter(|c| !c.revoked).map(|c| c.name.clone()).collect();

    // No keyset yet: the error names the file to create and the command that does it.
    let one = s.path("web-1.ovpn");
    let o = meshwork(&["clientpack", topo, "web-1", "-o", one.to_str().expect("path"), "--state-dir", state_s]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("ca.crt") && err.contains(&format!("meshwork keys init {topo}")), "{err}");
    assert!(!one.exists());

    init_keyset(&state);

    // One client.
    let o = meshwork(&["clientpack", topo, "web-1", "-o", one.to_str().expect("path"), "--state-dir", state_s]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!out.contains("PRIVATE KEY") && !err.contains("PRIVATE KEY"));
    assert_eq!(mode(&one), 0o600);
    let net = network(THREE);
    let client = clientpack::client(&net, "web-1").expect("client");
    let material =
        clientpack::load_material(&clientpack::open_keyset(&state).expect("keyset"), "web-1").expect("material");
    let expected = clientpack::ovpn(&net, client, &material, &PackOptions::default());
    assert_eq!(std::fs::read_to_string(&one).expect("pack"), expected);

    // A revoked client.
    let revoked = s.path("gone.ovpn");
    let o = meshwork(&["clientpack", topo, "gone", "-o", revoked.to_str().expect("path"), "--state-dir", state_s]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("client gone is revoked"));
    assert!(!revoked.exists());

    // Every client, both forms.
    for (format, ext) in [("ovpn", "ovpn"), ("tar.gz", "tar.gz")] {
        let dir = s.path(&format!("packs-{ext}"));
        let dir_s = dir.to_str().expect("path");
        let o = meshwork(&[
            "clientpack",
            topo,
            "--all",
            "-o",
            dir_s,
            "--pack-format",
            format,
            "--remote-random",
            "--state-dir",
            state_s,
        ]);
        let (out, err) =
            (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
        assert_eq!(o.status.code(), Some(0), "{err}");
        assert!(out.contains(&format!("Wrote {} clientpacks to {dir_s}", live.len())), "{out}");
        assert!(!out.contains("PRIVATE KEY") && !err.contains("PRIVATE KEY"));
        assert_eq!(mode(&dir), 0o700);
        let mut written: Vec<String> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        written.sort();
        let mut wanted: Vec<String> = live.iter().map(|n| format!("{n}.{ext}")).collect();
        wanted.sort();
        assert_eq!(written, wanted, "one pack per live client, nothing else");
        for name in &written {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        let bytes = std::fs::read(dir.join(format!("db-1.{ext}"))).expect("pack");
        let config = if ext == "ovpn" {
            String::from_utf8(bytes).expect("utf-8")
        } else {
            let entries = unpack(&bytes);
            assert_eq!(entries.len(), 5);
            let cfg = entries.into_iter().find(|e| e.0 == "db-1/db-1.ovpn").expect("config");
            String::from_utf8(cfg.3).expect("utf-8")
        };
        assert!(config.lines().any(|l| l == "remote-random"), "{config}");
    }
}

/// Regression (issue 12, item 4): `clientpack` read the keyset's files directly, so a key file
/// 0644, a private directory 0755, a private key that is a symbolic link (to the CA's key!) or
/// another identity's key were all packed. It now opens the keyset as every other verb does.
#[test]
fn clientpack_applies_the_keyset_checks() {
    use std::os::unix::fs::symlink;
    let s = Scratch::new("checks");
    let topo = s.file("t.kdl", THREE);
    let (topo, state) = (topo.to_str().expect("path").to_string(), s.path("state"));
    init_keyset(&state);
    let keyset = meshwork::state::keyset_dir(&state);
    let key = keyset.join("private").join("web-2.key");
    let out = s.path("web-2.ovpn");
    let run = || {
        let _ = std::fs::remove_file(&out);
        let o = meshwork(&[
            "clientpack",
            &topo,
            "web-2",
            "-o",
            out.to_str().expect("path"),
            "--state-dir",
            state.to_str().expect("path"),
        ]);
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let chmod =
        |p: &Path, mode: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    let refused = |what: &str, needles: &[&str]| {
        let (code, err) = run();
        assert_eq!(code, Some(1), "{what}: accepted: {err}");
        for n in needles {
            assert!(err.contains(n), "{what}: {n:?} not in {err}");
        }
        assert!(!err.contains("PRIVATE KEY"), "{what}: a secret in {err}");
        assert!(!out.exists(), "{what}: a pack was written");
    };
    assert_eq!(run().0, Some(0), "the keyset as made is fine");

    chmod(&key, 0o644);
    refused("key 0644", &["web-2.key", "0644"]);
    chmod(&key, 0o600);

    chmod(&keyset.join("private"), 0o755);
    refused("private/ 0755", &["private", "0755"]);
    chmod(&keyset.join("private"), 0o700);

    let kept = s.path("web-2.key.orig");
    std::fs::rename(&key, &kept).expect("move the key away");
    symlink("../ca.key", &key).expect("symlink");
    refused("key is a link to the CA key", &["web-2.key", "not a regular file"]);
    std::fs::remove_file(&key).expect("unlink");

    std::fs::copy(keyset.join("private").join("web-1.key"), &key).expect("copy web-1's key");
    chmod(&key, 0o600);
    refused("web-1's key as web-2's", &["web-2.key", "does not belong", "web-2.crt"]);
    std::fs::rename(&kept, &key).expect("restore the key");

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::lchown(&key, Some(65534), None).expect("chown");
        refused("key owned by another user", &["web-2.key", "uid 65534"]);
        std::os::unix::fs::lchown(&key, Some(0), None).expect("chown back");
    }
    assert_eq!(run().0, Some(0), "restored");
}
