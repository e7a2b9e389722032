//! The API server. The agent implements [`ApiSource`] and runs [`serve`] on its listener.
//!
//! Routes (GET only; another method is 405, another path 404):
//!
//! * `/status`: [`ApiSource::status`] as `application/json`;
//! * `/metrics`: [`ApiSource::metrics`] followed by the server's own counters
//!   (`meshwork_api_auth_failures_total`, `meshwork_api_auth_throttled_total`), as
//!   `text/plain; version=0.0.4` (Prometheus text format);
//! * `/v1/keyset`: [`ApiSource::keyset_bundle`] as `application/octet-stream`; 404 when the
//!   agent has no join token;
//! * `/v1/mesh`: [`ApiSource::mesh`] as JSON, and `/v1/mesh/stream`: [`ApiSource::mesh_stream`]
//!   as NDJSON that goes on as long as the connection, both for peer certificates only
//!   (`peer-<controller>`). A stream ends cleanly when its connection reaches
//!   [`CONNECTION_LIFETIME`], when the server stops, and when the TLS configuration is reloaded
//!   (a peer revoked since its handshake is cut off at once; the others reconnect and resume).
//!
//! The first two take a verified client certificate of the topology CA or the read token as a
//! bearer token; the keyset takes only the join proof (see [the module](super)). A missing
//! credential is answered 401 at once. A wrong one is answered 401 after the delay described in
//! the throttle below; while too many failures are queued, requests with that kind of credential
//! get 429 and `Retry-After` without being checked:
//!
//! * the n-th recent failure (n = 0, 1, ...) waits [`FAILURE_DELAY`] × 2ⁿ, at most
//!   [`FAILURE_DELAY_MAX`]; failures are answered one after another, so parallel connections
//!   do not speed up guessing;
//! * at more than [`FAILURE_QUEUE_MAX`] of queued answers, 429 without checking;
//! * the count restarts after [`FAILURE_QUIET`] without failures, or when a request with the
//!   same kind of credential succeeds. Read-token and join-token failures are counted apart.
//!
//! Limits: [`MAX_CONNECTIONS`] at once, [`HANDSHAKE_TIMEOUT`] for TLS, [`HEADER_TIMEOUT`] for a
//! request's headers, [`CONNECTION_LIFETIME`] per connection. Nothing here logs or formats
//! tokens or keys.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use ring::hmac;
use ring::rand::SystemRandom;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tokio_rustls::TlsAcceptor;

use super::server_tls::ServerTls;
use super::throttle::Throttle;
use super::{EXPORTER_LABEL, EXPORTER_LEN, JOIN_SCHEME, KEYSET_PATH, unhex, verify_join_proof};

pub use super::throttle::{
    BASE as FAILURE_DELAY, MAX as FAILURE_DELAY_MAX, MAX_SOURCES as FAILURE_SOURCES_MAX,
    QUEUE_MAX as FAILURE_QUEUE_MAX, QUIET as FAILURE_QUIET,
};

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// Time allowed for the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed (gracefully) after this long.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// On shutdown, time given to requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub const CONTENT_TYPE_JSON: &str = "application/json";
pub const CONTENT_TYPE_METRICS: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const CONTENT_TYPE_BUNDLE: &str = "application/octet-stream";
pub const CONTENT_TYPE_NDJSON: &str = "application/x-ndjson";

/// The body of every answer: whole (`Full`) or streamed.
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What the API shows; the agent implements it. `status` and `metrics` are called on the async
/// runtime and must not block; `keyset_bundle` runs on a blocking thread (it derives a key).
pub trait ApiSource: Send + Sync + 'static {
    /// The agent's state, served as `/status`.
    fn status(&self) -> serde_json::Value;
    /// Prometheus text exposition, served as `/metrics`.
    fn metrics(&self) -> String;
    /// The keyset sealed under `token` (the agent uses `bundle::export`); the error is shown to
    /// the (authenticated) caller, so it must hold no secret.
    fn keyset_bundle(&self, token: &[u8]) -> Result<Vec<u8>, String>;
    /// What this controller tells its peers (`/v1/mesh`): the clients it holds and the LANs
    /// it serves. Only peer certificates (`peer-<controller>`) may read it. `None`: not served.
    fn mesh(&self) -> Option<serde_json::Value> {
        None
    }
    /// The same as a stream (`/v1/mesh/stream?QUERY`): pieces of NDJSON, sent as they come;
    /// the server ends it with the connection. `None`: not served.
    fn mesh_stream(&self, query: Option<&str>) -> Option<BoxStream<'static, Bytes>> {
        let _ = query;
        None
    }
}

