//! Static forwarding on a node's VXLAN devices: FDB entries (a remote vNIC's MAC -> the address
//! of the node behind it, `bridge fdb … dst … self permanent`) and permanent neighbour entries
//! (the vNIC's IP -> MAC, which the device's proxy ARP answers from). Many at once go out as
//! concurrent requests on the one socket, not one round trip each.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::{StreamExt, TryStreamExt};
use meshwork_compiler::model::vxlan::Mac;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};

use super::{Netlink, errno};

/// Requests in flight at once: enough to hide the round trips, few enough to stay inside the
/// socket's receive buffer with their acknowledgements.
const IN_FLIGHT: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fdb {
    pub mac: Mac,
    pub dst: Ipv4Addr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

fn lladdr(msg: &NeighbourMessage) -> Option<Mac> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => {
            let mut m = [0u8; 6];
            m.copy_from_slice(b);
            Some(Mac(m))
        }
        _ => None,
    })
}

/// `NDA_DST` as IPv4. In an AF_BRIDGE (FDB) message the crate cannot know the address family and
/// keeps the raw bytes.
fn dst(msg: &NeighbourMessage) -> Option<Ipv4Addr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
            <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
        }
        _ => None,
    })
}

impl Netlink {
    async fn neighbour_dump(&self, family: AddressFamily, what: &str) -> io::Result<Vec<NeighbourMessage>> {
        self.handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.error(e, format_args!("cannot list {what}")))
    }

    /// The unicast FDB entries with a destination on `dev` (a VXLAN device), sorted.
    pub async fn fdb_entries(&self, dev: &str) -> io::Result<Vec<Fdb>> {
        let index = self.index_of(dev).await?;
        let msgs = self.neighbour_dump(AddressFamily::Bridge, "FDB entries").await?;
        let mut out: Vec<Fdb> = msgs
            .iter()
            .filter(|m| m.header.ifindex == index)
            .filter_map(|m| Some(Fdb { mac: lladdr(m)?, dst: dst(m)? }))
            .filter(|f| !f.mac.is_zero())
            .collect();
        out.sort();
        Ok(out)
    }

    /// The permanent IPv4 neighbour entries of `dev`, sorted.
    pub async fn neighbours(&self, dev: &str) -> io::Result<Vec<Neighbour>> {
        let index = self.index_of(dev).await?;
        let msgs = self.neighbour_dump(AddressFamily::Inet, "neighbours").await?;
        let mut out: Vec<Neighbour> = msgs
            .iter()
            .filter(|m| m.header.ifindex == index && m.header.state == NeighbourState::Permanent)
            .filter_map(|m| Some(Neighbour { ip: dst(m)?, mac: lladdr(m)? }))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Adds (or replaces) every entry, concurrently; the first failure is returned after all
    /// requests have been answered.
    pub async fn replace_fdb(&self, dev: &str, entries: &[Fdb]) -> io::Result<()> {
        let index = self.index_of(dev).await?;
        let results: Vec<io::Result<()>> = futures_util::stream::iter(entries.iter().copied())
            .map(|f| async move {
                let mut req =
                    self.handle.neighbours().add_bridge(index, &f.mac.0).destination(IpAddr::V4(f.dst)).replace();
                // NTF_SELF: the entry belongs to the VXLAN device's own table, not a bridge's.
                req.message_mut().header.flags = NeighbourFlags::Own;
                req.execute()
                    .await
                    .map_err(|e| self.error(e, format_args!("cannot add FDB {} dst {} on {dev}", f.mac, f.dst)))
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Adds (or replaces) every permanent neighbour entry, concurrently.
    pub async fn replace_neighbours(&self, dev: &str, entries: &[Neighbour]) -> io::Result<()> {
        let index = self.index_of(dev).await?;
        let results: Vec<io::Result<()>> = futures_util::stream::iter(entries.iter().copied())
            .map(|n| async move {
                self.handle
                    .neighbours()
                    .add(index, IpAddr::V4(n.ip))
                    .link_layer_address(&n.mac.0)
                    .replace()
                    .execute()
                    .await
                    .map_err(|e| self.error(e, format_args!("cannot add neighbour {} lladdr {} on {dev}", n.ip, n.mac)))
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Deletes FDB entries; one already gone is fine.
    pub async fn delete_fdb(&self, dev: &str, entries: &[Fdb]) -> io::Result<()> {
        let index = self.index_of(dev).await?;
        for f in entries {
            let mut msg = NeighbourMessage::default();
            msg.header.family = AddressFamily::Bridge;
            msg.header.ifindex = index;
            msg.header.flags = NeighbourFlags::Own;
            msg.attributes.push(NeighbourAttribute::LinkLayerAddress(f.mac.0.to_vec()));
            msg.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(f.dst)));
            match self.handle.neighbours().del(msg).execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(libc::ENOENT) => {}
                Err(e) => return Err(self.error(e, format_args!("cannot delete FDB {} dst {} on {dev}", f.mac, f.dst))),
            }
        }
        Ok(())
    }

    /// Deletes neighbour entries; one already gone is fine.
    pub async fn delete_neighbours(&self, dev: &str, entries: &[Neighbour]) -> io::Result<()> {
        let index = self.index_of(dev).await?;
        for n in entries {
            let mut msg = NeighbourMessage::default();
            msg.header.family = AddressFamily::Inet;
            msg.header.ifindex = index;
            msg.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(n.ip)));
            match self.handle.neighbours().del(msg).execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(libc::ENOENT) => {}
                Err(e) => return Err(self.error(e, format_args!("cannot delete neighbour {} on {dev}", n.ip))),
            }
        }
        Ok(())
    }
}
