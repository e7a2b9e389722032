//! IPv4 addresses on links.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::AddressMessageBuilder;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};

use super::{Netlink, errno};

/// The local IPv4 address of an address message (`IFA_LOCAL`, else `IFA_ADDRESS`) with its prefix.
fn ipv4_of(msg: &AddressMessage) -> Option<Ipv4Net> {
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    });
    let address = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    });
    Ipv4Net::new(local.or(address)?, msg.header.prefix_len).ok()
}

impl Netlink {
    /// The IPv4 addresses of `link`, in kernel order (NotFound if the link does not exist).
    pub async fn addresses(&self, link: &str) -> io::Result<Vec<Ipv4Net>> {
        let index = self.index_of(link).await?;
        self.addresses_of(index, link).await
    }

    async fn addresses_of(&self, index: u32, link: &str) -> io::Result<Vec<Ipv4Net>> {
        let mut request = self.handle.address().get().set_link_index_filter(index);
        request.message_mut().header.family = AddressFamily::Inet;
        let msgs: Vec<AddressMessage> = request
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.error(e, format_args!("cannot list addresses of {link}")))?;
        Ok(msgs.iter().filter(|m| m.header.family == AddressFamily::Inet).filter_map(ipv4_of).collect())
    }

    /// Add `address` (e.g. 10.0.0.1/24) to `link`. Idempotent: the kernel's add is not (EEXIST),
    /// so the current addresses are compared first.
    pub async fn add_address(&self, link: &str, address: Ipv4Net) -> io::Result<()> {
        let index =
            self.index_of(link).await.map_err(|e| super::ctx(e, format_args!("cannot add {address} to {link}")))?;
        if self.addresses_of(index, link).await?.contains(&address) {
            return Ok(());
        }
        match self.handle.address().add(index, IpAddr::V4(address.addr()), address.prefix_len()).execute().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.error(e, format_args!("cannot add address {address} to {link}"))),
        }
    }

    /// Remove `address` from `link`. An address (or link) that is already gone is fine.
    pub async fn delete_address(&self, link: &str, address: Ipv4Net) -> io::Result<()> {
        let index = match self.index_of(link).await {
            Ok(index) => index,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let msg =
            AddressMessageBuilder::<Ipv4Addr>::new().index(index).address(address.addr(), address.prefix_len()).build();
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
            Err(e) => Err(self.error(e, format_args!("cannot delete address {address} from {link}"))),
        }
    }
}
