//! Issue 14, item 2: `/v1/mesh/stream` over real TLS on loopback. A peer certificate gets a
//! snapshot, then a numbered delta as soon as the announcement changes, and beats; a client's
//! certificate is refused; a reconnect resumes without a snapshot; a TLS reload ends the
//! stream; and the agent's exchange (the real follower) hears the changes, wakes on them, and
//! notices the silence when the server stops.
//!
//! The exchange test needs the mesh port on a loopback address of its own
//! (127.77.x.y:1194, from the test's pid), since the exchange dials peers on that port.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::BoxStream;
use hyper::body::Bytes;
use meshwork::agent::mesh::exchange::{self, Exchange};
use meshwork::agent::mesh::feed::Feed;
use meshwork::agent::mesh::mirror::Mirror;
use meshwork::agent::mesh::wire::{self, Line};
use meshwork::agent::mesh::{Announcement, Hearing, Held, Targets, serve};
use meshwork::api::client::{self, ClientAuth, Streamed};
use meshwork::api::server::{self, ApiConfig, ApiSource, MESH_STREAM_PATH};
use meshwork::api::server_tls::ServerTls;
use meshwork::keys::Keyset;
use meshwork_compiler::source::SourceFile;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const TOPOLOGY: &str = r#"
topology "stream-test"
overlay "100.127.255.192/26"
controller "east" id=1 { address "192.0.2.10"; }
controller "west" id=2 { address "192.0.2.20"; }
client "web-1"
client "web-2"
"#;

/// A hang guard only: every wait below ends much sooner unless something is broken.
const GUARD: Duration = Duration::from_secs(20);

/// A peer's API as these tests need it: what `/v1/mesh` answers and what a stream carries
/// (None: the route is not served, as by an agent without it).
type MeshAnswer = Box<dyn Fn() -> Option<serde_json::Value> + Send + Sync>;
type StreamAnswer = Box<dyn Fn(Option<&str>) -> Option<BoxStream<'static, Bytes>> + Send + Sync>;

struct Peer {
    mesh: MeshAnswer,
    stream: StreamAnswer,
}

impl Peer {
    /// An agent of this version: both answers from its feed.
    fn of_feed(feed: &Feed) -> Peer {
        let (current, streamed) = (feed.clone(), feed.clone());
        Peer {
            mesh: Box::new(move || current.current().and_then(|a| serde_json::to_value(&*a).ok())),
            stream: Box::new(move |query| Some(serve::stream(&streamed, query))),
        }
    }
}

impl ApiSource for Peer {
    fn status(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    fn metrics(&self) -> String {
        String::new()
    }
    fn keyset_bundle(&self, _: &[u8]) -> Result<Vec<u8>, String> {
        Err("not here".into())
    }
    fn mesh(&self) -> Option<serde_json::Value> {
        (self.mesh)()
    }
    fn mesh_stream(&self, query: Option<&str>) -> Option<BoxStream<'static, Bytes>> {
        (self.stream)(query)
    }
}

fn announcement(clients: &[(&str, u8, u64)]) -> Announcement {
    Announcement {
        controller: "east".into(),
        topology: "stream-test".into(),
        checksum: "abc".into(),
        ca: "ca".into(),
        lans: vec![],
        clients: clients
            .iter()
            .map(|(n, last, since)| {
                let held = Held { address: Ipv4Addr::new(100, 127, 255, *last), unit: "server".into(), since: *since };
                (n.to_string(), held)
            })
            .collect(),
    }
}

