//! The server's TLS configuration, swappable while it serves.
//!
//! Why: the CRL and the trust roots come from the keyset, which `keys sync` changes under a
//! running agent. Read once at start, a client revoked since went on getting 200 until the
//! agent restarted (issue 12, item 5). Each handshake now takes the configuration current at
//! its start, and [`ServerTls::reload`] replaces it; connections already open keep the one they
//! were made with, except that each reload ends them gracefully ([`ServerTls::reloads`]): a
//! long-lived stream would otherwise outlive a revocation by up to the connection lifetime.

use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::server::ApiConfig;
use super::tls;

/// A handle on the configuration a server accepts with; clones share it.
#[derive(Clone)]
pub struct ServerTls {
    current: Arc<RwLock<Arc<ServerConfig>>>,
    /// Counts reloads; connections watch it.
    generation: Arc<watch::Sender<u64>>,
}

impl ServerTls {
    /// From the TLS fields of `config` (CA, CRL, certificate, key); the tokens play no part.
    pub fn new(config: &ApiConfig) -> Result<ServerTls, String> {
        let current = Arc::new(RwLock::new(Arc::new(build(config)?)));
        Ok(ServerTls { current, generation: Arc::new(watch::channel(0).0) })
    }

    /// Later handshakes use the TLS fields of `config`. On an error the configuration in use
    /// stays as it was.
    pub fn reload(&self, config: &ApiConfig) -> Result<(), String> {
        let fresh = Arc::new(build(config)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    /// Changes on every reload: a connection made before closes when it sees that.
    pub(crate) fn reloads(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// An acceptor with the configuration of this moment.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

fn build(config: &ApiConfig) -> Result<ServerConfig, String> {
    tls::server_config(&config.ca_pem, config.crl_pem.as_deref(), &config.cert_pem, &config.key_pem)
        .map_err(|why| format!("API server: {why}"))
}
