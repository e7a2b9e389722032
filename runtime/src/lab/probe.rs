//! Real packets for `meshwork lab test`: responders that answer, and probes that send one flow
//! from inside a network namespace and tell whether it was answered ("reached") or not
//! ("dropped").
//!
//! Everything is created inside a named namespace through [`netns::run_in`]; a socket made there
//! stays in that namespace, so responders are served by ordinary background threads.
//!
//! Probes may run concurrently from many threads. TCP and UDP probes use their own connected
//! sockets, so the kernel hands each its own answers. ICMP probes use raw sockets, which all see
//! every ICMP packet of the namespace: each probe has its own identifier and a random payload, and
//! ignores anything that does not match both.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::str::FromStr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{icmp, netns};

/// The transport of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

impl Proto {
    /// `tcp`, `udp` or `icmp` (any case).
    pub fn parse(text: &str) -> Result<Proto, String> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "icmp" => Ok(Proto::Icmp),
            _ => Err(format!("`{text}` is not a protocol (tcp, udp or icmp)")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

impl FromStr for Proto {
    type Err = String;

    fn from_str(text: &str) -> Result<Proto, String> {
        Proto::parse(text)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<meshwork_compiler::model::Proto> for Proto {
    fn from(proto: meshwork_compiler::model::Proto) -> Proto {
        match proto {
            meshwork_compiler::model::Proto::Tcp => Proto::Tcp,
            meshwork_compiler::model::Proto::Udp => Proto::Udp,
            meshwork_compiler::model::Proto::Icmp => Proto::Icmp,
        }
    }
}

/// What became of a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The destination answered (for TCP, a refusal is an answer too).
    Reached,
    /// No answer within the wait, or an ICMP error (unreachable, prohibited) instead of one.
    Dropped,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Reached => "reached",
            Outcome::Dropped => "dropped",
        })
    }
}

/// One flow to probe: sent from network namespace `netns` (from address `source` when given,
/// else whatever the routing picks) to `destination`, on `port` for TCP and UDP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub netns: String,
    pub source: Option<Ipv4Addr>,
    pub destination: Ipv4Addr,
    pub proto: Proto,
    pub port: Option<u16>,
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} from network namespace {}", self.proto, self.netns)?;
        if let Some(source) = self.source {
            write!(f, " (source {source})")?;
        }
        write!(f, " to {}", self.destination)?;
        match (self.proto, self.port) {
            (Proto::Icmp, _) | (_, None) => Ok(()),
            (_, Some(port)) => write!(f, ":{port}"),
        }
    }
}

/// How many datagrams a UDP or ICMP probe sends, spread evenly over its wait.
const ATTEMPTS: u32 = 3;

/// Room for any reply we care about (DF probes echo up to a jumbo MTU).
const RECV_BUFFER: usize = 65536;

/// Add context to an io::Error while keeping its kind.
fn ctx(err: io::Error, what: impl fmt::Display) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

// ---------------------------------------------------------------------------------------------
// Responders

/// A listener answering probes inside a namespace: a TCP listener (accepts, then closes) or a UDP
/// echo on `0.0.0.0:port`, served by a background thread. Dropping it stops the thread and
/// closes the socket. ICMP needs none (the kernel answers echo requests), so an ICMP responder
/// holds nothing.
#[derive(Debug)]
pub struct Responder {
    proto: Proto,
    port: u16,
    /// Dropping this end wakes the serving thread (it polls the other end and sees EOF).
    stop: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// The port it listens on (the one the kernel picked, if asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A panic in the serving thread has nothing left to tell at this point.
            let _ = thread.join();
        }
    }
}