/// East's API with a feed, on `addr`, and west's peering identity.
struct Harness {
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
    url: String,
    feed: Feed,
    tls: ServerTls,
    config: ApiConfig,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Harness {
    fn start(test: &str, addr: SocketAddr) -> Harness {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("mws-stream-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let analysis = meshwork_compiler::analyze(SourceFile::new("t.kdl", TOPOLOGY.to_string()));
        let net = analysis.network.expect("the topology compiles");
        Keyset::init(&dir.join("state"), &net, OffsetDateTime::now_utc()).unwrap();
        Keyset::init(&dir.join("foreign"), &net, OffsetDateTime::now_utc()).unwrap();
        let ks = Keyset::open(&dir.join("state")).unwrap();
        let config = ApiConfig {
            ca_pem: ks.ca_pem().unwrap(),
            cert_pem: ks.cert_pem("east").unwrap(),
            key_pem: ks.key_pem("east").unwrap(),
            crl_pem: Some(ks.crl_pem().unwrap()),
            read_token: None,
            join_token: None,
        };
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let feed = Feed::default();
        let tls = ServerTls::new(&config).unwrap();
        let listener = rt.block_on(TcpListener::bind(addr)).unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let source = Arc::new(Peer::of_feed(&feed));
        let done = rt.spawn(server::serve_with(listener, tls.clone(), config.clone(), source, async move {
            let _ = stopped.await;
        }));
        Harness { dir, rt, url, feed, tls, config, stop: Some(stop), done: Some(done) }
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn auth(&self, store: &str, cn: &str) -> ClientAuth {
        let ks = Keyset::open(&self.dir.join("state")).unwrap();
        let other = Keyset::open(&self.dir.join(store)).unwrap();
        ClientAuth::Certificate {
            ca_pem: ks.ca_pem().unwrap(),
            cert_pem: other.cert_pem(cn).unwrap(),
            key_pem: other.key_pem(cn).unwrap(),
        }
    }

    fn west(&self) -> ClientAuth {
        self.auth("state", "peer-west")
    }

    fn open(&self, query: &str) -> Streamed {
        let path = format!("{MESH_STREAM_PATH}{query}");
        match self.block_on(client::get_stream(&self.url, &path, &self.west(), GUARD)) {
            Ok(Ok(s)) => s,
            Ok(Err((status, message))) => panic!("{status}: {message}"),
            Err(e) => panic!("{e}"),
        }
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            self.block_on(done).unwrap().unwrap();
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads lines into `mirror` until `until` holds for the lines read so far; returns them.
fn read_until(h: &Harness, s: &mut Streamed, mirror: &mut Mirror, until: impl Fn(&[Line]) -> bool) -> Vec<Line> {
    let mut splitter = meshwork::api::lines::Lines::new(wire::MAX_LINE);
    let mut seen = Vec::new();
    h.block_on(async {
        while !until(&seen) {
            let piece = tokio::time::timeout(GUARD, s.next()).await.expect("a line within the guard").unwrap();
            let piece = piece.expect("the stream goes on");
            for raw in splitter.push(&piece).unwrap() {
                let line = wire::decode(&raw).unwrap();
                mirror.take(line.clone()).expect("a well-formed stream");
                seen.push(line);
            }
        }
    });
    seen
}

#[test]
fn a_peer_gets_a_snapshot_then_deltas_then_beats_and_resumes_without_a_snapshot() {
    let h = Harness::start("deltas", "127.0.0.1:0".parse().unwrap());
    h.feed.publish(announcement(&[("web-1", 1, 10), ("web-2", 2, 10)]));
    let mut stream = h.open("");
    let mut mirror = Mirror::new("east");
    let opening = read_until(&h, &mut stream, &mut mirror, |l| l.len() == 3);
    assert!(matches!(opening[0], Line::Snapshot { clients: 2, .. }), "{opening:?}");
    assert_eq!(mirror.current(), h.feed.current().as_deref());

    // web-2 leaves, web-1 reconnects: two numbered deltas, no snapshot.
    let before = mirror.position().unwrap().1;
    h.feed.publish(announcement(&[("web-1", 1, 11)]));
    let deltas =
        read_until(&h, &mut stream, &mut mirror, |l| l.iter().filter(|l| !matches!(l, Line::Beat { .. })).count() == 2);
    let changes: Vec<_> = deltas.into_iter().filter(|l| !matches!(l, Line::Beat { .. })).collect();
    assert!(
        matches!(&changes[0], Line::Client { seq, name, .. } if *seq == before + 1 && name == "web-1"),
        "{changes:?}"
    );
    assert!(matches!(&changes[1], Line::Gone { seq, name } if *seq == before + 2 && name == "web-2"), "{changes:?}");
    assert_eq!(mirror.current(), h.feed.current().as_deref(), "the receiver holds what the sender announces");

    // Nothing changes: a beat naming the last change.
    let beat = read_until(&h, &mut stream, &mut mirror, |l| !l.is_empty());
    assert_eq!(beat, [Line::Beat { seq: before + 2 }]);

    // A reconnect that names its state gets a resume, then what it missed meanwhile.
    drop(stream);
    h.feed.publish(announcement(&[("web-1", 1, 11), ("web-2", 3, 12)]));
    let mut again = h.open(&serve::query(mirror.position()));
    let resumed = read_until(&h, &mut again, &mut mirror, |l| l.len() == 2);
    assert_eq!(resumed[0], Line::Resume { epoch: mirror.position().unwrap().0.to_string(), seq: before + 2 });
    assert!(matches!(&resumed[1], Line::Client { name, .. } if name == "web-2"));
    assert_eq!(mirror.current(), h.feed.current().as_deref());

    // A reload of the TLS configuration (a revocation, say) ends the stream.
    h.tls.reload(&h.config).unwrap();
    let ended = h.block_on(async {
        loop {
            match tokio::time::timeout(GUARD, again.next()).await.expect("the stream ends within the guard") {
                Ok(Some(_)) => continue,
                Ok(None) => break true,
                Err(_) => break false,
            }
        }
    });
    assert!(ended, "a clean end, so the peer resumes at once");
}

#[test]
fn only_peer_certificates_get_the_stream() {
    let h = Harness::start("auth", "127.0.0.1:0".parse().unwrap());
    h.feed.publish(announcement(&[]));
    let path = MESH_STREAM_PATH;
    // A client's certificate of the topology CA: forbidden, as for /v1/mesh.
    let answer = h.block_on(client::get_stream(&h.url, path, &h.auth("state", "web-1"), GUARD)).unwrap();
    match answer {
        Err((status, message)) => {
            assert_eq!(status, 403);
            assert!(message.contains("peer controllers"), "{message}");
        }
        Ok(_) => panic!("a client certificate got the stream"),
    }
    // A peer name under another CA: the handshake fails.
    let foreign = h.block_on(client::get_stream(&h.url, path, &h.auth("foreign", "peer-west"), GUARD));
    assert!(foreign.is_err(), "a certificate of another CA got an answer");
    // /v1/mesh is still served, to the same certificates.
    let (status, body) = h.block_on(client::get(&h.url, "/v1/mesh", h.west())).unwrap();
    assert_eq!(status, 200, "{body}");
    let a: Announcement = serde_json::from_str(&body).unwrap();
    assert_eq!(Some(a), h.feed.current().as_deref().cloned());
}

#[test]
fn the_exchange_hears_changes_at_once_and_notices_silence_when_the_server_stops() {
    let pid = std::process::id();
    let ip = Ipv4Addr::new(127, 77, (pid >> 8) as u8, (pid as u8).max(1));
    let mut h = Harness::start("exchange", SocketAddr::from((ip, meshwork_compiler::network::MESH_API_PORT)));
    h.feed.publish(announcement(&[("web-1", 1, 10)]));
    let hearing: Hearing = Arc::new(Mutex::new(BTreeMap::new()));
    let wakes = Arc::new(AtomicUsize::new(0));
    let (_targets_tx, targets) =
        tokio::sync::watch::channel(Targets { peers: vec![("east".into(), ip)], auth: Some(h.west()) });
    {
        let _guard = h.rt.enter();
        let counter = wakes.clone();
        exchange::spawn(
            targets,
            hearing.clone(),
            Exchange::Stream,
            Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
    }
    let heard = || hearing.lock().unwrap().get("east").and_then(|e| e.announcement.clone()).map(|a| (*a).clone());
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !ok() {
            assert!(started.elapsed() < GUARD, "{what}: not within the guard");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait("the snapshot", &|| heard() == h.feed.current().as_deref().cloned());
    let woken = wakes.load(Ordering::SeqCst);
    assert!(woken >= 1, "the snapshot woke the agent");

    // A move: heard, and the agent woken for it.
    h.feed.publish(announcement(&[("web-1", 1, 12), ("web-2", 2, 12)]));
    wait("the delta", &|| heard() == h.feed.current().as_deref().cloned());
    wait("a wake for the delta", &|| wakes.load(Ordering::SeqCst) > woken);
    let live = hearing.lock().unwrap()["east"].live(Instant::now());
    assert!(live);

    // Beats keep it live with nothing to say (longer than the silence limit).
    std::thread::sleep(meshwork::agent::mesh::SILENCE + Duration::from_millis(500));
    assert!(hearing.lock().unwrap()["east"].live(Instant::now()), "beats keep a quiet peer live");

    // The server stops: the peer turns silent, with the reason shown.
    h.stop();
    wait("silence", &|| !hearing.lock().unwrap()["east"].live(Instant::now()));
    let error = hearing.lock().unwrap()["east"].error.clone();
    assert!(error.is_some(), "the failure to reconnect is shown");
}

/// A peer that serves a fixed script of bytes as every stream, then stays silent.
fn scripted(script: Vec<u8>) -> Peer {
    use futures_util::StreamExt;
    Peer {
        mesh: Box::new(|| None),
        stream: Box::new(move |_| {
            let once = futures_util::stream::iter([Bytes::from(script.clone())]);
            Some(once.chain(futures_util::stream::pending()).boxed())
        }),
    }
}

#[test]
fn a_hostile_peer_stream_is_refused_line_by_line_and_never_believed_half_way() {
    let h = Harness::start("hostile", "127.0.0.1:0".parse().unwrap());
    let pid = std::process::id();
    let snapshot = |who: &str| {
        let mut a = announcement(&[("web-1", 1, 10)]);
        a.controller = who.into();
        wire::encode(&wire::snapshot("e1", 5, &a))
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // A whole snapshot, then change 7 where 6 was due.
        ("gap", [snapshot("gap"), b"{\"t\":\"gone\",\"seq\":7,\"name\":\"web-1\"}\n".to_vec()].concat(), "gap"),
        // A line that never ends.
        ("long", vec![b'x'; wire::MAX_LINE + 10], "longer than"),
        ("junk", b"{\"t\":\"snapshot\",\"epoch\":1}\n".to_vec(), "not a line"),
        // A peer speaking for another.
        ("liar", snapshot("east"), "speaks for controller"),
    ];
    let mut servers = Vec::new();
    let mut peers = Vec::new();
    for (k, (who, script, _)) in cases.iter().enumerate() {
        let ip = Ipv4Addr::new(127, 78, (pid >> 8) as u8, (pid as u8 & 0x3f) * 4 + k as u8);
        let listener =
            h.block_on(TcpListener::bind(SocketAddr::from((ip, meshwork_compiler::network::MESH_API_PORT)))).unwrap();
        let source = Arc::new(scripted(script.clone()));
        let serving = server::serve_with(listener, h.tls.clone(), h.config.clone(), source, std::future::pending());
        servers.push(h.rt.spawn(serving));
        peers.push((who.to_string(), ip));
    }
    let hearing: Hearing = Arc::new(Mutex::new(BTreeMap::new()));
    let (_tx, targets) = tokio::sync::watch::channel(Targets { peers, auth: Some(h.west()) });
    {
        let _guard = h.rt.enter();
        exchange::spawn(targets, hearing.clone(), Exchange::Stream, Arc::new(|| {}));
    }
    for (who, _, why) in &cases {
        let started = Instant::now();
        loop {
            let error = hearing.lock().unwrap().get(*who).and_then(|e| e.error.clone());
            if error.as_deref().is_some_and(|e| e.contains(why)) {
                break;
            }
            assert!(started.elapsed() < GUARD, "{who}: no error with {why:?} (last: {error:?})");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let heard = hearing.lock().unwrap();
    // Whatever was taken before the gap (the snapshot, if it came in a piece of its own), the
    // change after the gap was not.
    if let Some(gap) = heard["gap"].announcement.as_deref() {
        assert!(gap.clients.contains_key("web-1"), "the change after the gap was applied");
    }
    for who in ["long", "junk", "liar"] {
        assert!(heard[who].announcement.is_none(), "{who}: nothing believable was said");
    }
    drop(heard);
    for s in servers {
        s.abort();
    }
}

/// An agent of the version before streams: `/v1/mesh` only.
fn old_agent(announcement: Announcement) -> Peer {
    Peer { mesh: Box::new(move || serde_json::to_value(&announcement).ok()), stream: Box::new(|_| None) }
}

#[test]
fn a_peer_without_the_stream_is_polled_instead() {
    let h = Harness::start("old", "127.0.0.1:0".parse().unwrap());
    let pid = std::process::id();
    let ip = Ipv4Addr::new(127, 79, (pid >> 8) as u8, (pid as u8).max(1));
    let listener =
        h.block_on(TcpListener::bind(SocketAddr::from((ip, meshwork_compiler::network::MESH_API_PORT)))).unwrap();
    let old = announcement(&[("web-1", 1, 10)]);
    let source = Arc::new(old_agent(old.clone()));
    let server =
        h.rt.spawn(server::serve_with(listener, h.tls.clone(), h.config.clone(), source, std::future::pending()));
    let hearing: Hearing = Arc::new(Mutex::new(BTreeMap::new()));
    let (_tx, targets) =
        tokio::sync::watch::channel(Targets { peers: vec![("east".into(), ip)], auth: Some(h.west()) });
    {
        let _guard = h.rt.enter();
        exchange::spawn(targets, hearing.clone(), Exchange::Stream, Arc::new(|| {}));
    }
    let started = Instant::now();
    loop {
        let heard = hearing.lock().unwrap().get("east").cloned().unwrap_or_default();
        if heard.announcement.as_deref() == Some(&old) && heard.live(Instant::now()) && heard.error.is_none() {
            break;
        }
        assert!(started.elapsed() < GUARD, "the old peer was not heard through the poll: {heard:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.abort();
}
