//! Slows down failed token checks, per source address: one [`Throttle`] per kind of credential
//! (read token, join token), shared by every connection of the server, holding one back-off
//! per source.
//!
//! Per source, the n-th recent failure (n = 0, 1, ...) is answered after `BASE × 2^n`, at most
//! `MAX`. A source's failures are answered one after another: each one's delay starts when its
//! previous failure's answer is due, so a sender gains nothing by opening connections in
//! parallel. When a source's queue of pending failures reaches `QUEUE_MAX`, its requests that
//! carry this kind of credential are answered 429 at once, **without checking the credential**,
//! so a guess made then teaches nothing. A source's count goes back to zero after `QUIET`
//! without a failure, or on a success **from that source** with this kind of credential.
//!
//! Why per source: with one shared queue, a few senders of wrong tokens kept the queue full,
//! and the right token, sent from anywhere, was answered 429 for as long as they went on
//! (issue 12, item 7). Now a flood only throttles the addresses it comes from, and a success
//! forgets only its own source's failures, so it cannot clear a guesser's back-off.
//!
//! A source is an IPv4 address, or an IPv6 /64 (one host usually holds a whole /64, so
//! counting its addresses apart would let it guess 2^64 times as fast). IPv4-mapped IPv6 is
//! IPv4.
//!
//! Memory is bounded: at most `MAX_SOURCES` sources are tracked. A source is forgotten once it
//! has been quiet for `QUIET` and its queue is empty. When the table is full of sources that are
//! still failing, further sources share one back-off (the `overflow` bucket), so a sender with
//! more addresses than that still cannot guess faster than one queue allows; only then can it
//! slow down other sources that are not in the table.
//!
//! Requests that carry no credential at all, and those authenticated by a client certificate,
//! never come here and are never delayed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Delay of the first failure.
pub const BASE: Duration = Duration::from_millis(250);
/// Longest delay of one failure.
pub const MAX: Duration = Duration::from_secs(5);
/// A quiet period that forgets past failures.
pub const QUIET: Duration = Duration::from_secs(60);
/// Longest queue of pending failure answers before requests are refused unchecked.
pub const QUEUE_MAX: Duration = Duration::from_secs(30);
/// Sources tracked at once (about 100 bytes each).
pub const MAX_SOURCES: usize = 4096;

/// Where failures are counted: an IPv4 address or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(a) => Source::V4(a.octets()),
            IpAddr::V6(a) => {
                let o = a.octets();
                Source::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    sources: HashMap<Source, Backoff>,
    /// Shared by sources that found the table full.
    overflow: Backoff,
    /// Every failure since the server started, for `/metrics`.
    total: u64,
    /// Requests refused unchecked because their queue was full.
    refused: u64,
}

/// One source's back-off.
#[derive(Debug, Default, Clone, Copy)]
struct Backoff {
    /// Recent failures, for the exponent.
    recent: u32,
    last_failure: Option<Instant>,
    /// When the last queued failure is answered.
    busy_until: Option<Instant>,
}

impl Backoff {
    fn admit(&self, now: Instant) -> Result<(), Duration> {
        match self.busy_until {
            Some(until) if until > now + QUEUE_MAX => Err(until - now - QUEUE_MAX),
            _ => Ok(()),
        }
    }

    fn failure(&mut self, now: Instant) -> Duration {
        if self.last_failure.is_some_and(|t| now.duration_since(t) > QUIET) {
            self.recent = 0;
        }
        let delay = BASE.saturating_mul(1u32 << self.recent.min(16)).min(MAX);
        self.recent = self.recent.saturating_add(1);
        self.last_failure = Some(now);
        let start = self.busy_until.filter(|t| *t > now).unwrap_or(now);
        let until = start + delay;
        self.busy_until = Some(until);
        until - now
    }

    /// Nothing left to remember: quiet long enough, and no answer still queued.
    fn forgotten(&self, now: Instant) -> bool {
        self.last_failure.is_none_or(|t| now.duration_since(t) > QUIET) && self.busy_until.is_none_or(|t| t <= now)
    }
}

impl State {
    /// The back-off `source` is counted in, if it has one.
    fn find(&self, source: Source) -> Option<&Backoff> {
        match self.sources.get(&source) {
            Some(b) => Some(b),
            None if self.sources.len() >= MAX_SOURCES => Some(&self.overflow),
            None => None,
        }
    }

    /// The back-off a failure of `source` goes into, making room (or using the overflow) when
    /// the table is full.
    fn entry(&mut self, source: Source, now: Instant) -> &mut Backoff {
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            self.sources.retain(|_, b| !b.forgotten(now));
            if self.sources.len() >= MAX_SOURCES {
                return &mut self.overflow;
            }
        }
        self.sources.entry(source).or_default()
    }
}

impl Throttle {
    /// Before checking a credential from `source`: `Err(retry after)` when its queue is full.
    pub fn admit(&self, source: IpAddr) -> Result<(), Duration> {
        self.admit_at(source.into(), Instant::now())
    }

