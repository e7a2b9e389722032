//! Links: lookup, bridges, veth pairs, master, up/down, delete.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use meshwork_compiler::model::vxlan::Mac;
use rtnetlink::packet_route::link::{
    InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth};
use serde::{Deserialize, Serialize};

use super::{Netlink, errno};
use crate::netns;

/// A network interface as meshwork sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND`: "bridge", "veth", "tun", ... (None for physical devices and `lo`).
    pub kind: Option<String>,
    /// The name of the master (bridge) this link is enslaved to.
    pub master: Option<String>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    pub mtu: u32,
    /// The link-layer address (`IFLA_ADDRESS`), for Ethernet-like links.
    #[serde(default)]
    pub mac: Option<Mac>,
}

impl LinkInfo {
    fn from_message(msg: &LinkMessage, names: &HashMap<u32, String>) -> LinkInfo {
        let mut info = LinkInfo {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            master: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            mtu: 0,
            mac: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => info.name = name.clone(),
                LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
                LinkAttribute::Address(bytes) => info.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(Mac),
                LinkAttribute::Controller(index) if *index != 0 => info.master = names.get(index).cloned(),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let NlLinkInfo::Kind(kind) = i {
                            info.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        info
    }
}

fn controller(msg: &LinkMessage) -> Option<u32> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) if *i != 0 => Some(*i),
        _ => None,
    })
}

fn name_of(msg: &LinkMessage) -> Option<&str> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

