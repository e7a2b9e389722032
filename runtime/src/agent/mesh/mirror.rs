//! One peer's announcement as rebuilt from its stream, line by line, with every line checked
//! against what came before: a change must be numbered one more than the last, a beat must
//! name the last, a snapshot must be complete before it counts. Anything else is a fault, and
//! the receiver starts over with a snapshot; nothing a peer sends can make this panic or grow
//! without bound (a snapshot's client count is only counted down, never allocated).

use super::Announcement;
use super::wire::{self, Change, Line};

/// Where the mirror stands.
#[derive(Clone, Debug, Default)]
enum State {
    /// Nothing heard on this connection or before.
    #[default]
    Empty,
    /// A snapshot is arriving: `left` client lines to go.
    Loading { epoch: String, seq: u64, announcement: Announcement, left: usize },
    /// A whole state, current as of change `seq` of run `epoch`.
    Synced { epoch: String, seq: u64, announcement: Announcement },
}

/// Most clients one peer may claim: far more than any topology holds, and a bound on what a
/// hostile peer can make this receiver keep.
pub const MAX_CLIENTS: usize = 1 << 20;

/// What a line did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Took {
    /// The announcement changed (a snapshot completed, or a change applied).
    Changed,
    /// Nothing to route differently: a beat, a resume, part of a snapshot.
    Same,
}

/// Why the stream must start over.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("change {got} after {expected}: a gap in the stream")]
    Gap { expected: u64, got: u64 },
    #[error("the stream speaks for controller {0:?}")]
    WrongController(String),
    #[error("a resume of a state this receiver does not hold")]
    BadResume,
    #[error("a `{0}` line out of place")]
    OutOfPlace(&'static str),
    #[error("more than {MAX_CLIENTS} clients")]
    TooMany,
}

/// One peer's announcement, rebuilt from its stream.
#[derive(Clone, Debug)]
pub struct Mirror {
    /// The peer it must speak for.
    controller: String,
    state: State,
}

impl Mirror {
    pub fn new(controller: &str) -> Mirror {
        Mirror { controller: controller.to_string(), state: State::Empty }
    }

    /// The whole announcement, once a snapshot has completed.
    pub fn current(&self) -> Option<&Announcement> {
        match &self.state {
            State::Synced { announcement, .. } => Some(announcement),
            _ => None,
        }
    }

    /// What to ask a reconnect to resume from: the run and change number held.
    pub fn position(&self) -> Option<(&str, u64)> {
        match &self.state {
            State::Synced { epoch, seq, .. } => Some((epoch, *seq)),
            _ => None,
        }
    }

    /// Forgets everything: the next connection asks for a snapshot.
    pub fn reset(&mut self) {
        self.state = State::Empty;
    }

    /// A connection ended mid-snapshot: what was held before it stays, nothing half-loaded.
    pub fn abandon_partial(&mut self) {
        if matches!(self.state, State::Loading { .. }) {
            self.state = State::Empty;
        }
    }

    /// Takes one line. On a fault the mirror is left as it was; the caller resets it.
    pub fn take(&mut self, line: Line) -> Result<Took, Fault> {
        match line {
            Line::Snapshot { epoch, seq, controller, meta, clients } => {
                if controller != self.controller {
                    return Err(Fault::WrongController(controller));
                }
                let announcement = wire::empty(&controller, meta);
                self.state = if clients == 0 {
                    State::Synced { epoch, seq, announcement }
                } else {
                    State::Loading { epoch, seq, announcement, left: clients }
                };
                Ok(if clients == 0 { Took::Changed } else { Took::Same })
            }
            Line::Resume { epoch: e, seq: s } => match &self.state {
                State::Synced { epoch, seq, .. } if *epoch == e && *seq == s => Ok(Took::Same),
                _ => Err(Fault::BadResume),
            },
            Line::Beat { seq: s } => match &self.state {
                State::Synced { seq, .. } if *seq == s => Ok(Took::Same),
                State::Synced { seq, .. } => Err(Fault::Gap { expected: *seq, got: s }),
                _ => Err(Fault::OutOfPlace("beat")),
            },
            Line::Client { seq: s, name, held } => {
                if let State::Loading { seq, announcement, left, .. } = &mut self.state {
                    if *seq != s {
                        return Err(Fault::Gap { expected: *seq, got: s });
                    }
                    if announcement.clients.len() >= MAX_CLIENTS && !announcement.clients.contains_key(&name) {
                        return Err(Fault::TooMany);
                    }
                    announcement.clients.insert(name, held);
                    *left -= 1;
                    if *left > 0 {
                        return Ok(Took::Same);
                    }
                    let State::Loading { epoch, seq, announcement, .. } = std::mem::take(&mut self.state) else {
                        unreachable!("matched above")
                    };
                    self.state = State::Synced { epoch, seq, announcement };
                    return Ok(Took::Changed);
                }
                self.change(s, Change::Client { name, held }, "client")
            }
            Line::Gone { seq, name } => self.change(seq, Change::Gone { name }, "gone"),
            Line::Meta { seq, meta } => self.change(seq, Change::Meta(meta), "meta"),
        }
    }