    fn admit_at(&self, source: Source, now: Instant) -> Result<(), Duration> {
        let mut s = self.lock();
        let verdict = s.find(source).map_or(Ok(()), |b| b.admit(now));
        if verdict.is_err() {
            s.refused += 1;
        }
        verdict
    }

    /// Records a failure from `source`; returns how long to wait before answering it.
    pub fn failure(&self, source: IpAddr) -> Duration {
        self.failure_at(source.into(), Instant::now())
    }

    fn failure_at(&self, source: Source, now: Instant) -> Duration {
        let mut s = self.lock();
        s.total += 1;
        s.entry(source, now).failure(now)
    }

    /// A credential of this kind from `source` was right: forget that source's failures (and
    /// only its own: the overflow's stay, answers already queued still wait).
    pub fn success(&self, source: IpAddr) {
        let mut s = self.lock();
        if let Some(b) = s.sources.get_mut(&Source::from(source)) {
            b.recent = 0;
        }
    }

    /// (failures, requests refused unchecked) since the server started.
    pub fn totals(&self) -> (u64, u64) {
        let s = self.lock();
        (s.total, s.refused)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(last: u8) -> Source {
        IpAddr::from(Ipv4Addr::new(192, 0, 2, last)).into()
    }

    #[test]
    fn delays_double_queue_and_reset() {
        let t = Throttle::default();
        let a = v4(1);
        let mut now = Instant::now();
        assert_eq!(t.failure_at(a, now), BASE);
        now += BASE;
        assert_eq!(t.failure_at(a, now), BASE * 2);
        now += BASE * 2;
        // Two at once: the second waits for the first.
        assert_eq!(t.failure_at(a, now), BASE * 4);
        assert_eq!(t.failure_at(a, now), BASE * 4 + BASE * 8);
        now += BASE * 12;
        assert_eq!(t.failure_at(a, now), BASE * 16);
        assert_eq!(t.failure_at(a, now), BASE * 16 + MAX, "capped");
        t.success(Ipv4Addr::new(192, 0, 2, 1).into());
        now += BASE * 16 + MAX;
        assert_eq!(t.failure_at(a, now), BASE);
        now += QUIET + Duration::from_secs(1);
        assert_eq!(t.failure_at(a, now), BASE, "a quiet period forgets");
        assert_eq!(t.totals(), (8, 0));
    }

    #[test]
    fn a_full_queue_refuses_unchecked() {
        let t = Throttle::default();
        let now = Instant::now();
        assert!(t.admit_at(v4(1), now).is_ok());
        for _ in 0..12 {
            t.failure_at(v4(1), now);
        }
        let retry = t.admit_at(v4(1), now).unwrap_err();
        assert!(retry > Duration::ZERO);
        assert!(t.admit_at(v4(1), now + retry).is_ok());
        assert_eq!(t.totals(), (12, 1));
    }

    /// Regression (issue 12, item 7): one source's flood throttles that source only, and a
    /// success elsewhere does not clear its back-off.
    #[test]
    fn sources_are_throttled_apart() {
        let t = Throttle::default();
        let now = Instant::now();
        for last in 1..=16 {
            for _ in 0..12 {
                t.failure_at(v4(last), now);
            }
        }
        assert!(t.admit_at(v4(1), now).is_err());
        assert!(t.admit_at(v4(100), now).is_ok(), "a source that never failed is admitted");
        t.success(Ipv4Addr::new(192, 0, 2, 100).into());
        assert!(t.admit_at(v4(1), now).is_err(), "another source's success keeps this one's back-off");
        // The delay goes on from where it was, not from BASE.
        assert!(t.failure_at(v4(2), now + QUEUE_MAX) > MAX);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source() {
        let a: Source = IpAddr::from("2001:db8:1:2::1".parse::<Ipv6Addr>().unwrap()).into();
        let b: Source = IpAddr::from("2001:db8:1:2:ffff::9".parse::<Ipv6Addr>().unwrap()).into();
        let c: Source = IpAddr::from("2001:db8:1:3::1".parse::<Ipv6Addr>().unwrap()).into();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped: Source = IpAddr::from(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()).into();
        assert_eq!(mapped, v4(1));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_quiet_sources() {
        let t = Throttle::default();
        let now = Instant::now();
        let source = |i: usize| Source::V4((i as u32).to_be_bytes());
        for i in 0..MAX_SOURCES + 100 {
            t.failure_at(source(i), now);
        }
        assert_eq!(t.lock().sources.len(), MAX_SOURCES);
        // Sources beyond the table share one back-off: it grows with each of them.
        assert!(t.lock().overflow.recent >= 100);
        assert!(t.admit_at(source(MAX_SOURCES + 50), now).is_err(), "the overflow is throttled as one");
        // Once the tracked sources are quiet, a new one takes the place of forgotten ones.
        let later = now + QUIET + MAX * 2;
        assert_eq!(t.failure_at(source(MAX_SOURCES + 200), later), BASE);
        assert_eq!(t.lock().sources.len(), 1);
    }
}