/// What the server needs: TLS material from the topology keyset and the tokens. Its `Debug`
/// shows no key and no token.
#[derive(Clone)]
pub struct ApiConfig {
    /// The topology CA: client certificates must chain to it.
    pub ca_pem: String,
    /// The server's certificate (the controller's own, from the keyset), optionally followed
    /// by intermediates.
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The topology CRL (`Keyset::crl_pem`): a revoked client certificate is refused in the
    /// handshake. `None` checks no revocation.
    pub crl_pem: Option<String>,
    /// Grants `/status` and `/metrics` as `Authorization: Bearer <token>`; `None` disables
    /// bearer access.
    pub read_token: Option<Vec<u8>>,
    /// The join token: grants `/v1/keyset` through the join proof; `None` disables the endpoint.
    pub join_token: Option<Vec<u8>>,
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |o: bool| if o { "<redacted>" } else { "none" };
        f.debug_struct("ApiConfig")
            .field("ca_pem", &format_args!("<{} bytes>", self.ca_pem.len()))
            .field("cert_pem", &format_args!("<{} bytes>", self.cert_pem.len()))
            .field("key_pem", &format_args!("<redacted>"))
            .field("crl_pem", &format_args!("{}", if self.crl_pem.is_some() { "<set>" } else { "none" }))
            .field("read_token", &format_args!("{}", set(self.read_token.is_some())))
            .field("join_token", &format_args!("{}", set(self.join_token.is_some())))
            .finish()
    }
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting, lets requests
/// in flight finish for up to [`SHUTDOWN_GRACE`] and returns. Fails at once, before accepting
/// anything, when the configuration is unusable (unreadable PEM, key not matching the
/// certificate); errors of single connections never end it.
pub async fn serve(
    listener: TcpListener,
    config: ApiConfig,
    source: Arc<dyn ApiSource>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let tls = ServerTls::new(&config).map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
    serve_with(listener, tls, config, source, shutdown).await
}

/// [`serve`] with TLS from `tls`, which the caller may reload while it serves (new keyset, new
/// CRL); the TLS fields of `config` are not used.
pub async fn serve_with(
    listener: TcpListener,
    tls: ServerTls,
    config: ApiConfig,
    source: Arc<dyn ApiSource>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, format!("API server: {why}"));
    let shared = Arc::new(Shared::new(config, source).map_err(invalid)?);

    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        while tasks.try_join_next().is_some() {}
        match accepted {
            Ok((tcp, peer)) => {
                let reloaded = tls.reloads();
                tasks.spawn(connection(
                    tcp,
                    peer.ip(),
                    tls.acceptor(),
                    reloaded,
                    shared.clone(),
                    stop_rx.clone(),
                    permit,
                ));
            }
            // Out of file descriptors, a connection reset before accept: wait a little, go on.
            Err(_) => sleep(Duration::from_millis(50)).await,
        }
    }
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tasks.abort_all();
    }
    Ok(())
}

/// State shared by all connections.
struct Shared {
    source: Arc<dyn ApiSource>,
    read: Option<ReadToken>,
    join_token: Option<Vec<u8>>,
    read_failures: Throttle,
    join_failures: Throttle,
}

/// The read token, kept as an HMAC under a random key, so a presented token is checked by
/// `hmac::verify` (constant time, independent of both lengths).
struct ReadToken {
    key: hmac::Key,
    tag: Vec<u8>,
}

impl Shared {
    fn new(config: ApiConfig, source: Arc<dyn ApiSource>) -> Result<Shared, String> {
        let read = match config.read_token.filter(|t| !t.is_empty()) {
            None => None,
            Some(token) => {
                let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
                    .map_err(|_| "the system's random number generator failed".to_string())?;
                let tag = hmac::sign(&key, &token).as_ref().to_vec();
                Some(ReadToken { key, tag })
            }
        };
        let join_token = config.join_token.filter(|t| !t.is_empty());
        Ok(Shared { source, read, join_token, read_failures: Throttle::default(), join_failures: Throttle::default() })
    }

    fn read_token_ok(&self, presented: &[u8]) -> bool {
        self.read.as_ref().is_some_and(|r| hmac::verify(&r.key, presented, &r.tag).is_ok())
    }
}

/// One TLS connection's facts, fixed by its handshake.
struct Conn {
    shared: Arc<Shared>,
    /// The peer's address: failed tokens are throttled per source.
    source: IpAddr,
    /// The client presented a certificate, and rustls verified it against the topology CA.
    client_cert: bool,
    /// That certificate's common name.
    client_cn: Option<String>,
    exporter: Option<[u8; EXPORTER_LEN]>,
    /// Becomes true when the connection is about to close: streams end then.
    closing: watch::Receiver<bool>,
}

