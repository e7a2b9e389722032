//! Issue 4, items 2-4 beyond the end-to-end test: saved plans refused once the host changed,
//! the apply lock naming its holder, `apply --try` rolling back unless confirmed, the agent
//! converging to an edited topology file, and `keys fetch` from a running agent.
//!
//! Each test has its own controller name (so its engine namespaces `mw-<name>-e<k>` are its
//! own) and its own `mwt-*-<pid>` namespaces, all deleted by name at the end.

mod support;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use support::*;

fn topology(controller: &str, engines: u32) -> String {
    format!(
        r#"topology "drill"
overlay "100.127.255.192/26"
controller "{controller}" id=1 {{
    address "192.0.2.10"
    engines {engines} subnet="198.51.100.0/28"
}}
client "a"
client "b"
firewall policy="drop" {{
    allow from="overlay" to="overlay" proto="icmp"
}}
"#
    )
}

struct Host {
    lab: Lab,
    name: String,
    file: PathBuf,
    state: PathBuf,
    netns: String,
}

impl Host {
    /// A controller namespace whose eth0 (192.0.2.10) is one end of a veth pair; the other
    /// end, 192.0.2.1, is in a second namespace `outside` for things that talk to it.
    fn new(name: &str, engines: u32) -> Host {
        let mut lab = Lab::new(name);
        for k in 1..=3 {
            lab.forget_netns_on_drop(&format!("mw-{name}-e{k}"));
        }
        let netns = lab.netns(name);
        let outside = lab.netns(&format!("{name}-out"));
        run("ip", &["-n", &netns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &outside]);
        for (ns, addr) in [(&netns, "192.0.2.10/24"), (&outside, "192.0.2.1/24")] {
            run("ip", &["-n", ns, "addr", "add", addr, "dev", "eth0"]);
            run("ip", &["-n", ns, "link", "set", "eth0", "up"]);
        }
        let file = lab.path("drill.kdl");
        fs::write(&file, topology(name, engines)).unwrap();
        let state = lab.path("state");
        meshwork_ok(&["keys", "init", file.to_str().unwrap(), "--state-dir", state.to_str().unwrap()], 0);
        Host { lab, name: name.to_string(), file, state, netns }
    }

    fn outside(&self) -> String {
        format!("mwt-{}-out-{}", self.name, std::process::id())
    }

