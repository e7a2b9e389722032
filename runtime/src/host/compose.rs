//! A host's desired and observed state, added up from the parts of its kind
//! ([`super::parts::of`]).

use std::collections::BTreeMap;
use std::io;

use meshwork_compiler::artifacts::{self, BuildOptions};
use meshwork_compiler::network::Network;

use super::applied::Applied;
use super::desired::{Desired, DesiredError};
use super::identity::{HostId, HostKind};
use super::layout::Layout;
use super::observe::Observed;
use super::part::{Observing, Topology};
use super::parts;
use super::resource::{Kind, ResourceMap};
use crate::keys::Keyset;
use crate::netlink::Netlink;

/// What the topology wants on `host`: the sum of what the parts of its kind want.
pub fn desired(net: &Network, host: &HostId, keyset: &Keyset) -> Result<Desired, DesiredError> {
    let t = Topology { net, keyset, host };
    let exists = match host.kind {
        HostKind::Controller => t.controller().is_ok(),
        HostKind::Node => t.node().is_ok(),
    };
    if !exists {
        return Err(t.unknown());
    }
    let ca_fingerprint = keyset.ca_fingerprint();
    let checksum = artifacts::checksum(net, &BuildOptions { ca_fingerprint: Some(ca_fingerprint.clone()) });
    let mut d = Desired {
        topology: net.name.clone(),
        host: host.clone(),
        checksum,
        ca_fingerprint,
        nft_json: String::new(),
        nft_text: String::new(),
        files: BTreeMap::new(),
        resources: Vec::new(),
    };
    for part in parts::of(host.kind) {
        part.desire(&t, &mut d)?;
    }
    Ok(d)
}

/// What of everything the parts of `host`'s kind own is on the host now; with `scope`, only
/// the parts that find those kinds are asked (they may add other kinds too).
pub async fn observe(
    layout: &Layout,
    host: &HostId,
    applied: Option<&Applied>,
    wanted: &ResourceMap,
    scope: Option<&[Kind]>,
) -> io::Result<Observed> {
    let nl = Netlink::connect().await?;
    let cx = Observing { host, layout, applied, wanted, nl: &nl };
    let mut out = Observed::default();
    let asked =
        parts::of(host.kind).into_iter().filter(|p| scope.is_none_or(|s| p.kinds().iter().any(|k| s.contains(k))));
    for part in asked {
        part.observe(&cx, &mut out).await?;
    }
    Ok(out)
}
