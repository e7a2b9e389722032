//! The agent's side of the HTTPS API: what `/status`, `/metrics`, `/v1/keyset`, `/v1/mesh` and
//! `/v1/mesh/stream` serve.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::AgentConfig;
use super::mesh::{feed::Feed, serve};
use super::status::Status;
use meshwork_compiler::model::Host;

use crate::api::server::{self, ApiConfig, ApiSource};
use crate::api::server_tls::ServerTls;
use crate::host::identity::HostKind;
use crate::keys::{Keyset, SubjectName};

struct Source {
    status: Arc<Mutex<Status>>,
    keyset_dir: PathBuf,
    feed: Feed,
}

impl ApiSource for Source {
    fn status(&self) -> serde_json::Value {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).json()
    }
    fn metrics(&self) -> String {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).metrics()
    }
    fn keyset_bundle(&self, token: &[u8]) -> Result<Vec<u8>, String> {
        crate::bundle::export(&self.keyset_dir, token).map_err(|e| e.to_string())
    }
    fn mesh(&self) -> Option<serde_json::Value> {
        self.feed.current().and_then(|a| serde_json::to_value(&*a).ok())
    }
    fn mesh_stream(&self, query: Option<&str>) -> Option<futures_util::stream::BoxStream<'static, hyper::body::Bytes>> {
        Some(serve::stream(&self.feed, query))
    }
}

/// A listener on `addr`. With `freebind`, the address need not exist yet: the mesh API listens
/// on the controller's overlay address, which appears when OpenVPN brings tun0 up.
pub fn bind(addr: SocketAddr, freebind: bool) -> Result<tokio::net::TcpListener, String> {
    let fail = |e: std::io::Error| format!("cannot listen on {addr}: {e}");
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    if freebind {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_FREEBIND,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
    }
    socket.bind(addr).map_err(fail)?;
    socket.listen(128).map_err(fail)
}

/// The API's configuration from the keyset as it is now: the CA and the CRL that client
/// certificates are checked against, a fresh server certificate valid for `names` (see
/// [`Keyset::api_server_identity`]), and the tokens. Called at start and on every reload, so a
/// revocation or a new CA reaches the API without a restart.
pub fn config(cfg: &AgentConfig, names: &[SubjectName]) -> Result<ApiConfig, String> {
    let keyset = Keyset::open(&cfg.state_dir).map_err(|e| format!("keyset: {e}"))?;
    let pem = |r: crate::keys::Result<String>| r.map_err(|e| format!("keyset: {e}"));
    let now = time::OffsetDateTime::now_utc();
    let identity = match cfg.host.kind {
        HostKind::Controller => keyset.api_server_identity(&cfg.host.name, names, now),
        HostKind::Node => keyset.node_api_server_identity(&cfg.host.name, names, now),
    };
    let (cert_pem, key_pem) = identity.map_err(|e| format!("keyset: the API's certificate: {e}"))?;
    Ok(ApiConfig {
        ca_pem: pem(keyset.ca_pem())?,
        cert_pem,
        key_pem,
        crl_pem: Some(pem(keyset.crl_pem())?),
        read_token: cfg.read_token.clone(),
        join_token: cfg.join_token.clone(),
    })
}

/// The names the API's certificate is valid for: the controller's overlay and underlay
/// addresses (a DNS name as such) and the address it listens on, unless that is a wildcard.
pub fn names(overlay: IpAddr, underlay: &Host, listen: Option<SocketAddr>) -> Vec<SubjectName> {
    let mut names = vec![SubjectName::Ip(overlay)];
    names.push(match underlay {
        Host::Ip(ip) => SubjectName::Ip(IpAddr::from(*ip)),
        Host::Dns(name) => SubjectName::Dns(name.clone()),
    });
    if let Some(addr) = listen.filter(|a| !a.ip().is_unspecified()) {
        names.push(SubjectName::Ip(addr.ip()));
    }
    names.dedup();
    names
}

/// The names a node's API certificate is valid for: its admin and external addresses and the
/// address it listens on, unless that is a wildcard.
pub fn node_names(
    addresses: impl IntoIterator<Item = std::net::Ipv4Addr>,
    listen: Option<SocketAddr>,
) -> Vec<SubjectName> {
    let mut names: Vec<SubjectName> = addresses.into_iter().map(|a| SubjectName::Ip(IpAddr::from(a))).collect();
    if let Some(addr) = listen.filter(|a| !a.ip().is_unspecified()) {
        names.push(SubjectName::Ip(addr.ip()));
    }
    names.dedup();
    names
}

/// Serves the API with `config` on `listener` in the background until `shutdown` is notified.
/// The handle it returns reloads the server's TLS configuration.
pub fn start(
    listener: tokio::net::TcpListener,
    config: ApiConfig,
    cfg: &AgentConfig,
    status: Arc<Mutex<Status>>,
    feed: Feed,
    shutdown: Arc<tokio::sync::Notify>,
) -> Result<ServerTls, String> {
    let tls = ServerTls::new(&config)?;
    let source = Arc::new(Source { status, keyset_dir: crate::state::keyset_dir(&cfg.state_dir), feed });
    eprintln!("meshwork agent: API on https://{}", listener.local_addr().map_err(|e| e.to_string())?);
    let serving = tls.clone();
    tokio::spawn(async move {
        let stop = async move { shutdown.notified().await };
        if let Err(e) = server::serve_with(listener, serving, config, source, stop).await {
            eprintln!("meshwork agent: API stopped: {e}");
        }
    });
    Ok(tls)
}
