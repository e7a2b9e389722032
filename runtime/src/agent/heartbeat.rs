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
//! agent's loop is busy with a pass. A controller stays a controller over reloads (the host's
//! kind is the agent's argument), so the thread lives as long as the agent.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use meshwork_compiler::emit::openvpn::CLIENT_HEARTBEAT_MS;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::{icmp, netns};

pub const INTERVAL: Duration = Duration::from_millis(CLIENT_HEARTBEAT_MS);
/// The echo identifier of heartbeats ("mw"), and what they carry: recognisable in a capture.
pub const IDENT: u16 = 0x6d77;
pub const PAYLOAD: &[u8] = b"meshwork heartbeat";

/// ICMP_FILTER (linux/icmp.h), an option of level SOL_RAW: a mask of the ICMP types a raw
/// socket is not given. libc does not name it.
const ICMP_FILTER: libc::c_int = 1;

/// The sending thread; stopped (at once, not at its next beat) when dropped.
pub struct Heartbeat {
    held: Arc<Mutex<Vec<Ipv4Addr>>>,
    /// Dropped to stop the thread: its wait for the next beat ends then.
    stop: Option<mpsc::Sender<()>>,
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
        let (stop, stopped) = mpsc::channel();
        let sent = Arc::new(AtomicU64::new(0));
        let thread = {
            let (held, sent) = (held.clone(), sent.clone());
            std::thread::Builder::new().name("heartbeat".into()).spawn(move || beat(&socket, &held, &stopped, &sent))?
        };
        Ok(Heartbeat { held, stop: Some(stop), sent, thread: Some(thread) })
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
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A raw ICMP socket that only sends. socket2 makes it close-on-exec, so the OpenVPN and nft
/// processes the agent starts do not inherit it.
fn raw_socket() -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    // A full send queue skips a beat rather than holding the others up.
    socket.set_nonblocking(true)?;
    // A raw ICMP socket is given a copy of every ICMP packet the host receives; this one never
    // reads, so it asks for none rather than keep a full buffer.
    let all_types: u32 = u32::MAX;
    // SAFETY: setsockopt(2) on a socket we own, with a pointer to a live u32 and its size.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_RAW,
            ICMP_FILTER,
            (&raw const all_types).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

fn beat(socket: &Socket, held: &Mutex<Vec<Ipv4Addr>>, stopped: &mpsc::Receiver<()>, sent: &AtomicU64) {
    let mut seq: u16 = 0;
    // Clients whose last heartbeat failed: each failure is said once, not four times a second.
    let mut failing: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut next = Instant::now();
    loop {
        seq = seq.wrapping_add(1);
        let packet = icmp::echo(icmp::ECHO_REPLY, IDENT, seq, PAYLOAD);
        let clients = held.lock().unwrap_or_else(|e| e.into_inner()).clone();
        failing.retain(|c| clients.contains(c));
        for client in clients {
            match socket.send_to(&packet, &SockAddr::from(SocketAddrV4::new(client, 0))) {
                Ok(_) => {
                    sent.fetch_add(1, Ordering::Relaxed);
                    failing.remove(&client);
                }
                // A full queue: this beat is skipped for it, and that is no news.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // A client whose route is gone (its unit stopped): the next beat tries again.
                Err(e) => {
                    if failing.insert(client) {
                        eprintln!("meshwork agent: heartbeat to {client}: {e}");
                    }
                }
            }
        }
        // On a fixed beat, not a fixed pause after the sends; after a stall (a suspended
        // machine) the beat starts again from now rather than sending the missed ones at once.
        // A dropped sender ends the wait.
        next = (next + INTERVAL).max(Instant::now());
        match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
