//! What wakes the agent between ticks, so drift is repaired as it happens (issue 14, item 3):
//! netlink events of the host's namespace and of every engine namespace the topology wants
//! (their routes, rules, addresses and links make no event in the host's), the nft monitor, and
//! the exit of every daemon the agent keeps, seen through a pidfd per process (whoever its
//! parent is). The tick and the resync stay as the backstop for what makes no event.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::os::fd::OwnedFd;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::daemon::ProcessRecord;
use crate::host::resource::Kind;
use crate::netlink::Netlink;

/// Why a pass runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The agent's first pass.
    Start,
    Event(Cause),
    Tick,
    Resync,
    Reload,
    /// A peer's announcement changed: only routes need another look.
    Heard,
    /// A client arrived on a unit of this host (OpenVPN's management interface said so).
    Arrival,
}

/// The event that woke the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// `nft monitor` saw meshwork's table change.
    Nft,
    /// A link, address, route or rule changed in the host's namespace (None) or a named one.
    Netlink(Option<String>),
    /// A daemon the agent keeps exited.
    Exited(String),
}

impl Cause {
    /// The kinds of resource an event can concern: a pass after it reads and repairs only those
    /// (the subsystem's, [`super::SUBSYSTEMS`]); the tick's and the resync's read everything.
    pub fn kinds(&self) -> &'static [Kind] {
        match self {
            Cause::Nft => &[Kind::Nftables],
            // A link, address or route gone can take a setting of the link with it (an engine's
            // eth0 made again starts with the kernel's rp_filter): the whole network.
            Cause::Netlink(_) => super::NETWORK,
            Cause::Exited(_) => &[Kind::Process],
        }
    }
}

/// What a pass woken by `causes` (the first event and those that came within the debounce)
/// looks at: the kinds they concern, or everything (None) when nothing narrows it.
pub fn scope(causes: &[Cause]) -> Option<Vec<Kind>> {
    if causes.is_empty() {
        return None;
    }
    let mut kinds: Vec<Kind> = causes.iter().flat_map(|c| c.kinds().iter().copied()).collect();
    kinds.sort();
    kinds.dedup();
    Some(kinds)
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Event(Cause::Nft) => write!(f, "event: nft monitor"),
            Trigger::Event(Cause::Netlink(None)) => write!(f, "event: netlink"),
            Trigger::Event(Cause::Netlink(Some(ns))) => write!(f, "event: netlink in {ns}"),
            Trigger::Event(Cause::Exited(unit)) => write!(f, "event: {unit} exited"),
            Trigger::Start => write!(f, "start"),
            Trigger::Tick => write!(f, "tick"),
            Trigger::Resync => write!(f, "resync"),
            Trigger::Reload => write!(f, "reload"),
            Trigger::Heard => write!(f, "heard from a peer"),
            Trigger::Arrival => write!(f, "a client arrived"),
        }
    }
}

/// Aborts a watching task when dropped (its socket or descriptor goes with it).
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One subscription to a namespace's netlink events, bound to the namespace that had the name
/// when it was made (its inode): a namespace deleted and made again under the same name is a
/// new one, whose events the old socket never sees.
struct Subscription {
    inode: u64,
    _task: Task,
}

/// What to change in the subscriptions: namespaces to subscribe to (anew), and to drop.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resubscribe {
    pub open: Vec<String>,
    pub close: Vec<String>,
}

/// `current`: the inode each subscription was made in; `wanted`: each namespace the topology
/// wants, with its inode now (None: it does not exist, yet or any more).
pub fn resubscribe(current: &BTreeMap<String, u64>, wanted: &BTreeMap<String, Option<u64>>) -> Resubscribe {
    let mut r = Resubscribe::default();
    for (ns, inode) in current {
        if wanted.get(ns).copied().flatten() != Some(*inode) {
            r.close.push(ns.clone());
        }
    }
    for (ns, inode) in wanted {
        if inode.is_some() && (r.close.contains(ns) || !current.contains_key(ns)) {
            r.open.push(ns.clone());
        }
    }
    r
}

/// The pid and start time a process watch was made for.
type Identity = (u32, u64);

/// Which process watches to drop and which to make: `current` the processes watched by unit,
/// `running` each unit's process now (one that does not run is not watched: the next pass
/// starts it, and that one is watched).
pub fn rewatch(
    current: &BTreeMap<String, Identity>,
    running: &BTreeMap<String, Identity>,
) -> (Vec<String>, Vec<String>) {
    let close = current.iter().filter(|(u, id)| running.get(*u) != Some(*id)).map(|(u, _)| u.clone()).collect();
    let open = running.iter().filter(|(u, id)| current.get(*u) != Some(*id)).map(|(u, _)| u.clone()).collect();
    (close, open)
}

