//! A node's IPsec (DESIGN §9): `swanctl.conf`, the data path's `strongswan.conf` and one
//! pre-shared key per peer node in another PDC (0600) in the node's working directory; charon
//! running there; and the connections and keys loaded into it.
//!
//! Loading is a resource of its own (`ike swanctl`) so that a changed peer or a rotated key is
//! loaded into the running charon — the other pairs' SAs stay up — while only a changed
//! `strongswan.conf` restarts it. What was loaded is recorded beside charon's pid file, and
//! counts only for the charon that loaded it.

use std::io;
use std::path::PathBuf;

use meshwork_compiler::emit::node::{STRONGSWAN_CONF, STRONGSWAN_USERSPACE_CONF, SWANCTL_CONF, strongswan};
use meshwork_compiler::vxlan::names::ike_connection;
use serde::{Deserialize, Serialize};

use super::super::desired::{Desired, DesiredError, DesiredFile, digest};
use super::super::layout::Layout;
use super::super::observe::Observed;
use super::super::part::{Observing, Part, Pending, Topology};
use super::super::resource::{Attrs, Kind, Resource, Spec};
use super::super::unit::UnitName;
use crate::daemon::{self, Program};
use crate::node::datapath;

/// The loading resource's name.
pub const SWANCTL: &str = "swanctl";
/// Attributes of the loading resource that stand for a peer's key: digests of secrets, never
/// shown.
pub const KEY_ATTR_PREFIX: &str = "key ";

pub struct Ipsec;

/// What was loaded into which charon.
#[derive(Serialize, Deserialize)]
struct Loaded {
    pid: u32,
    start_time: u64,
    attrs: Attrs,
}

fn loaded_path(layout: &Layout) -> PathBuf {
    layout.run().join("swanctl.loaded.json")
}

/// Records that `attrs` were loaded into the charon that runs now.
pub fn record_loaded(layout: &Layout, attrs: &Attrs) -> io::Result<()> {
    let Some(charon) = daemon::status(&layout.pidfile(&UnitName::Charon.to_string()))? else {
        return Err(io::Error::other("charon is not running"));
    };
    let loaded = Loaded { pid: charon.pid, start_time: charon.start_time, attrs: attrs.clone() };
    crate::private_file::replace(&loaded_path(layout), &serde_json::to_vec(&loaded).map_err(io::Error::other)?)
}

/// The connections whose key changed between two versions of the loading resource: their IKE
/// SAs are re-authenticated so the new key is the one in use.
pub fn rekeyed(before: Option<&Attrs>, after: &Attrs) -> Vec<String> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let conn = k.strip_prefix(KEY_ATTR_PREFIX)?;
            before.and_then(|b| b.get(k)).is_some_and(|old| old != v).then(|| conn.to_string())
        })
        .collect()
}

impl Part for Ipsec {
    fn desire(&self, t: &Topology<'_>, out: &mut Desired) -> Result<(), DesiredError> {
        let node = t.node()?;
        let vx = &t.net.vxlan;
        if vx.ipsec_peers(node).next().is_none() {
            return Ok(());
        }
        out.add_file(SWANCTL_CONF, DesiredFile::plain(strongswan::swanctl_conf(vx, node)));
        for (file, content) in strongswan::strongswan_confs(vx, node) {
            out.add_file(file, DesiredFile::plain(content));
        }
        let mut loading = Resource::new(Kind::Ike, SWANCTL, Spec::Swanctl)
            .attr("config", out.files.get(SWANCTL_CONF).map(|f| digest(&f.content)).unwrap_or_default());
        for (pair, peer) in vx.ipsec_peers(node) {
            let psk =
                t.keyset.psk(pair).map_err(|e| DesiredError::Keys(format!("the key of {pair}"), e.to_string()))?;
            let file = psk.to_file();
            loading = loading.attr(&format!("{KEY_ATTR_PREFIX}{}", ike_connection(&peer.name)), digest(&file));
            out.add_file(pair.psk_path(), DesiredFile::secret(file));
        }
        let chosen = datapath::choose(vx.ipsec.datapath);
        debug_assert!([STRONGSWAN_CONF, STRONGSWAN_USERSPACE_CONF].contains(&chosen.config));
        let unit = UnitName::Charon.to_string();
        let charon = Resource::new(
            Kind::Process,
            unit.clone(),
            Spec::Process { unit, config: chosen.config.into(), netns: None, program: Program::Charon },
        )
        // The data path shows in which configuration it runs (`strongswan-userspace.conf`).
        .attr("config", out.files_digest([chosen.config]))
        .attr("state", "running");
        out.resources.push(charon);
        out.resources.push(loading);
        Ok(())
    }

    fn observe<'a>(&'a self, cx: &'a Observing<'a>, out: &'a mut Observed) -> Pending<'a> {
        Box::pin(async move {
            let Ok(bytes) = std::fs::read(loaded_path(cx.layout)) else { return Ok(()) };
            let Ok(loaded) = serde_json::from_slice::<Loaded>(&bytes) else { return Ok(()) };
            let charon = daemon::status(&cx.layout.pidfile(&UnitName::Charon.to_string()))?;
            if charon.is_some_and(|c| c.pid == loaded.pid && c.start_time == loaded.start_time) {
                let mut r = Resource::new(Kind::Ike, SWANCTL, Spec::Swanctl);
                r.attrs = loaded.attrs;
                out.add(r);
            }
            Ok(())
        })
    }
}
