//! What differs between two locks, entry by entry: what `meshwork lock` prints, what
//! `check --locked` refuses, and the moved addresses `meshwork diff` shows.

use std::fmt;

use serde::Serialize;

use super::{Key, Lock, Section, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A new object gets an entry.
    Add,
    /// An object keeps its entry with another address, port or MAC.
    Move,
    /// An object is gone, and its address is free again.
    Remove,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub key: Key,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// Every entry that differs, in the lock's order.
pub fn changes(old: &Lock, new: &Lock) -> Vec<Change> {
    let mut out = Vec::new();
    let (mut a, mut b) = (old.entries().peekable(), new.entries().peekable());
    loop {
        let step = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
        };
        match step {
            std::cmp::Ordering::Less => {
                let Some((k, v)) = a.next() else { break };
                out.push(Change { kind: ChangeKind::Remove, key: k.clone(), old: Some(*v), new: None });
            }
            std::cmp::Ordering::Greater => {
                let Some((k, v)) = b.next() else { break };
                out.push(Change { kind: ChangeKind::Add, key: k.clone(), old: None, new: Some(*v) });
            }
            std::cmp::Ordering::Equal => {
                let (Some((k, va)), Some((_, vb))) = (a.next(), b.next()) else { break };
                if va != vb {
                    out.push(Change { kind: ChangeKind::Move, key: k.clone(), old: Some(*va), new: Some(*vb) });
                }
            }
        }
    }
    out
}

impl Key {
    /// Short, for lists: `client web-2`, `vnic tenant-a/vm-1`.
    pub fn short(&self) -> String {
        let kind = match self.section {
            Section::Clients => "client",
            Section::Engines => "engine",
            Section::RulePorts => "rule-port",
            Section::Vteps => "vtep",
            Section::AdminOverlay => "admin-overlay",
            Section::Vnics => return format!("vnic {}/{}", self.overlay, self.name),
        };
        format!("{kind} {}", self.name)
    }
}

impl Change {
    pub fn marker(&self) -> char {
        match self.kind {
            ChangeKind::Add => '+',
            ChangeKind::Move => '~',
            ChangeKind::Remove => '-',
        }
    }

    /// What changes in the value: `100.127.255.194 → 100.127.255.199`, or for a vNIC only the
    /// part that moves (`ip 10.44.0.11 → 10.44.0.12`).
    pub fn values(&self) -> String {
        match (&self.old, &self.new) {
            (Some(Value::Vnic(a)), Some(Value::Vnic(b))) => {
                let mut parts = Vec::new();
                if a.ip != b.ip {
                    parts.push(format!("ip {} → {}", a.ip, b.ip));
                }
                if a.mac != b.mac {
                    parts.push(format!("mac {} → {}", a.mac, b.mac));
                }
                parts.join(", ")
            }
            (Some(Value::Port(a)), Some(Value::Port(b))) => format!("{a} → {b}"),
            (Some(a), Some(b)) => format!("{a} → {b}"),
            (Some(Value::Port(x)), None) | (None, Some(Value::Port(x))) => x.to_string(),
            (Some(x), None) | (None, Some(x)) => x.to_string(),
            (None, None) => String::new(),
        }
    }
}

/// `~ client web-2: 100.127.255.194 → 100.127.255.199`.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.marker(), self.key.short(), self.values())
    }
}

/// As programs read it: `{"op": "move", "object": "client web-2", "old": "…", "new": "…"}`.
impl Serialize for Change {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let text = |v: &Option<Value>| {
            v.map(|v| match v {
                Value::Port(p) => p.to_string(),
                v => v.to_string(),
            })
        };
        let mut st = s.serialize_struct("Change", 6)?;
        st.serialize_field("op", &self.kind)?;
        st.serialize_field("kind", self.key.section.table())?;
        st.serialize_field("overlay", &Some(&self.key.overlay).filter(|o| !o.is_empty()))?;
        st.serialize_field("name", &self.key.name)?;
        st.serialize_field("old", &text(&self.old))?;
        st.serialize_field("new", &text(&self.new))?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Value {
        Value::Address(s.parse().unwrap())
    }

    #[test]
    fn adds_moves_and_removes_in_order() {
        let mut old = Lock::default();
        old.insert(Key::new(Section::Clients, "a"), ip("10.0.0.1"));
        old.insert(Key::new(Section::Clients, "b"), ip("10.0.0.2"));
        old.insert(Key::new(Section::Clients, "c"), ip("10.0.0.3"));
        let mut new = Lock::default();
        new.insert(Key::new(Section::Clients, "a"), ip("10.0.0.1"));
        new.insert(Key::new(Section::Clients, "b"), ip("10.0.0.9"));
        new.insert(Key::new(Section::RulePorts, "r"), Value::Port(4790));
        let lines: Vec<String> = changes(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(lines, ["~ client b: 10.0.0.2 → 10.0.0.9", "- client c: 10.0.0.3", "+ rule-port r: 4790"]);
        assert!(changes(&new, &new).is_empty());
    }
}
