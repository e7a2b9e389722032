//! Talking to an agent's API: fetching the keyset with the join token, and authenticated GETs.
//!
//! URLs are `https://HOST[:PORT][/PREFIX]` (port 443 by default; IPv6 in brackets); request
//! paths are appended to the prefix. Only TLS 1.3 is spoken. The join proof binds to the TLS
//! connection, so the keyset cannot be fetched through a TLS-terminating proxy.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::tls::{self, ServerCheck};
use super::{EXPORTER_LABEL, EXPORTER_LEN, JOIN_SCHEME, KEYSET_PATH, join_proof};
use crate::bundle::{self, BundleError, ImportReport};
use crate::keys::{KeyError, Keyset};
use crate::state;

/// Time allowed to open the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a whole exchange (the server derives a key before sending the keyset).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer [`get`] reads.
pub const MAX_BODY: usize = 16 << 20;

/// How [`get`] authenticates. Either way the server must present a certificate issued by the
/// topology CA (`ca_pem`) with serverAuth; its name is not checked (controllers' certificates
/// carry the controller's name, not the address dialled), so any server identity of the
/// topology is accepted. The CA is required for a bearer token too, so the token never goes to
/// a server that cannot prove it belongs to the topology. `Debug` shows no token and no key.
#[derive(Clone)]
pub enum ClientAuth {
    /// `Authorization: Bearer <read token>`.
    Bearer { token: Vec<u8>, ca_pem: String },
    /// A client certificate issued by the topology CA, with clientAuth (a client's or a
    /// controller's peering identity: controllers' own certificates are serverAuth only).
    Certificate { ca_pem: String, cert_pem: String, key_pem: String },
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::Bearer { .. } => f.write_str("ClientAuth::Bearer(<redacted>)"),
            ClientAuth::Certificate { .. } => f.write_str("ClientAuth::Certificate(<redacted>)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL `{url}`: {why}")]
    Url { url: String, why: String },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: io::Error },
    #[error("TLS with {url} failed: {message}")]
    Tls { url: String, message: String },
    #[error("the request to {url} failed: {message}")]
    Http { url: String, message: String },
    #[error("{url} did not answer within {} s", .after.as_secs())]
    Timeout { url: String, after: Duration },
    #[error("the token was refused by {url}")]
    Refused { url: String },
    #[error(
        "{url} refuses attempts for now after too many failed ones{}",
        .retry_after.map(|s| format!("; retry in {s} s")).unwrap_or_default()
    )]
    Throttled { url: String, retry_after: Option<u64> },
    #[error("{url} does not serve the keyset: {message}")]
    NotServed { url: String, message: String },
    #[error("{url} answered {status}: {message}")]
    Status { url: String, status: u16, message: String },
    #[error("the answer from {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{0}")]
    Credentials(String),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("the keyset was imported into {}, but it does not open: {source}", dir.display())]
    Keyset { dir: PathBuf, source: KeyError },
    #[error("cannot start the async runtime: {0}")]
    Runtime(io::Error),
}

/// What [`fetch_and_import`] did.
#[derive(Clone, Debug)]
pub struct FetchReport {
    /// The URL fetched from, as given.
    pub url: String,
    /// Size of the sealed bundle received.
    pub bytes: usize,
    pub import: ImportReport,
    /// The imported CA's fingerprint: compare it with `meshwork keys show` on the root
    /// controller, since the server was not authenticated.
    pub ca_fingerprint: String,
    /// The topology the keyset belongs to.
    pub topology: String,
}

/// Fetches the sealed keyset bundle from `url` with the join proof for `token`. The server's
/// certificate is not checked (the caller has no keyset yet); the bytes are sealed under the
/// token, so they must be opened with it (`bundle::open` / `bundle::import`), which fails on
/// anything a man in the middle could substitute.
pub async fn fetch_keyset(url: &str, token: &[u8]) -> Result<Vec<u8>, FetchError> {
    let target = Target::parse(url)?;
    let config = tls::client_config(ServerCheck::Any, None).map_err(FetchError::Credentials)?;
    let limit = bundle::MAX_BUNDLE_LEN as usize;
    let (status, retry_after, body) = target
        .exchange(config, KEYSET_PATH, limit, |exporter| {
            let proof = join_proof(token, exporter);
            Some(HeaderValue::from_str(&format!("{JOIN_SCHEME} {proof}")).expect("hex is a valid header value"))
        })
        .await?;
    let url = target.url;
    match status {
        StatusCode::OK if body.is_empty() => {
            Err(FetchError::Status { url, status: 200, message: "empty answer instead of a keyset bundle".into() })
        }
        StatusCode::OK => Ok(body),
        StatusCode::UNAUTHORIZED => Err(FetchError::Refused { url }),
        StatusCode::TOO_MANY_REQUESTS => Err(FetchError::Throttled { url, retry_after }),
        StatusCode::NOT_FOUND => Err(FetchError::NotServed { url, message: summary(&body) }),
        other => Err(FetchError::Status { url, status: other.as_u16(), message: summary(&body) }),
    }
}

