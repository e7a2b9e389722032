//! VXLAN devices as a node needs them (DESIGN §9): no learning, proxy ARP from the device's own
//! neighbour table, the rule's UDP port, and a source address only for `listen="admin"` rules.

use std::io;
use std::net::Ipv4Addr;

use rtnetlink::LinkVxlan;
use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo as NlLinkInfo};

use super::Netlink;

/// What meshwork sets on a VXLAN device, as created or as read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VxlanParams {
    pub vni: u32,
    pub port: u16,
    pub local: Option<Ipv4Addr>,
    pub learning: bool,
    pub proxy: bool,
}

impl VxlanParams {
    /// A node's device: nolearning, proxy.
    pub fn node(vni: u32, port: u16, local: Option<Ipv4Addr>) -> Self {
        Self { vni, port, local, learning: false, proxy: true }
    }
}

impl Netlink {
    /// Create VXLAN device `name` (down). Idempotent when a VXLAN device of that name already has
    /// these parameters; a device with other parameters (or another kind of link) is an
    /// AlreadyExists error, since the kernel cannot change a VXLAN's VNI or port in place.
    pub async fn add_vxlan(&self, name: &str, p: VxlanParams) -> io::Result<()> {
        if let Some(existing) = self.vxlan(name).await? {
            if existing == p {
                return Ok(());
            }
            return Err(self.plain_error(
                io::ErrorKind::AlreadyExists,
                format_args!("cannot add VXLAN {name}: it exists with {existing:?}, not {p:?}"),
            ));
        }
        if self.link(name).await?.is_some() {
            return Err(self.plain_error(
                io::ErrorKind::AlreadyExists,
                format_args!("cannot add VXLAN {name}: a link of another kind has that name"),
            ));
        }
        let mut b = LinkVxlan::new(name, p.vni).port(p.port).learning(p.learning).proxy(p.proxy);
        if let Some(local) = p.local {
            b = b.local(local);
        }
        self.handle
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(|e| self.error(e, format_args!("cannot add VXLAN {name}")))
    }

    /// The VXLAN parameters of link `name`; None when there is no such link or it is not a VXLAN.
    pub async fn vxlan(&self, name: &str) -> io::Result<Option<VxlanParams>> {
        let Some(msg) = self.link_message(name).await? else { return Ok(None) };
        let data = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                NlLinkInfo::Data(InfoData::Vxlan(v)) => Some(v),
                _ => None,
            }),
            _ => None,
        });
        let Some(data) = data else { return Ok(None) };
        let mut p = VxlanParams { vni: 0, port: 0, local: None, learning: true, proxy: false };
        for attr in data.iter().cloned() {
            match attr {
                InfoVxlan::Id(v) => p.vni = v,
                InfoVxlan::Port(v) => p.port = v,
                InfoVxlan::Local(ip) if !ip.is_unspecified() => p.local = Some(ip),
                InfoVxlan::Learning(v) => p.learning = v,
                InfoVxlan::Proxy(v) => p.proxy = v,
                _ => {}
            }
        }
        Ok(Some(p))
    }

    /// `ip link set LINK mtu MTU`.
    pub async fn set_mtu(&self, link: &str, mtu: u32) -> io::Result<()> {
        let what = format!("cannot set the MTU of {link} to {mtu}");
        let index = self.index_of(link).await.map_err(|e| super::ctx(e, &what))?;
        let msg = rtnetlink::LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.handle.link().set(msg).execute().await.map_err(|e| self.error(e, format_args!("{what}")))
    }
}
