//! What this controller tells its peers, as a numbered series of changes: the agent publishes
//! each new announcement; `/v1/mesh` serves the current one, and every `/v1/mesh/stream` opens
//! with a snapshot (or a resume) and then follows the changes as they are published.
//!
//! Why a watch channel: a publish wakes every stream at once, and a stream that is slow to
//! write simply finds several changes the next time it looks. The last [`HISTORY`] changes
//! are kept so that a stream that falls behind, or a peer that reconnects, gets just what it
//! missed; further back, it gets a snapshot.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::watch;

use super::Announcement;
use super::wire::{self, Change, Line};

/// Changes kept for streams that fall behind and peers that resume.
pub const HISTORY: usize = 4096;

/// The published state: the current announcement and the changes that led to it.
#[derive(Clone, Debug)]
pub struct Log {
    /// Names this run of the agent: numbers restart with it.
    pub epoch: String,
    /// Number of the last change (0: none yet).
    pub seq: u64,
    pub current: Option<Arc<Announcement>>,
    /// (number, change), oldest first; contiguous up to `seq`.
    history: VecDeque<(u64, Change)>,
}

impl Log {
    pub fn new(epoch: String) -> Log {
        Log { epoch, seq: 0, current: None, history: VecDeque::new() }
    }

    /// Makes `a` the current announcement; false when nothing changed. A first announcement
    /// (or another controller's, which never happens in one run) leaves no changes to replay:
    /// whoever follows from before it gets a snapshot.
    pub fn publish(&mut self, a: Announcement) -> bool {
        let changes = match &self.current {
            Some(old) if **old == a => return false,
            Some(old) if old.controller == a.controller => wire::diff(old, &a),
            _ => {
                self.history.clear();
                self.seq += 1;
                self.current = Some(Arc::new(a));
                return true;
            }
        };
        for change in changes {
            self.seq += 1;
            self.history.push_back((self.seq, change));
        }
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
        self.current = Some(Arc::new(a));
        true
    }

    /// The lines that take a receiver at `seq` to the current state, if the history still
    /// holds every change since.
    pub fn since(&self, seq: u64) -> Option<Vec<Line>> {
        if seq == self.seq {
            return Some(Vec::new());
        }
        let first = self.history.front()?.0;
        if seq > self.seq || seq + 1 < first {
            return None;
        }
        Some(self.history.iter().filter(|(n, _)| *n > seq).map(|(n, c)| c.line(*n)).collect())
    }

    /// A full snapshot of the current state (nothing before the first announcement).
    pub fn snapshot(&self) -> Vec<Line> {
        self.current.as_ref().map(|a| wire::snapshot(&self.epoch, self.seq, a)).unwrap_or_default()
    }

    /// How a stream opens for a receiver that holds `(epoch, seq)`, if it says so: a resume
    /// and the changes since, when this run's history covers them, else a snapshot.
    pub fn opening(&self, held: Option<(&str, u64)>) -> Vec<Line> {
        if let Some((epoch, seq)) = held
            && epoch == self.epoch
            && let Some(changes) = self.since(seq)
        {
            let mut out = vec![Line::Resume { epoch: self.epoch.clone(), seq }];
            out.extend(changes);
            return out;
        }
        self.snapshot()
    }

    /// What a stream that has sent everything up to `sent` sends next: the changes since, or
    /// a new snapshot when it fell further behind than the history reaches.
    pub fn follow(&self, sent: u64) -> Vec<Line> {
        self.since(sent).unwrap_or_else(|| self.snapshot())
    }
}

/// The agent's handle on the published state; clones share it.
#[derive(Clone)]
pub struct Feed {
    tx: Arc<watch::Sender<Log>>,
}

impl Default for Feed {
    fn default() -> Feed {
        Feed::new(new_epoch())
    }
}

impl Feed {
    pub fn new(epoch: String) -> Feed {
        Feed { tx: Arc::new(watch::channel(Log::new(epoch)).0) }
    }

    /// Publishes `a`; streams wake only when it differs from the current announcement.
    pub fn publish(&self, a: Announcement) {
        self.tx.send_if_modified(|log| log.publish(a));
    }

    pub fn current(&self) -> Option<Arc<Announcement>> {
        self.tx.borrow().current.clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Log> {
        self.tx.subscribe()
    }
}

/// A random name for this run (the receiver compares it, nothing more).
fn new_epoch() -> String {
    let mut bytes = [0u8; 8];
    let rng = ring::rand::SystemRandom::new();
    if ring::rand::SecureRandom::fill(&rng, &mut bytes).is_err() {
        // Unique enough without randomness: this process and the time it started.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        return format!("{:x}-{nanos:x}", std::process::id());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::Held;
    use super::*;

    fn announcement(clients: &[(&str, u64)]) -> Announcement {
        Announcement {
            controller: "east".into(),
            topology: "t".into(),
            checksum: "abc".into(),
            ca: "ca".into(),
            lans: vec![],
            clients: clients
                .iter()
                .map(|(n, since)| {
                    (
                        n.to_string(),
                        Held { address: Ipv4Addr::new(100, 127, 0, 9), unit: "server".into(), since: *since },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn changes_are_numbered_one_by_one_and_replayed_from_any_point_the_history_holds() {
        let mut log = Log::new("e1".into());
        assert!(log.snapshot().is_empty(), "nothing to tell before the first announcement");
        assert!(log.publish(announcement(&[("a", 1)])));
        assert_eq!(log.seq, 1);
        assert!(!log.publish(announcement(&[("a", 1)])), "the same announcement is no change");
        assert!(log.publish(announcement(&[("a", 2), ("b", 1)])));
        assert_eq!(log.seq, 3);
        assert_eq!(log.since(1).unwrap().iter().map(seq_of).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(log.since(2).unwrap().len(), 1);
        assert!(log.since(3).unwrap().is_empty());
        assert!(log.since(0).is_none(), "before the first announcement: a snapshot");
        assert!(log.since(4).is_none(), "a number from the future: a snapshot");
        // A resume of this run at 2, one of another run, and none at all.
        assert!(matches!(log.opening(Some(("e1", 2)))[0], Line::Resume { seq: 2, .. }));
        assert!(matches!(log.opening(Some(("e0", 2)))[0], Line::Snapshot { seq: 3, clients: 2, .. }));
        assert_eq!(log.opening(None).len(), 3);
    }

    #[test]
    fn a_stream_further_behind_than_the_history_gets_a_snapshot() {
        let mut log = Log::new("e1".into());
        log.publish(announcement(&[]));
        for i in 0..(HISTORY as u64 + 10) {
            log.publish(announcement(&[("a", i + 1)]));
        }
        assert!(log.since(1).is_none());
        assert!(matches!(log.follow(1)[0], Line::Snapshot { .. }));
        assert_eq!(log.follow(log.seq - 1).len(), 1);
    }

    fn seq_of(line: &Line) -> u64 {
        match line {
            Line::Client { seq, .. } | Line::Gone { seq, .. } | Line::Meta { seq, .. } | Line::Beat { seq } => *seq,
            Line::Snapshot { seq, .. } | Line::Resume { seq, .. } => *seq,
        }
    }
}