/// Starts a responder for `proto` on `port` in namespace `netns` (see [`Responder`]). When this
/// returns, the socket is bound and answering.
pub fn respond(netns: &str, proto: Proto, port: u16) -> io::Result<Responder> {
    let what = || format!("cannot start a {proto} responder on port {port} in network namespace {netns}");
    let started = match proto {
        // Nothing to serve, but a missing namespace is still the caller's mistake to hear about.
        Proto::Icmp => netns::open(netns).map(|_| None),
        Proto::Tcp => respond_tcp(netns, port).map(Some),
        Proto::Udp => respond_udp(netns, port).map(Some),
    };
    Ok(match started.map_err(|e| ctx(e, what()))? {
        Some((port, stop, thread)) => Responder { proto, port, stop: Some(stop), thread: Some(thread) },
        None => Responder { proto, port, stop: None, thread: None },
    })
}

type Serving = (u16, UnixStream, JoinHandle<()>);

fn respond_tcp(netns: &str, port: u16) -> io::Result<Serving> {
    let listener = netns::run_in(netns, || TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))??;
    // Non-blocking: poll may report a connection that is gone by the time we accept it.
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    spawn_server(format!("respond-tcp-{port}"), port, move |stopped| {
        serve(listener.as_fd(), stopped, || accept_and_close(&listener))
    })
}

fn respond_udp(netns: &str, port: u16) -> io::Result<Serving> {
    let socket = netns::run_in(netns, || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))??;
    socket.set_nonblocking(true)?;
    // Learn each datagram's destination address, to answer from it (see `echo_one`).
    set_int_option(socket.as_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
    let port = socket.local_addr()?.port();
    spawn_server(format!("respond-udp-{port}"), port, move |stopped| {
        serve(socket.as_fd(), stopped, || echo_one(&socket))
    })
}

/// Runs `server` on a new thread with the receiving end of a fresh stop channel.
fn spawn_server(name: String, port: u16, server: impl FnOnce(&UnixStream) + Send + 'static) -> io::Result<Serving> {
    let (stop, stopped) = UnixStream::pair()?;
    let thread = std::thread::Builder::new().name(name).spawn(move || server(&stopped))?;
    Ok((port, stop, thread))
}

/// Calls `answer` whenever `socket` is readable, until `stopped` is (its peer was dropped).
fn serve(socket: BorrowedFd<'_>, stopped: &UnixStream, mut answer: impl FnMut()) {
    loop {
        let mut fds = [pollfd(socket, libc::POLLIN), pollfd(stopped.as_fd(), libc::POLLIN)];
        if poll(&mut fds, None).is_err() {
            // poll(2) only fails for lack of memory or bad arguments: nothing to wait for.
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents != 0 {
            answer();
        }
    }
}

fn accept_and_close(listener: &TcpListener) {
    match listener.accept() {
        // The handshake is the answer; closing right away is all a probe needs.
        Ok((stream, _)) => drop(stream),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        // Out of descriptors and the like: back off instead of spinning on a readable listener.
        Err(_) => std::thread::sleep(Duration::from_millis(10)),
    }
}

/// Echoes one datagram back to its sender, from the address it was sent to: a socket bound to
/// 0.0.0.0 would otherwise answer from the route's preferred source, and a probe to a secondary
/// address (whose socket is connected to it) would never see that answer.
fn echo_one(socket: &UdpSocket) {
    let mut buf = [0u8; RECV_BUFFER];
    let Ok((len, peer, local)) = recv_with_destination(socket.as_fd(), &mut buf) else { return };
    let payload = &buf[..len];
    // A failed answer (the sender is gone, no route back) must not stop the responder.
    let _ = match local.filter(|a| !a.is_multicast() && !a.is_broadcast()) {
        Some(local) => send_from(socket.as_fd(), payload, peer, local),
        None => socket.send_to(payload, peer).map(drop),
    };
}

// ---------------------------------------------------------------------------------------------
// Probes

/// Sends `flow` and waits up to `wait` for an answer.
///
/// - TCP: connects (from `source`, any port): connected or refused (a RST: the host answered) is
///   [`Outcome::Reached`]; no answer within `wait` or an ICMP error is [`Outcome::Dropped`].
/// - UDP: sends a random nonce (3 times, spread over `wait`); reached when the same nonce
///   comes back from `destination:port`.
/// - ICMP: echo requests over a raw socket (bound to `source` when given); reached on a matching
///   echo reply (this probe's identifier, one of its sequence numbers, its payload, from
///   `destination`).
///
/// For UDP and ICMP, an ICMP error (port/host unreachable, administratively prohibited) or a
/// local refusal to send (no route, a local firewall) is [`Outcome::Dropped`] right away.
/// An error means a local failure only: no such namespace, a `source` that is not local, no
/// port for TCP/UDP, cannot create a socket.
pub fn probe(flow: &Flow, wait: Duration) -> io::Result<Outcome> {
    let port = match (flow.proto, flow.port) {
        (Proto::Icmp, _) => 0,
        (_, Some(port)) => port,
        (proto, None) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot probe {flow}: a {proto} flow needs a port"),
            ));
        }
    };
    let to = SocketAddrV4::new(flow.destination, port);
    netns::run_in(&flow.netns, || match flow.proto {
        Proto::Tcp => probe_tcp(flow.source, to, wait),
        Proto::Udp => probe_udp(flow.source, to, wait),
        Proto::Icmp => probe_icmp(flow.source, flow.destination, wait),
    })
    .and_then(|result| result)
    .map_err(|e| ctx(e, format_args!("cannot probe {flow}")))
}

