//! The sending end of `/v1/mesh/stream`: the feed's lines for one peer, as NDJSON pieces.
//!
//! It opens with a snapshot, or with a resume when the peer names a state (`?epoch=E&seq=N`)
//! this run's history still covers; waits for the first announcement if there is none yet;
//! then sends each published change as soon as it is published, and a beat after [`BEAT`]
//! without anything else, so that the receiver hears liveness from the stream itself.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use hyper::body::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::feed::{Feed, Log};
use super::wire::{self, Line};

/// Longest quiet on a stream: a beat follows. Three fit in the receiver's silence limit.
pub const BEAT: Duration = Duration::from_secs(1);
/// Lines are sent in pieces of about this size (a snapshot of thousands of clients is many).
const PIECE: usize = 64 * 1024;

/// The stream for a peer whose request had `query`.
pub fn stream(feed: &Feed, query: Option<&str>) -> BoxStream<'static, Bytes> {
    let sender = Sender { rx: feed.subscribe(), held: held(query), sent: None, queue: VecDeque::new() };
    futures_util::stream::unfold(sender, |mut s| async move { s.next().await.map(|b| (b, s)) }).boxed()
}

/// The state a peer says it holds: `epoch=E&seq=N` (anything else: none, a snapshot).
pub fn held(query: Option<&str>) -> Option<(String, u64)> {
    let (mut epoch, mut seq) = (None, None);
    for pair in query?.split('&') {
        match pair.split_once('=') {
            Some(("epoch", e)) if !e.is_empty() && e.len() <= 64 && e.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                epoch = Some(e.to_string())
            }
            Some(("seq", n)) => seq = n.parse().ok(),
            _ => {}
        }
    }
    Some((epoch?, seq?))
}

/// The query that asks to resume from `(epoch, seq)`.
pub fn query(position: Option<(&str, u64)>) -> String {
    match position {
        Some((epoch, seq)) => format!("?epoch={epoch}&seq={seq}"),
        None => String::new(),
    }
}

struct Sender {
    rx: watch::Receiver<Log>,
    held: Option<(String, u64)>,
    /// The last change sent; None until the stream opened.
    sent: Option<u64>,
    queue: VecDeque<Bytes>,
}

impl Sender {
    /// The next piece to send; None when the feed is gone.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(piece) = self.queue.pop_front() {
                return Some(piece);
            }
            let lines = match self.sent {
                None => {
                    let log = self.rx.wait_for(|l| l.current.is_some()).await.ok()?;
                    let lines = log.opening(self.held.as_ref().map(|(e, n)| (e.as_str(), *n)));
                    self.sent = Some(log.seq);
                    lines
                }
                Some(sent) => {
                    let quiet = tokio::time::sleep_until(Instant::now() + BEAT);
                    tokio::select! {
                        changed = self.rx.changed() => {
                            changed.ok()?;
                            let log = self.rx.borrow_and_update();
                            let lines = log.follow(sent);
                            self.sent = Some(log.seq);
                            lines
                        }
                        _ = quiet => vec![Line::Beat { seq: sent }],
                    }
                }
            };
            self.queue.extend(pieces(&lines));
        }
    }
}

/// `lines` as NDJSON in pieces of about [`PIECE`] bytes, each ending with a whole line.
fn pieces(lines: &[Line]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut piece = Vec::new();
    for line in lines {
        piece.extend(wire::encode(std::slice::from_ref(line)));
        if piece.len() >= PIECE {
            out.push(Bytes::from(std::mem::take(&mut piece)));
        }
    }
    if !piece.is_empty() {
        out.push(Bytes::from(piece));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resume_query_round_trips_and_anything_else_asks_for_a_snapshot() {
        assert_eq!(held(Some(query(Some(("a1b2", 17))).trim_start_matches('?'))), Some(("a1b2".into(), 17)));
        for q in [None, Some(""), Some("epoch=a1"), Some("seq=3"), Some("epoch=a%20b&seq=3"), Some("epoch=a&seq=-1")] {
            assert_eq!(held(q), None, "{q:?}");
        }
        assert_eq!(query(None), "");
    }
}
