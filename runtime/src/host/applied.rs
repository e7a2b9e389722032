//! What the last apply left on the host. Drift is the difference between this and what is
//! there now; it also lets the plan name a hand-edited nft table for what it is.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::identity::HostId;
use super::resource::Resource;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    pub topology: String,
    /// Which host (records written before nodes existed name a controller, under `controller`).
    #[serde(default)]
    pub host: Option<HostId>,
    pub checksum: String,
    /// Every resource as observed right after the apply.
    pub resources: Vec<Resource>,
    pub nft: Option<AppliedNft>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppliedNft {
    /// Digest of the ruleset JSON that was loaded (the desired `ruleset` attribute).
    pub ruleset: String,
    /// The kernel's listing right after loading it (`nft -s list table inet meshwork`).
    pub listing: String,
    /// The compiled `nftables.nft` text, to show rule-level changes in the next plan.
    pub text: String,
}

impl Applied {
    pub fn load(path: &Path) -> io::Result<Option<Applied>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a meshwork state record: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Written whole or not at all (temporary file, then rename).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        crate::private_file::replace(path, &bytes)
    }
}
