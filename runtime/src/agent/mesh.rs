//! The peering mesh as one agent sees it: what this controller tells its peers (the clients it
//! holds, the LANs it serves, its topology checksum), and what it hears from each of them.
//!
//! Every agent holds a stream open to every other controller's `/v1/mesh/stream`, over HTTPS
//! with its `peer-<controller>` certificate, at the other's overlay address: the connection
//! crosses the peering tunnels like any overlay traffic, so a peer that can be heard is also a
//! peer that can be routed to, and no DNS is needed. The stream carries a snapshot, then each
//! change as it happens, numbered, and a beat each second when nothing changes ([`wire`],
//! [`feed`], [`serve`], [`mirror`], [`exchange`]); a peer without the stream is polled on
//! `/v1/mesh` once a second, as all were before. A peer not heard for [`SILENCE`] is silent:
//! its clients' and LANs' routes are withdrawn. A peer on another topology checksum is heard
//! but not believed: its routes are not taken, and the mismatch shows in `/status`, in the
//! metrics and in the log.

pub mod exchange;
pub mod feed;
pub mod mirror;
pub mod serve;
pub mod wire;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use meshwork_compiler::network::MESH_API_PORT;
use serde::{Deserialize, Serialize};

use crate::api::client::{self, ClientAuth};
use crate::api::server::MESH_PATH;

/// How often a peer is asked, where it is polled.
pub const POLL: Duration = Duration::from_secs(1);
/// How long one question may take.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(1500);
/// A peer not heard from for this long is silent: its routes are withdrawn. With beats every
/// second (or [`POLL`]), a dead peer is noticed within about 3-4 s.
pub const SILENCE: Duration = Duration::from_secs(3);

/// What a controller tells its peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub controller: String,
    pub topology: String,
    pub checksum: String,
    /// SHA-256 fingerprint of the topology CA this controller uses.
    pub ca: String,
    pub lans: Vec<Ipv4Net>,
    /// Clients connected to this controller (its server or one of its engines), by name.
    pub clients: BTreeMap<String, Held>,
}

/// A client a controller holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub address: Ipv4Addr,
    /// `server` or `engine-<k>`.
    pub unit: String,
    /// When it connected (seconds since the epoch): the newest claim on a client wins.
    pub since: u64,
}

/// Whom to ask and with what: the other controllers' overlay addresses, and this controller's
/// peering certificate. Replaced when the topology or the keyset changes.
#[derive(Clone, Debug)]
pub struct Targets {
    pub peers: Vec<(String, Ipv4Addr)>,
    pub auth: Option<ClientAuth>,
}

/// What was last heard from one peer.
#[derive(Clone, Debug, Default)]
pub struct Heard {
    pub last_ok: Option<Instant>,
    pub announcement: Option<Arc<Announcement>>,
    /// Why the last question failed, if it did.
    pub error: Option<String>,
}

impl Heard {
    pub fn live(&self, now: Instant) -> bool {
        self.last_ok.is_some_and(|t| now.duration_since(t) < SILENCE)
    }
}

/// Everything heard, by peer name.
pub type Hearing = Arc<Mutex<BTreeMap<String, Heard>>>;

/// One question to one peer (the poll).
async fn ask(name: &str, ip: Ipv4Addr, auth: ClientAuth) -> Result<Announcement, String> {
    let url = format!("https://{ip}:{MESH_API_PORT}");
    let (status, body) = match tokio::time::timeout(POLL_TIMEOUT, client::get(&url, MESH_PATH, auth)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("{url} did not answer within {} ms", POLL_TIMEOUT.as_millis())),
    };
    if status != 200 {
        return Err(format!("{url} answered {status}: {}", body.trim()));
    }
    let a: Announcement = serde_json::from_str(&body).map_err(|e| format!("{url} answered something else: {e}"))?;
    if a.controller != name {
        return Err(format!("{url} answered as controller {:?}, not {name:?}", a.controller));
    }
    Ok(a)
}