    fn args(&self, verb: &str, target: Option<&str>, extra: &[&str]) -> Vec<String> {
        let mut v = vec![verb.to_string()];
        v.extend(target.map(str::to_string));
        for a in ["--controller", &self.name, "--netns", &self.netns, "--state-dir", self.state.to_str().unwrap()] {
            v.push(a.to_string());
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }

    fn run(&self, verb: &str, target: Option<&str>, extra: &[&str]) -> std::process::Output {
        let args = self.args(verb, target, extra);
        meshwork(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn file(&self) -> &str {
        self.file.to_str().unwrap()
    }

    fn engines(&self) -> Vec<String> {
        let prefix = format!("mw-{}-e", self.name);
        let mut v: Vec<String> = fs::read_dir("/run/netns")
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.retain(|n| n.starts_with(&prefix));
        v.sort();
        v
    }

    fn pids(&self) -> Vec<u32> {
        meshwork_pids(&self.state)
    }

    fn destroy(&mut self) {
        for pid in self.pids() {
            self.lab.kill_on_drop(pid);
        }
        let out = self.run("destroy", None, &["--auto-approve"]);
        assert!(out.status.success(), "destroy: {}", String::from_utf8_lossy(&out.stderr));
        assert!(self.engines().is_empty());
    }
}

impl Drop for Host {
    /// OpenVPN processes meshwork started and the test did not get to destroy: by pid.
    fn drop(&mut self) {
        for pid in self.pids() {
            // SAFETY: kill(2) on a pid from this test's own state directory.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_saved_plan_is_refused_once_the_host_changed() {
    if !kernel_tests_possible() {
        return;
    }
    let mut h = Host::new("sp", 1);
    let plan = h.lab.path("first.plan");
    let out = h.run("plan", Some(h.file()), &["-o", plan.to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(fs::metadata(&plan).unwrap().permissions().mode() & 0o777, 0o600);
    let out = h.run("plan", Some(h.file()), &["--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan --format json");
    assert!(json["summary"]["add"].as_u64().unwrap() > 10, "{json}");
    assert_eq!(json["summary"]["destroy"], 0);
    let key = json["changes"].as_array().unwrap().iter().find(|c| c["name"] == "keys/sp.key").expect("the key file");
    assert_eq!(key["after"]["sha256"], "(sensitive value)", "{key}");
    assert!(!fs::read_to_string(&plan).unwrap().contains("PRIVATE KEY"), "a saved plan holds no secrets");
    // A saved plan is applied without asking, even off a terminal.
    let out = h.run("apply", Some(plan.to_str().unwrap()), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(h.engines(), [format!("mw-{}-e1", h.name)]);

    // A second plan, then a change by hand: the plan no longer describes the host.
    fs::write(&h.file, topology("sp", 2)).unwrap();
    meshwork_ok(&["keys", "sync", h.file(), "--state-dir", h.state.to_str().unwrap()], 0);
    let second = h.lab.path("second.plan");
    let out = h.run("plan", Some(h.file()), &["-o", second.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    run("ip", &["-n", &h.netns, "link", "set", "mw-e1", "down"]);
    let out = h.run("apply", Some(second.to_str().unwrap()), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("the host changed since this plan was made"), "{}", text(&out));
    assert_eq!(h.engines().len(), 1, "a refused plan changes nothing");
    // A fresh plan shows the hand-made change as drift and repairs it.
    let out = h.run("plan", Some(h.file()), &[]);
    let shown = text(&out);
    assert!(shown.contains("Changed outside meshwork") && shown.contains("~ link mw-e1"), "{shown}");
    h.destroy();
}

#[test]
fn the_lock_stops_a_second_apply_and_names_its_holder() {
    if !kernel_tests_possible() {
        return;
    }
    let mut h = Host::new("lk", 1);
    let lock = h.state.join("controllers/lk/lock");
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    fs::write(&lock, "pid 4242 (meshwork apply) since 2026-11-21T00:00:00Z\n").unwrap();
    let held = fs::OpenOptions::new().read(true).write(true).open(&lock).unwrap();
    // SAFETY: flock on a descriptor we own, as another meshwork would hold it.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let out = h.run("apply", Some(h.file()), &["--auto-approve"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("another meshwork holds the lock on controller lk: pid 4242 (meshwork apply)"),
        "{}",
        text(&out)
    );
    assert!(h.engines().is_empty(), "nothing was done");
    drop(held);
    let out = h.run("apply", Some(h.file()), &["--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    h.destroy();
}

#[test]
fn apply_try_rolls_back_unless_confirmed() {
    if !kernel_tests_possible() {
        return;
    }
    let mut h = Host::new("tr", 1);
    let out = h.run("apply", Some(h.file()), &["--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    fs::write(&h.file, topology("tr", 2)).unwrap();
    meshwork_ok(&["keys", "sync", h.file(), "--state-dir", h.state.to_str().unwrap()], 0);

    // Not confirmed: two engines for two seconds, then back to one.
    let out = h.run("apply", Some(h.file()), &["--auto-approve", "--try", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("rolling back"), "{}", text(&out));
    // Off a terminal the countdown is a line now and then; the rollback ends by saying so.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Rolling back in 2 seconds unless confirmed.\n"), "{stdout}");
    let after = &stdout[stdout.find("rolling back").unwrap()..];
    assert!(!after.contains("Apply complete!"), "{stdout}");
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some("Rolled back: the host is as the previous apply left it."),
        "{stdout}"
    );
    assert_eq!(h.engines(), ["mw-tr-e1"], "rolled back to one engine");
    let out = h.run("plan", Some(h.file()), &["--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "the new topology is not applied:\n{}", text(&out));

    // Confirmed from another process: kept.
    let args = h.args("apply", Some(h.file()), &["--auto-approve", "--try", "30"]);
    let child = Command::new(env!("CARGO_BIN_EXE_meshwork"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the second engine", Duration::from_secs(20), || (h.engines().len() == 2).then_some(()));
    // The lock is held during the try window.
    let busy = h.run("apply", Some(h.file()), &["--auto-approve"]);
    assert!(text(&busy).contains("holds the lock"), "{}", text(&busy));
    let ok = h.run("apply", None, &["--confirm"]);
    assert!(ok.status.success(), "{}", text(&ok));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Confirmed: keeping the change."));
    assert_eq!(h.engines(), ["mw-tr-e1", "mw-tr-e2"]);
    h.destroy();
}

#[test]
fn the_agent_follows_the_file_and_serves_the_keyset() {
    if !kernel_tests_possible() {
        return;
    }
    let mut h = Host::new("ag", 1);
    let out = h.run("apply", Some(h.file()), &["--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    let token = h.lab.path("join.token");
    fs::write(&token, "a-join-token-long-enough-to-be-accepted\n").unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let args =
        h.args("agent", Some(h.file()), &["--listen", "192.0.2.10:7443", "--join-token-file", token.to_str().unwrap()]);
    let err = h.lab.path("agent.err");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshwork"));
    cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(fs::File::create(&err).unwrap());
    let agent = h.lab.spawn("agent", &mut cmd, Some(err.clone()));

    // keys fetch from the agent, as a second controller would, from the other namespace.
    let fetched = h.lab.path("fetched");
    let out = Command::new("ip")
        .args(["netns", "exec", &h.outside(), env!("CARGO_BIN_EXE_meshwork"), "keys", "fetch"])
        .args(["--from", "https://192.0.2.10:7443", "--token-file", token.to_str().unwrap(), "--state-dir"])
        .arg(&fetched)
        .output()
        .unwrap();
    let shown = text(&out);
    let ours = fs::read(h.state.join("keyset/ca.crt")).unwrap();
    if out.status.success() {
        assert_eq!(fs::read(fetched.join("keyset/ca.crt")).unwrap(), ours, "the same CA");
        assert!(!shown.contains("PRIVATE KEY"));
    } else {
        // The agent may still be starting: try again once it listens.
        std::thread::sleep(Duration::from_secs(2));
        let _ = fs::remove_dir_all(&fetched);
        let again = Command::new("ip")
            .args(["netns", "exec", &h.outside(), env!("CARGO_BIN_EXE_meshwork"), "keys", "fetch"])
            .args(["--from", "https://192.0.2.10:7443", "--token-file", token.to_str().unwrap(), "--state-dir"])
            .arg(&fetched)
            .output()
            .unwrap();
        assert!(again.status.success(), "keys fetch: {shown}\n{}", text(&again));
        assert_eq!(fs::read(fetched.join("keyset/ca.crt")).unwrap(), ours, "the same CA");
    }

    // An edited file: the agent converges without being asked. The edit comes first and the
    // `keys sync` it needs a while later, as an operator does it: the agent cannot load the
    // file until the keyset has the new engine's certificate, and must notice when it does.
    fs::write(&h.file, topology("ag", 2)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    meshwork_ok(&["keys", "sync", h.file(), "--state-dir", h.state.to_str().unwrap()], 0);
    wait_until("the agent to add the second engine", Duration::from_secs(20), || {
        (h.engines() == ["mw-ag-e1", "mw-ag-e2"] && h.pids().len() == 3).then_some(())
    });
    wait_until("nothing left to do", Duration::from_secs(10), || {
        let out = h.run("plan", Some(h.file()), &["--detailed-exitcode"]);
        (out.status.code() == Some(0)).then_some(())
    });
    // destroy refuses while the agent runs: it would put back what destroy removes.
    let refused = h.run("destroy", None, &["--auto-approve"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("stop the agent first"), "{}", text(&refused));
    assert_eq!(h.engines().len(), 2, "nothing was removed");
    // SAFETY: SIGTERM to our child.
    unsafe { libc::kill(h.lab.child(agent).id() as i32, libc::SIGTERM) };
    let status =
        wait_until("the agent to stop", Duration::from_secs(10), || h.lab.child(agent).try_wait().ok().flatten());
    assert!(status.success());
    h.destroy();
}

/// Starts `meshwork agent` for the host (API on the underlay address when `listen`), logging
/// to `agent.err`; returns its index in the lab.
fn start_agent(h: &mut Host, extra: &[&str]) -> usize {
    let args = h.args("agent", Some(h.file()), extra);
    let err = h.lab.path("agent.err");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshwork"));
    cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(fs::File::create(&err).unwrap());
    let i = h.lab.spawn("agent", &mut cmd, Some(err));
    let pidfile = h.state.join(format!("controllers/{}/agent.pid", h.name));
    wait_until("the agent's pid file", Duration::from_secs(15), || pidfile.exists().then_some(()));
    i
}

fn stop_agent(h: &mut Host, agent: usize) {
    // SAFETY: SIGTERM to our child.
    unsafe { libc::kill(h.lab.child(agent).id() as i32, libc::SIGTERM) };
    let status =
        wait_until("the agent to stop", Duration::from_secs(10), || h.lab.child(agent).try_wait().ok().flatten());
    assert!(status.success());
}

/// `apply TARGET`, again while it only finds the agent's pass holding the lock (a refusal of
/// its own, not the one tested here).
fn apply_past_the_lock(h: &Host, target: &str, extra: &[&str]) -> std::process::Output {
    wait_until("apply to get past the agent's lock", Duration::from_secs(20), || {
        let out = h.run("apply", Some(target), extra);
        (!text(&out).contains("holds the lock")).then_some(out)
    })
}

/// Regression (issue 12, item 8): `apply` succeeded while an agent ran, and the agent undid it
/// on its next pass. It now refuses, as destroy does, naming the agent and its pid.
#[test]
fn apply_refuses_while_an_agent_runs() {
    if !kernel_tests_possible() {
        return;
    }
    let mut h = Host::new("ar", 1);
    let agent = start_agent(&mut h, &[]);
    let pid = h.lab.child(agent).id();
    wait_until("the agent to converge", Duration::from_secs(30), || {
        (h.engines() == ["mw-ar-e1"] && h.pids().len() == 2).then_some(())
    });
    // Another file (two engines, its keys synced): the agent would put back one engine.
    let other = h.lab.path("other.kdl");
    fs::write(&other, topology("ar", 2)).unwrap();
    meshwork_ok(&["keys", "sync", other.to_str().unwrap(), "--state-dir", h.state.to_str().unwrap()], 0);
    let plan = h.lab.path("other.plan");
    let out = apply_past_the_lock(&h, other.to_str().unwrap(), &["--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains(&format!("an agent (pid {pid})")), "{shown}");
    assert!(shown.contains("stop the agent first"), "{shown}");
    // A saved plan is refused the same way.
    let out = h.run("plan", Some(h.file()), &["-o", plan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = apply_past_the_lock(&h, plan.to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&format!("an agent (pid {pid})")), "{}", text(&out));
    assert_eq!(h.engines(), ["mw-ar-e1"], "nothing was changed");
    // Once the agent is stopped, apply works again.
    stop_agent(&mut h, agent);
    let out = h.run("apply", Some(h.file()), &["--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    h.destroy();
}

/// What a verifying HTTPS client got: the status, and the server certificate's subjectAltNames.
#[derive(Debug)]
struct Fetched {
    status: u16,
    sans: Vec<String>,
}

/// `GET path` from namespace `ns` to `addr` as an ordinary client would make it (what curl
/// --cacert does): rustls with the topology CA as the only root and the IP as the server name,
/// so the certificate must name that IP. Optionally with a client certificate or a bearer token.
fn verified_get(
    ns: &str,
    addr: std::net::SocketAddr,
    ca_pem: &str,
    identity: Option<(String, String)>,
    bearer: Option<&str>,
    path: &str,
) -> Result<Fetched, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{}Connection: close\r\n\r\n",
        bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default()
    );
    in_netns(ns, move || {
        let name = ServerName::IpAddress(addr.ip().into());
        let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(request.as_bytes()).map_err(|e| format!("TLS: {e}"))?;
        let mut response = Vec::new();
        let read = tls.read_to_end(&mut response);
        if response.is_empty() {
            return Err(format!("no response: {read:?}"));
        }
        let sans = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|der| {
                let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
                let ext = cert.subject_alternative_name().unwrap().map(|e| e.value.general_names.clone());
                ext.unwrap_or_default().iter().map(san_text).collect()
            })
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&response);
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("not HTTP: {text}"))?;
        Ok(Fetched { status, sans })
    })
}

/// An IP subjectAltName as its address, a DNS one as its name.
fn san_text(name: &x509_parser::extensions::GeneralName<'_>) -> String {
    use x509_parser::extensions::GeneralName;
    match name {
        GeneralName::IPAddress(b) => match <[u8; 4]>::try_from(*b) {
            Ok(v4) => std::net::Ipv4Addr::from(v4).to_string(),
            Err(_) => <[u8; 16]>::try_from(*b).map(|v6| std::net::Ipv6Addr::from(v6).to_string()).unwrap_or_default(),
        },
        GeneralName::DNSName(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

const API: &str = "192.0.2.10:7443";

fn api_addr() -> std::net::SocketAddr {
    API.parse().unwrap()
}

fn read_token(h: &Host) -> PathBuf {
    let token = h.lab.path("read.token");
    fs::write(&token, "a-read-token-long-enough-to-be-accepted\n").unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    token
}

/// Regression (issue 12, item 10): the API's certificate had no subjectAltName, so a client
/// that checks the name (`curl --cacert ca.crt https://ADDR`) refused it. Now it names the
/// overlay, underlay and listen addresses, and a verifying rustls client with the topology CA
/// as its root and the listen IP as the server name gets 200.
#[test]
fn the_api_certificate_names_its_addresses() {
    if !kernel_tests_possible() {
        return;
    }
    let mut h = Host::new("sn", 1);
    let token = read_token(&h);
    let agent = start_agent(&mut h, &["--listen", API, "--read-token-file", token.to_str().unwrap()]);
    let ca = fs::read_to_string(h.state.join("keyset/ca.crt")).unwrap();
    let outside = h.outside();
    let got = wait_until("the API to answer a verifying client", Duration::from_secs(20), || {
        verified_get(&outside, api_addr(), &ca, None, Some("a-read-token-long-enough-to-be-accepted"), "/status").ok()
    });
    assert_eq!(got.status, 200, "{got:?}");
    // Underlay and listen address (the same here), overlay address.
    for name in ["192.0.2.10", "100.127.255.253"] {
        assert!(got.sans.iter().any(|s| s == name), "{name} not in {:?}", got.sans);
    }
    stop_agent(&mut h, agent);
    h.destroy();
}

/// Regression (issue 12, item 5): after `keys sync` revoked a client, its certificate went on
/// getting 200 from a running agent until a restart (the CRL was read once). The agent now
/// reloads the CRL and the CA with the keyset: the revoked certificate is refused within
/// seconds, without a restart, and another client's still works.
#[test]
fn a_client_revoked_while_the_agent_runs_is_refused() {
    if !kernel_tests_possible() {
        return;
    }
    let mut h = Host::new("rv", 1);
    let agent = start_agent(&mut h, &["--listen", API]);
    let ca = fs::read_to_string(h.state.join("keyset/ca.crt")).unwrap();
    let keyset = meshwork::keys::Keyset::open(&h.state).unwrap();
    let identity = |cn: &str| (keyset.cert_pem(cn).unwrap(), keyset.key_pem(cn).unwrap());
    let (a, b) = (identity("a"), identity("b"));
    let outside = h.outside();
    let got = wait_until("the API to answer client a", Duration::from_secs(20), || {
        verified_get(&outside, api_addr(), &ca, Some(a.clone()), None, "/status").ok()
    });
    assert_eq!(got.status, 200, "{got:?}");

    let revoked = topology("rv", 1).replace("client \"a\"\n", "client \"a\" revoked=#true\n");
    assert_ne!(revoked, topology("rv", 1));
    fs::write(&h.file, revoked).unwrap();
    meshwork_ok(&["keys", "sync", h.file(), "--state-dir", h.state.to_str().unwrap()], 0);
    // Refused in the handshake (the CRL is checked there); a 401 would do as well.
    let refused =
        wait_until("the API to refuse the revoked certificate", Duration::from_secs(15), || {
            match verified_get(&outside, api_addr(), &ca, Some(a.clone()), None, "/status") {
                Ok(f) if f.status == 200 => None,
                refused => Some(refused),
            }
        });
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("CertificateRevoked"))
            || refused.as_ref().is_ok_and(|f| f.status == 401),
        "{refused:?}"
    );
    let got = verified_get(&outside, api_addr(), &ca, Some(b), None, "/status").unwrap();
    assert_eq!(got.status, 200, "client b is not revoked");
    assert!(h.lab.child(agent).try_wait().unwrap().is_none(), "the agent was not restarted");
    stop_agent(&mut h, agent);
    h.destroy();
}

/// The pid meshwork recorded for `unit` of controller `name`.
fn unit_pid(h: &Host, unit: &str) -> Option<u32> {
    let file = h.state.join(format!("controllers/{}/openvpn/run/{unit}.pid", h.name));
    let record: serde_json::Value = serde_json::from_slice(&fs::read(file).ok()?).ok()?;
    record["pid"].as_u64().map(|p| p as u32)
}

fn ns_inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}")).ino()
}

/// Regression (issue 12, item 6, first half): `ip netns del mw-<c>-e1` under a running engine
/// left its OpenVPN in the old, unreachable namespace; apply made the namespace and veth again,
/// and plan then said "No changes" with the engine cut off. The process is now observed in its
/// namespace (the inode of /proc/PID/ns/net against that of /run/netns/NAME): plan shows it,
/// apply restarts it in the new namespace, and only then is there nothing left to do.
#[test]
fn an_engine_left_in_a_deleted_namespace_is_restarted() {
    if !kernel_tests_possible() {
        return;
    }
    let mut h = Host::new("nd", 1);
    let out = h.run("apply", Some(h.file()), &["--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    let old = unit_pid(&h, "engine-1").expect("engine-1 runs");
    h.lab.kill_on_drop(old);
    run("ip", &["netns", "del", "mw-nd-e1"]);
    let out = h.run("plan", Some(h.file()), &["--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("~ process engine-1"), "{}", text(&out));

    let out = h.run("apply", Some(h.file()), &["--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    let new = unit_pid(&h, "engine-1").expect("engine-1 runs again");
    assert_ne!(new, old, "engine-1 was restarted");
    assert_eq!(
        ns_inode(&format!("/proc/{new}/ns/net")),
        ns_inode("/run/netns/mw-nd-e1"),
        "engine-1 runs in the namespace named mw-nd-e1"
    );
    let out = h.run("plan", Some(h.file()), &["--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    h.destroy();
}

/// Regression (issue 12, item 6, second half): a pid file left behind (an apply killed after
/// stopping an engine) that names a process which is gone, or which is not OpenVPN, made no
/// difference to plan ("No changes"). Pid files are now validated: each such file shows as a
/// change, and apply removes it.
#[test]
fn stale_pid_files_show_as_changes() {
    if !kernel_tests_possible() {
        return;
    }
    let mut h = Host::new("sp6", 1);
    let out = h.run("apply", Some(h.file()), &["--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    let run_dir = h.state.join("controllers/sp6/openvpn/run");
    // engine-2: a pid that has exited; engine-3: a live process that is not OpenVPN (a sleep
    // of the test's own; never the test itself, which the fixture's cleanup would kill by pid).
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let sleeper = h.lab.spawn("sleep", Command::new("sleep").arg("120"), None);
    let other = h.lab.child(sleeper).id();
    let stat = wait_until("the sleep to start", Duration::from_secs(5), || {
        fs::read_to_string(format!("/proc/{other}/stat")).ok()
    });
    let start_time: u64 = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().parse().unwrap();
    for (unit, pid, start) in [("engine-2", gone_pid, 1), ("engine-3", other, start_time)] {
        let record = serde_json::json!({ "pid": pid, "start_time": start, "config_sha256": "", "netns": null });
        fs::write(run_dir.join(format!("{unit}.pid")), record.to_string()).unwrap();
    }
    let out = h.run("plan", Some(h.file()), &["--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for line in ["- process engine-2", "- process engine-3"] {
        assert!(text(&out).contains(line), "plan lacks `{line}`:\n{}", text(&out));
    }
    let out = h.run("apply", Some(h.file()), &["--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!run_dir.join("engine-2.pid").exists() && !run_dir.join("engine-3.pid").exists());
    assert!(h.lab.child(sleeper).try_wait().unwrap().is_none(), "the process a stale file named is left alone");
    let out = h.run("plan", Some(h.file()), &["--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    h.destroy();
}

/// A controller with no clients yet has no ccd file, and OpenVPN refuses a missing
/// `--client-config-dir`: apply must still start it.
#[test]
fn a_controller_without_clients_starts() {
    if !kernel_tests_possible() {
        return;
    }
    let mut h = Host::new("noclient", 1);
    let without = topology("noclient", 1).replace("client \"a\"\nclient \"b\"\n", "");
    assert!(!without.contains("client \""), "{without}");
    fs::write(&h.file, without).unwrap();
    let out = h.run("apply", Some(h.file()), &["--auto-approve"]);
    assert!(out.status.success(), "apply: {}", text(&out));
    assert!(unit_pid(&h, "server").is_some(), "the server does not run");
    h.destroy();
}

/// Issue 13, item 7: `apply` and `destroy` speak JSON for programs: the plan, each action done
/// and the outcome; no question asked (refused without --auto-approve), nothing but JSON on
/// stdout.
#[test]
fn apply_and_destroy_speak_json() {
    if !kernel_tests_possible() {
        return;
    }
    let mut h = Host::new("jsonout", 1);
    let asks = h.run("apply", Some(h.file()), &["--format", "json"]);
    assert_eq!(asks.status.code(), Some(1), "{}", text(&asks));
    assert!(text(&asks).contains("--format json cannot ask"), "{}", text(&asks));
    assert!(h.pids().is_empty(), "the refused apply started something");

    let json = |out: &std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", text(out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
    };
    let applied = json(&h.run("apply", Some(h.file()), &["--format", "json", "--auto-approve"]));
    assert_eq!(applied["verb"], "apply");
    assert_eq!(applied["outcome"], "applied");
    let planned = applied["plan"]["changes"].as_array().unwrap().len();
    let done = applied["done"].as_array().unwrap();
    assert!(planned > 0 && done.len() == planned, "{planned} planned, {} done: {applied}", done.len());
    assert!(done.iter().any(|d| d["kind"] == "process" && d["action"] == "create"), "{applied}");
    assert!(unit_pid(&h, "server").is_some(), "the server does not run");

    let again = json(&h.run("apply", Some(h.file()), &["--format", "json", "--auto-approve"]));
    assert_eq!(again["outcome"], "unchanged", "{again}");
    assert!(again["done"].as_array().unwrap().is_empty(), "{again}");

    for pid in h.pids() {
        h.lab.kill_on_drop(pid);
    }
    let destroyed = json(&h.run("destroy", None, &["--format", "json", "--auto-approve"]));
    assert_eq!(destroyed["verb"], "destroy");
    assert_eq!(destroyed["outcome"], "applied");
    assert!(destroyed["done"].as_array().unwrap().iter().all(|d| d["action"] == "delete"), "{destroyed}");
    assert!(h.pids().is_empty(), "destroy left processes");
}

/// What a drift case does to the host, and how the test sees it put back.
struct DriftCase {
    /// The resource as the agent's log names it (`KIND NAME`).
    id: &'static str,
    /// Breaks it (as a person at the console would, with `ip`, `nft` or `kill`).
    breaks: fn(&Host),
    /// Whether it is back.
    back: fn(&Host) -> bool,
}

fn ip_out(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn firewall_rule_handle(h: &Host) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &h.netns, "nft", "-a", "list", "chain", "inet", "meshwork", "firewall"])
        .output()
        .expect("nft");
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    listing
        .lines()
        .find(|l| l.contains("comment \"rule 1\""))
        .and_then(|l| l.rsplit("# handle ").next())
        .map(|h| h.trim().to_string())
}

const DRIFT_ENGINE: &str = "mw-drifta-e1";

/// Issue 14, item 3: the agent repairs every kind of object it owns when it changes, woken by
/// an event rather than the next tick: a route and the rule inside an engine's namespace
/// (whose netlink events the host's namespace never sees), plugin0's address, an engine's
/// veth, a firewall rule, the whole nft table, and a killed engine (its pidfd). Each repair
/// must show in the agent's log with the event that started its pass; a pass that happened to
/// be a tick's is tried again (twice at most), since a tick may run at any moment.
#[test]
fn the_agent_repairs_each_kind_of_drift_on_an_event() {
    if !kernel_tests_possible() {
        return;
    }
    let mut h = Host::new("drifta", 1);
    let out = h.run("apply", Some(h.file()), &["--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    let agent = start_agent(&mut h, &[]);
    let status_file = h.state.join("controllers/drifta/status.json");
    wait_until("the agent's first pass", Duration::from_secs(30), || {
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&status_file).ok()?).ok()?;
        (v["last_reconcile"]["ok"] == true && v["units"]["engine-1"] == true).then_some(())
    });
    let cases = [
        DriftCase {
            id: "route mw-drifta-e1:default table 1194",
            breaks: |_| run("ip", &["-n", DRIFT_ENGINE, "route", "del", "default", "table", "1194"]),
            back: |_| ip_out(&["-n", DRIFT_ENGINE, "route", "show", "table", "1194"]).contains("default"),
        },
        DriftCase {
            id: "rule mw-drifta-e1:iif tun0 lookup 1194",
            breaks: |_| run("ip", &["-n", DRIFT_ENGINE, "rule", "del", "priority", "1000"]),
            back: |_| ip_out(&["-n", DRIFT_ENGINE, "rule", "show"]).contains("lookup 1194"),
        },
        DriftCase {
            id: "address plugin0 ",
            breaks: |h| run("ip", &["-n", &h.netns, "address", "flush", "dev", "plugin0"]),
            back: |h| ip_out(&["-n", &h.netns, "address", "show", "dev", "plugin0"]).contains("inet "),
        },
        DriftCase {
            id: "link mw-e1",
            breaks: |h| run("ip", &["-n", &h.netns, "link", "del", "mw-e1"]),
            back: |h| ip_out(&["-n", &h.netns, "link", "show", "dev", "mw-e1"]).contains("master plugin0"),
        },
        DriftCase {
            id: "nftables inet meshwork",
            breaks: |h| {
                let handle = firewall_rule_handle(h).expect("firewall rule 1");
                let argv = ["netns", "exec", &h.netns, "nft", "delete", "rule", "inet", "meshwork", "firewall"];
                run("ip", &[&argv[..], &["handle", &handle]].concat());
            },
            back: |h| firewall_rule_handle(h).is_some(),
        },
        DriftCase {
            id: "nftables inet meshwork",
            breaks: |h| run("ip", &["netns", "exec", &h.netns, "nft", "delete", "table", "inet", "meshwork"]),
            back: |h| firewall_rule_handle(h).is_some(),
        },
        DriftCase {
            id: "process engine-1",
            breaks: |h| {
                let pid = unit_pid(h, "engine-1").expect("engine-1 runs");
                // SAFETY: kill(2) on the pid this test's state directory names.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                wait_until("engine-1 to die", Duration::from_secs(10), || (!alive(pid)).then_some(()));
            },
            back: |h| unit_pid(h, "engine-1").is_some_and(alive),
        },
    ];
    let log = h.lab.path("agent.err");
    for case in &cases {
        let mut triggers = Vec::new();
        for _ in 0..3 {
            let from = fs::read_to_string(&log).unwrap().len();
            (case.breaks)(&h);
            wait_until(&format!("{} to be back", case.id), Duration::from_secs(30), || (case.back)(&h).then_some(()));
            let line =
                wait_until(&format!("the agent to log the repair of {}", case.id), Duration::from_secs(10), || {
                    let text = fs::read_to_string(&log).unwrap();
                    text[from..].lines().find(|l| l.contains(case.id)).map(str::to_string)
                });
            triggers.push(line.clone());
            if line.contains("(event: ") {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        assert!(
            triggers.last().is_some_and(|l| l.contains("(event: ")),
            "{} was repaired, but never on an event: {triggers:#?}",
            case.id
        );
    }
    // The engine's route: woken by its own namespace's netlink events.
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().any(|l| l.contains("route mw-drifta-e1:default table 1194 (event: netlink in mw-drifta-e1)")),
        "{text}"
    );
    stop_agent(&mut h, agent);
    h.destroy();
}