fn probe_tcp(source: Option<Ipv4Addr>, to: SocketAddrV4, wait: Duration) -> io::Result<Outcome> {
    let socket = socket(libc::SOCK_STREAM, 0)?;
    if let Some(source) = source {
        bind(socket.as_fd(), source)?;
    }
    match connect(socket.as_fd(), to) {
        Ok(()) => return Ok(Outcome::Reached),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return tcp_verdict(e),
    }
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Outcome::Dropped);
        }
        let mut fds = [pollfd(socket.as_fd(), libc::POLLOUT)];
        poll(&mut fds, Some(left))?;
        if fds[0].revents != 0 {
            return match socket_error(socket.as_fd())? {
                None => Ok(Outcome::Reached),
                Some(e) => tcp_verdict(e),
            };
        }
    }
}

/// A failed connect: refused means the host answered; a network failure means dropped.
fn tcp_verdict(err: io::Error) -> io::Result<Outcome> {
    if err.raw_os_error() == Some(libc::ECONNREFUSED) { Ok(Outcome::Reached) } else { verdict_of_error(err) }
}

fn probe_udp(source: Option<Ipv4Addr>, to: SocketAddrV4, wait: Duration) -> io::Result<Outcome> {
    let socket = UdpSocket::bind((source.unwrap_or(Ipv4Addr::UNSPECIFIED), 0))
        .map_err(|e| ctx(e, format_args!("cannot bind to source {}", source.unwrap_or(Ipv4Addr::UNSPECIFIED))))?;
    socket.set_nonblocking(true)?;
    // Connected: the kernel passes on only datagrams from `to`, and reports ICMP errors for it.
    if let Err(e) = socket.connect(to) {
        return verdict_of_error(e);
    }
    let mut payload = b"meshwork probe ".to_vec();
    payload.extend_from_slice(&nonce()?);
    with_retries(
        wait,
        socket.as_fd(),
        |_| socket.send(&payload).map(drop),
        |datagram| (datagram == payload.as_slice()).then_some(Outcome::Reached),
    )
}

/// IPv4 header (no options) and ICMP echo header.
const IP_ICMP_HEADERS: usize = 20 + 8;

/// What became of a DF echo request of a given size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DfOutcome {
    /// Answered: the packet crossed whole, both ways.
    Crossed,
    /// No answer, or an ICMP error (such as "fragmentation needed") on the way.
    Lost,
    /// The sender's own stack refused to send it (larger than its route's MTU: EMSGSIZE).
    Refused,
}