async fn connection(
    tcp: TcpStream,
    source: IpAddr,
    acceptor: TlsAcceptor,
    mut reloaded: watch::Receiver<u64>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        // A failed handshake (a certificate of another CA, a revoked one, a scanner) or a timeout.
        _ => return,
    };
    let session = tls.get_ref().1;
    let (closing_tx, closing) = watch::channel(false);
    let conn = Arc::new(Conn {
        shared,
        source,
        client_cert: session.peer_certificates().is_some_and(|c| !c.is_empty()),
        client_cn: session.peer_certificates().and_then(|c| c.first()).and_then(|c| common_name(c.as_ref())),
        exporter: session.export_keying_material([0u8; EXPORTER_LEN], EXPORTER_LABEL, None).ok(),
        closing,
    });
    let service = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(conn, req).await) }
    });
    let http = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(tls), service);
    let mut http = pin!(http);
    tokio::select! {
        _ = http.as_mut() => return,
        _ = stop.wait_for(|stopping| *stopping) => {}
        _ = sleep(CONNECTION_LIFETIME) => {}
        // (Without a sender, nothing will be reloaded: wait for the other reasons.)
        _ = async { if reloaded.changed().await.is_err() { std::future::pending::<()>().await } } => {}
    }
    // A stream in progress ends first, so that the graceful shutdown completes at once.
    let _ = closing_tx.send(true);
    http.as_mut().graceful_shutdown();
    let _ = timeout(SHUTDOWN_GRACE, http).await;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Status,
    Metrics,
    Keyset,
    Mesh,
    MeshStream,
}

/// Path of the peers' exchange: which clients a controller holds, which LANs it serves.
pub const MESH_PATH: &str = "/v1/mesh";
/// Path of the same as a stream: a snapshot, then changes as they happen, and beats.
pub const MESH_STREAM_PATH: &str = "/v1/mesh/stream";
/// Common names of the certificates controllers use towards each other: `peer-<controller>`.
pub const PEER_CN_PREFIX: &str = "peer-";

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// The `Authorization` header, split into scheme and credentials.
enum Auth<'a> {
    None,
    Bearer(&'a [u8]),
    Join(&'a [u8]),
    /// Another scheme, several headers, or no credentials after the scheme.
    Unusable,
}

fn authorization(req: &Request<Incoming>) -> Auth<'_> {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Auth::None };
    if values.next().is_some() {
        return Auth::Unusable;
    }
    let raw = value.as_bytes();
    let Some(space) = raw.iter().position(|b| *b == b' ') else { return Auth::Unusable };
    let (scheme, rest) = raw.split_at(space);
    let credentials = rest.trim_ascii();
    if credentials.is_empty() {
        Auth::Unusable
    } else if scheme.eq_ignore_ascii_case(b"Bearer") {
        Auth::Bearer(credentials)
    } else if scheme.eq_ignore_ascii_case(JOIN_SCHEME.as_bytes()) {
        Auth::Join(credentials)
    } else {
        Auth::Unusable
    }
}

async fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Response<Body> {
    let route = match req.uri().path() {
        "/status" => Route::Status,
        "/metrics" => Route::Metrics,
        KEYSET_PATH => Route::Keyset,
        MESH_PATH => Route::Mesh,
        MESH_STREAM_PATH => Route::MeshStream,
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "not found: the API serves /status, /metrics, /v1/keyset, /v1/mesh and /v1/mesh/stream",
            );
        }
    };
    if req.method() != Method::GET {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: use GET");
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        return resp;
    }
    let shared = &conn.shared;
    let auth = authorization(&req);
    if route == Route::Keyset {
        return keyset(&conn, auth).await;
    }
    if route == Route::Mesh {
        return mesh(&conn);
    }
    if route == Route::MeshStream {
        return mesh_stream(&conn, req.uri().query());
    }

    if !conn.client_cert {
        if let Auth::None = auth {
            return unauthorized(
                "Bearer realm=\"meshwork\"",
                "unauthorized: present a client certificate of the topology CA, or `Authorization: Bearer <read token>`",
            );
        }
        if let Err(retry) = shared.read_failures.admit(conn.source) {
            return throttled(retry);
        }
        let ok = match auth {
            Auth::Bearer(token) => shared.read_token_ok(token),
            _ => false,
        };
        if !ok {
            sleep(shared.read_failures.failure(conn.source)).await;
            return unauthorized("Bearer realm=\"meshwork\"", "unauthorized: the token was refused");
        }
        shared.read_failures.success(conn.source);
    }
    match route {
        Route::Status => {
            let mut body = serde_json::to_vec_pretty(&shared.source.status()).unwrap_or_else(|_| b"null".to_vec());
            body.push(b'\n');
            respond(StatusCode::OK, CONTENT_TYPE_JSON, body)
        }
        _ => respond(StatusCode::OK, CONTENT_TYPE_METRICS, metrics(shared).into_bytes()),
    }
}

