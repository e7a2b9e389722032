//! IPv4 routes, tagged with a route protocol number so meshwork can tell its own routes apart.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use serde::{Deserialize, Serialize};

use super::{Netlink, errno};

/// An IPv4 unicast route: `DST [via GATEWAY] [dev DEV] [src SOURCE] table TABLE proto PROTOCOL`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    pub dst: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub dev: Option<String>,
    /// Routing table id (254 = main).
    pub table: u32,
    /// Route protocol (`rtm_protocol`): 2 kernel, 3 boot, 4 static, ...; meshwork uses its own.
    pub protocol: u8,
    /// Preferred source address (`src`) for traffic the host itself sends along the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Ipv4Addr>,
}

impl fmt::Display for RouteInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(gateway) = self.gateway {
            write!(f, " via {gateway}")?;
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if let Some(source) = self.source {
            write!(f, " src {source}")?;
        }
        write!(f, " table {} proto {}", self.table, self.protocol)
    }
}

impl RouteInfo {
    /// None for routes this type cannot represent (non-unicast, IPv6, source-specific).
    fn from_message(msg: &RouteMessage, names: &HashMap<u32, String>) -> Option<RouteInfo> {
        let header = &msg.header;
        if header.address_family != AddressFamily::Inet || header.kind != RouteType::Unicast {
            return None;
        }
        if header.source_prefix_length != 0 {
            return None;
        }
        let mut dst = Ipv4Addr::UNSPECIFIED;
        let mut gateway = None;
        let mut dev = None;
        let mut source = None;
        let mut table = u32::from(header.table);
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = *ip,
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                RouteAttribute::Oif(index) => dev = names.get(index).cloned(),
                RouteAttribute::Table(id) => table = *id,
                RouteAttribute::PrefSource(RouteAddress::Inet(ip)) => source = Some(*ip),
                _ => {}
            }
        }
        Some(RouteInfo {
            dst: Ipv4Net::new(dst, header.destination_prefix_length).ok()?,
            gateway,
            dev,
            table,
            protocol: header.protocol.into(),
            source,
        })
    }
}

impl Netlink {
    /// IPv4 unicast routes of all tables, optionally only those with route protocol `protocol`
    /// and/or in table `table`. Multipath routes show neither gateway nor dev.
    pub async fn routes(&self, protocol: Option<u8>, table: Option<u32>) -> io::Result<Vec<RouteInfo>> {
        let names = self.link_names().await?;
        let mut request = RouteMessage::default();
        request.header.address_family = AddressFamily::Inet;
        let msgs: Vec<RouteMessage> = self
            .handle
            .route()
            .get(request)
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.error(e, format_args!("cannot list routes")))?;
        Ok(msgs
            .iter()
            .filter_map(|m| RouteInfo::from_message(m, &names))
            .filter(|r| protocol.is_none_or(|p| r.protocol == p))
            .filter(|r| table.is_none_or(|t| r.table == t))
            .collect())
    }

    async fn route_message(&self, route: &RouteInfo, verb: &str) -> io::Result<RouteMessage> {
        let dst = route.dst.trunc();
        let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst.addr(), dst.prefix_len())
            .table_id(route.table)
            .protocol(RouteProtocol::from(route.protocol));
        match route.gateway {
            Some(gateway) => builder = builder.gateway(gateway),
            // Like `ip route add DST dev DEV`: a directly connected route has link scope.
            None => builder = builder.scope(RouteScope::Link),
        }
        if let Some(source) = route.source {
            builder = builder.pref_source(source);
        }
        if let Some(dev) = &route.dev {
            let index =
                self.index_of(dev).await.map_err(|e| super::ctx(e, format_args!("cannot {verb} route {route}")))?;
            builder = builder.output_interface(index);
        }
        Ok(builder.build())
    }

    /// Add or replace (NLM_F_REPLACE) the route: idempotent.
    pub async fn replace_route(&self, route: &RouteInfo) -> io::Result<()> {
        let msg = self.route_message(route, "add").await?;
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|e| self.error(e, format_args!("cannot add route {route}")))
    }

    /// Delete the route (matching its protocol, table, gateway and dev). A route (or dev) that is
    /// already gone is fine.
    pub async fn delete_route(&self, route: &RouteInfo) -> io::Result<()> {
        let mut msg = match self.route_message(route, "delete").await {
            Ok(msg) => msg,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        // RT_SCOPE_NOWHERE matches any scope on delete (what `ip route del` sends).
        msg.header.scope = RouteScope::NoWhere;
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(self.error(e, format_args!("cannot delete route {route}"))),
        }
    }
}
