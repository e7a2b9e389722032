//! The agent's HTTPS API over loopback: read access by bearer token or client certificate,
//! slowed-down failures, the join proof (right, wrong, replayed, bearer refused), the keyset
//! round trip into a fresh state directory, routes, and secrets kept out of `Debug`.
//!
//! Every test starts its own server on 127.0.0.1, port 0, on its own runtime; client calls are
//! made from the test thread with `block_on`.

use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use meshwork::api::client::{self, ClientAuth, FetchError};
use meshwork::api::server::{self, ApiConfig, ApiSource};
use meshwork::api::{EXPORTER_LABEL, join_proof};
use meshwork::bundle::{self, BundleError, KdfParams};
use meshwork::keys::Keyset;
use meshwork_compiler::network::Network;
use meshwork_compiler::source::SourceFile;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const READ: &[u8] = b"read-token-0123456789abcdef";
const JOIN: &[u8] = b"join-token-0123456789abcdef-xyz";
const WRONG: &[u8] = b"wrong-token-0123456789abcdef";
/// Cheap Argon2 parameters for the bundles the fake agent seals.
const FAST: KdfParams = KdfParams { m_kib: 8, t: 1, p: 1 };

const TOPOLOGY: &str = r#"
topology "api-test"
overlay "100.127.255.192/26"
controller "east" id=1 {
    address "192.0.2.10"
}
controller "west" id=2 {
    address "192.0.2.20"
}
client "web-1" tags="web"
"#;

fn network(text: &str) -> Network {
    let a = meshwork_compiler::analyze(SourceFile::new("api-test.kdl", text.to_string()));
    match a.network {
        Some(n) => n,
        None => panic!("topology does not compile: {:#?}", a.diagnostics),
    }
}

/// A scratch directory of this test's own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("api-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The agent's side of the seam: fixed status and metrics, a real sealed keyset.
struct FakeAgent {
    keyset_dir: PathBuf,
}

impl ApiSource for FakeAgent {
    fn status(&self) -> serde_json::Value {
        serde_json::json!({ "topology": "api-test", "controller": "east", "healthy": true })
    }
    fn metrics(&self) -> String {
        "# HELP meshwork_up The agent runs.\n# TYPE meshwork_up gauge\nmeshwork_up 1\n".into()
    }
    fn keyset_bundle(&self, token: &[u8]) -> Result<Vec<u8>, String> {
        bundle::export_with(&self.keyset_dir, token, FAST).map_err(|e| e.to_string())
    }
}

/// A PEM certificate and key.
struct Identity {
    cert_pem: String,
    key_pem: String,
}

