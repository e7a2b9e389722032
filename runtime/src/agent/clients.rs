//! Which client sits where on this controller, learned from the management interface of every
//! OpenVPN unit that serves clients (the server and the engines).

use std::collections::BTreeMap;

use super::status::Location;
use crate::host::layout::Layout;
use crate::openvpn::management;

/// Units that serve clients: peering tunnels (`peer-*`) do not.
pub fn serves_clients(unit: &str) -> bool {
    unit == "server" || unit.starts_with("engine-")
}

/// Every connected client by name, from the units in `units` (those that run).
pub async fn learn(layout: &Layout, units: &[String]) -> BTreeMap<String, Location> {
    let mut out = BTreeMap::new();
    for unit in units.iter().filter(|u| serves_clients(u)) {
        let Ok(clients) = management::status(&layout.socket(unit)).await else { continue };
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
