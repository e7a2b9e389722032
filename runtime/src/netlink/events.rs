//! A change feed for the reconcile loop: one `()` per link, IPv4 address, IPv4 route or IPv4
//! rule event (and per receive-buffer overrun, after which state must be re-read anyway).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use rtnetlink::MulticastGroup;

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
        Ok(Changes { events: messages.map(|_| ()).boxed(), _conn: AbortOnDrop(task) })
    }

    /// [`Netlink::subscribe_changes`] for the named network namespace.
    pub async fn subscribe_changes_in(netns: &str) -> io::Result<Changes> {
        let (conn, _handle, messages) =
            on_netns_thread(netns, || rtnetlink::new_multicast_connection(&GROUPS))
                .await
                .map_err(|e| ctx(e, format_args!("cannot subscribe to netlink events in network namespace {netns}")))?;
        let task = tokio::spawn(conn);
        Ok(Changes { events: messages.map(|_| ()).boxed(), _conn: AbortOnDrop(task) })
    }
}