/// `GET path` on the agent at `url`: the status and the body (lossy UTF-8), whatever the status.
pub async fn get(url: &str, path: &str, auth: ClientAuth) -> Result<(u16, String), FetchError> {
    let target = Target::parse(url)?;
    if !path.starts_with('/') {
        return Err(FetchError::Url { url: url.into(), why: format!("the path `{path}` does not start with `/`") });
    }
    let (ca_pem, identity, bearer) = match auth {
        ClientAuth::Bearer { token, ca_pem } => (ca_pem, None, Some(token)),
        ClientAuth::Certificate { ca_pem, cert_pem, key_pem } => {
            let chain = tls::certs(&cert_pem, "the client certificate").map_err(FetchError::Credentials)?;
            let key = tls::key(&key_pem, "the client key").map_err(FetchError::Credentials)?;
            (ca_pem, Some((chain, key)), None)
        }
    };
    let roots = tls::roots(&ca_pem).map_err(FetchError::Credentials)?;
    let config = tls::client_config(ServerCheck::TopologyCa(roots), identity).map_err(FetchError::Credentials)?;
    let bearer = match bearer {
        None => None,
        Some(token) => {
            let mut value = b"Bearer ".to_vec();
            value.extend_from_slice(&token);
            let mut value = HeaderValue::from_bytes(&value)
                .map_err(|_| FetchError::Credentials("the token holds bytes an HTTP header cannot carry".into()))?;
            value.set_sensitive(true);
            Some(value)
        }
    };
    let (status, _, body) = target.exchange(config, path, MAX_BODY, |_| bearer.clone()).await?;
    Ok((status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
}

/// An answer whose body is read as it arrives (a stream), after a `200`.
pub struct Streamed {
    body: hyper::body::Incoming,
    /// Drives the connection; aborted when the stream is dropped.
    driver: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    /// The peer's address, for messages.
    url: String,
}

impl Streamed {
    /// The next piece of the body; `None` at its end. No piece is longer than what the
    /// server sent in one frame, so the caller bounds what it keeps.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FetchError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(FetchError::Http { url: self.url.clone(), message: chain(&e) }),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// `GET path_and_query` on the agent at `url` with a client certificate (`auth` must be
/// [`ClientAuth::Certificate`]), for an answer that streams: a `200` gives the body to read
/// as it comes; any other status is returned with its (short) message. Connecting, the
/// handshake and the response head must come within `within`.
pub async fn get_stream(
    url: &str,
    path_and_query: &str,
    auth: &ClientAuth,
    within: Duration,
) -> Result<Result<Streamed, (u16, String)>, FetchError> {
    let target = Target::parse(url)?;
    let ClientAuth::Certificate { ca_pem, cert_pem, key_pem } = auth else {
        return Err(FetchError::Credentials("a stream needs a client certificate".into()));
    };
    let chain_pem = tls::certs(cert_pem, "the client certificate").map_err(FetchError::Credentials)?;
    let key = tls::key(key_pem, "the client key").map_err(FetchError::Credentials)?;
    let roots = tls::roots(ca_pem).map_err(FetchError::Credentials)?;
    let config =
        tls::client_config(ServerCheck::TopologyCa(roots), Some((chain_pem, key))).map_err(FetchError::Credentials)?;
    let open = async {
        let tls = target.connect(config).await?;
        let http_err = |e: &dyn std::error::Error| target.http_error(e);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| http_err(&e))?;
        let driver = tokio::spawn(connection);
        let req = Request::get(format!("{}{path_and_query}", target.prefix))
            .header(header::HOST, &target.authority)
            .header(header::USER_AGENT, concat!("meshwork/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|e| http_err(&e))?;
        let resp = match sender.send_request(req).await {
            Ok(resp) => resp,
            Err(e) => {
                driver.abort();
                return Err(http_err(&e));
            }
        };
        Ok((resp, driver))
    };
    let (resp, driver) = match tokio::time::timeout(within, open).await {
        Ok(result) => result?,
        Err(_) => return Err(FetchError::Timeout { url: target.url.clone(), after: within }),
    };
    let status = resp.status();
    if status != StatusCode::OK {
        let body = tokio::time::timeout(within, Limited::new(resp.into_body(), 4096).collect()).await;
        driver.abort();
        let message = match body {
            Ok(Ok(b)) => summary(&b.to_bytes()),
            _ => "(no message)".into(),
        };
        return Ok(Err((status.as_u16(), message)));
    }
    Ok(Ok(Streamed { body: resp.into_body(), driver, url: target.url }))
}

/// `meshwork keys fetch --from URL --token-file F`: reads the token file (which must be 0600),
/// fetches the keyset and imports it into `state_dir` (refusing an existing keyset; the import
/// verifies everything before writing anything). Builds its own single-threaded runtime, so it
/// must not be called from async code.
pub fn fetch_and_import(url: &str, token_file: &Path, state_dir: &Path) -> Result<FetchReport, FetchError> {
    let token = bundle::read_token(token_file)?;
    let keyset_dir = state::keyset_dir(state_dir);
    // Fail before going to the network; import checks again.
    if std::fs::symlink_metadata(&keyset_dir).is_ok() {
        return Err(BundleError::KeysetExists(keyset_dir).into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(FetchError::Runtime)?;
    let sealed = runtime.block_on(fetch_keyset(url, &token))?;
    drop(runtime);
    let import = bundle::import(&sealed, &token, &keyset_dir)?;
    let keyset = Keyset::open(state_dir).map_err(|source| FetchError::Keyset { dir: keyset_dir, source })?;
    Ok(FetchReport {
        url: url.to_string(),
        bytes: sealed.len(),
        import,
        ca_fingerprint: keyset.ca_fingerprint(),
        topology: keyset.topology().to_string(),
    })
}

/// The first line of an error body, for messages.
fn summary(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    let line: String = line.chars().filter(|c| !c.is_control()).take(300).collect();
    if line.is_empty() { "(no message)".into() } else { line }
}

/// A parsed `https://` URL.
struct Target {
    /// As given, for messages.
    url: String,
    host: String,
    port: u16,
    /// Host header value.
    authority: String,
    /// Path prefix without a trailing `/` (possibly empty).
    prefix: String,
    server_name: ServerName<'static>,
}

impl Target {
    fn parse(url: &str) -> Result<Target, FetchError> {
        let bad = |why: &str| FetchError::Url { url: url.to_string(), why: why.to_string() };
        let trimmed = url.trim();
        let Some(split) = trimmed.find("://") else {
            return Err(bad("expected https://HOST:PORT"));
        };
        let (scheme, rest) = (&trimmed[..split], &trimmed[split + 3..]);
        if !scheme.eq_ignore_ascii_case("https") {
            return Err(bad("only https:// is supported: the agent's API speaks TLS only"));
        }
        if rest.contains(['?', '#']) {
            return Err(bad("a query or fragment is not supported"));
        }
        let (authority, prefix) = match rest.find('/') {
            Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("user information in the URL is not supported"));
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let Some((host, after)) = inner.split_once(']') else { return Err(bad("unclosed `[` in the host")) };
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(bad("unexpected text after `]`")),
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => 443,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(bad("the port must be a number from 1 to 65535")),
            },
        };
        let bracketed = authority.starts_with('[');
        if !bracketed && host.contains(':') {
            return Err(bad("an IPv6 address must be written in brackets"));
        }
        let server_name = match host.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) if bracketed => return Err(bad("only IPv6 addresses go between `[` and `]`")),
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) if bracketed => return Err(bad("not an IPv6 address between `[` and `]`")),
            Err(_) => ServerName::try_from(host.to_string()).map_err(|_| bad("not a valid host name"))?,
        };
        Ok(Target {
            url: trimmed.to_string(),
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            prefix: prefix.to_string(),
            server_name,
        })
    }

    /// One GET on a fresh connection: `authorization` sees the connection's exporter value.
    /// Returns the status, a `Retry-After` in seconds, and the body (at most `limit` bytes).
    async fn exchange(
        &self,
        config: rustls::ClientConfig,
        path: &str,
        limit: usize,
        authorization: impl FnOnce(&[u8; EXPORTER_LEN]) -> Option<HeaderValue>,
    ) -> Result<(StatusCode, Option<u64>, Vec<u8>), FetchError> {
        let work = async {
            let tls = self.connect(config).await?;
            let exporter = tls
                .get_ref()
                .1
                .export_keying_material([0u8; EXPORTER_LEN], EXPORTER_LABEL, None)
                .map_err(|e| self.tls_error(&e))?;
            let auth = authorization(&exporter);
            self.request(tls, path, auth, limit).await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, work).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { url: self.url.clone(), after: REQUEST_TIMEOUT }),
        }
    }

    async fn connect(&self, config: rustls::ClientConfig) -> Result<TlsStream<TcpStream>, FetchError> {
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((self.host.as_str(), self.port))).await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(source)) => return Err(FetchError::Connect { url: self.url.clone(), source }),
            Err(_) => return Err(FetchError::Timeout { url: self.url.clone(), after: CONNECT_TIMEOUT }),
        };
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(Arc::new(config))
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| self.tls_error(&e))
    }

    async fn request(
        &self,
        tls: TlsStream<TcpStream>,
        path: &str,
        auth: Option<HeaderValue>,
        limit: usize,
    ) -> Result<(StatusCode, Option<u64>, Vec<u8>), FetchError> {
        let http_err = |e: &dyn std::error::Error| self.http_error(e);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| http_err(&e))?;
        let driver = tokio::spawn(connection);
        let mut req = Request::get(format!("{}{path}", self.prefix))
            .header(header::HOST, &self.authority)
            .header(header::USER_AGENT, concat!("meshwork/", env!("CARGO_PKG_VERSION")));
        if let Some(auth) = auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| http_err(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| http_err(&e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = match Limited::new(resp.into_body(), limit).collect().await {
            Ok(body) => body.to_bytes().to_vec(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                driver.abort();
                return Err(FetchError::TooLarge { url: self.url.clone(), limit });
            }
            Err(e) => return Err(http_err(&*e)),
        };
        drop(sender);
        driver.abort();
        Ok((status, retry_after, body))
    }

    fn tls_error(&self, e: &dyn std::error::Error) -> FetchError {
        FetchError::Tls { url: self.url.clone(), message: chain(e) }
    }

    /// An HTTP-level failure; a TLS alert that arrives after the handshake (a client certificate
    /// refused by the server, in TLS 1.3) shows up here, with the alert in the message.
    fn http_error(&self, e: &dyn std::error::Error) -> FetchError {
        FetchError::Http { url: self.url.clone(), message: chain(e) }
    }
}