/// The agent's event sources beyond the host namespace's netlink and nft monitor, kept in step
/// with the topology after every pass.
pub struct Wakers {
    tx: mpsc::Sender<Trigger>,
    namespaces: BTreeMap<String, Subscription>,
    processes: BTreeMap<String, (Identity, Task)>,
    /// Set once pidfds turn out to be unsupported: the tick notices dead daemons then.
    no_pidfd: bool,
}

impl Wakers {
    pub fn new(tx: mpsc::Sender<Trigger>) -> Wakers {
        Wakers { tx, namespaces: BTreeMap::new(), processes: BTreeMap::new(), no_pidfd: false }
    }

    /// Subscribes to netlink events in each of `wanted` (the engines' namespaces) that exists,
    /// anew where the namespace was made again, and drops the others. A namespace that cannot
    /// be subscribed to now is tried again after the next pass.
    pub async fn follow_namespaces(&mut self, wanted: &BTreeSet<String>) {
        let now: BTreeMap<String, Option<u64>> =
            wanted.iter().map(|ns| (ns.clone(), crate::netns::inode(ns).ok())).collect();
        let current: BTreeMap<String, u64> = self.namespaces.iter().map(|(ns, s)| (ns.clone(), s.inode)).collect();
        let change = resubscribe(&current, &now);
        for ns in change.close {
            self.namespaces.remove(&ns);
        }
        for ns in change.open {
            let Ok(mut events) = Netlink::subscribe_changes_in(&ns).await else { continue };
            // The inode after subscribing: if the namespace was made again in between, the next
            // pass sees it differ and subscribes again.
            let Ok(inode) = crate::netns::inode(&ns) else { continue };
            let tx = self.tx.clone();
            let name = ns.clone();
            let task = tokio::spawn(async move {
                use futures_util::StreamExt;
                while events.next().await.is_some() {
                    if tx.send(Trigger::Event(Cause::Netlink(Some(name.clone())))).await.is_err() {
                        return;
                    }
                }
            });
            self.namespaces.insert(ns, Subscription { inode, _task: Task(task) });
        }
    }

    /// Watches each running daemon of `running` (unit -> its pid file's record) through a
    /// pidfd, so its exit wakes the agent; drops the watches of processes that were replaced
    /// or are gone. A process that exits between the pass and this is reported at once.
    pub fn follow_processes(&mut self, running: &BTreeMap<String, ProcessRecord>) {
        if self.no_pidfd {
            return;
        }
        let current: BTreeMap<String, Identity> = self.processes.iter().map(|(u, (id, _))| (u.clone(), *id)).collect();
        let ids: BTreeMap<String, Identity> = running.iter().map(|(u, r)| (u.clone(), (r.pid, r.start_time))).collect();
        let (close, open) = rewatch(&current, &ids);
        for unit in close {
            self.processes.remove(&unit);
            // Gone rather than replaced: it died after the pass that last saw it, and its watch
            // may not have told yet (a pass woken by its tun device going away reads it first).
            // Dropping the watch drops that event, so it is made here.
            if !running.contains_key(&unit) {
                self.tell(Trigger::Event(Cause::Exited(unit)));
            }
        }
        for unit in open {
            let record = &running[&unit];
            let exited = Trigger::Event(Cause::Exited(unit.clone()));
            let fd = match crate::daemon::pidfd(record) {
                Ok(Some(fd)) => fd,
                Ok(None) => {
                    self.tell(exited);
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                    eprintln!("meshwork agent: {e}; dead daemons are noticed by the tick");
                    self.no_pidfd = true;
                    self.processes.clear();
                    return;
                }
                Err(e) => {
                    eprintln!("meshwork agent: cannot watch {unit} (pid {}): {e}", record.pid);
                    continue;
                }
            };
            let tx = self.tx.clone();
            let task = tokio::spawn(async move {
                if exits(fd).await {
                    let _ = tx.send(exited).await;
                }
            });
            self.processes.insert(unit, ((record.pid, record.start_time), Task(task)));
        }
    }
}

impl Wakers {
    /// Queues `trigger`, waiting for room as every event does: a pass is scoped to the events
    /// that got through, so none may be dropped.
    fn tell(&self, trigger: Trigger) {
        let tx = self.tx.clone();
        tokio::spawn(async move { tx.send(trigger).await });
    }
}

