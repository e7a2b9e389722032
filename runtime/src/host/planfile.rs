//! Saved plans (`plan -out FILE`): enough to redo exactly that plan later, and to refuse it
//! when the host or the inputs have changed since. The topology source is kept whole (it holds
//! no secrets); the keyset is not: it stays in the state directory and its CA is part of the
//! checksum, so a plan made against another keyset is refused.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::identity::HostId;
use super::plan::Summary;

/// Version 2 names the host by kind and name (version 1 knew only controllers).
pub const FORMAT: &str = "meshwork-plan/2";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanFile {
    pub format: String,
    pub host: HostId,
    /// As the plan command was given it (diagnostics name it).
    pub topology_file: String,
    pub source: String,
    /// The topology's lock file as it was (absent from plans of topologies without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// Topology checksum the plan was made for (None: a destroy plan).
    pub checksum: Option<String>,
    /// Fingerprint of the host as observed when the plan was made.
    pub live: String,
    pub summary: Summary,
}

impl PlanFile {
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        crate::private_file::replace(path, &bytes)
    }

    /// None when the file is not a saved plan (then it is a topology file).
    pub fn load(path: &Path) -> io::Result<Option<PlanFile>> {
        let bytes = std::fs::read(path)?;
        if !bytes.starts_with(b"{") {
            return Ok(None);
        }
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return Ok(None) };
        let Some(format) = value.get("format").and_then(|f| f.as_str()) else { return Ok(None) };
        if format != FORMAT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is a plan of format {format}, this meshwork reads {FORMAT}; make a new plan",
                    path.display()
                ),
            ));
        }
        serde_json::from_value(value).map(Some).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a valid saved plan: {e}", path.display()))
        })
    }
}