/// A running server for one test, with the topology keyset and a second, foreign one.
struct Agent {
    scratch: Scratch,
    rt: tokio::runtime::Runtime,
    url: String,
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl Agent {
    fn start(test: &str) -> Agent {
        Agent::start_with(test, |_| {})
    }

    /// Makes the keysets, lets `adjust` change the server's configuration, starts the server.
    fn start_with(test: &str, adjust: impl FnOnce(&mut ApiConfig)) -> Agent {
        let scratch = Scratch::new(test);
        let now = OffsetDateTime::now_utc();
        Keyset::init(&scratch.path("state"), &network(TOPOLOGY), now).unwrap();
        Keyset::init(&scratch.path("foreign"), &network(TOPOLOGY), now).unwrap();
        let keyset = Keyset::open(&scratch.path("state")).unwrap();
        let mut config = ApiConfig {
            ca_pem: keyset.ca_pem().unwrap(),
            cert_pem: keyset.cert_pem("east").unwrap(),
            key_pem: keyset.key_pem("east").unwrap(),
            crl_pem: Some(keyset.crl_pem().unwrap()),
            read_token: Some(READ.to_vec()),
            join_token: Some(JOIN.to_vec()),
        };
        adjust(&mut config);
        let source = Arc::new(FakeAgent { keyset_dir: keyset.dir().to_path_buf() });
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = rt.spawn(server::serve(listener, config, source, async move {
            let _ = stopped.await;
        }));
        Agent { scratch, rt, url: format!("https://{addr}"), addr, stop: Some(stop), done: Some(done) }
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn keyset(&self) -> Keyset {
        Keyset::open(&self.scratch.path("state")).unwrap()
    }

    fn ca_pem(&self) -> String {
        self.keyset().ca_pem().unwrap()
    }

    fn identity(&self, cn: &str) -> Identity {
        let ks = self.keyset();
        Identity { cert_pem: ks.cert_pem(cn).unwrap(), key_pem: ks.key_pem(cn).unwrap() }
    }

    fn foreign_identity(&self, cn: &str) -> Identity {
        let ks = Keyset::open(&self.scratch.path("foreign")).unwrap();
        Identity { cert_pem: ks.cert_pem(cn).unwrap(), key_pem: ks.key_pem(cn).unwrap() }
    }

    fn bearer(&self, token: &[u8]) -> ClientAuth {
        ClientAuth::Bearer { token: token.to_vec(), ca_pem: self.ca_pem() }
    }

    fn certificate(&self, id: Identity) -> ClientAuth {
        ClientAuth::Certificate { ca_pem: self.ca_pem(), cert_pem: id.cert_pem, key_pem: id.key_pem }
    }

    fn get(&self, path: &str, auth: ClientAuth) -> Result<(u16, String), FetchError> {
        self.block_on(client::get(&self.url, path, auth))
    }

    /// One raw HTTP/1.1 exchange on a fresh TLS connection; `request` gets its exporter value.
    fn raw(&self, request: impl FnOnce(&[u8; 32]) -> String) -> Raw {
        self.block_on(raw(self.addr, request)).unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let result = self.rt.block_on(done);
            if !std::thread::panicking() {
                result.expect("the server task panicked").expect("the server failed");
            }
        }
    }
}

/// Accepts any server certificate (the raw requests test the server, not its identity).
#[derive(Debug)]
struct AnyServer(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn raw(addr: std::net::SocketAddr, request: impl FnOnce(&[u8; 32]) -> String) -> io::Result<Raw> {
    raw_from(addr, None, request).await
}

/// [`raw`], from `source` (another loopback address, say) when given.
async fn raw_from(
    addr: std::net::SocketAddr,
    source: Option<std::net::IpAddr>,
    request: impl FnOnce(&[u8; 32]) -> String,
) -> io::Result<Raw> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algs = provider.signature_verification_algorithms;
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(algs)))
        .with_no_client_auth();
    let tcp = match source {
        None => TcpStream::connect(addr).await?,
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(std::net::SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
    };
    let name = ServerName::IpAddress(addr.ip().into());
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
    let exporter = tls.get_ref().1.export_keying_material([0u8; 32], EXPORTER_LABEL, None).unwrap();
    tls.write_all(request(&exporter).as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(raw) = parse_response(&buf) {
            return Ok(raw);
        }
        match tls.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    parse_response(&buf)
        .ok_or_else(|| io::Error::other(format!("incomplete response: {:?}", String::from_utf8_lossy(&buf))))
}

/// A complete response with a Content-Length body, or `None` while bytes are missing.
fn parse_response(buf: &[u8]) -> Option<Raw> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_string(), v.trim().to_string())).collect();
    let len: usize = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length"))?.1.parse().ok()?;
    let body = buf.get(end + 4..end + 4 + len)?.to_vec();
    Some(Raw { status, headers, body })
}

fn request(method: &str, path: &str, authorization: Option<String>) -> String {
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n")
}

fn bearer_header(token: &[u8]) -> Option<String> {
    Some(format!("Bearer {}", std::str::from_utf8(token).unwrap()))
}

