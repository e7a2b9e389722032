//! `meshwork lab`: a whole topology on one machine, in network namespaces.
//!
//! `lab up` plans the addresses ([`layout`]), builds the namespaces ([`world`]), gives every
//! controller its keys and applies it with the real `meshwork apply --netns`, starts every
//! controller's agent, and starts a real OpenVPN client per client with its clientpack; then it
//! waits until every client is connected and every controller routes to it. `lab test` sends
//! real packets for every `expect` ([`probe`], [`expects`]); `lab kill` / `lab restore` drill
//! failover; `lab down` removes everything, by the record `lab up` wrote first.
//!
//! Everything the lab has lives under `<state>/lab/`: `lab.json` (the record), `state/` (the
//! controllers' meshwork state: keys, applied state, pid files), `clients/<name>/` (clientpack,
//! pid file, log) and `logs/` (apply and agent output). The machine's index of labs
//! ([`registry`]) lets every verb find its lab from any directory ([`locate`]).

pub mod drill;
pub mod expects;
pub mod hints;
pub mod ident;
pub mod layout;
pub mod locate;
pub mod noderun;
pub mod nodes;
pub mod nodestatus;
pub mod nodeworld;
pub mod parallel;
pub mod probe;
pub mod registry;
pub mod report;
pub mod run;
pub mod vnics;
pub mod wire;
pub mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::host::identity::HostId;
use crate::host::layout::Layout;
use layout::LabLayout;

/// What `lab up` made, written before anything is made so `lab down` can always undo it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// The topology file, absolute.
    pub file: PathBuf,
    pub layout: LabLayout,
    /// Controllers `lab kill` took down (and `lab restore` has not brought back).
    #[serde(default)]
    pub killed: BTreeSet<String>,
    /// Compute nodes, their PDCs' segments, the internet and the VMs.
    #[serde(default)]
    pub nodes: nodes::NodeLayout,
    /// Nodes `lab kill` took down whole (and `lab restore` has not brought back).
    #[serde(default)]
    pub killed_nodes: BTreeSet<String>,
}

/// The lab's directory and the `meshwork` binary it runs for apply, agent and destroy.
#[derive(Clone, Debug)]
pub struct Lab {
    /// `<state>/lab`, absolute (the processes the lab starts get it from anywhere).
    pub root: PathBuf,
    pub exe: PathBuf,
    /// The machine's index of labs ([`registry::DIR`]).
    pub index: PathBuf,
}

impl Lab {
    pub fn new(state: &Path, exe: PathBuf) -> Lab {
        Lab { root: locate::absolute(state).join("lab"), exe, index: PathBuf::from(registry::DIR) }
    }
    /// The state directory the lab lives in (`--state-dir`), absolute.
    pub fn state_dir(&self) -> &Path {
        self.root.parent().unwrap_or(&self.root)
    }
    pub fn record_path(&self) -> PathBuf {
        self.root.join("lab.json")
    }
    /// The state directory the lab's controllers share (one keyset, one directory each).
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn client_dir(&self, client: &str) -> PathBuf {
        self.root.join("clients").join(client)
    }
    pub fn controller(&self, name: &str) -> Layout {
        Layout::new(&self.state(), &HostId::controller(name))
    }

    pub fn load(&self) -> Result<Record, String> {
        let path = self.record_path();
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("no lab is up in {} (no {})", self.state_dir().display(), path.display())
            }
            _ => format!("cannot read {}: {e}", path.display()),
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{} is damaged: {e}", path.display()))
    }

    pub fn save(&self, record: &Record) -> Result<(), String> {
        std::fs::create_dir_all(&self.root).map_err(|e| format!("cannot create {}: {e}", self.root.display()))?;
        let path = self.record_path();
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, body)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// The agent's last `/status` for a controller (`status.json`), if it wrote one.
    pub fn agent_status(&self, controller: &str) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.controller(controller).status_file()).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Where every client sits, as the agents of the live controllers say: client -> (controller,
/// unit). A client two controllers claim (during a move) goes to the newer connection.
pub fn locations(lab: &Lab, record: &Record) -> BTreeMap<String, (String, String)> {
    let mut best: BTreeMap<String, (u64, String, String)> = BTreeMap::new();
    for c in &record.layout.controllers {
        if record.killed.contains(&c.name) {
            continue;
        }
        let Some(status) = lab.agent_status(&c.name) else { continue };
        let Some(clients) = status["clients"].as_object() else { continue };
        for (client, loc) in clients {
            let since = loc["since"].as_u64().unwrap_or(0);
            let unit = loc["unit"].as_str().unwrap_or("?").to_string();
            if best.get(client).is_none_or(|(s, _, _)| since > *s) {
                best.insert(client.clone(), (since, c.name.clone(), unit));
            }
        }
    }
    best.into_iter().map(|(client, (_, controller, unit))| (client, (controller, unit))).collect()
}

/// Whether an agent's `/status` says it routes to `client`: it holds it, or a peer it
/// believes does.
pub fn routes_to(status: &serde_json::Value, client: &str) -> bool {
    status["clients"].get(client).is_some() || status["remote_clients"].get(client).is_some()
}

/// Whether every live controller routes to `client`.
pub fn routed_everywhere(lab: &Lab, record: &Record, client: &str) -> bool {
    record
        .layout
        .controllers
        .iter()
        .filter(|c| !record.killed.contains(&c.name))
        .all(|c| lab.agent_status(&c.name).is_some_and(|s| routes_to(&s, client)))
}