/// Whether the connection's certificate is a peer controller's: the mesh is for them only.
fn is_peer(conn: &Conn) -> bool {
    conn.client_cn.as_deref().is_some_and(|cn| cn.starts_with(PEER_CN_PREFIX))
}

/// `/v1/mesh`: for peers only, told apart by their certificate's name.
fn mesh(conn: &Conn) -> Response<Body> {
    if !is_peer(conn) {
        return text(StatusCode::FORBIDDEN, "forbidden: /v1/mesh is for peer controllers' certificates");
    }
    match conn.shared.source.mesh() {
        Some(value) => {
            let mut body = serde_json::to_vec(&value).unwrap_or_else(|_| b"null".to_vec());
            body.push(b'\n');
            respond(StatusCode::OK, CONTENT_TYPE_JSON, body)
        }
        None => text(StatusCode::NOT_FOUND, "not found: this agent takes part in no mesh"),
    }
}

/// `/v1/mesh/stream`: for peers only; ends when the connection is about to close.
fn mesh_stream(conn: &Conn, query: Option<&str>) -> Response<Body> {
    if !is_peer(conn) {
        return text(StatusCode::FORBIDDEN, "forbidden: /v1/mesh/stream is for peer controllers' certificates");
    }
    let Some(stream) = conn.shared.source.mesh_stream(query) else {
        return text(StatusCode::NOT_FOUND, "not found: this agent takes part in no mesh");
    };
    let mut closing = conn.closing.clone();
    let until = async move {
        let _ = closing.wait_for(|c| *c).await;
    };
    let frames = stream.take_until(until).map(|b| Ok::<_, Infallible>(Frame::data(b)));
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_NDJSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn keyset(conn: &Conn, auth: Auth<'_>) -> Response<Body> {
    let shared = &conn.shared;
    let Some(token) = shared.join_token.clone() else {
        return text(StatusCode::NOT_FOUND, "not found: this agent does not serve the keyset (it has no join token)");
    };
    let challenge = JOIN_SCHEME;
    if let Auth::None = auth {
        return unauthorized(
            challenge,
            "unauthorized: the keyset needs `Authorization: MeshworkJoin <proof>`; use `meshwork keys fetch`",
        );
    }
    if let Err(retry) = shared.join_failures.admit(conn.source) {
        return throttled(retry);
    }
    let ok = match (auth, conn.exporter.as_ref()) {
        (Auth::Join(hex), Some(exporter)) => std::str::from_utf8(hex)
            .ok()
            .and_then(unhex)
            .is_some_and(|proof| verify_join_proof(&token, exporter, &proof)),
        _ => false,
    };
    if !ok {
        sleep(shared.join_failures.failure(conn.source)).await;
        return unauthorized(challenge, "unauthorized: the join proof was refused");
    }
    shared.join_failures.success(conn.source);
    let source = shared.source.clone();
    match tokio::task::spawn_blocking(move || source.keyset_bundle(&token)).await {
        Ok(Ok(bundle)) => respond(StatusCode::OK, CONTENT_TYPE_BUNDLE, bundle),
        Ok(Err(why)) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("the keyset could not be exported: {why}")),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "the keyset could not be exported"),
    }
}

/// The source's metrics followed by the server's own counters.
fn metrics(shared: &Shared) -> String {
    use std::fmt::Write;
    let mut out = shared.source.metrics();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let (read_failed, read_refused) = shared.read_failures.totals();
    let (join_failed, join_refused) = shared.join_failures.totals();
    let _ = write!(
        out,
        "# HELP meshwork_api_auth_failures_total API requests refused because a token or join proof was wrong.\n\
         # TYPE meshwork_api_auth_failures_total counter\n\
         meshwork_api_auth_failures_total{{credential=\"read_token\"}} {read_failed}\n\
         meshwork_api_auth_failures_total{{credential=\"join_proof\"}} {join_failed}\n\
         # HELP meshwork_api_auth_throttled_total API requests answered 429 unchecked while failures were queued.\n\
         # TYPE meshwork_api_auth_throttled_total counter\n\
         meshwork_api_auth_throttled_total{{credential=\"read_token\"}} {read_refused}\n\
         meshwork_api_auth_throttled_total{{credential=\"join_proof\"}} {join_refused}\n"
    );
    out
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", format!("{message}\n").into_bytes())
}

fn unauthorized(challenge: &'static str, message: &str) -> Response<Body> {
    let mut resp = text(StatusCode::UNAUTHORIZED, message);
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    resp
}

fn throttled(retry: Duration) -> Response<Body> {
    let secs = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
    let mut resp = text(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("too many failed attempts: retry in {secs} s (the credential was not checked)"),
    );
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}
