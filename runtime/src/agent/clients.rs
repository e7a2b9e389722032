//! Which client sits where on this controller, learned from the management interface of every
//! OpenVPN unit that serves clients (the server and the engines).
//!
//! The agent owns each of those interfaces ([`Owner`]): it hears a client arrive the moment
//! OpenVPN reports it and wakes the agent ([`Clients::follow`]'s `wake`), which then asks every
//! unit for its list ([`Clients::learn`]) and tells its peers. Departures show in the next list
//! (every tick), as they did before.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::status::Location;
use crate::host::layout::Layout;
use crate::openvpn::owner::{Event, Owner};

/// Units that serve clients: peering tunnels (`peer-*`) do not.
pub fn serves_clients(unit: &str) -> bool {
    unit == "server" || unit.starts_with("engine-")
}

/// Told of every event of every owned unit; called on the owners' tasks, so it must not block.
pub type Wake = Arc<dyn Fn(&str, &Event) + Send + Sync>;

/// The owners of this host's client-serving units.
pub struct Clients {
    owners: BTreeMap<String, Owner>,
    wake: Wake,
}

impl Clients {
    pub fn new(wake: Wake) -> Clients {
        Clients { owners: BTreeMap::new(), wake }
    }

    /// Owns the management socket of every unit in `units` that serves clients (running or not:
    /// an owner connects when its unit starts), and lets go of the others (an engine removed
    /// from the topology).
    pub fn follow<'a>(&mut self, layout: &Layout, units: impl IntoIterator<Item = &'a String>) {
        let wanted: BTreeMap<&String, std::path::PathBuf> =
            units.into_iter().filter(|u| serves_clients(u)).map(|u| (u, layout.socket(u))).collect();
        self.owners.retain(|unit, owner| wanted.get(unit).is_some_and(|s| s == owner.socket()));
        for (unit, socket) in wanted {
            if !self.owners.contains_key(unit) {
                let wake = self.wake.clone();
                let name = unit.clone();
                self.owners.insert(unit.clone(), Owner::spawn(socket, move |e| wake(&name, &e)));
            }
        }
    }

    /// Every connected client by name, from the units in `running`, asked all at once.
    pub async fn learn(&self, running: &[String]) -> BTreeMap<String, Location> {
        let asked = running
            .iter()
            .filter_map(|u| self.owners.get(u).map(|o| (u, o)))
            .map(|(unit, owner)| async move { (unit, owner.status().await) });
        let mut out = BTreeMap::new();
        for (unit, answer) in futures_util::future::join_all(asked).await {
            let Ok(clients) = answer else { continue };
            for c in clients {
                let here = Location { unit: unit.clone(), address: c.virtual_address, since: Some(c.connected_since) };
                // A client listed by two units (a reconnect the old unit has not noticed yet):
                // the newer connection is the real one.
                match out.get(&c.common_name) {
                    Some(Location { since: Some(old), .. }) if *old > c.connected_since => {}
                    _ => {
                        out.insert(c.common_name.clone(), here);
                    }
                }
            }
        }
        out
    }
}