/// A peer as `/status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    /// The overlay address it is asked at.
    pub address: Option<Ipv4Addr>,
    /// Heard from within the silence limit.
    pub live: bool,
    /// Milliseconds since it last answered.
    pub last_heard_ms: Option<u64>,
    pub checksum: Option<String>,
    /// Same topology checksum and CA as this controller: only then are its routes taken.
    pub agrees: Option<bool>,
    /// Clients it holds (as last heard).
    pub clients: usize,
    pub error: Option<String>,
}

/// Whether `a` may be believed by a controller with `checksum` and CA `ca`.
pub fn agrees(a: &Announcement, checksum: &str, ca: &str) -> bool {
    a.checksum == checksum && a.ca == ca
}

/// The peers' status, and the announcements whose routes are taken (live and agreeing).
pub fn assess(
    targets: &[(String, Ipv4Addr)],
    heard: &BTreeMap<String, Heard>,
    checksum: &str,
    ca: &str,
    now: Instant,
) -> (BTreeMap<String, PeerStatus>, BTreeMap<String, Announcement>) {
    let mut status = BTreeMap::new();
    let mut believed = BTreeMap::new();
    for (name, ip) in targets {
        let h = heard.get(name).cloned().unwrap_or_default();
        let live = h.live(now);
        let agree = h.announcement.as_ref().map(|a| agrees(a, checksum, ca));
        status.insert(
            name.clone(),
            PeerStatus {
                address: Some(*ip),
                live,
                last_heard_ms: h.last_ok.map(|t| now.duration_since(t).as_millis() as u64),
                checksum: h.announcement.as_ref().map(|a| a.checksum.clone()),
                agrees: agree,
                clients: h.announcement.as_ref().map_or(0, |a| a.clients.len()),
                error: h.error.clone(),
            },
        );
        if live
            && agree == Some(true)
            && let Some(a) = h.announcement
        {
            believed.insert(name.clone(), Announcement::clone(&a));
        }
    }
    (status, believed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement(controller: &str, checksum: &str) -> Announcement {
        Announcement {
            controller: controller.into(),
            topology: "t".into(),
            checksum: checksum.into(),
            ca: "ca".into(),
            lans: vec![],
            clients: BTreeMap::from([(
                "web-1".into(),
                Held { address: Ipv4Addr::new(100, 127, 0, 1), unit: "server".into(), since: 10 },
            )]),
        }
    }

    #[test]
    fn only_live_agreeing_peers_are_believed() {
        let now = Instant::now();
        let targets = vec![
            ("west".to_string(), Ipv4Addr::new(100, 127, 0, 252)),
            ("north".to_string(), Ipv4Addr::new(100, 127, 0, 251)),
            ("south".to_string(), Ipv4Addr::new(100, 127, 0, 250)),
            ("far".to_string(), Ipv4Addr::new(100, 127, 0, 249)),
        ];
        let heard = BTreeMap::from([
            (
                "west".to_string(),
                Heard { last_ok: Some(now), announcement: Some(Arc::new(announcement("west", "abc"))), error: None },
            ),
            // Heard, but on another checksum.
            (
                "north".to_string(),
                Heard { last_ok: Some(now), announcement: Some(Arc::new(announcement("north", "zzz"))), error: None },
            ),
            // Silent for longer than SILENCE.
            (
                "south".to_string(),
                Heard {
                    last_ok: now.checked_sub(SILENCE + Duration::from_millis(10)),
                    announcement: Some(Arc::new(announcement("south", "abc"))),
                    error: Some("timeout".into()),
                },
            ),
        ]);
        let (status, believed) = assess(&targets, &heard, "abc", "ca", now);
        assert_eq!(believed.keys().collect::<Vec<_>>(), ["west"]);
        assert!(status["west"].live && status["west"].agrees == Some(true));
        assert_eq!(status["north"].agrees, Some(false));
        assert!(status["north"].live);
        assert!(!status["south"].live);
        assert_eq!(status["south"].error.as_deref(), Some("timeout"));
        assert!(!status["far"].live && status["far"].agrees.is_none());
        // Another CA is as bad as another checksum.
        let mut other_ca = announcement("west", "abc");
        other_ca.ca = "other".into();
        assert!(!agrees(&other_ca, "abc", "ca"));
    }
}
