//! When `status.json` is written. After every pass, as always; and after a peer's news (routes
//! that changed without a pass) at most once per [`SPACING`], so local tools (`meshwork lab
//! status`, the failover wait) see a client's move within a fraction of a second, while a
//! burst of moves does not rewrite the file hundreds of times a second. News that changes only
//! how peers are heard (a beat, a peer going silent) is left to the next pass, at most a second
//! away, as before.

use std::time::{Duration, Instant};

/// The shortest time between two writes caused by news.
pub const SPACING: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
pub struct Pacer {
    last: Option<Instant>,
    due: Option<Instant>,
}

impl Pacer {
    /// The file was written at `now`: nothing is owed.
    pub fn written(&mut self, now: Instant) {
        self.last = Some(now);
        self.due = None;
    }

    /// Something the file shows changed at `now`. True: write it now. False: a write is owed
    /// at [`Pacer::due`].
    pub fn changed(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now < last + SPACING => {
                self.due.get_or_insert(last + SPACING);
                false
            }
            _ => true,
        }
    }

    /// When an owed write is due, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn news_is_written_at_once_then_at_most_once_per_spacing() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        assert!(p.changed(t0), "the first news is written at once");
        p.written(t0);
        let soon = t0 + SPACING / 5;
        assert!(!p.changed(soon), "news right after a write waits");
        assert!(!p.changed(soon + SPACING / 5));
        assert_eq!(p.due(), Some(t0 + SPACING), "one write owed, at the end of the spacing");
        p.written(t0 + SPACING);
        assert_eq!(p.due(), None, "a write pays what was owed");
        assert!(p.changed(t0 + SPACING * 3), "news after a quiet spell is written at once");
    }
}