/// Sends ICMP echo requests of exactly `packet_len` bytes (IPv4 header included) with DF set
/// from namespace `netns` to `destination` (`attempts` of them, spread over `wait`): crossed
/// when one is answered.
pub fn probe_df(
    netns: &str,
    source: Option<Ipv4Addr>,
    destination: Ipv4Addr,
    packet_len: usize,
    wait: Duration,
) -> io::Result<DfOutcome> {
    let what = || format!("cannot send a DF probe of {packet_len} bytes from {netns} to {destination}");
    // The errno is checked before any context is added (a new io::Error keeps only the kind).
    match netns::run_in(netns, || probe_icmp_sized(source, destination, wait, Some(packet_len))) {
        Ok(Ok(Outcome::Reached)) => Ok(DfOutcome::Crossed),
        Ok(Ok(Outcome::Dropped)) => Ok(DfOutcome::Lost),
        Ok(Err(e)) if e.raw_os_error() == Some(libc::EMSGSIZE) => Ok(DfOutcome::Refused),
        Ok(Err(e)) | Err(e) => Err(ctx(e, what())),
    }
}

fn probe_icmp(source: Option<Ipv4Addr>, destination: Ipv4Addr, wait: Duration) -> io::Result<Outcome> {
    probe_icmp_sized(source, destination, wait, None)
}

/// An ICMP probe; with `df_len`, every request is exactly that long (IPv4 header included) and
/// may not be fragmented (EMSGSIZE comes back as an error, with its errno).
fn probe_icmp_sized(
    source: Option<Ipv4Addr>,
    destination: Ipv4Addr,
    wait: Duration,
    df_len: Option<usize>,
) -> io::Result<Outcome> {
    let socket = socket(libc::SOCK_RAW, libc::IPPROTO_ICMP)?;
    if let Some(source) = source {
        bind(socket.as_fd(), source)?;
    }
    let ident = icmp_identifier();
    let mut nonce = nonce()?.to_vec();
    if let Some(len) = df_len {
        set_int_option(socket.as_fd(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DO)?;
        let payload = len.checked_sub(IP_ICMP_HEADERS).filter(|p| *p >= nonce.len()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a DF probe needs at least {} bytes", IP_ICMP_HEADERS + 16),
            )
        })?;
        nonce.resize(payload, 0x5a);
    }
    let to = SocketAddrV4::new(destination, 0);
    // The sequence number of the last request sent: a late reply to an earlier one counts too.
    let sent = std::cell::Cell::new(0u16);
    with_retries(
        wait,
        socket.as_fd(),
        |attempt| {
            sent.set(attempt as u16);
            send_to(socket.as_fd(), &echo_request(ident, sent.get(), &nonce), to)
        },
        |packet| icmp_verdict(packet, destination, ident, sent.get(), &nonce),
    )
}

/// The identifier of a new ICMP probe: distinct for every probe of this process (up to 65 536
/// at once), offset by the pid so that two processes are unlikely to start on the same one.
fn icmp_identifier() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    (std::process::id() as u16).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Sends up to [`ATTEMPTS`] times, evenly spread over `wait`, and hands every datagram received
/// on `fd` to `check` until it gives a verdict. Dropped if nothing does within `wait`.
fn with_retries(
    wait: Duration,
    fd: BorrowedFd<'_>,
    mut send: impl FnMut(u32) -> io::Result<()>,
    mut check: impl FnMut(&[u8]) -> Option<Outcome>,
) -> io::Result<Outcome> {
    let start = Instant::now();
    let mut buf = [0u8; RECV_BUFFER];
    for attempt in 1..=ATTEMPTS {
        if let Err(e) = send(attempt) {
            return verdict_of_error(e);
        }
        let until = start + wait * attempt / ATTEMPTS;
        if let Some(outcome) = receive_until(fd, until, &mut buf, &mut check)? {
            return Ok(outcome);
        }
    }
    Ok(Outcome::Dropped)
}

