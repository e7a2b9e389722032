//! Slows down failed token checks: one [`Throttle`] per kind of credential (read token, join
//! token), shared by every connection of the server.
//!
//! The n-th recent failure (n = 0, 1, ...) is answered after `BASE × 2^n`, at most `MAX`.
//! Failures are answered one after another: each one's delay starts when the previous failure's
//! answer is due, so an attacker gains nothing by opening connections in parallel. When the
//! queue of pending failures reaches `QUEUE_MAX`, requests that carry this kind of credential
//! are answered 429 at once, **without checking the credential**, so a guess made then teaches
//! nothing. The count goes back to zero after `QUIET` without a failure, or on a success with
//! this kind of credential (only someone who knows the token can cause that).
//!
//! Requests that carry no credential at all, and those authenticated by a client certificate,
//! are never delayed.

use std::sync::Mutex;
use std::time::Duration;

use std::time::Instant;

/// Delay of the first failure.
pub const BASE: Duration = Duration::from_millis(250);
/// Longest delay of one failure.
pub const MAX: Duration = Duration::from_secs(5);
/// A quiet period that forgets past failures.
pub const QUIET: Duration = Duration::from_secs(60);
/// Longest queue of pending failure answers before requests are refused unchecked.
pub const QUEUE_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Recent failures, for the exponent.
    recent: u32,
    last_failure: Option<Instant>,
    /// When the last queued failure is answered.
    busy_until: Option<Instant>,
    /// Every failure since the server started, for `/metrics`.
    total: u64,
    /// Requests refused unchecked because the queue was full.
    refused: u64,
}

impl Throttle {
    /// Before checking a credential: `Err(retry after)` when the queue is full.
    pub fn admit(&self) -> Result<(), Duration> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Result<(), Duration> {
        let mut s = self.lock();
        match s.busy_until {
            Some(until) if until > now + QUEUE_MAX => {
                s.refused += 1;
                Err(until - now - QUEUE_MAX)
            }
            _ => Ok(()),
        }
    }

    /// Records a failure; returns how long to wait before answering it.
    pub fn failure(&self) -> Duration {
        self.failure_at(Instant::now())
    }

    fn failure_at(&self, now: Instant) -> Duration {
        let mut s = self.lock();
        if s.last_failure.is_some_and(|t| now.duration_since(t) > QUIET) {
            s.recent = 0;
        }
        let delay = BASE.saturating_mul(1u32 << s.recent.min(16)).min(MAX);
        s.recent = s.recent.saturating_add(1);
        s.last_failure = Some(now);
        s.total += 1;
        let start = s.busy_until.filter(|t| *t > now).unwrap_or(now);
        let until = start + delay;
        s.busy_until = Some(until);
        until - now
    }

    /// A credential of this kind was right: forget recent failures (queued answers still wait).
    pub fn success(&self) {
        self.lock().recent = 0;
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

    #[test]
    fn delays_double_queue_and_reset() {
        let t = Throttle::default();
        let mut now = Instant::now();
        assert_eq!(t.failure_at(now), BASE);
        now += BASE;
        assert_eq!(t.failure_at(now), BASE * 2);
        now += BASE * 2;
        // Two at once: the second waits for the first.
        assert_eq!(t.failure_at(now), BASE * 4);
        assert_eq!(t.failure_at(now), BASE * 4 + BASE * 8);
        now += BASE * 12;
        assert_eq!(t.failure_at(now), BASE * 16);
        assert_eq!(t.failure_at(now), BASE * 16 + MAX, "capped");
        t.success();
        now += BASE * 16 + MAX;
        assert_eq!(t.failure_at(now), BASE);
        now += QUIET + Duration::from_secs(1);
        assert_eq!(t.failure_at(now), BASE, "a quiet period forgets");
        assert_eq!(t.totals(), (8, 0));
    }

    #[test]
    fn a_full_queue_refuses_unchecked() {
        let t = Throttle::default();
        let now = Instant::now();
        assert!(t.admit_at(now).is_ok());
        for _ in 0..12 {
            t.failure_at(now);
        }
        let retry = t.admit_at(now).unwrap_err();
        assert!(retry > Duration::ZERO);
        assert!(t.admit_at(now + retry).is_ok());
        assert_eq!(t.totals(), (12, 1));
    }
}