/// Until the process behind `pidfd` exits (the descriptor becomes readable). False if the
/// descriptor cannot be polled.
async fn exits(pidfd: OwnedFd) -> bool {
    // SAFETY: the OwnedFd is a valid descriptor, owned by the AsyncFd until it is dropped, and
    // neither replaced nor closed meanwhile.
    let Ok(fd) = (unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }) else { return false };
    fd.readable().await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map<V: Clone>(items: &[(&str, V)]) -> BTreeMap<String, V> {
        items.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn namespaces_are_subscribed_to_once_and_again_when_made_again() {
        let current = map(&[("mw-c-e1", 11), ("mw-c-e2", 12), ("mw-c-e3", 13)]);
        // e1 unchanged, e2 made again (another inode), e3 no longer wanted, e4 new, e5 wanted
        // but not made yet.
        let wanted = map(&[("mw-c-e1", Some(11)), ("mw-c-e2", Some(22)), ("mw-c-e4", Some(14)), ("mw-c-e5", None)]);
        let r = resubscribe(&current, &wanted);
        assert_eq!(r.close, ["mw-c-e2", "mw-c-e3"]);
        assert_eq!(r.open, ["mw-c-e2", "mw-c-e4"]);
        // A wanted namespace deleted under a subscription: dropped, nothing opened.
        let r = resubscribe(&map(&[("mw-c-e1", 11)]), &map(&[("mw-c-e1", None)]));
        assert_eq!(r, Resubscribe { open: vec![], close: vec!["mw-c-e1".into()] });
        assert_eq!(resubscribe(&current, &map(&[])).open, Vec::<String>::new());
    }

    #[test]
    fn a_process_is_watched_anew_when_its_pid_or_start_time_changes() {
        let current = map(&[("server", (10, 100)), ("engine-1", (11, 110)), ("engine-2", (12, 120))]);
        // engine-1 restarted (new pid), engine-2's pid reused by another start (same pid, later
        // start time), server unchanged, engine-3 new, peer-x gone.
        let running =
            map(&[("server", (10, 100)), ("engine-1", (31, 300)), ("engine-2", (12, 400)), ("engine-3", (13, 130))]);
        let (close, open) = rewatch(&current, &running);
        assert_eq!(close, ["engine-1", "engine-2"]);
        assert_eq!(open, ["engine-1", "engine-2", "engine-3"]);
        let (close, open) = rewatch(&running, &map(&[]));
        assert_eq!((close.len(), open.len()), (4, 0));
    }

    #[test]
    fn an_event_narrows_the_pass_to_its_subsystems() {
        assert_eq!(scope(&[]), None, "a tick reads everything");
        assert_eq!(scope(&[Cause::Nft, Cause::Nft]), Some(vec![Kind::Nftables]));
        let both = scope(&[Cause::Exited("engine-1".into()), Cause::Netlink(Some("mw-c-e1".into()))]).unwrap();
        assert!(both.contains(&Kind::Process) && both.contains(&Kind::Route) && !both.contains(&Kind::Nftables));
        // Each cause's kinds are exactly one subsystem's, so a scoped pass repairs whole
        // subsystems and their backoff stays per subsystem.
        for cause in [Cause::Nft, Cause::Netlink(None), Cause::Exited("server".into())] {
            assert!(super::super::SUBSYSTEMS.iter().any(|(_, kinds)| *kinds == cause.kinds()), "{cause:?}");
        }
    }

    #[test]
    fn triggers_say_what_woke_the_agent() {
        assert_eq!(Trigger::Event(Cause::Netlink(Some("mw-c-e1".into()))).to_string(), "event: netlink in mw-c-e1");
        assert_eq!(Trigger::Event(Cause::Exited("engine-2".into())).to_string(), "event: engine-2 exited");
        assert_eq!(Trigger::Tick.to_string(), "tick");
    }

    /// A pidfd wakes its watcher when the process exits, also one the agent did not start
    /// (here a child, killed); a process already gone is reported at once.
    #[tokio::test]
    async fn an_exit_wakes_the_agent() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sh").arg0("openvpn").args(["-c", "sleep 30"]).spawn().unwrap();
        let pid = child.id();
        // Until it has exec'd, /proc shows the test's own command line.
        let record = loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
            if cmdline.starts_with(b"openvpn") {
                let start_time = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().parse().unwrap();
                break ProcessRecord {
                    pid,
                    start_time,
                    config_sha256: String::new(),
                    netns: None,
                    program: crate::daemon::Program::Openvpn,
                };
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        let (tx, mut rx) = mpsc::channel(8);
        let mut w = Wakers::new(tx);
        let running = map(&[("engine-1", record.clone())]);
        w.follow_processes(&running);
        assert!(rx.try_recv().is_err(), "nothing exited yet");
        child.kill().unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await.unwrap();
        assert_eq!(got, Some(Trigger::Event(Cause::Exited("engine-1".into()))));
        child.wait().unwrap();
        // Gone before it is watched (a new Wakers, as if the pass had just read the pid file).
        let (tx, mut rx) = mpsc::channel(8);
        Wakers::new(tx).follow_processes(&running);
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await.unwrap();
        assert_eq!(got, Some(Trigger::Event(Cause::Exited("engine-1".into()))));
    }
}