/// Receives datagrams on the non-blocking `fd` until `until`; the first verdict of `check` wins.
/// A pending network error (an ICMP error the kernel matched to the socket) is Dropped.
fn receive_until(
    fd: BorrowedFd<'_>,
    until: Instant,
    buf: &mut [u8],
    check: &mut impl FnMut(&[u8]) -> Option<Outcome>,
) -> io::Result<Option<Outcome>> {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let mut fds = [pollfd(fd, libc::POLLIN)];
        poll(&mut fds, Some(left))?;
        if fds[0].revents == 0 {
            continue;
        }
        match recv(fd, buf) {
            Ok(len) => {
                if let Some(outcome) = check(&buf[..len]) {
                    return Ok(Some(outcome));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return verdict_of_error(e).map(Some),
        }
    }
}

/// Errors that are the network's answer ("no"), not a local failure.
fn verdict_of_error(err: io::Error) -> io::Result<Outcome> {
    const NETWORK: &[i32] = &[
        libc::ECONNREFUSED,
        libc::ECONNRESET,
        libc::EHOSTUNREACH,
        libc::EHOSTDOWN,
        libc::ENETUNREACH,
        libc::ENETDOWN,
        libc::ENOPROTOOPT, // ICMP protocol unreachable
        libc::EPROTO,
        libc::ETIMEDOUT,
        libc::EPERM, // a local firewall dropped the packet on its way out
    ];
    match err.raw_os_error() {
        Some(code) if NETWORK.contains(&code) => Ok(Outcome::Dropped),
        _ => Err(err),
    }
}

/// A random payload, so that answers to other probes (or other processes) never count.
fn nonce() -> io::Result<[u8; 16]> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| io::Error::other("cannot get random bytes"))?;
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// ICMP packets

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;

fn echo_request(ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    icmp::echo(icmp::ECHO_REQUEST, ident, seq, payload)
}

/// The verdict on an IPv4 packet a raw ICMP socket received, for the probe that sent echo
/// requests `ident`/1..=`last_seq` with `payload` to `destination`: Reached on its echo reply,
/// Dropped on an ICMP error quoting one of its requests, None for anything else.
fn icmp_verdict(packet: &[u8], destination: Ipv4Addr, ident: u16, last_seq: u16, payload: &[u8]) -> Option<Outcome> {
    let (from, icmp) = ipv4_payload(packet, libc::IPPROTO_ICMP as u8)?;
    let ours = |id: &[u8], seq: &[u8]| {
        let seq = u16::from_be_bytes([seq[0], seq[1]]);
        id == ident.to_be_bytes() && (1..=last_seq).contains(&seq)
    };
    match *icmp.first()? {
        icmp::ECHO_REPLY if icmp.len() >= 8 => {
            (from == destination && ours(&icmp[4..6], &icmp[6..8]) && &icmp[8..] == payload).then_some(Outcome::Reached)
        }
        ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM => {
            // An error quotes the offending IP header and the first 8 bytes of its payload; the
            // error itself may come from any router on the way.
            let (_, quoted) = ipv4_payload(icmp.get(8..)?, libc::IPPROTO_ICMP as u8)?;
            let inner_destination = Ipv4Addr::from(<[u8; 4]>::try_from(icmp.get(8 + 16..8 + 20)?).ok()?);
            let request = quoted.get(..8)?;
            (inner_destination == destination
                && request[0] == icmp::ECHO_REQUEST
                && ours(&request[4..6], &request[6..8]))
            .then_some(Outcome::Dropped)
        }
        _ => None,
    }
}

/// The source and payload of an IPv4 packet carrying `protocol`; None if it is not one.
fn ipv4_payload(packet: &[u8], protocol: u8) -> Option<(Ipv4Addr, &[u8])> {
    let first = *packet.first()?;
    let header = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header < 20 || packet.len() < header || packet[9] != protocol {
        return None;
    }
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    Some((source, &packet[header..]))
}

// ---------------------------------------------------------------------------------------------
// Thin socket calls (std has no bind-before-connect, raw sockets or IP_PKTINFO)

/// `-1` → the last OS error.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// A size as the kernel's `socklen_t`.
fn socklen<T>() -> libc::socklen_t {
    std::mem::size_of::<T>() as libc::socklen_t
}

