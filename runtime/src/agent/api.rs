//! The agent's side of the HTTPS API: what `/status`, `/metrics` and `/v1/keyset` serve.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::AgentConfig;
use super::status::Status;
use crate::api::server::{self, ApiConfig, ApiSource};
use crate::keys::Keyset;

struct Source {
    status: Arc<Mutex<Status>>,
    keyset_dir: PathBuf,
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
}

/// Binds `addr` and serves the API in the background until `shutdown` is notified. Uses the
/// controller's own certificate from the topology keyset.
pub async fn start(
    addr: SocketAddr,
    cfg: &AgentConfig,
    status: Arc<Mutex<Status>>,
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
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let source = Arc::new(Source { status, keyset_dir: crate::state::keyset_dir(&cfg.state_dir) });
    eprintln!("meshwork agent: API on https://{}", listener.local_addr().map_err(|e| e.to_string())?);
    tokio::spawn(async move {
        if let Err(e) = server::serve(listener, config, source, async move { shutdown.notified().await }).await {
            eprintln!("meshwork agent: API stopped: {e}");
        }
    });
    Ok(())
}