fn write_token(path: &Path, token: &[u8]) {
    std::fs::write(path, [token, b"\n"].concat()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// /status and /metrics

#[test]
fn status_with_the_read_token_is_json() {
    let agent = Agent::start("status-bearer");
    let (status, body) = agent.get("/status", agent.bearer(READ)).unwrap();
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["topology"], "api-test");
    assert_eq!(json["healthy"], true);

    let raw = agent.raw(|_| request("GET", "/status", bearer_header(READ)));
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-type"), Some("application/json"));
    assert_eq!(raw.header("cache-control"), Some("no-store"));
}

#[test]
fn status_without_credentials_is_401_at_once() {
    let agent = Agent::start("status-none");
    let raw = agent.raw(|_| request("GET", "/status", None));
    assert_eq!(raw.status, 401, "{}", raw.text());
    assert_eq!(raw.header("www-authenticate"), Some("Bearer realm=\"meshwork\""));
    assert!(raw.text().contains("client certificate"), "{}", raw.text());
    let raw = agent.raw(|_| request("GET", "/metrics", None));
    assert_eq!(raw.status, 401);
    // Another scheme is no credential for these routes either.
    let raw = agent.raw(|_| request("GET", "/status", Some("Basic dXNlcjpwYXNz".into())));
    assert_eq!(raw.status, 401);
}

#[test]
fn wrong_read_tokens_are_refused_and_slowed_down() {
    let agent = Agent::start("status-wrong");
    let timed = |token: &[u8]| {
        let start = Instant::now();
        let (status, body) = agent.get("/status", agent.bearer(token)).unwrap();
        (status, body, start.elapsed())
    };
    let (status, body, first) = timed(WRONG);
    assert_eq!(status, 401);
    assert!(body.contains("refused"), "{body}");
    assert!(first >= server::FAILURE_DELAY, "first failure answered after {first:?}");
    let (status, _, second) = timed(b"another-wrong-token-0123");
    assert_eq!(status, 401);
    assert!(second >= server::FAILURE_DELAY * 2, "second failure answered after {second:?}");
    assert!(second >= first, "second failure ({second:?}) quicker than the first ({first:?})");
    // The right token still works, and the failures are counted in /metrics.
    let (status, metrics) = agent.get("/metrics", agent.bearer(READ)).unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("meshwork_api_auth_failures_total{credential=\"read_token\"} 2"), "{metrics}");
    assert!(metrics.contains("meshwork_api_auth_failures_total{credential=\"join_proof\"} 0"), "{metrics}");
}

/// Regression (issue 12, item 7): 16 parallel senders of wrong tokens filled the one shared
/// failure queue, and the right read token got 429 from anywhere for as long as they went on.
/// Failures are now counted per source address: the flooders are throttled (one of them past
/// the point of 429), the right token from another address is answered 200 at once, and a
/// certificate client is never throttled.
#[test]
fn a_flood_of_wrong_tokens_does_not_lock_out_other_sources() {
    let agent = Agent::start("status-flood");
    let addr = agent.addr;
    let loopback = |last: u8| std::net::IpAddr::from([127, 0, 0, last]);
    // 16 sources, two wrong tokens each, and 12 more from the first: 44 failures at once.
    let mut flood = Vec::new();
    for i in 0..16u8 {
        let n = if i == 0 { 14 } else { 2 };
        for _ in 0..n {
            flood.push(
                agent
                    .rt
                    .spawn(raw_from(addr, Some(loopback(2 + i)), |_| request("GET", "/status", bearer_header(WRONG)))),
            );
        }
    }
    let cert = || agent.certificate(agent.identity("peer-west"));
    wait_until_counted(&agent, cert, 44);

    // The flooder with 14 failures queued is refused unchecked, even with the right token.
    let from_flooder =
        agent.block_on(raw_from(addr, Some(loopback(2)), |_| request("GET", "/status", bearer_header(READ))));
    assert_eq!(from_flooder.unwrap().status, 429);
    // Elsewhere, the right token is answered at once.
    let start = Instant::now();
    let raw = agent.block_on(raw_from(addr, Some(loopback(1)), |_| request("GET", "/status", bearer_header(READ))));
    let raw = raw.unwrap();
    assert_eq!(raw.status, 200, "{}", raw.text());
    assert!(start.elapsed() < server::FAILURE_DELAY, "answered after {:?}", start.elapsed());
    // That success did not clear the flooder's back-off.
    let again = agent.block_on(raw_from(addr, Some(loopback(2)), |_| request("GET", "/status", bearer_header(READ))));
    assert_eq!(again.unwrap().status, 429);
    let (status, _) = agent.get("/status", cert()).unwrap();
    assert_eq!(status, 200, "a certificate client is not throttled");
    for task in flood {
        task.abort();
    }
}

