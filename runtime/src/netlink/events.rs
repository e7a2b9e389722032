//! A change feed for the reconcile loop: one `()` per link, IPv4 address, IPv4 route or IPv4
//! rule event (and per receive-buffer overrun, after which state must be re-read anyway) —
//! except a new route of the agent's own protocol, which only the agent makes: following a
//! burst of client moves it would wake a pass per route it just set. Their deletion still
//! wakes it, so a client route someone removes is put back at once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;

use super::{AbortOnDrop, Netlink, ctx, on_netns_thread};

const GROUPS: [MulticastGroup; 4] =
    [MulticastGroup::Link, MulticastGroup::Ipv4Ifaddr, MulticastGroup::Ipv4Route, MulticastGroup::Ipv4Rule];

/// Stream of change notifications; ends only if the netlink socket fails. Dropping it closes the
/// socket.
pub struct Changes {
    events: BoxStream<'static, ()>,
    _conn: AbortOnDrop,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes").finish_non_exhaustive()
    }
}

impl Stream for Changes {
    type Item = ();

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        self.events.poll_next_unpin(cx)
    }
}

impl Netlink {
    /// Subscribe to changes in the calling thread's network namespace (RTNLGRP_LINK,
    /// RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV4_RULE) on a separate socket.
    pub async fn subscribe_changes() -> io::Result<Changes> {
        let (conn, _handle, messages) =
            rtnetlink::new_multicast_connection(&GROUPS).map_err(|e| ctx(e, "cannot subscribe to netlink events"))?;
        let task = tokio::spawn(conn);
        Ok(Changes { events: changes(messages), _conn: AbortOnDrop(task) })
    }

    /// [`Netlink::subscribe_changes`] for the named network namespace.
    pub async fn subscribe_changes_in(netns: &str) -> io::Result<Changes> {
        let (conn, _handle, messages) =
            on_netns_thread(netns, || rtnetlink::new_multicast_connection(&GROUPS))
                .await
                .map_err(|e| ctx(e, format_args!("cannot subscribe to netlink events in network namespace {netns}")))?;
        let task = tokio::spawn(conn);
        Ok(Changes { events: changes(messages), _conn: AbortOnDrop(task) })
    }
}

/// The messages that are changes to look at (see the module's comment).
fn changes<S, A>(messages: S) -> BoxStream<'static, ()>
where
    S: Stream<Item = (NetlinkMessage<RouteNetlinkMessage>, A)> + Send + 'static,
    A: Send + 'static,
{
    messages.filter(|(m, _)| std::future::ready(!own_new_route(m))).map(|_| ()).boxed()
}

fn own_new_route(message: &NetlinkMessage<RouteNetlinkMessage>) -> bool {
    matches!(
        &message.payload,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r))
            if u8::from(r.header.protocol) == crate::host::ROUTE_PROTO_AGENT
    )
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::route::{RouteMessage, RouteProtocol};

    use super::*;

    fn route(new: bool, protocol: u8) -> NetlinkMessage<RouteNetlinkMessage> {
        let mut r = RouteMessage::default();
        r.header.protocol = RouteProtocol::from(protocol);
        let inner = if new { RouteNetlinkMessage::NewRoute(r) } else { RouteNetlinkMessage::DelRoute(r) };
        NetlinkMessage::from(inner)
    }

    #[test]
    fn only_the_agents_own_new_routes_are_quiet() {
        assert!(own_new_route(&route(true, crate::host::ROUTE_PROTO_AGENT)));
        assert!(!own_new_route(&route(false, crate::host::ROUTE_PROTO_AGENT)), "a deleted client route is drift");
        assert!(!own_new_route(&route(true, crate::host::ROUTE_PROTO_STATIC)));
        assert!(!own_new_route(&route(true, 4)));
    }
}