    /// A numbered change: only on a whole state, and only the next number.
    fn change(&mut self, s: u64, change: Change, kind: &'static str) -> Result<Took, Fault> {
        let State::Synced { seq, announcement, .. } = &mut self.state else {
            return Err(Fault::OutOfPlace(kind));
        };
        if s != seq.wrapping_add(1) {
            return Err(Fault::Gap { expected: seq.wrapping_add(1), got: s });
        }
        if let Change::Client { name, .. } = &change
            && announcement.clients.len() >= MAX_CLIENTS
            && !announcement.clients.contains_key(name)
        {
            return Err(Fault::TooMany);
        }
        wire::apply(announcement, &change);
        *seq = s;
        Ok(Took::Changed)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::Held;
    use super::super::feed::Log;
    use super::*;

    fn announcement(controller: &str, clients: &[(&str, u64)]) -> Announcement {
        Announcement {
            controller: controller.into(),
            topology: "t".into(),
            checksum: "abc".into(),
            ca: "ca".into(),
            lans: vec!["10.20.0.0/16".parse().unwrap()],
            clients: clients
                .iter()
                .map(|(n, since)| {
                    (
                        n.to_string(),
                        Held { address: Ipv4Addr::new(100, 127, 0, 7), unit: "server".into(), since: *since },
                    )
                })
                .collect(),
        }
    }

    fn take_all(m: &mut Mirror, lines: Vec<Line>) -> Result<Vec<Took>, Fault> {
        lines.into_iter().map(|l| m.take(l)).collect()
    }

    #[test]
    fn a_snapshot_counts_only_when_complete_and_deltas_then_follow_the_sender() {
        let mut log = Log::new("e1".into());
        log.publish(announcement("west", &[("a", 1), ("b", 1)]));
        let mut m = Mirror::new("west");
        let took = take_all(&mut m, log.opening(None)).unwrap();
        assert_eq!(took, [Took::Same, Took::Same, Took::Changed], "changed only once the last client arrived");
        assert_eq!(m.current(), log.current.as_deref());

        let sent = log.seq;
        log.publish(announcement("west", &[("a", 2), ("c", 1)]));
        assert_eq!(take_all(&mut m, log.follow(sent)).unwrap(), [Took::Changed; 3]);
        assert_eq!(m.current(), log.current.as_deref(), "the mirror equals the sender's state");
        assert_eq!(m.take(Line::Beat { seq: log.seq }), Ok(Took::Same));
        assert_eq!(m.position(), Some(("e1", log.seq)));
    }

    #[test]
    fn a_gap_a_stale_beat_or_a_foreign_resume_is_a_fault() {
        let mut log = Log::new("e1".into());
        log.publish(announcement("west", &[("a", 1)]));
        let mut m = Mirror::new("west");
        take_all(&mut m, log.opening(None)).unwrap();
        let at = log.seq;
        log.publish(announcement("west", &[("a", 2), ("b", 1), ("c", 1)]));
        let mut changes = log.follow(at);
        changes.remove(1);
        assert_eq!(m.take(changes[0].clone()), Ok(Took::Changed));
        assert_eq!(m.take(changes[1].clone()), Err(Fault::Gap { expected: at + 2, got: at + 3 }));
        assert_eq!(m.take(Line::Beat { seq: log.seq }), Err(Fault::Gap { expected: at + 1, got: log.seq }));
        assert_eq!(m.take(Line::Resume { epoch: "e0".into(), seq: at + 1 }), Err(Fault::BadResume));
        // The sender restarted: its new run's numbers mean nothing here until a snapshot.
        let mut restarted = Log::new("e2".into());
        restarted.publish(announcement("west", &[]));
        assert!(restarted.opening(m.position()).first().is_some_and(|l| matches!(l, Line::Snapshot { .. })));
        let opening = restarted.opening(m.position());
        assert_eq!(take_all(&mut m, opening).unwrap(), [Took::Changed]);
        assert_eq!(m.position(), Some(("e2", 1)));
    }

    #[test]
    fn lines_out_of_place_are_faults() {
        let mut m = Mirror::new("west");
        assert_eq!(m.take(Line::Beat { seq: 0 }), Err(Fault::OutOfPlace("beat")));
        assert_eq!(m.take(Line::Gone { seq: 1, name: "a".into() }), Err(Fault::OutOfPlace("gone")));
        assert_eq!(m.take(Line::Resume { epoch: "e".into(), seq: 0 }), Err(Fault::BadResume));
        let mut log = Log::new("e1".into());
        log.publish(announcement("north", &[]));
        assert_eq!(
            m.take(log.opening(None).remove(0)),
            Err(Fault::WrongController("north".into())),
            "a peer cannot speak for another"
        );
        // A snapshot announcing more clients than it sends is never complete.
        let mut log = Log::new("e1".into());
        log.publish(announcement("west", &[("a", 1), ("b", 1)]));
        let mut lines = log.opening(None);
        lines.pop();
        take_all(&mut m, lines).unwrap();
        assert!(m.current().is_none());
        assert_eq!(m.take(Line::Beat { seq: 1 }), Err(Fault::OutOfPlace("beat")));
        m.abandon_partial();
        assert!(m.position().is_none());
        // The number after the largest wraps around instead of overflowing.
        let mut m = Mirror::new("west");
        m.take(Line::Snapshot {
            epoch: "e".into(),
            seq: u64::MAX,
            controller: "west".into(),
            meta: wire::Meta::of(&announcement("west", &[])),
            clients: 0,
        })
        .unwrap();
        assert!(matches!(m.take(Line::Gone { seq: 0, name: "a".into() }), Ok(Took::Changed)));
    }
}