/// Waits until /metrics (read with a certificate) shows `n` read-token requests dealt with:
/// refused after checking, or refused unchecked (429).
fn wait_until_counted(agent: &Agent, auth: impl Fn() -> ClientAuth, n: u64) {
    let counter = |metrics: &str, name: &str| -> u64 {
        let prefix = format!("{name}{{credential=\"read_token\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)?.parse().ok()).unwrap_or(0)
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, metrics) = agent.get("/metrics", auth()).unwrap();
        let seen = counter(&metrics, "meshwork_api_auth_failures_total")
            + counter(&metrics, "meshwork_api_auth_throttled_total");
        if seen >= n {
            return;
        }
        assert!(Instant::now() < deadline, "never counted {n} failures:\n{metrics}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn near_misses_of_the_read_token_are_refused() {
    let agent = Agent::start("status-near-miss");
    // A prefix of the right token, an extension of it, the right one with other case.
    let upper = READ.to_ascii_uppercase();
    for token in [&READ[..READ.len() - 1], &[READ, b"x"].concat(), &upper] {
        let (status, _) = agent.get("/status", agent.bearer(token)).unwrap();
        assert_eq!(status, 401, "{}", String::from_utf8_lossy(token));
    }
}

#[test]
fn bearer_access_is_off_without_a_read_token() {
    let agent = Agent::start_with("status-no-read-token", |c| c.read_token = None);
    let (status, _) = agent.get("/status", agent.bearer(READ)).unwrap();
    assert_eq!(status, 401);
    let (status, _) = agent.get("/status", agent.certificate(agent.identity("peer-west"))).unwrap();
    assert_eq!(status, 200);
}

#[test]
fn metrics_are_prometheus_text() {
    let agent = Agent::start("metrics");
    let raw = agent.raw(|_| request("GET", "/metrics", bearer_header(READ)));
    assert_eq!(raw.status, 200, "{}", raw.text());
    let ct = raw.header("content-type").unwrap();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = raw.text();
    assert!(text.starts_with("# HELP meshwork_up"), "{text}");
    assert!(text.contains("\nmeshwork_up 1\n"), "{text}");
    assert!(text.contains("# TYPE meshwork_api_auth_failures_total counter"), "{text}");
    assert!(text.ends_with('\n'));
}

#[test]
fn a_client_certificate_of_the_topology_ca_grants_read_access() {
    let agent = Agent::start("cert");
    // A controller's peering identity (serverAuth + clientAuth) and a client's (clientAuth).
    let (status, body) = agent.get("/status", agent.certificate(agent.identity("peer-west"))).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["controller"], "east");
    let (status, body) = agent.get("/metrics", agent.certificate(agent.identity("web-1"))).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("meshwork_up 1"));
    // A certificate does not open the keyset.
    let (status, _) = agent.get("/v1/keyset", agent.certificate(agent.identity("peer-west"))).unwrap();
    assert_eq!(status, 401);
}

#[test]
fn a_certificate_of_another_ca_is_refused() {
    let agent = Agent::start("cert-foreign");
    match agent.get("/status", agent.certificate(agent.foreign_identity("peer-west"))) {
        Err(e @ (FetchError::Tls { .. } | FetchError::Http { .. })) => {
            assert!(e.to_string().contains(&agent.url), "{e}");
        }
        Ok((401, _)) => {}
        other => panic!("a foreign certificate was not refused: {other:?}"),
    }
    // A server-only certificate of the topology (no clientAuth) is refused too.
    match agent.get("/status", agent.certificate(agent.identity("west"))) {
        Err(FetchError::Tls { .. } | FetchError::Http { .. }) | Ok((401, _)) => {}
        other => panic!("a serverAuth-only certificate was accepted: {other:?}"),
    }
}

