//! Probes that prove whom they reached. Tenants may reuse addresses (two overlays, one subnet),
//! so an answer from `10.44.0.1` says nothing about *which* vNIC holds it in the sender's
//! overlay. Every responder here says its name: a TCP responder writes it on accept, a UDP
//! responder echoes the probe's nonce followed by it, and every VM and node runs a "who is there"
//! UDP responder on [`IDENT_PORT`] while `lab test` runs, so an ICMP echo can be followed by the
//! question who answered it.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::probe::{self, Flow, Outcome, Proto};
use crate::netns;

/// The UDP port of the "who is there" responders.
pub const IDENT_PORT: u16 = 50007;
/// First word of every answer.
const MAGIC: &str = "meshwork-lab";
/// How often a responder thread looks at its stop flag.
const TICK: Duration = Duration::from_millis(20);

/// A responder that says `name`, served by a thread until dropped.
pub struct Named {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Named {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts a responder for `proto` on `port` in namespace `ns` that says `name` (ICMP needs none:
/// the kernel answers echo requests; ask [`IDENT_PORT`] who it was).
pub fn respond(ns: &str, proto: Proto, port: u16, name: &str) -> io::Result<Option<Named>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let answer = format!("{MAGIC} {name}");
    let thread = match proto {
        Proto::Icmp => return Ok(None),
        Proto::Tcp => {
            let listener = netns::run_in(ns, || TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))??;
            listener.set_nonblocking(true)?;
            std::thread::Builder::new().name(format!("named-tcp-{port}")).spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.write_all(format!("{answer}\n").as_bytes());
                        }
                        Err(_) => std::thread::sleep(TICK),
                    }
                }
            })?
        }
        Proto::Udp => {
            let socket = netns::run_in(ns, || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))??;
            socket.set_read_timeout(Some(TICK))?;
            std::thread::Builder::new().name(format!("named-udp-{port}")).spawn(move || {
                let mut buf = [0u8; 512];
                while !flag.load(Ordering::Relaxed) {
                    if let Ok((len, peer)) = socket.recv_from(&mut buf) {
                        let mut reply = buf[..len].to_vec();
                        reply.push(b' ');
                        reply.extend_from_slice(answer.as_bytes());
                        let _ = socket.send_to(&reply, peer);
                    }
                }
            })?
        }
    };
    Ok(Some(Named { stop, thread: Some(thread) }))
}

/// Who answered a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A responder that said this name.
    Named(String),
    /// Something answered without a name: a TCP refusal, or an ICMP echo reply that the
    /// "who is there" question got no answer to.
    Anonymous,
    /// Nothing answered (or an ICMP error came back).
    Nobody,
}

fn name_in(text: &str) -> Option<String> {
    let rest = text.trim_end().split_once(MAGIC)?.1;
    Some(rest.trim().to_owned()).filter(|n| !n.is_empty())
}

/// Sends one flow and says who answered it.
pub fn probe(flow: &Flow, wait: Duration) -> io::Result<Answer> {
    match flow.proto {
        Proto::Tcp => tcp(flow, wait),
        Proto::Udp => udp(&flow.netns, flow.destination, flow.port.unwrap_or(IDENT_PORT), wait),
        Proto::Icmp => match probe::probe(flow, wait)? {
            Outcome::Dropped => Ok(Answer::Nobody),
            Outcome::Reached => match udp(&flow.netns, flow.destination, IDENT_PORT, wait)? {
                Answer::Nobody => Ok(Answer::Anonymous),
                named => Ok(named),
            },
        },
    }
}

fn tcp(flow: &Flow, wait: Duration) -> io::Result<Answer> {
    let to = SocketAddr::V4(SocketAddrV4::new(flow.destination, flow.port.unwrap_or(0)));
    netns::run_in(&flow.netns, move || {
        let mut stream = match TcpStream::connect_timeout(&to, wait) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(Answer::Anonymous),
            Err(_) => return Ok(Answer::Nobody),
        };
        stream.set_read_timeout(Some(wait))?;
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        Ok(name_in(&text).map_or(Answer::Anonymous, Answer::Named))
    })?
}

fn udp(ns: &str, destination: Ipv4Addr, port: u16, wait: Duration) -> io::Result<Answer> {
    let nonce = format!("{MAGIC}-probe {:016x}", nonce());
    netns::run_in(ns, move || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        if socket.connect((destination, port)).is_err() {
            return Ok(Answer::Nobody);
        }
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 512];
        for attempt in 1..=3u32 {
            if socket.send(nonce.as_bytes()).is_err() {
                return Ok(Answer::Nobody);
            }
            let until = deadline - wait * (3 - attempt) / 3;
            loop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                socket.set_read_timeout(Some(left))?;
                match socket.recv(&mut buf) {
                    Ok(len) => {
                        let text = String::from_utf8_lossy(&buf[..len]);
                        if let Some(rest) = text.strip_prefix(nonce.as_str())
                            && let Some(name) = name_in(rest)
                        {
                            return Ok(Answer::Named(name));
                        }
                    }
                    // ICMP port unreachable and the like: nobody (with a responder) there.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(Answer::Nobody),
                    Err(_) => break,
                }
            }
        }
        Ok(Answer::Nobody)
    })?
}

/// A number that differs between probes (clock and a counter; it only has to tell answers apart).
fn nonce() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    now ^ (NEXT.fetch_add(1, Ordering::Relaxed) << 48) ^ u64::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_from_answers() {
        assert_eq!(name_in("meshwork-lab a-db\n"), Some("a-db".into()));
        assert_eq!(name_in(" meshwork-lab cn-3"), Some("cn-3".into()));
        assert_eq!(name_in("meshwork-lab "), None);
        assert_eq!(name_in("hello"), None);
        assert_ne!(nonce(), nonce());
    }
}
