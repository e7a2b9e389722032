//! A small typed wrapper over rtnetlink for what meshwork owns: links (bridges, veths), IPv4
//! addresses, IPv4 routes (tagged with meshwork's route protocol number) and IPv4 policy rules,
//! plus a change feed for the reconcile loop; and for compute nodes VXLAN devices, FDB entries and
//! neighbour entries.
//!
//! A [`Netlink`] talks to one network namespace: the one its socket was created in
//! ([`Netlink::connect`]: the calling thread's; [`Netlink::connect_in`]: a named one). Every error
//! is an [`io::Error`] whose message says what failed on which object, keeping the errno's kind
//! (`File exists` → [`io::ErrorKind::AlreadyExists`], ...).
//!
//! Adds are idempotent ([`Netlink::add_address`], [`Netlink::replace_route`], [`Netlink::add_rule`],
//! [`Netlink::add_bridge`]; not [`Netlink::add_veth`]), and deleting an object that is already gone
//! succeeds, so a reconcile loop can simply re-apply.

mod address;
mod events;
mod link;
mod neighbour;
mod route;
mod rule;
mod vxlan;

use std::fmt;
use std::io;
use std::sync::Arc;

pub use events::Changes;
pub use link::LinkInfo;
pub use neighbour::{Fdb, Neighbour};
pub use route::RouteInfo;
pub use rule::RuleInfo;
pub use vxlan::VxlanParams;

use crate::netns;

/// A netlink (NETLINK_ROUTE) connection bound to one network namespace.
///
/// Cheap to clone (clones share the connection); the connection task stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
    netns: Option<String>,
    _conn: Arc<AbortOnDrop>,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink").field("netns", &self.netns).finish_non_exhaustive()
    }
}

/// Aborts the spawned connection task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Netlink {
    /// Connect in the calling thread's network namespace. The connection task is spawned on the
    /// current tokio runtime.
    pub async fn connect() -> io::Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| ctx(e, "cannot open a netlink socket"))?;
        let task = tokio::spawn(conn);
        Ok(Netlink { handle, netns: None, _conn: Arc::new(AbortOnDrop(task)) })
    }

    /// Connect in the named network namespace: the socket is created on a short-lived thread that
    /// entered `netns` (a netlink socket stays bound to the namespace it was created in); the
    /// connection task runs on the caller's tokio runtime.
    pub async fn connect_in(netns: &str) -> io::Result<Netlink> {
        let (conn, handle, _) = on_netns_thread(netns, rtnetlink::new_connection)
            .await
            .map_err(|e| ctx(e, format_args!("cannot open a netlink socket in network namespace {netns}")))?;
        let task = tokio::spawn(conn);
        Ok(Netlink { handle, netns: Some(netns.to_owned()), _conn: Arc::new(AbortOnDrop(task)) })
    }

    /// The named namespace this connection was opened in (None: the caller's at connect time).
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// The underlying rtnetlink handle, for requests this wrapper does not cover.
    pub fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    /// Error for a failed request: "cannot VERB OBJECT[ in network namespace NS]: REASON".
    fn error(&self, err: rtnetlink::Error, what: fmt::Arguments<'_>) -> io::Error {
        let what = match &self.netns {
            Some(ns) => format!("{what} in network namespace {ns}"),
            None => what.to_string(),
        };
        match err {
            rtnetlink::Error::NetlinkError(msg) if msg.code.is_some() => {
                let os = msg.to_io();
                io::Error::new(os.kind(), format!("{what}: {os}"))
            }
            other => io::Error::other(format!("{what}: {other}")),
        }
    }

    /// Error without a netlink cause (e.g. a link that does not exist).
    fn plain_error(&self, kind: io::ErrorKind, what: fmt::Arguments<'_>) -> io::Error {
        match &self.netns {
            Some(ns) => io::Error::new(kind, format!("{what} in network namespace {ns}")),
            None => io::Error::new(kind, what.to_string()),
        }
    }
}

/// The positive errno of a netlink error reply, if that is what `err` is.
fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) if msg.code.is_some() => Some(-msg.raw_code()),
        _ => None,
    }
}

/// Add context to an io::Error, keeping its kind.
fn ctx(err: io::Error, what: impl fmt::Display) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// Run `f` on a fresh std thread that entered the named namespace, inside the caller's tokio
/// runtime context (so tokio sockets created by `f` register with the caller's reactor).
async fn on_netns_thread<T, F>(netns: &str, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let name = netns.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("netns-{netns}"))
        .spawn(move || {
            let result = netns::enter(&name).and_then(|()| {
                let _guard = runtime.enter();
                f()
            });
            let _ = tx.send(result);
        })
        .map_err(|e| ctx(e, "cannot spawn a thread"))?;
    rx.await.map_err(|_| io::Error::other("the netns thread panicked"))?
}