/// A non-blocking, close-on-exec IPv4 socket.
fn socket(kind: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = check(unsafe { libc::socket(libc::AF_INET, kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, protocol) })
        .map_err(|e| ctx(e, "cannot create a socket"))?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: in_addr(*addr.ip()),
        sin_zero: [0; 8],
    }
}

fn in_addr(addr: Ipv4Addr) -> libc::in_addr {
    libc::in_addr { s_addr: u32::from(addr).to_be() }
}

fn from_sockaddr(addr: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)), u16::from_be(addr.sin_port))
}

/// Binds `fd` to `source` (any port): packets leave from it. Fails if it is not a local address.
fn bind(fd: BorrowedFd<'_>, source: Ipv4Addr) -> io::Result<()> {
    let addr = sockaddr(SocketAddrV4::new(source, 0));
    // SAFETY: addr is a valid sockaddr_in of the size passed.
    check(unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), socklen::<libc::sockaddr_in>()) })
        .map(drop)
        .map_err(|e| ctx(e, format_args!("cannot bind to source {source}")))
}

fn connect(fd: BorrowedFd<'_>, to: SocketAddrV4) -> io::Result<()> {
    let addr = sockaddr(to);
    // SAFETY: addr is a valid sockaddr_in of the size passed.
    check(unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr).cast(), socklen::<libc::sockaddr_in>()) }).map(drop)
}

/// The socket's pending error (`SO_ERROR`), e.g. how a non-blocking connect ended.
fn socket_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    let mut value: libc::c_int = 0;
    let mut len = socklen::<libc::c_int>();
    // SAFETY: value and len are valid for writes of the sizes passed.
    check(unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ERROR, (&raw mut value).cast(), &mut len)
    })?;
    Ok((value != 0).then(|| io::Error::from_raw_os_error(value)))
}

fn set_int_option(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a c_int of the size passed.
    check(unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (&raw const value).cast(), socklen::<libc::c_int>()) })
        .map(drop)
}

fn send_to(fd: BorrowedFd<'_>, buf: &[u8], to: SocketAddrV4) -> io::Result<()> {
    let addr = sockaddr(to);
    // SAFETY: buf and addr are valid for the lengths passed.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            0,
            (&raw const addr).cast(),
            socklen::<libc::sockaddr_in>(),
        )
    };
    if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of its length.
    let len = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    usize::try_from(len).map_err(|_| io::Error::last_os_error())
}

fn pollfd(fd: BorrowedFd<'_>, events: libc::c_short) -> libc::pollfd {
    libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 }
}

/// poll(2) for up to `timeout` (None: forever). Interrupted counts as "nothing ready": every
/// caller loops against its own deadline.
fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<()> {
    // Round up, so that a sub-millisecond remainder does not become a busy 0 ms poll.
    let ms = timeout.map_or(-1, |t| t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int);
    // SAFETY: fds is a valid, writable array of the length passed.
    match check(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) }) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            fds.iter_mut().for_each(|fd| fd.revents = 0);
            Ok(())
        }
        other => other.map(drop),
    }
}

/// Space for one `IP_PKTINFO` control message, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct PktinfoControl([u8; 64]);

/// recvmsg(2) on a socket with `IP_PKTINFO` on: the datagram's length, its sender and the local
/// address it was sent to (None if the kernel did not say).
fn recv_with_destination(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4, Option<Ipv4Addr>)> {
    // SAFETY: sockaddr_in and msghdr are plain old data; all zeroes is a valid value.
    let mut peer: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = PktinfoControl([0; 64]);
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut peer).cast();
    msg.msg_namelen = socklen::<libc::sockaddr_in>();
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&raw mut control).cast();
    msg.msg_controllen = std::mem::size_of::<PktinfoControl>() as _;
    // SAFETY: msg points at buffers that live through the call, with their true sizes.
    let len = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    let len = usize::try_from(len).map_err(|_| io::Error::last_os_error())?;
    let mut local = None;
    // SAFETY: the CMSG_* walk stays within msg_control/msg_controllen as the kernel filled them.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_PKTINFO {
                let info: libc::in_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                local = Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((len, from_sockaddr(&peer), local))
}