/// An error and its sources, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(source) = next {
        let s = source.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = source.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<(String, u16, String, String), String> {
        Target::parse(url).map(|t| (t.host, t.port, t.authority, t.prefix)).map_err(|e| e.to_string())
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse("https://127.0.0.1:8443").unwrap(),
            ("127.0.0.1".into(), 8443, "127.0.0.1:8443".into(), "".into())
        );
        assert_eq!(
            parse("HTTPS://east.example.net/").unwrap(),
            ("east.example.net".into(), 443, "east.example.net".into(), "".into())
        );
        assert_eq!(parse("https://[::1]:9/api/").unwrap(), ("::1".into(), 9, "[::1]:9".into(), "/api".into()));
        assert!(parse("http://127.0.0.1:1").unwrap_err().contains("only https://"));
        assert!(parse("127.0.0.1:1").unwrap_err().contains("expected https://"));
        assert!(parse("https://::1:9").unwrap_err().contains("brackets"));
        assert!(parse("https://h:0").unwrap_err().contains("port"));
        assert!(parse("https://h:x").unwrap_err().contains("port"));
        assert!(parse("https://:1").unwrap_err().contains("no host"));
        assert!(parse("https://u@h:1").unwrap_err().contains("user"));
        assert!(parse("https://h/?a").unwrap_err().contains("query"));
        assert!(parse("https://[nope]:1").unwrap_err().contains("IPv6"));
    }

    #[test]
    fn debug_hides_secrets() {
        let auth = ClientAuth::Bearer { token: b"sekrit-token-0123".to_vec(), ca_pem: String::new() };
        assert!(!format!("{auth:?}").contains("sekrit"));
    }
}