impl Netlink {
    /// The raw message of link `name`; None if there is no such link (the kernel answers a
    /// by-name GETLINK for a missing link with -ENODEV, not an empty reply).
    pub(super) async fn link_message(&self, name: &str) -> io::Result<Option<LinkMessage>> {
        let result: Result<Vec<LinkMessage>, _> =
            self.handle.link().get().match_name(name).execute().try_collect().await;
        match result {
            Ok(msgs) => Ok(msgs.into_iter().next()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(self.error(e, format_args!("cannot get link {name}"))),
        }
    }

    async fn link_message_by_index(&self, index: u32) -> io::Result<Option<LinkMessage>> {
        let result: Result<Vec<LinkMessage>, _> =
            self.handle.link().get().match_index(index).execute().try_collect().await;
        match result {
            Ok(msgs) => Ok(msgs.into_iter().next()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(self.error(e, format_args!("cannot get link with index {index}"))),
        }
    }

    /// The index of link `name`, or a NotFound error.
    pub(super) async fn index_of(&self, name: &str) -> io::Result<u32> {
        match self.link_message(name).await? {
            Some(msg) => Ok(msg.header.index),
            None => Err(self.plain_error(io::ErrorKind::NotFound, format_args!("link {name} does not exist"))),
        }
    }

    /// Index → name of every link.
    pub(super) async fn link_names(&self) -> io::Result<HashMap<u32, String>> {
        let msgs = self.link_messages().await?;
        Ok(msgs.iter().filter_map(|m| name_of(m).map(|n| (m.header.index, n.to_owned()))).collect())
    }

    async fn link_messages(&self) -> io::Result<Vec<LinkMessage>> {
        self.handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.error(e, format_args!("cannot list links")))
    }

    /// Link `name`; `Ok(None)` if it does not exist.
    pub async fn link(&self, name: &str) -> io::Result<Option<LinkInfo>> {
        let Some(msg) = self.link_message(name).await? else { return Ok(None) };
        let mut names = HashMap::new();
        if let Some(index) = controller(&msg)
            && let Some(master) = self.link_message_by_index(index).await?
            && let Some(master_name) = name_of(&master)
        {
            names.insert(index, master_name.to_owned());
        }
        Ok(Some(LinkInfo::from_message(&msg, &names)))
    }

    /// All links, by index.
    pub async fn links(&self) -> io::Result<Vec<LinkInfo>> {
        let msgs = self.link_messages().await?;
        let names: HashMap<u32, String> =
            msgs.iter().filter_map(|m| name_of(m).map(|n| (m.header.index, n.to_owned()))).collect();
        let mut links: Vec<LinkInfo> = msgs.iter().map(|m| LinkInfo::from_message(m, &names)).collect();
        links.sort_by_key(|l| l.index);
        Ok(links)
    }

    /// Create bridge `name` (down). Idempotent: an existing bridge of that name is fine; an
    /// existing link of another kind is an AlreadyExists error.
    pub async fn add_bridge(&self, name: &str) -> io::Result<()> {
        if let Some(existing) = self.link(name).await? {
            if existing.kind.as_deref() == Some("bridge") {
                return Ok(());
            }
            return Err(self.plain_error(
                io::ErrorKind::AlreadyExists,
                format_args!(
                    "cannot add bridge {name}: a link of kind {} with that name exists",
                    existing.kind.as_deref().unwrap_or("(none)")
                ),
            ));
        }
        let msg = LinkMessageBuilder::<LinkBridge>::new(name).build();
        self.handle.link().add(msg).execute().await.map_err(|e| self.error(e, format_args!("cannot add bridge {name}")))
    }

    /// Create the veth pair `name` <-> `peer` (both down). With `peer_netns`, the peer is
    /// created directly inside that named namespace. Not idempotent: an existing `name` (or
    /// `peer`) is an AlreadyExists error.
    pub async fn add_veth(&self, name: &str, peer: &str, peer_netns: Option<&str>) -> io::Result<()> {
        let what = match peer_netns {
            Some(ns) => format!("veth {name} (peer {peer} in network namespace {ns})"),
            None => format!("veth {name} (peer {peer})"),
        };
        // The fd must stay open until the kernel has processed the request.
        let ns_fd =
            peer_netns.map(netns::open).transpose().map_err(|e| super::ctx(e, format_args!("cannot add {what}")))?;
        let mut peer_msg = LinkUnspec::new_with_name(peer);
        if let Some(fd) = &ns_fd {
            peer_msg = peer_msg.setns_by_fd(fd.as_raw_fd());
        }
        let msg = LinkVeth::new(name, peer).set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build()))).build();
        let result = self.handle.link().add(msg).execute().await;
        drop(ns_fd);
        result.map_err(|e| self.error(e, format_args!("cannot add {what}")))
    }

    /// Enslave `link` to `master` (a bridge).
    pub async fn set_master(&self, link: &str, master: &str) -> io::Result<()> {
        let what = format!("cannot set master of {link} to {master}");
        let index = self.index_of(link).await.map_err(|e| super::ctx(e, &what))?;
        let master_index = self.index_of(master).await.map_err(|e| super::ctx(e, &what))?;
        let msg = LinkUnspec::new_with_index(index).controller(master_index).build();
        self.handle.link().set(msg).execute().await.map_err(|e| self.error(e, format_args!("{what}")))
    }

    /// `ip link set LINK address MAC`.
    pub async fn set_mac(&self, link: &str, mac: Mac) -> io::Result<()> {
        let what = format!("cannot set the address of {link} to {mac}");
        let index = self.index_of(link).await.map_err(|e| super::ctx(e, &what))?;
        let msg = LinkUnspec::new_with_index(index).address(mac.0.to_vec()).build();
        self.handle.link().set(msg).execute().await.map_err(|e| self.error(e, format_args!("{what}")))
    }

    /// `ip link set LINK up`.
    pub async fn set_up(&self, link: &str) -> io::Result<()> {
        let index = self.index_of(link).await.map_err(|e| super::ctx(e, format_args!("cannot set {link} up")))?;
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle.link().set(msg).execute().await.map_err(|e| self.error(e, format_args!("cannot set {link} up")))
    }

    /// `ip link set LINK down`.
    pub async fn set_down(&self, link: &str) -> io::Result<()> {
        let index = self.index_of(link).await.map_err(|e| super::ctx(e, format_args!("cannot set {link} down")))?;
        let msg = LinkUnspec::new_with_index(index).down().build();
        self.handle.link().set(msg).execute().await.map_err(|e| self.error(e, format_args!("cannot set {link} down")))
    }

    /// Delete link `name` (for a veth, the peer goes too). A missing link is fine.
    pub async fn delete_link(&self, name: &str) -> io::Result<()> {
        let Some(msg) = self.link_message(name).await? else { return Ok(()) };
        match self.handle.link().del(msg.header.index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(self.error(e, format_args!("cannot delete link {name}"))),
        }
    }
}
