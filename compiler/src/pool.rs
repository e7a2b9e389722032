//! The one allocator every address (and default port) goes through: a range of numbers, each
//! handed out once, to a holder that messages can name.
//!
//! Allocation always runs in the same phases, so that the lock decides where it can and
//! declaration order decides the rest:
//!
//! 1. fixed numbers are [`take`](Pool::take)n (derived ones like a controller's, explicit ones
//!    like `ip=`); a clash there is the caller's error to report;
//! 2. locked numbers are [`keep`](Pool::keep)t when still inside the range and free; otherwise the
//!    object moves, and the caller reports a [`Relocation`] (the lock file is then out of date);
//! 3. the rest [`fill`](Pool::fill)s from a start, upward or downward, skipping everything held.
//!
//! With an empty lock, phase 2 does nothing and the result is what declaration order gave
//! before locks existed, which is what makes a topology's first lock record today's addresses.

use std::collections::BTreeMap;

use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::lock::{Key, Lock, Value};
use crate::source::Span;

/// Numbers `first..=last`, each held at most once.
#[derive(Clone, Debug)]
pub struct Pool {
    first: u32,
    last: u32,
    /// Number -> who holds it, as messages name it ("controller `east`").
    held: BTreeMap<u32, String>,
}

/// Why a locked number cannot be kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Outside the range (its subnet or pool changed).
    Outside,
    /// Held by someone else: the holder.
    Held(String),
}

impl Pool {
    pub fn new(first: u32, last: u32) -> Self {
        Self { first, last, held: BTreeMap::new() }
    }

    pub fn contains(&self, n: u32) -> bool {
        (self.first..=self.last).contains(&n)
    }

    /// Who holds `n`, if anyone.
    pub fn holder(&self, n: u32) -> Option<&str> {
        self.held.get(&n).map(String::as_str)
    }

    /// Takes `n` for `holder` whether or not it is in the range (fixed numbers are checked by
    /// their callers); returns the previous holder instead when `n` is held.
    pub fn take(&mut self, n: u32, holder: impl Into<String>) -> Result<(), String> {
        if let Some(previous) = self.held.get(&n) {
            return Err(previous.clone());
        }
        self.held.insert(n, holder.into());
        Ok(())
    }

    /// Keeps a locked number: it must be inside the range and free.
    pub fn keep(&mut self, n: u32, holder: impl Into<String>) -> Result<(), Refusal> {
        if !self.contains(n) {
            return Err(Refusal::Outside);
        }
        self.take(n, holder).map_err(Refusal::Held)
    }

    /// The first free number from `start` upward (to the end of the range), taken for `holder`.
    pub fn fill_up(&mut self, start: u32, holder: impl Into<String>) -> Option<u32> {
        let n = (start.max(self.first)..=self.last).find(|n| !self.held.contains_key(n))?;
        self.held.insert(n, holder.into());
        Some(n)
    }

    /// The first free number from `start` downward (to the start of the range), taken for `holder`.
    pub fn fill_down(&mut self, start: u32, holder: impl Into<String>) -> Option<u32> {
        if start < self.first {
            return None;
        }
        let n = (self.first..=start.min(self.last)).rev().find(|n| !self.held.contains_key(n))?;
        self.held.insert(n, holder.into());
        Some(n)
    }
}

/// An object that could not keep its locked address (or port, or MAC), found while allocating.
#[derive(Clone, Debug)]
pub struct Relocation {
    pub key: Key,
    /// The object in the topology.
    pub span: Span,
    /// What it leaves: "address 100.127.255.194", "port 4790", "MAC 02:…".
    pub locked: String,
    /// Why, e.g. "client `db-1` takes it with ip=".
    pub reason: String,
    /// It is a vNIC's MAC that moves, not its address.
    pub mac: bool,
}

impl Relocation {
    pub fn new(key: Key, span: Span, locked: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { key, span, locked: locked.into(), reason: reason.into(), mac: false }
    }

    pub fn of_mac(mut self) -> Self {
        self.mac = true;
        self
    }

    /// Why a pool refused, in words.
    pub fn reason_for(refusal: Refusal, range: &str) -> String {
        match refusal {
            Refusal::Outside => format!("it is outside {range}"),
            Refusal::Held(holder) => format!("{holder} has it"),
        }
    }

    /// The warning, saying where the object goes when it got a place (from the new lock).
    pub fn diagnostic(&self, resolved: Option<&Lock>) -> Diagnostic {
        let new = resolved.and_then(|l| l.get(&self.key)).map(|v| match v {
            Value::Address(ip) => format!("address {ip}"),
            Value::Port(p) => format!("port {p}"),
            Value::Vnic(v) if self.mac => format!("MAC {}", v.mac),
            Value::Vnic(v) => format!("address {}", v.ip),
        });
        let to = new.map_or_else(String::new, |n| format!("; it moves to {n}"));
        Diagnostic::warning(
            Code::LockRelocated,
            format!("{} cannot keep its locked {}: {}{to}", self.key, self.locked, self.reason),
            self.span,
            "moves",
        )
        .with_help("run `meshwork lock FILE` to record where it goes in the lock file, and commit it")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_skip_what_is_held_and_stop_at_the_ends() {
        let mut p = Pool::new(10, 14);
        p.take(10, "a").unwrap();
        assert_eq!(p.keep(12, "locked"), Ok(()));
        assert_eq!(p.keep(12, "again"), Err(Refusal::Held("locked".into())));
        assert_eq!(p.keep(20, "far"), Err(Refusal::Outside));
        assert_eq!(p.fill_up(0, "x"), Some(11));
        assert_eq!(p.fill_up(11, "y"), Some(13));
        assert_eq!(p.fill_down(14, "z"), Some(14));
        assert_eq!(p.fill_up(10, "none left"), None);
        assert_eq!(p.fill_down(9, "below"), None);
        assert_eq!(p.holder(12), Some("locked"));
    }
}