#[test]
fn a_revoked_certificate_is_refused() {
    // Issue, keep web-1's identity, then revoke it and serve the new CRL.
    let agent = Agent::start("cert-revoked");
    let old = agent.identity("web-1");
    let revoked = TOPOLOGY.replace("client \"web-1\" tags=\"web\"", "client \"web-1\" tags=\"web\" revoked=#true");
    let mut ks = agent.keyset();
    let report = ks.sync(&network(&revoked), OffsetDateTime::now_utc()).unwrap();
    assert_eq!(report.revoked, ["web-1"]);
    let crl = ks.crl_pem().unwrap();
    let (ca, cert, key) = (ks.ca_pem().unwrap(), ks.cert_pem("east").unwrap(), ks.key_pem("east").unwrap());
    let source = Arc::new(FakeAgent { keyset_dir: ks.dir().to_path_buf() });
    let listener = agent.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let config = ApiConfig {
        ca_pem: ca.clone(),
        cert_pem: cert,
        key_pem: key,
        crl_pem: Some(crl),
        read_token: None,
        join_token: None,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let done = agent.rt.spawn(server::serve(listener, config, source, async move {
        let _ = stopped.await;
    }));
    let auth = ClientAuth::Certificate { ca_pem: ca.clone(), cert_pem: old.cert_pem, key_pem: old.key_pem };
    match agent.block_on(client::get(&url, "/status", auth)) {
        Err(FetchError::Tls { .. } | FetchError::Http { .. }) | Ok((401, _)) => {}
        other => panic!("a revoked certificate was accepted: {other:?}"),
    }
    let peer = agent.identity("peer-west");
    let auth = ClientAuth::Certificate { ca_pem: ca, cert_pem: peer.cert_pem, key_pem: peer.key_pem };
    assert_eq!(agent.block_on(client::get(&url, "/status", auth)).unwrap().0, 200);
    let _ = stop.send(());
    agent.block_on(done).unwrap().unwrap();
}

#[test]
fn the_client_refuses_a_server_of_another_ca() {
    let agent = Agent::start("server-foreign");
    let foreign_ca = Keyset::open(&agent.scratch.path("foreign")).unwrap().ca_pem().unwrap();
    let err = agent.get("/status", ClientAuth::Bearer { token: READ.to_vec(), ca_pem: foreign_ca }).unwrap_err();
    assert!(matches!(err, FetchError::Tls { .. }), "{err:?}");
    // The foreign CA has the same name as ours, so webpki finds it as the issuer and the
    // signature check fails; with another name it would be UnknownIssuer.
    assert!(err.to_string().contains("invalid peer certificate"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// /v1/keyset

#[test]
fn the_keyset_fetched_with_the_join_token_imports_with_the_same_ca() {
    let agent = Agent::start("keyset");
    let sealed = agent.block_on(client::fetch_keyset(&agent.url, JOIN)).unwrap();
    assert!(sealed.starts_with(bundle::MAGIC));
    let joined = agent.scratch.path("joined");
    bundle::import(&sealed, JOIN, &meshwork::state::keyset_dir(&joined)).unwrap();
    let ours = agent.keyset().ca_fingerprint();
    assert_eq!(Keyset::open(&joined).unwrap().ca_fingerprint(), ours);
    // Sealed under the join token: another token cannot open it.
    assert!(matches!(bundle::open(&sealed, WRONG), Err(BundleError::Authentication)));

    // The CLI's path: token file, fetch, import into a fresh state directory.
    let token_file = agent.scratch.path("join.token");
    write_token(&token_file, JOIN);
    let state = agent.scratch.path("cli-state");
    let report = client::fetch_and_import(&agent.url, &token_file, &state).unwrap();
    assert_eq!(report.ca_fingerprint, ours);
    assert_eq!(report.topology, "api-test");
    assert_eq!(report.import.keyset_dir, meshwork::state::keyset_dir(&state));
    assert!(report.bytes > 0 && report.import.files > 0);
    // A second fetch refuses to replace the keyset, before going to the network.
    let err = client::fetch_and_import("https://192.0.2.1:1", &token_file, &state).unwrap_err();
    assert!(matches!(err, FetchError::Bundle(BundleError::KeysetExists(_))), "{err:?}");
}

#[test]
fn a_wrong_join_token_is_refused() {
    let agent = Agent::start("keyset-wrong");
    let start = Instant::now();
    let err = agent.block_on(client::fetch_keyset(&agent.url, WRONG)).unwrap_err();
    assert!(start.elapsed() >= server::FAILURE_DELAY);
    assert!(matches!(err, FetchError::Refused { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("the token was refused by {}", agent.url));

    // Through the CLI's path: nothing is written.
    let token_file = agent.scratch.path("wrong.token");
    write_token(&token_file, WRONG);
    let state = agent.scratch.path("cli-state");
    let err = client::fetch_and_import(&agent.url, &token_file, &state).unwrap_err();
    assert!(matches!(err, FetchError::Refused { .. }), "{err:?}");
    assert!(!state.exists());
}

#[test]
fn the_join_token_as_a_bearer_token_is_refused() {
    let agent = Agent::start("keyset-bearer");
    let raw = agent.raw(|_| request("GET", "/v1/keyset", bearer_header(JOIN)));
    assert_eq!(raw.status, 401, "{}", raw.text());
    assert_eq!(raw.header("www-authenticate"), Some("MeshworkJoin"));
    // Nor does it open /status.
    let raw = agent.raw(|_| request("GET", "/status", bearer_header(JOIN)));
    assert_eq!(raw.status, 401);
    // And the read token does not open the keyset.
    let raw = agent.raw(|_| request("GET", "/v1/keyset", bearer_header(READ)));
    assert_eq!(raw.status, 401);
}

#[test]
fn a_join_proof_replayed_on_another_connection_is_refused() {
    let agent = Agent::start("keyset-replay");
    // Connection A: compute the proof for its exporter (and send nothing that proves it).
    let mut captured = None;
    let raw = agent.raw(|exporter| {
        captured = Some(join_proof(JOIN, exporter));
        request("GET", "/nothing-here", None)
    });
    assert_eq!(raw.status, 404);
    let proof_a = captured.unwrap();
    // Connection B: A's proof is refused.
    let raw = agent.raw(|_| request("GET", "/v1/keyset", Some(format!("MeshworkJoin {proof_a}"))));
    assert_eq!(raw.status, 401, "{}", raw.text());
    // Connection C: its own proof is accepted, on the same raw path.
    let raw = agent
        .raw(|exporter| request("GET", "/v1/keyset", Some(format!("MeshworkJoin {}", join_proof(JOIN, exporter)))));
    assert_eq!(raw.status, 200, "{}", raw.text());
    assert_eq!(raw.header("content-type"), Some("application/octet-stream"));
    assert!(bundle::open(&raw.body, JOIN).is_ok());
    // Malformed proofs are refused, not errors.
    for bad in ["MeshworkJoin xyz", "MeshworkJoin 00"] {
        let raw = agent.raw(|_| request("GET", "/v1/keyset", Some(bad.into())));
        assert_eq!(raw.status, 401, "{bad}: {}", raw.text());
    }
}

#[test]
fn malformed_join_proofs_are_refused() {
    let agent = Agent::start("keyset-malformed");
    for bad in ["meshworkjoin  ", "MeshworkJoin"] {
        let raw = agent.raw(|_| request("GET", "/v1/keyset", Some(bad.into())));
        assert_eq!(raw.status, 401, "{bad}: {}", raw.text());
    }
}

#[test]
fn without_a_join_token_the_keyset_is_not_served() {
    let agent = Agent::start_with("keyset-off", |c| c.join_token = None);
    let err = agent.block_on(client::fetch_keyset(&agent.url, JOIN)).unwrap_err();
    assert!(matches!(err, FetchError::NotServed { .. }), "{err:?}");
    assert!(err.to_string().contains("no join token"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Routes, configuration, secrets

#[test]
fn unknown_paths_are_404_and_other_methods_405() {
    let agent = Agent::start("routes");
    let raw = agent.raw(|_| request("GET", "/nope", None));
    assert_eq!(raw.status, 404);
    let (status, _) = agent.get("/status/extra", agent.bearer(READ)).unwrap();
    assert_eq!(status, 404);
    for path in ["/status", "/metrics", "/v1/keyset"] {
        let raw = agent.raw(|_| request("POST", path, bearer_header(READ)));
        assert_eq!(raw.status, 405, "POST {path}");
        assert_eq!(raw.header("allow"), Some("GET"));
    }
    let raw = agent.raw(|_| request("DELETE", "/status", None));
    assert_eq!(raw.status, 405);
}

#[test]
fn a_path_prefix_in_the_url_is_kept() {
    let agent = Agent::start("prefix");
    let url = format!("{}/api/", agent.url);
    let (status, _) = agent.block_on(client::get(&url, "/status", agent.bearer(READ))).unwrap();
    assert_eq!(status, 404, "the request went to /api/status");
}

#[test]
fn an_unusable_configuration_fails_before_serving() {
    let scratch = Scratch::new("bad-config");
    Keyset::init(&scratch.path("state"), &network(TOPOLOGY), OffsetDateTime::now_utc()).unwrap();
    let ks = Keyset::open(&scratch.path("state")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let source = Arc::new(FakeAgent { keyset_dir: ks.dir().to_path_buf() });
    let good = ApiConfig {
        ca_pem: ks.ca_pem().unwrap(),
        cert_pem: ks.cert_pem("east").unwrap(),
        key_pem: ks.key_pem("east").unwrap(),
        crl_pem: None,
        read_token: Some(READ.to_vec()),
        join_token: Some(JOIN.to_vec()),
    };
    let cases = [
        ("garbage CA", ApiConfig { ca_pem: "junk".into(), ..good.clone() }),
        ("key of another identity", ApiConfig { key_pem: ks.key_pem("west").unwrap(), ..good.clone() }),
        ("no key", ApiConfig { key_pem: String::new(), ..good.clone() }),
    ];
    for (what, config) in cases {
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let err = rt.block_on(server::serve(listener, config, source.clone(), std::future::pending())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{what}: {err}");
        assert!(!err.to_string().contains("PRIVATE KEY"), "{what}: {err}");
    }
}

#[test]
fn debug_output_holds_no_secret() {
    let agent = Agent::start("debug");
    let id = agent.identity("east");
    let config = ApiConfig {
        ca_pem: agent.ca_pem(),
        cert_pem: id.cert_pem.clone(),
        key_pem: id.key_pem.clone(),
        crl_pem: None,
        read_token: Some(READ.to_vec()),
        join_token: Some(JOIN.to_vec()),
    };
    let shown = format!("{config:?} {:?} {:?}", agent.bearer(READ), agent.certificate(agent.identity("web-1")));
    let key_line = id.key_pem.lines().nth(1).unwrap();
    for secret in [std::str::from_utf8(READ).unwrap(), std::str::from_utf8(JOIN).unwrap(), key_line, "PRIVATE KEY"] {
        assert!(!shown.contains(secret), "Debug shows a secret: {shown}");
    }
    assert!(shown.contains("redacted"), "{shown}");
}

#[test]
fn client_errors_name_the_url() {
    // A port nobody listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let err = rt.block_on(client::fetch_keyset(&url, JOIN)).unwrap_err();
    assert!(matches!(err, FetchError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
    let err = rt.block_on(client::fetch_keyset("http://127.0.0.1:1", JOIN)).unwrap_err();
    assert!(matches!(err, FetchError::Url { .. }), "{err:?}");
}
