//! The lines of `/v1/mesh/stream` (NDJSON: one JSON object per line, `"t"` naming its kind)
//! and the changes they carry, with the two pure functions both ends rely on: [`diff`] (what
//! changed between two announcements) and [`apply`] (one change to an announcement).
//!
//! Every change has its own sequence number, one more than the change before, so a receiver
//! sees a lost or reordered line as a gap. A client line inside a snapshot carries the
//! snapshot's number instead: a snapshot is one state, not a series of changes.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{Announcement, Held};

/// The longest line a receiver accepts: a client or a beat takes about 100 bytes; a snapshot's
/// opening line or a `meta` line grows with the LANs (a few thousand fit).
pub const MAX_LINE: usize = 256 * 1024;

/// One line of the stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Line {
    /// Opens a full state at `seq`: exactly `clients` client lines (with this `seq`) follow, and
    /// together they replace everything heard before. `epoch` names the sender's run: it
    /// changes when the sender restarts, and numbering restarts with it.
    Snapshot {
        epoch: String,
        seq: u64,
        controller: String,
        #[serde(flatten)]
        meta: Meta,
        clients: usize,
    },
    /// On a reconnect: the state the receiver holds, (`epoch`, `seq`), is still current up to
    /// the changes that follow.
    Resume { epoch: String, seq: u64 },
    /// A client added or moved (or, inside a snapshot, one of its clients).
    Client {
        seq: u64,
        name: String,
        #[serde(flatten)]
        held: Held,
    },
    /// A client the sender no longer holds.
    Gone { seq: u64, name: String },
    /// The sender's topology, checksum, CA or LANs changed.
    Meta {
        seq: u64,
        #[serde(flatten)]
        meta: Meta,
    },
    /// Nothing new: the sender is alive and its last change is `seq`.
    Beat { seq: u64 },
}

/// What an announcement says besides its clients (and the controller, fixed per sender).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub topology: String,
    pub checksum: String,
    pub ca: String,
    pub lans: Vec<Ipv4Net>,
}

impl Meta {
    pub fn of(a: &Announcement) -> Meta {
        Meta { topology: a.topology.clone(), checksum: a.checksum.clone(), ca: a.ca.clone(), lans: a.lans.clone() }
    }
}

/// One change to an announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Client { name: String, held: Held },
    Gone { name: String },
    Meta(Meta),
}

impl Change {
    /// The line that carries this change as number `seq`.
    pub fn line(&self, seq: u64) -> Line {
        match self {
            Change::Client { name, held } => Line::Client { seq, name: name.clone(), held: held.clone() },
            Change::Gone { name } => Line::Gone { seq, name: name.clone() },
            Change::Meta(meta) => Line::Meta { seq, meta: meta.clone() },
        }
    }
}

/// The changes that turn `old` into `new` (of the same controller): the meta first, then
/// clients added or changed, then clients gone, each in name order.
pub fn diff(old: &Announcement, new: &Announcement) -> Vec<Change> {
    let mut out = Vec::new();
    let meta = Meta::of(new);
    if Meta::of(old) != meta {
        out.push(Change::Meta(meta));
    }
    for (name, held) in &new.clients {
        if old.clients.get(name) != Some(held) {
            out.push(Change::Client { name: name.clone(), held: held.clone() });
        }
    }
    for name in old.clients.keys().filter(|n| !new.clients.contains_key(*n)) {
        out.push(Change::Gone { name: name.clone() });
    }
    out
}

/// `a` with `change` made. Removing a client that is not there changes nothing.
pub fn apply(a: &mut Announcement, change: &Change) {
    match change {
        Change::Client { name, held } => {
            a.clients.insert(name.clone(), held.clone());
        }
        Change::Gone { name } => {
            a.clients.remove(name);
        }
        Change::Meta(m) => {
            a.topology = m.topology.clone();
            a.checksum = m.checksum.clone();
            a.ca = m.ca.clone();
            a.lans = m.lans.clone();
        }
    }
}

