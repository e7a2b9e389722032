//! Heartbeats: a small packet through the tunnel to every client this controller holds, every
//! [`INTERVAL`]. A client's OpenVPN restarts (and fails over) when nothing came for its
//! `ping-restart`; OpenVPN's own pings come once a second at most, so a short timeout would
//! make clients on lossy links flap. Four packets a second let the timeout be short and the
//! tolerance high at once (see `CLIENT_KEEPALIVE` in the compiler for the arithmetic).
//!
//! The packet is an ICMP echo reply from the controller: OpenVPN counts it when it decrypts
//! it, and the client's kernel drops an echo reply nobody asked for without answering, so
//! nothing comes back. It is routed like any packet to the client (through the server's tun
//! device, or an engine's), so it goes exactly where the client's traffic goes.
//!
//! A plain thread, not a task: it only sleeps and sends, and it must keep its beat while the
//! agent's loop is busy with a pass.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use meshwork_compiler::emit::openvpn::CLIENT_HEARTBEAT_MS;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::{icmp, netns};

pub const INTERVAL: Duration = Duration::from_millis(CLIENT_HEARTBEAT_MS);
/// The echo identifier of heartbeats ("mw"), and what they carry: recognisable in a capture.
pub const IDENT: u16 = 0x6d77;
pub const PAYLOAD: &[u8] = b"meshwork heartbeat";

/// The sending thread; stopped when dropped.
pub struct Heartbeat {
    held: Arc<Mutex<Vec<Ipv4Addr>>>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts beating (to nobody yet: see [`Heartbeat::hold`]) from a raw ICMP socket made in
    /// `netns` (None: the caller's). Fails without the right to raw sockets (CAP_NET_RAW).
    pub fn start(netns: Option<&str>) -> io::Result<Heartbeat> {
        let socket = match netns {
            None => raw_socket()?,
            Some(ns) => netns::run_in(ns, raw_socket)??,
        };
        let held: Arc<Mutex<Vec<Ipv4Addr>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let thread = {
            let (held, stop, sent) = (held.clone(), stop.clone(), sent.clone());
            std::thread::Builder::new().name("heartbeat".into()).spawn(move || beat(&socket, &held, &stop, &sent))?
        };
        Ok(Heartbeat { held, stop, sent, thread: Some(thread) })
    }

    /// From the next beat on, the clients to send to.
    pub fn hold(&self, clients: Vec<Ipv4Addr>) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = clients;
    }

    /// Heartbeats the kernel took so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Close-on-exec, as socket2 makes every socket.
fn raw_socket() -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    // A full send queue skips a beat rather than holding the others up.
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn beat(socket: &Socket, held: &Mutex<Vec<Ipv4Addr>>, stop: &AtomicBool, sent: &AtomicU64) {
    let mut seq: u16 = 0;
    // Clients whose last heartbeat failed: each failure is said once, not four times a second.
    let mut failing: BTreeSet<Ipv4Addr> = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        seq = seq.wrapping_add(1);
        let packet = icmp::echo(icmp::ECHO_REPLY, IDENT, seq, PAYLOAD);
        let clients = held.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for client in clients {
            match socket.send_to(&packet, &SockAddr::from(SocketAddrV4::new(client, 0))) {
                Ok(_) => {
                    sent.fetch_add(1, Ordering::Relaxed);
                    failing.remove(&client);
                }
                // A client whose route is gone (its unit stopped) or a full queue: the next
                // beat tries again.
                Err(e) => {
                    if failing.insert(client) {
                        eprintln!("meshwork agent: heartbeat to {client}: {e}");
                    }
                }
            }
        }
        std::thread::sleep(INTERVAL);
    }
}
