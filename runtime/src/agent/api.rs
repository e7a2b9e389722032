//! The agent's side of the HTTPS API: what `/status`, `/metrics` and `/v1/keyset` serve.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::AgentConfig;
use super::mesh::Announcement;
use super::status::Status;
use crate::api::server::{self, ApiConfig, ApiSource};
use crate::keys::Keyset;

struct Source {
    status: Arc<Mutex<Status>>,
    keyset_dir: PathBuf,
    announcement: Arc<Mutex<Option<Announcement>>>,
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
        let a = self.announcement.lock().unwrap_or_else(|e| e.into_inner());
        a.as_ref().and_then(|a| serde_json::to_value(a).ok())
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

/// Serves the API on `listener` in the background until `shutdown` is notified. Uses the
/// controller's own certificate from the topology keyset.
pub async fn start(
    listener: tokio::net::TcpListener,
    cfg: &AgentConfig,
    status: Arc<Mutex<Status>>,
    announcement: Arc<Mutex<Option<Announcement>>>,
    shutdown: Arc<tokio::sync::Notify>,
) -> Result<(), String> {
    let keyset = Keyset::open(&cfg.state_dir).map_err(|e| format!("keyset: {e}"))?;
    let pem = |r: crate::keys::Result<String>| r.map_err(|e| format!("keyset: {e}"));
    let config = ApiConfig {
        ca_pem: pem(keyset.ca_pem())?,
        cert_pem: pem(keyset.cert_pem(&cfg.controller))?,
        key_pem: pem(keyset.key_pem(&cfg.controller))?,
        crl_pem: Some(pem(keyset.crl_pem())?),
        read_token: cfg.read_token.clone(),
        join_token: cfg.join_token.clone(),
    };
    let source = Arc::new(Source { status, keyset_dir: crate::state::keyset_dir(&cfg.state_dir), announcement });
    eprintln!("meshwork agent: API on https://{}", listener.local_addr().map_err(|e| e.to_string())?);
    tokio::spawn(async move {
        if let Err(e) = server::serve(listener, config, source, async move { shutdown.notified().await }).await {
            eprintln!("meshwork agent: API stopped: {e}");
        }
    });
    Ok(())
}
