//! Hearing every peer: one task per peer that holds a `/v1/mesh/stream` open, rebuilds the
//! peer's announcement from it ([`Mirror`]), records it in the [`Hearing`] and wakes the agent
//! the moment something changed, so a route follows a client within milliseconds of the
//! peer's change. Liveness comes from the stream: a line (a change or a beat) at least every
//! [`BEAT`](super::serve::BEAT); nothing for [`SILENCE`] and the connection is dropped and made
//! again, with backoff while the peer does not answer.
//!
//! A peer whose agent has no stream endpoint (404: an older version, during a rolling
//! upgrade) is polled once a second on `/v1/mesh` as before, and offered the stream again
//! every [`PROBE_AGAIN`]. `--mesh-exchange poll` polls every peer (the former exchange, kept
//! to compare the two).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshwork_compiler::network::MESH_API_PORT;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::mirror::{Mirror, Took};
use super::wire::{self, MAX_LINE};
use super::{Hearing, POLL, SILENCE, Targets, serve};
use crate::api::client::{self, ClientAuth};
use crate::api::lines::Lines;
use crate::api::server::MESH_STREAM_PATH;

/// First wait before connecting again to a peer that failed; doubles up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_millis(250);
pub const RETRY_MAX: Duration = Duration::from_secs(4);
/// How long a peer without a stream endpoint is polled before the stream is tried again.
pub const PROBE_AGAIN: Duration = Duration::from_secs(60);

/// How peers are heard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Exchange {
    /// A stream per peer; the poll for peers that have none.
    #[default]
    Stream,
    /// `/v1/mesh` once a second from every peer.
    Poll,
}

impl FromStr for Exchange {
    type Err = String;
    fn from_str(s: &str) -> Result<Exchange, String> {
        match s {
            "stream" => Ok(Exchange::Stream),
            "poll" => Ok(Exchange::Poll),
            other => Err(format!("`{other}` is not a mesh exchange: use stream or poll")),
        }
    }
}

/// Called when something heard may change routes.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Follows every peer of `targets` until it is dropped; a peer that leaves the topology is
/// forgotten, and a new peering certificate (a new keyset) starts every follower over.
pub fn spawn(mut targets: watch::Receiver<Targets>, hearing: Hearing, exchange: Exchange, wake: Wake) {
    tokio::spawn(async move {
        let mut running: BTreeMap<String, (Ipv4Addr, JoinHandle<()>)> = BTreeMap::new();
        let mut identity: Option<(String, String)> = None;
        loop {
            let current = targets.borrow_and_update().clone();
            let now_identity = current.auth.as_ref().map(identity_of);
            if now_identity != identity {
                running.values().for_each(|(_, task)| task.abort());
                running.clear();
                identity = now_identity;
            }
            running.retain(|name, (ip, task)| {
                let keep = current.peers.iter().any(|(n, i)| n == name && i == ip);
                if !keep {
                    task.abort();
                }
                keep
            });
            hearing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|name, _| current.peers.iter().any(|(p, _)| p == name));
            if let Some(auth) = &current.auth {
                for (name, ip) in &current.peers {
                    if running.contains_key(name) {
                        continue;
                    }
                    let peer = Peer {
                        name: name.clone(),
                        ip: *ip,
                        auth: auth.clone(),
                        hearing: hearing.clone(),
                        wake: wake.clone(),
                    };
                    running.insert(name.clone(), (*ip, tokio::spawn(peer.follow(exchange))));
                }
            }
            if targets.changed().await.is_err() {
                running.values().for_each(|(_, task)| task.abort());
                return;
            }
        }
    });
}

/// What tells one peering identity from another (the key changes with the certificate).
fn identity_of(auth: &ClientAuth) -> (String, String) {
    match auth {
        ClientAuth::Certificate { ca_pem, cert_pem, .. } => (ca_pem.clone(), cert_pem.clone()),
        ClientAuth::Bearer { ca_pem, .. } => (ca_pem.clone(), String::new()),
    }
}

/// One peer, followed by one task.
struct Peer {
    name: String,
    ip: Ipv4Addr,
    auth: ClientAuth,
    hearing: Hearing,
    wake: Wake,
}

/// How one stream ended.
enum Ended {
    /// The server ended it after it had spoken (its connection's lifetime, a reload): resume.
    Closed,
    /// The peer has no stream endpoint.
    NotServed,
    Failed(String),
}

