//! What is on the host now, of everything meshwork owns there: what the [parts](super::part)
//! of the host's kind find (its nft table, links, namespaces, routes with meshwork's protocol
//! numbers, forwarding entries, files under its state directory, the daemons its pid files
//! name).

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};

use super::applied::Applied;
use super::desired;
use super::identity::HostId;
use super::layout::Layout;
use super::part::{Observing, parts};
use super::resource::{Resource, ResourceMap};
use crate::netlink::{Netlink, RouteInfo};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Observed {
    pub resources: ResourceMap,
    /// `nft -s list table inet meshwork`, when the table exists.
    pub nft_listing: Option<String>,
    /// Text of the small non-secret files, for line diffs in plans.
    #[serde(skip)]
    pub file_text: BTreeMap<String, String>,
    /// The /32 routes the agent installed for clients on engines.
    pub client_routes: Vec<RouteInfo>,
}

impl Observed {
    /// A digest of everything observed: a saved plan is only applied to the state it was made
    /// against.
    pub fn fingerprint(&self) -> String {
        let json =
            serde_json::to_vec(&(&self.resources.values().collect::<Vec<_>>(), &self.nft_listing)).unwrap_or_default();
        desired::digest(&json)
    }

    pub fn add(&mut self, r: Resource) {
        self.resources.insert(r.id.clone(), r);
    }
}

pub async fn observe(
    layout: &Layout,
    host: &HostId,
    applied: Option<&Applied>,
    wanted: &ResourceMap,
) -> io::Result<Observed> {
    let nl = Netlink::connect().await?;
    let cx = Observing { host, layout, applied, wanted, nl: &nl };
    let mut out = Observed::default();
    for part in parts(host.kind) {
        part.observe(&cx, &mut out).await?;
    }
    Ok(out)
}
