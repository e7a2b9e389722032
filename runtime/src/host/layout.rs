//! Where a host's files live inside the state directory.
//!
//! ```text
//! STATE/controllers/<name>/openvpn/        --cd directory of every OpenVPN process
//!                          openvpn/keys/   certificates and keys (keys 0600, directory 0700)
//!                          openvpn/ccd/    one file per client
//!                          openvpn/run/    management sockets, pid files
//!                          log/            OpenVPN logs
//!                          applied.json    what the last apply left (for drift detection)
//!                          applied.source  the topology file that apply used (for --try rollback)
//!                          lock            held while applying
//! STATE/nodes/<name>/strongswan/           charon's working directory: swanctl.conf,
//!                                          strongswan.conf, the vici socket
//!                    strongswan/keys/psk/  the node's pair keys (0600, directory 0700)
//!                    strongswan/run/       charon's pid file
//!                    log/, applied.json, applied.source, lock   as for controllers
//! ```

use std::path::{Path, PathBuf};

use super::identity::{HostId, HostKind};

#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    kind: HostKind,
}

impl Layout {
    pub fn new(state: &Path, host: &HostId) -> Layout {
        // Absolute: OpenVPN and charon are started in it and outlive the working directory's
        // meaning.
        let state = std::path::absolute(state).unwrap_or_else(|_| state.to_path_buf());
        Layout { root: state.join(host.kind.state_subdir()).join(&host.name), kind: host.kind }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The directory the host's daemons run in (OpenVPN's `--cd`, charon's working directory);
    /// managed files are named relative to it.
    pub fn work(&self) -> PathBuf {
        self.root.join(match self.kind {
            HostKind::Controller => "openvpn",
            HostKind::Node => "strongswan",
        })
    }
    pub fn run(&self) -> PathBuf {
        self.work().join("run")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("log")
    }
    pub fn applied(&self) -> PathBuf {
        self.root.join("applied.json")
    }
    pub fn applied_source(&self) -> PathBuf {
        self.root.join("applied.source")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }
    /// The running agent's pid (destroy refuses while it runs: it would put everything back).
    /// The agent's `/status`, rewritten after every pass.
    pub fn status_file(&self) -> PathBuf {
        self.root.join("status.json")
    }
    pub fn agent_pid(&self) -> PathBuf {
        self.root.join("agent.pid")
    }
    /// Written by `apply --confirm` to keep a change made with `apply --try`.
    pub fn confirm(&self) -> PathBuf {
        self.root.join("confirm")
    }
    pub fn pidfile(&self, unit: &str) -> PathBuf {
        self.run().join(format!("{unit}.pid"))
    }
    pub fn log(&self, unit: &str) -> PathBuf {
        self.logs().join(format!("{unit}.log"))
    }
    pub fn socket(&self, unit: &str) -> PathBuf {
        self.run().join(format!("{unit}.sock"))
    }
}