/// The lines of a snapshot of `a` at `seq`.
pub fn snapshot(epoch: &str, seq: u64, a: &Announcement) -> Vec<Line> {
    let mut out = Vec::with_capacity(a.clients.len() + 1);
    out.push(Line::Snapshot {
        epoch: epoch.to_string(),
        seq,
        controller: a.controller.clone(),
        meta: Meta::of(a),
        clients: a.clients.len(),
    });
    out.extend(a.clients.iter().map(|(name, held)| Line::Client { seq, name: name.clone(), held: held.clone() }));
    out
}

/// `lines` as NDJSON.
pub fn encode(lines: &[Line]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        // Serialising these types cannot fail (string keys, no maps with other keys).
        if serde_json::to_writer(&mut out, line).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// One received line (without its newline).
pub fn decode(bytes: &[u8]) -> Result<Line, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not a line of the mesh stream: {e}"))
}

/// An announcement with no clients, as a snapshot's opening line describes it.
pub fn empty(controller: &str, meta: Meta) -> Announcement {
    Announcement {
        controller: controller.to_string(),
        topology: meta.topology,
        checksum: meta.checksum,
        ca: meta.ca,
        lans: meta.lans,
        clients: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn held(last: u8, since: u64) -> Held {
        Held { address: Ipv4Addr::new(100, 127, 0, last), unit: "server".into(), since }
    }

    fn announcement(clients: &[(&str, u8, u64)]) -> Announcement {
        Announcement {
            controller: "east".into(),
            topology: "t".into(),
            checksum: "abc".into(),
            ca: "ca".into(),
            lans: vec!["10.10.0.0/16".parse().unwrap()],
            clients: clients.iter().map(|(n, last, since)| (n.to_string(), held(*last, *since))).collect(),
        }
    }

    #[test]
    fn applying_the_diff_gives_the_new_announcement() {
        let old = announcement(&[("a", 1, 10), ("b", 2, 10), ("c", 3, 10)]);
        let mut new = announcement(&[("a", 1, 10), ("b", 2, 11), ("d", 4, 12)]);
        new.checksum = "def".into();
        let changes = diff(&old, &new);
        assert_eq!(
            changes,
            vec![
                Change::Meta(Meta::of(&new)),
                Change::Client { name: "b".into(), held: held(2, 11) },
                Change::Client { name: "d".into(), held: held(4, 12) },
                Change::Gone { name: "c".into() },
            ]
        );
        let mut applied = old.clone();
        for c in &changes {
            apply(&mut applied, c);
        }
        assert_eq!(applied, new);
        assert!(diff(&new, &new).is_empty(), "no change, no line");
    }

    #[test]
    fn lines_round_trip_as_one_json_object_each() {
        let a = announcement(&[("a", 1, 10), ("b", 2, 11)]);
        let mut lines = snapshot("e1", 7, &a);
        lines.push(Line::Gone { seq: 8, name: "a".into() });
        lines.push(Line::Beat { seq: 8 });
        lines.push(Line::Resume { epoch: "e1".into(), seq: 8 });
        lines.push(Change::Meta(Meta::of(&a)).line(9));
        let bytes = encode(&lines);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.lines().count(), lines.len());
        assert!(text.starts_with("{\"t\":\"snapshot\",\"epoch\":\"e1\",\"seq\":7,\"controller\":\"east\""), "{text}");
        assert!(text.contains("{\"t\":\"client\",\"seq\":7,\"name\":\"a\",\"address\":\"100.127.0.1\""), "{text}");
        let back: Vec<Line> =
            bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| decode(l).unwrap()).collect();
        assert_eq!(back, lines);
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"{",
            b"null",
            b"{\"t\":\"nope\"}",
            b"{\"t\":\"beat\"}",
            b"{\"t\":\"beat\",\"seq\":-1}",
            b"{\"t\":\"client\",\"seq\":1,\"name\":\"x\",\"address\":\"300.1.1.1\",\"unit\":\"s\",\"since\":1}",
            b"\xff\xfe",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
