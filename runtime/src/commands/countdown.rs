//! The countdown of `apply --try`, as `netplan try` shows one: on a terminal one line redrawn
//! in place every second; elsewhere (a log, a pipe) a line every few seconds, so a log shows
//! the countdown without a line per second.

use std::io::Write;
use std::time::Duration;

/// Off a terminal, a line every this many seconds (and the first one).
const LOG_EVERY: u64 = 5;

pub struct Countdown {
    redraw: bool,
    /// The seconds last shown, so each is drawn once.
    shown: Option<u64>,
    /// Width of the line last drawn in place, to blank what a shorter one leaves.
    width: usize,
}

impl Countdown {
    /// `redraw`: draw in place (stdout is a terminal).
    pub fn new(redraw: bool) -> Self {
        Self { redraw, shown: None, width: 0 }
    }

    /// What to print when `left` remains (None: nothing new to show).
    pub fn frame(&mut self, left: Duration) -> Option<String> {
        // Whole seconds, rounded up: "1 s" until the very end, never "0 s" while still waiting.
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        if secs == 0 || self.shown == Some(secs) {
            return None;
        }
        let first = self.shown.is_none();
        self.shown = Some(secs);
        let text = line(secs);
        if self.redraw {
            // `\r` and spaces rather than an erase sequence: TERM=dumb terminals have CR too.
            let pad = self.width.saturating_sub(text.chars().count());
            self.width = text.chars().count();
            Some(format!("\r{text}{}", " ".repeat(pad)))
        } else if first || secs.is_multiple_of(LOG_EVERY) {
            Some(format!("{text}\n"))
        } else {
            None
        }
    }

    /// What ends the countdown: the line drawn in place is finished.
    pub fn finish(&mut self) -> Option<String> {
        (self.redraw && self.shown.is_some()).then(|| "\n".to_string())
    }

    /// Prints `frame(left)`, if any.
    pub fn show(&mut self, left: Duration) {
        if let Some(text) = self.frame(left) {
            print_flushed(&text);
        }
    }

    pub fn end(&mut self) {
        if let Some(text) = self.finish() {
            print_flushed(&text);
        }
    }
}

fn print_flushed(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// The countdown's words.
pub fn line(secs: u64) -> String {
    let unit = if secs == 1 { "second" } else { "seconds" };
    format!("Rolling back in {secs} {unit} unless confirmed.")
}

/// The last line of an `apply --try` that was not confirmed.
pub fn rolled_back(had_previous: bool) -> &'static str {
    if had_previous {
        "Rolled back: the host is as the previous apply left it."
    } else {
        "Rolled back: there was no earlier apply, so everything this one made is removed."
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn on_a_terminal_one_line_is_redrawn_each_second() {
        let mut c = Countdown::new(true);
        assert_eq!(c.frame(ms(10_000)).as_deref(), Some("\rRolling back in 10 seconds unless confirmed."));
        assert_eq!(c.frame(ms(9_950)), None, "the same second again");
        // Shorter by a character: the old last character is blanked.
        assert_eq!(c.frame(ms(9_000)).as_deref(), Some("\rRolling back in 9 seconds unless confirmed. "));
        assert_eq!(c.frame(ms(400)).as_deref(), Some("\rRolling back in 1 second unless confirmed. "));
        assert_eq!(c.finish().as_deref(), Some("\n"));
    }

    #[test]
    fn off_a_terminal_a_line_every_few_seconds() {
        let mut c = Countdown::new(false);
        let shown: Vec<String> =
            (0..=120).rev().map(|tenth| ms(tenth * 100)).filter_map(|left| c.frame(left)).collect();
        assert_eq!(
            shown,
            [12, 10, 5].map(|s| format!("Rolling back in {s} seconds unless confirmed.\n")),
            "the first, then every {LOG_EVERY} s; never `0 seconds`"
        );
        assert_eq!(c.finish(), None);
        assert!(!line(0).contains('\r'));
        assert_eq!(Countdown::new(true).finish(), None, "nothing drawn, nothing to end");
    }
}