impl Peer {
    async fn follow(self, exchange: Exchange) {
        if exchange == Exchange::Poll {
            return self.poll(None).await;
        }
        let mut mirror = Mirror::new(&self.name);
        let mut retry = RETRY_MIN;
        let mut told_fallback = false;
        loop {
            match self.stream(&mut mirror, &mut retry).await {
                Ended::Closed => {}
                Ended::NotServed => {
                    if !told_fallback {
                        eprintln!(
                            "meshwork agent: peer {} has no {MESH_STREAM_PATH} (an older agent?): polling it every {} s",
                            self.name,
                            POLL.as_secs()
                        );
                        told_fallback = true;
                    }
                    self.poll(Some(PROBE_AGAIN)).await;
                }
                Ended::Failed(why) => {
                    self.note_error(why);
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// One connection: opens the stream (resuming what `mirror` holds) and takes its lines
    /// until it ends.
    async fn stream(&self, mirror: &mut Mirror, retry: &mut Duration) -> Ended {
        let url = format!("https://{}:{MESH_API_PORT}", self.ip);
        let path = format!("{MESH_STREAM_PATH}{}", serve::query(mirror.position()));
        let mut body = match client::get_stream(&url, &path, &self.auth, SILENCE).await {
            Ok(Ok(body)) => body,
            Ok(Err((404, _))) => return Ended::NotServed,
            Ok(Err((status, message))) => return Ended::Failed(format!("{url} answered {status}: {message}")),
            Err(e) => return Ended::Failed(e.to_string()),
        };
        let mut lines = Lines::new(MAX_LINE);
        let mut spoke = false;
        loop {
            let piece = match tokio::time::timeout(SILENCE, body.next()).await {
                Ok(Ok(Some(piece))) => piece,
                Ok(Ok(None)) if spoke => {
                    mirror.abandon_partial();
                    return Ended::Closed;
                }
                Ok(Ok(None)) => return Ended::Failed(format!("{url} ended the stream before a line")),
                Ok(Err(e)) => {
                    mirror.abandon_partial();
                    return Ended::Failed(e.to_string());
                }
                Err(_) => {
                    mirror.abandon_partial();
                    return Ended::Failed(format!("{url}: nothing on the stream for {} s", SILENCE.as_secs()));
                }
            };
            let complete = match lines.push(&piece) {
                Ok(complete) => complete,
                Err(e) => return self.fault(mirror, format!("{url}: {e}")),
            };
            let mut changed = false;
            for raw in &complete {
                let took = wire::decode(raw).and_then(|line| mirror.take(line).map_err(|f| f.to_string()));
                match took {
                    Ok(Took::Changed) => changed = true,
                    Ok(Took::Same) => {}
                    Err(why) => return self.fault(mirror, format!("{url}: {why}")),
                }
            }
            if !complete.is_empty() {
                spoke = true;
                if mirror.current().is_some() {
                    *retry = RETRY_MIN;
                    self.heard(mirror, changed);
                }
            }
        }
    }

    /// A line that breaks the protocol: logged, and the next connection starts from a snapshot.
    fn fault(&self, mirror: &mut Mirror, why: String) -> Ended {
        eprintln!("meshwork agent: peer {}: {why}; starting over with a snapshot", self.name);
        mirror.reset();
        Ended::Failed(why)
    }

    /// Records a whole state heard now; wakes the agent when it changed.
    fn heard(&self, mirror: &Mirror, changed: bool) {
        let Some(current) = mirror.current() else { return };
        {
            let mut hearing = self.hearing.lock().unwrap_or_else(|e| e.into_inner());
            let entry = hearing.entry(self.name.clone()).or_default();
            entry.last_ok = Some(Instant::now());
            entry.error = None;
            if changed || entry.announcement.as_deref() != Some(current) {
                entry.announcement = Some(Arc::new(current.clone()));
            } else {
                return;
            }
        }
        (self.wake)();
    }

    fn note_error(&self, why: String) {
        let mut hearing = self.hearing.lock().unwrap_or_else(|e| e.into_inner());
        hearing.entry(self.name.clone()).or_default().error = Some(why);
    }

    /// The poll: `/v1/mesh` once per [`POLL`], for `until` or for ever.
    async fn poll(&self, until: Option<Duration>) {
        let started = Instant::now();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if until.is_some_and(|u| started.elapsed() >= u) {
                return;
            }
            let answer = super::ask(&self.name, self.ip, self.auth.clone()).await;
            let mut hearing = self.hearing.lock().unwrap_or_else(|e| e.into_inner());
            let entry = hearing.entry(self.name.clone()).or_default();
            match answer {
                Ok(a) => {
                    entry.last_ok = Some(Instant::now());
                    entry.announcement = Some(Arc::new(a));
                    entry.error = None;
                }
                Err(e) => entry.error = Some(e),
            }
        }
    }
}