/// sendmsg(2) of `payload` to `to` with source address `from` (an `IP_PKTINFO` control message).
fn send_from(fd: BorrowedFd<'_>, payload: &[u8], to: SocketAddrV4, from: Ipv4Addr) -> io::Result<()> {
    let mut addr = sockaddr(to);
    let mut iov = libc::iovec { iov_base: payload.as_ptr().cast_mut().cast(), iov_len: payload.len() };
    let mut control = PktinfoControl([0; 64]);
    // SAFETY: msghdr is plain old data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut addr).cast();
    msg.msg_namelen = socklen::<libc::sockaddr_in>();
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&raw mut control).cast();
    // SAFETY: CMSG_SPACE is pure arithmetic.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::in_pktinfo>() as u32) } as _;
    let info =
        libc::in_pktinfo { ipi_ifindex: 0, ipi_spec_dst: in_addr(from), ipi_addr: in_addr(Ipv4Addr::UNSPECIFIED) };
    // SAFETY: the control buffer (64 bytes) holds one aligned in_pktinfo message (28 bytes); the
    // payload is only read by sendmsg even though iovec's pointer is mutable.
    let sent = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::IPPROTO_IP;
        (*cmsg).cmsg_type = libc::IP_PKTINFO;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::in_pktinfo>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
        libc::sendmsg(fd.as_raw_fd(), &msg, 0)
    };
    if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_parse_and_print() {
        for proto in [Proto::Tcp, Proto::Udp, Proto::Icmp] {
            assert_eq!(Proto::parse(&proto.to_string()), Ok(proto));
        }
        assert_eq!("UDP".parse::<Proto>(), Ok(Proto::Udp));
        assert!(Proto::parse("sctp").unwrap_err().contains("sctp"));
        assert_eq!(serde_json::to_string(&Proto::Icmp).unwrap(), "\"icmp\"");
        assert_eq!(serde_json::to_string(&Outcome::Dropped).unwrap(), "\"dropped\"");
    }

    fn ip(source: Ipv4Addr, destination: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        packet.extend_from_slice(&source.octets());
        packet.extend_from_slice(&destination.octets());
        packet.extend_from_slice(payload);
        packet
    }

    #[test]
    fn icmp_replies_and_errors_are_matched_to_their_probe() {
        let me = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let router = Ipv4Addr::new(10, 0, 0, 254);
        let mut reply = echo_request(7, 1, b"abc");
        reply[0] = icmp::ECHO_REPLY;
        assert_eq!(icmp_verdict(&ip(dst, me, &reply), dst, 7, 1, b"abc"), Some(Outcome::Reached));
        // Another probe's identifier, payload, sequence number or destination: not ours.
        assert_eq!(icmp_verdict(&ip(dst, me, &reply), dst, 8, 1, b"abc"), None);
        assert_eq!(icmp_verdict(&ip(dst, me, &reply), dst, 7, 1, b"abd"), None);
        assert_eq!(icmp_verdict(&ip(dst, me, &reply), dst, 7, 0, b"abc"), None);
        assert_eq!(icmp_verdict(&ip(router, me, &reply), dst, 7, 1, b"abc"), None);
        // Our own request seen on the way (a probe to a local address) is no answer.
        assert_eq!(icmp_verdict(&ip(me, dst, &echo_request(7, 1, b"abc")), dst, 7, 1, b"abc"), None);

        let quoted = ip(me, dst, &echo_request(7, 1, b"abc"));
        let mut error = vec![ICMP_DEST_UNREACH, 13, 0, 0, 0, 0, 0, 0];
        error.extend_from_slice(&quoted[..28]);
        assert_eq!(icmp_verdict(&ip(router, me, &error), dst, 7, 1, b"abc"), Some(Outcome::Dropped));
        assert_eq!(icmp_verdict(&ip(router, me, &error), dst, 9, 1, b"abc"), None);
        assert_eq!(icmp_verdict(&ip(router, me, &error[..20]), dst, 7, 1, b"abc"), None);
    }
}
