//! `meshwork agent`: keeps a host (a controller or a compute node) what its topology says.
//!
//! A reconcile pass reads the host, plans, and repairs subsystem by subsystem (network,
//! files, nftables, processes), so a failing one backs off on its own while the others keep
//! converging. Passes run on a change event ([`wake`]: the nftables monitor, netlink in the host's
//! namespace and in every engine's, a daemon's exit through its pidfd), every second (where
//! clients sit, and as a backstop for what makes no event), when the topology file changes or on
//! SIGHUP, and every `resync`. SIGTERM stops the agent and leaves the dataplane running.
//!
//! A client that connects is followed at once, not at the next tick: OpenVPN reports it on the
//! management interface the agent holds ([`clients`]), and the agent learns where it sits,
//! routes to it and updates what it tells its peers, without a reconcile pass.
//!
//! Besides reconciling, a controller's agent follows its clients and exchanges their locations
//! with its peers ([`mesh`], [`routes`]); a node's agent keeps its IPsec SAs up and reports
//! them ([`node`]).

pub mod api;
pub mod clients;
pub mod heartbeat;
pub mod mesh;
pub mod node;
mod pacer;
pub mod routes;
pub mod status;
pub mod wake;

/// The pid of the agent running for a host, if one does.
pub fn running(layout: &Layout) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(layout.agent_pid()).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_agent = cmdline.split(|b| *b == 0).any(|arg| arg == b"agent");
    (is_agent && pid != std::process::id()).then_some(pid)
}

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use meshwork_compiler::emit::routes::RouteTable;
use meshwork_compiler::network::MESH_API_PORT;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc, watch};

use crate::api::client::ClientAuth;
use crate::api::server_tls::ServerTls;
use crate::host::desired::Desired;
use crate::host::identity::{HostId, HostKind};
use crate::host::layout::Layout;
use crate::host::lock::Lock;
use crate::host::resource::Kind;
use crate::host::session;
use crate::keys::{Keyset, SubjectName};
use crate::netlink::Netlink;
use mesh::Announcement;
use status::Status;
use wake::{Cause, Trigger, Wakers};

/// Subsystems a pass repairs one by one, in dependency order.
const SUBSYSTEMS: [(&str, &[Kind]); 5] = [
    ("network", NETWORK),
    ("files", &[Kind::File]),
    ("nftables", &[Kind::Nftables]),
    ("processes", &[Kind::Process]),
    ("ipsec", &[Kind::Ike]),
];
/// The network subsystem's kinds: what a netlink event can concern.
const NETWORK: &[Kind] =
    &[Kind::Netns, Kind::Link, Kind::Address, Kind::Route, Kind::Rule, Kind::Fdb, Kind::Neighbour, Kind::Sysctl];
/// First wait after a subsystem fails; doubles per failure up to MAX_BACKOFF.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Change events are collected for this long before a pass, so a burst is one pass (one
/// command's events come within microseconds of each other).
const DEBOUNCE: Duration = Duration::from_millis(5);
/// How often processes, client locations and the topology file are looked at.
const TICK: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub file: PathBuf,
    pub host: HostId,
    pub state_dir: PathBuf,
    pub resync: Duration,
    pub listen: Option<SocketAddr>,
    pub read_token: Option<Vec<u8>>,
    pub join_token: Option<Vec<u8>>,
    /// How peers are heard: streams (the default), or the former 1 s poll.
    pub mesh_exchange: mesh::exchange::Exchange,
}

struct Backoff {
    until: Instant,
    delay: Duration,
}

/// A loaded topology: the network and what it wants on this host.
struct Loaded {
    desired: Desired,
    stamp: Stamp,
    /// Fingerprint of the topology CA: peers must agree on it as on the checksum.
    ca: String,
    /// What the API's certificate names: the host's addresses and the listen address.
    api_names: Vec<SubjectName>,
    role: Role,
}

/// What the agent does besides reconciling, by kind of host.
enum Role {
    Controller {
        /// This controller's `routes.json`: next hops to every other controller.
        table: Box<RouteTable>,
        /// The other controllers and this one's peering certificate, for the mesh exchange.
        targets: mesh::Targets,
    },
    Node {
        peers: node::Peers,
    },
}

impl Loaded {
    /// Whom the mesh poller asks (nobody, on a node).
    fn targets(&self) -> mesh::Targets {
        match &self.role {
            Role::Controller { targets, .. } => targets.clone(),
            Role::Node { .. } => mesh::Targets { peers: Vec::new(), auth: None },
        }
    }
}

pub struct Agent {
    cfg: AgentConfig,
    layout: Layout,
    loaded: Loaded,
    status: Arc<Mutex<Status>>,
    backoff: BTreeMap<&'static str, Backoff>,
    /// What peers said, filled by the exchange.
    hearing: mesh::Hearing,
    /// Whom the exchange follows; updated on reload.
    targets: watch::Sender<mesh::Targets>,
    /// What this controller tells its peers, served at `/v1/mesh` and streamed to them.
    feed: mesh::feed::Feed,
    /// Peers last seen on another checksum or CA: logged when that starts and ends.
    disagreeing: BTreeSet<String>,
    /// The TLS configuration of each API listener, renewed from the keyset on reload.
    api_tls: Vec<ServerTls>,
    /// A node's SAs, restarted when they stay down.
    ipsec: node::Tracker,
    /// The management interfaces of the units that serve clients, held open.
    clients: clients::Clients,
    /// Set when a client arrived (or an interface was attached again); one wake-up however
    /// many arrived since the last time clients were followed.
    arrivals: Arc<Notify>,
    /// When `status.json` is written after news from peers.
    status_file: pacer::Pacer,
    /// On a controller: the heartbeats to the clients it holds.
    heartbeat: Option<heartbeat::Heartbeat>,
}

/// Modification time and size of a file.
type FileStamp = Option<(SystemTime, u64)>;
/// What a reload depends on: the topology file, and the keyset's index (`keys sync` after an
/// edit that adds an engine makes a topology loadable that was not before), and its lock file.
type Stamp = (FileStamp, FileStamp, FileStamp);

fn file_stamp(path: &std::path::Path) -> FileStamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn stamp(cfg: &AgentConfig) -> Stamp {
    (
        file_stamp(&cfg.file),
        file_stamp(&crate::state::keyset_dir(&cfg.state_dir).join(crate::keys::store::INDEX)),
        file_stamp(&crate::lockfile::path_for(&cfg.file)),
    )
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Reads and compiles the topology; the error is a one-line summary (diagnostics on stderr).
fn load(cfg: &AgentConfig) -> Result<Loaded, String> {
    let stamp = stamp(cfg);
    // The same path as `meshwork check`: bytes in, located diagnostics out (not UTF-8, too deep
    // and the like included), so a hostile edit of the watched file cannot take the agent down.
    // With its lock file, as every verb reads it, so the agent allocates what `build` did.
    let mut analysis = crate::lockfile::analyze(&cfg.file, false).map_err(|e| e.to_string())?;
    let Some(net) = analysis.network.take() else {
        let errors = analysis.diagnostics.iter().filter(|d| d.is_error()).count();
        let shown: Vec<_> = analysis.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
        eprint!("{}", meshwork_compiler::diagnostic::render_plain(&analysis.file, &shown));
        return Err(format!(
            "{} has {}; keeping the last good topology",
            cfg.file.display(),
            crate::plural::count(errors, "error")
        ));
    };
    let keyset = Keyset::open(&cfg.state_dir).map_err(|e| format!("keyset: {e}"))?;
    let desired = crate::host::compose::desired(&net, &cfg.host, &keyset).map_err(|e| e.to_string())?;
    let ca = keyset.ca_fingerprint();
    match cfg.host.kind {
        HostKind::Controller => {
            let me = net.controller(&cfg.host.name).ok_or_else(|| format!("no {}", cfg.host))?;
            let table = meshwork_compiler::emit::routes::table(&net, me);
            let peers: Vec<(String, std::net::Ipv4Addr)> =
                net.controllers.iter().filter(|c| c.name != me.name).map(|c| (c.name.clone(), c.overlay_ip)).collect();
            let auth = if peers.is_empty() { None } else { Some(peer_auth(&keyset, &cfg.host.name)?) };
            let api_names = api::names(me.overlay_ip.into(), &me.address, cfg.listen);
            let role = Role::Controller { table: Box::new(table), targets: mesh::Targets { peers, auth } };
            Ok(Loaded { desired, stamp, ca, api_names, role })
        }
        HostKind::Node => {
            let me = net.vxlan.node(&cfg.host.name).ok_or_else(|| format!("no {}", cfg.host))?;
            let addresses = [Some(me.admin.ip), me.external.map(|e| e.ip)];
            let api_names = api::node_names(addresses.into_iter().flatten(), cfg.listen);
            let role = Role::Node { peers: node::Peers::of(&net, &cfg.host.name) };
            Ok(Loaded { desired, stamp, ca, api_names, role })
        }
    }
}

/// What the owners of the management interfaces call: logs an arrival and wakes the agent.
fn arrival_wake(arrivals: Arc<Notify>) -> clients::Wake {
    Arc::new(move |unit: &str, event: &crate::openvpn::owner::Event| {
        if let crate::openvpn::owner::Event::Established(a) = event {
            let name = a.common_name.as_deref().unwrap_or("?");
            let address = a.virtual_address.map_or_else(String::new, |ip| format!(" ({ip})"));
            eprintln!("meshwork agent: client {name} connected to {unit}{address}");
        }
        arrivals.notify_one();
    })
}

/// This controller's peering identity, presented when it asks its peers.
fn peer_auth(keyset: &Keyset, controller: &str) -> Result<ClientAuth, String> {
    let cn = format!("{}{controller}", crate::api::server::PEER_CN_PREFIX);
    let pem = |r: crate::keys::Result<String>| r.map_err(|e| format!("keyset: {e}"));
    Ok(ClientAuth::Certificate {
        ca_pem: pem(keyset.ca_pem())?,
        cert_pem: pem(keyset.cert_pem(&cn))?,
        key_pem: pem(keyset.key_pem(&cn))?,
    })
}

impl Agent {
    pub fn new(cfg: AgentConfig) -> Result<Agent, String> {
        let loaded = load(&cfg)?;
        let layout = Layout::new(&cfg.state_dir, &cfg.host);
        let status = Status {
            controller: match cfg.host.kind {
                HostKind::Controller => cfg.host.name.clone(),
                HostKind::Node => String::new(),
            },
            topology: loaded.desired.topology.clone(),
            checksum: loaded.desired.checksum.clone(),
            ..Status::default()
        };
        let (targets, _) = watch::channel(loaded.targets());
        let arrivals = Arc::new(Notify::new());
        let clients = clients::Clients::new(arrival_wake(arrivals.clone()));
        Ok(Agent {
            cfg,
            layout,
            loaded,
            status: Arc::new(Mutex::new(status)),
            backoff: BTreeMap::new(),
            hearing: Arc::default(),
            targets,
            feed: mesh::feed::Feed::default(),
            disagreeing: BTreeSet::new(),
            api_tls: Vec::new(),
            ipsec: node::Tracker::default(),
            clients,
            arrivals,
            status_file: pacer::Pacer::default(),
            heartbeat: None,
        })
    }

    pub fn status(&self) -> Arc<Mutex<Status>> {
        self.status.clone()
    }

    fn with_status(&self, f: impl FnOnce(&mut Status)) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }

    /// Runs until SIGTERM or SIGINT.
    pub async fn run(mut self) -> Result<(), String> {
        let (tx, mut rx) = mpsc::channel::<Trigger>(64);
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;

        // Change events: the nft table and netlink links/addresses/routes.
        let mut nft_events = crate::nft::monitor().await.map_err(|e| format!("nft monitor: {e}"))?;
        let nft_tx = tx.clone();
        tokio::spawn(async move {
            // Each event waits for room: a pass is scoped to the events it got, so none may be
            // dropped (a burst is still one pass: the debounce drains the queue).
            while nft_events.recv().await.is_some() {
                if nft_tx.send(Trigger::Event(Cause::Nft)).await.is_err() {
                    return;
                }
            }
        });
        let mut nl_events = Netlink::subscribe_changes().await.map_err(|e| format!("netlink events: {e}"))?;
        let nl_tx = tx.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            while nl_events.next().await.is_some() {
                if nl_tx.send(Trigger::Event(Cause::Netlink(None))).await.is_err() {
                    return;
                }
            }
        });

        let api_shutdown = Arc::new(tokio::sync::Notify::new());
        let mesh_address = match &self.loaded.role {
            Role::Controller { table, targets } if !targets.peers.is_empty() => Some(table.local.overlay_ip),
            _ => None,
        };
        let wants_mesh = mesh_address.is_some();
        let api_config = match (self.cfg.listen, wants_mesh) {
            (None, false) => None,
            _ => Some(api::config(&self.cfg, &self.loaded.api_names)?),
        };
        if let (Some(addr), Some(config)) = (self.cfg.listen, &api_config) {
            let listener = api::bind(addr, false)?;
            let tls = api::start(
                listener,
                config.clone(),
                &self.cfg,
                self.status.clone(),
                self.feed.clone(),
                api_shutdown.clone(),
            )?;
            self.api_tls.push(tls);
        }
        if let (Some(me), Some(config)) = (mesh_address, api_config) {
            // Peers ask this agent at its overlay address, through the tunnels.
            let listener = api::bind(SocketAddr::from((me, MESH_API_PORT)), true)?;
            let tls =
                api::start(listener, config, &self.cfg, self.status.clone(), self.feed.clone(), api_shutdown.clone())?;
            self.api_tls.push(tls);
            // What is heard wakes the loop at once (a full queue already holds a wake-up).
            let heard_tx = tx.clone();
            let wake: mesh::exchange::Wake = Arc::new(move || {
                let _ = heard_tx.try_send(Trigger::Heard);
            });
            mesh::exchange::spawn(self.targets.subscribe(), self.hearing.clone(), self.cfg.mesh_exchange, wake);
        }

        let pidfile = self.layout.agent_pid();
        if let Some(parent) = pidfile.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&pidfile, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write {}: {e}", pidfile.display()))?;
        let nl = Netlink::connect().await.map_err(|e| e.to_string())?;
        let mut tick = tokio::time::interval(TICK);
        let mut resync = tokio::time::interval(self.cfg.resync);
        let mut wakers = Wakers::new(tx.clone());
        let arrivals = self.arrivals.clone();
        eprintln!("meshwork agent: {} of topology {}", self.cfg.host, self.loaded.desired.topology);
        if matches!(self.loaded.role, Role::Controller { .. }) {
            self.heartbeat = heartbeat::Heartbeat::start(None)
                .inspect_err(|e| {
                    eprintln!("meshwork agent: no heartbeats to clients ({e}); they fall back to OpenVPN's 1 s pings")
                })
                .ok();
        }
        self.pass(&nl, &Trigger::Start, None).await;
        self.follow(&mut wakers).await;
        loop {
            // A status write owed after news from peers (see `pacer`); far away when none is.
            let owed = self.status_file.due();
            let owed_at = tokio::time::Instant::from_std(owed.unwrap_or_else(|| Instant::now() + TICK));
            let mut trigger = tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => Trigger::Reload,
                _ = tick.tick() => Trigger::Tick,
                _ = resync.tick() => Trigger::Resync,
                _ = arrivals.notified() => Trigger::Arrival,
                Some(t) = rx.recv() => t,
                _ = tokio::time::sleep_until(owed_at), if owed.is_some() => {
                    self.write_status();
                    continue;
                }
            };
            if matches!(trigger, Trigger::Arrival) {
                // A client arrived here: learn, tell peers and route at once, without a pass.
                self.follow_clients(&nl).await;
                continue;
            }
            // Events queued behind a peer's news, kept for the pass that follows it.
            let mut queued: Vec<Cause> = Vec::new();
            if matches!(trigger, Trigger::Heard) {
                // Routes first, at once; then a pass if something else was queued too: the
                // most thorough of them (a tick, resync or reload reads everything).
                let mut others = Vec::new();
                while let Ok(t) = rx.try_recv() {
                    if !matches!(t, Trigger::Heard) {
                        others.push(t);
                    }
                }
                match self.follow_peers(&nl).await {
                    Ok(true) if self.status_file.changed(Instant::now()) => self.write_status(),
                    Ok(_) => {}
                    Err(e) => eprintln!("meshwork agent: routes: {e}"),
                }
                trigger = match others.iter().position(|t| !matches!(t, Trigger::Event(_))) {
                    Some(full) => others.swap_remove(full),
                    None => match others.pop() {
                        Some(event) => event,
                        None => continue,
                    },
                };
                queued =
                    others.into_iter().filter_map(|t| if let Trigger::Event(c) = t { Some(c) } else { None }).collect();
            }
            let mut causes = Vec::new();
            if let Trigger::Event(cause) = &trigger {
                causes.push(cause.clone());
                causes.append(&mut queued);
                tokio::time::sleep(DEBOUNCE).await;
                while let Ok(more) = rx.try_recv() {
                    if let Trigger::Event(cause) = more {
                        causes.push(cause);
                    }
                }
            }
            let changed = stamp(&self.cfg) != self.loaded.stamp;
            if matches!(trigger, Trigger::Reload) || changed {
                self.reload();
                causes.clear();
            }
            self.pass(&nl, &trigger, wake::scope(&causes)).await;
            self.follow(&mut wakers).await;
        }
        api_shutdown.notify_waiters();
        let _ = std::fs::remove_file(&pidfile);
        eprintln!("meshwork agent: stopped; the dataplane keeps running");
        Ok(())
    }

    fn reload(&mut self) {
        // The stamp before the read: see `take_reload`.
        let seen = stamp(&self.cfg);
        let result = load(&self.cfg);
        self.take_reload(seen, result);
    }

    /// Takes what a reload read. A refused file is remembered by the stamp it had *before* it
    /// was read (`seen`): an editor that writes in place truncates first, so the agent may
    /// read an empty or half-written file; the stamp of the finished file differs from `seen`,
    /// so the next check reads it again. (A stamp taken after the failed read could already be
    /// the finished file's, which would then never be read.)
    fn take_reload(&mut self, seen: Stamp, result: Result<Loaded, String>) {
        match result {
            Ok(loaded) => {
                eprintln!("meshwork agent: topology reloaded (checksum {})", loaded.desired.checksum);
                self.with_status(|s| {
                    s.topology = loaded.desired.topology.clone();
                    s.checksum = loaded.desired.checksum.clone();
                    s.topology_error = None;
                });
                self.targets.send_replace(loaded.targets());
                self.loaded = loaded;
            }
            Err(e) => {
                eprintln!("meshwork agent: {e}");
                self.loaded.stamp = seen;
                self.with_status(|s| s.topology_error = Some(e));
            }
        }
        self.reload_api_tls();
    }

    /// New handshakes of the API check client certificates against the keyset's CA and CRL as
    /// they are now (a client revoked by `keys sync` is refused at once), and present a fresh
    /// certificate. The keyset changes independently of the topology file, so this happens even
    /// when the file does not load; on an error the API keeps what it had.
    fn reload_api_tls(&self) {
        if self.api_tls.is_empty() {
            return;
        }
        let reloaded = api::config(&self.cfg, &self.loaded.api_names)
            .and_then(|config| self.api_tls.iter().try_for_each(|tls| tls.reload(&config)));
        match reloaded {
            Ok(()) => eprintln!("meshwork agent: API trust roots and CRL reloaded from the keyset"),
            Err(e) => eprintln!("meshwork agent: API keeps its previous TLS configuration: {e}"),
        }
    }

    /// Keeps the event sources in step with the topology and the host after a pass: netlink in
    /// every engine namespace the topology wants (also after a reload added or removed one, or
    /// a namespace was made again), a pidfd on every daemon that runs now.
    async fn follow(&mut self, wakers: &mut Wakers) {
        let desired = &self.loaded.desired;
        let namespaces: BTreeSet<String> =
            desired.resources.iter().filter(|r| r.id.kind == Kind::Netns).map(|r| r.id.name.clone()).collect();
        wakers.follow_namespaces(&namespaces).await;
        let running: BTreeMap<String, crate::daemon::ProcessRecord> = desired
            .resources
            .iter()
            .filter(|r| r.id.kind == Kind::Process)
            .filter_map(|r| {
                let record = crate::daemon::status(&self.layout.pidfile(&r.id.name)).ok().flatten()?;
                Some((r.id.name.clone(), record))
            })
            .collect();
        wakers.follow_processes(&running);
    }

    /// One pass, whatever woke it (`trigger`, which its repairs are logged with), over the
    /// kinds of `scope` (None: everything).
    async fn pass(&mut self, nl: &Netlink, trigger: &Trigger, scope: Option<Vec<Kind>>) {
        let started = Instant::now();
        let result = self.reconcile(trigger, scope.as_deref()).await;
        match &self.loaded.role {
            Role::Controller { .. } => {
                if let Err(e) = self.track_routes(nl).await {
                    eprintln!("meshwork agent: routes: {e}");
                }
            }
            Role::Node { peers } => {
                let ipsec = self.loaded.desired.resources.iter().any(|r| r.id.kind == Kind::Ike);
                let work = self.layout.work();
                let node = self.ipsec.track(&self.cfg.host.name, &self.loaded.desired, peers, ipsec.then_some(&*work));
                self.with_status(|s| s.node = Some(node));
            }
        }
        self.write_status();
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.with_status(|s| {
            s.reconciles += 1;
            if result.is_err() {
                s.reconcile_errors += 1;
            }
            s.last_reconcile = Some(status::Reconcile {
                at: now_secs(),
                duration_ms,
                ok: result.is_ok(),
                error: result.err(),
                trigger: trigger.to_string(),
            });
        });
    }

    async fn reconcile(&mut self, trigger: &Trigger, scope: Option<&[Kind]>) -> Result<(), String> {
        // An apply from the command line holds the lock: leave the host to it this time.
        let _lock = match Lock::acquire(&self.layout.lock(), &self.cfg.host, "agent") {
            Ok(l) => l,
            Err(e) => return Err(e.to_string()),
        };
        let desired = &self.loaded.desired;
        let refreshed = session::refresh_only(&self.layout, &self.cfg.host, Some(desired), scope)
            .await
            .map_err(|e| format!("cannot read the host: {e}"))?;
        let units: BTreeMap<String, bool> = desired
            .resources
            .iter()
            .filter(|r| r.id.kind == Kind::Process)
            .map(|r| {
                let live = refreshed.observed.resources.get(&r.id);
                (r.id.name.clone(), live.is_some_and(|l| l.attrs.get("state").is_some_and(|s| s == "running")))
            })
            .collect();
        // A pass that did not look at the processes knows nothing new of them.
        if scope.is_none_or(|s| s.contains(&Kind::Process)) {
            self.with_status(|s| s.units = units);
        }
        let mut first_error = None;
        for (name, kinds) in SUBSYSTEMS {
            // Neither repaired nor let out of its backoff by a pass that did not look at it.
            if scope.is_some_and(|s| !kinds.iter().any(|k| s.contains(k))) {
                continue;
            }
            let sub = refreshed.plan.only(kinds);
            if sub.is_empty() {
                self.backoff.remove(name);
                continue;
            }
            if self.backoff.get(name).is_some_and(|b| Instant::now() < b.until) {
                continue;
            }
            let drifted: Vec<_> = sub.drift.iter().map(|d| d.id.clone()).collect();
            let mut repaired: Vec<Kind> = Vec::new();
            let mut report = |c: &crate::host::plan::Change| {
                eprintln!("meshwork agent: {} {} {} ({trigger})", name, c.action.symbol(), c.id);
                if drifted.contains(&c.id) {
                    repaired.push(c.id.kind);
                }
            };
            let outcome =
                session::apply(&self.layout, &self.cfg.host, Some(desired), &refreshed, &sub, &mut report).await;
            self.with_status(|s| {
                for kind in &repaired {
                    *s.drift_repairs.entry(kind.to_string()).or_default() += 1;
                }
            });
            match outcome {
                Ok(_) => {
                    self.backoff.remove(name);
                    self.with_status(|s| {
                        s.backoff.remove(name);
                    });
                }
                Err(e) => {
                    let delay = self.backoff.get(name).map_or(MIN_BACKOFF, |b| (b.delay * 2).min(MAX_BACKOFF));
                    let msg = format!("{name}: {e}");
                    eprintln!("meshwork agent: {msg} (next try in {} s)", delay.as_secs());
                    self.backoff.insert(name, Backoff { until: Instant::now() + delay, delay });
                    self.with_status(|s| {
                        s.backoff.insert(name.to_string(), format!("{e} (retry in {} s)", delay.as_secs()));
                    });
                    first_error.get_or_insert(msg);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A client arrived: where clients sit, the routes and the announcement, now; the host
    /// itself is left to the next pass (an arrival changes nothing it holds).
    async fn follow_clients(&mut self, nl: &Netlink) {
        if let Err(e) = self.track_routes(nl).await {
            eprintln!("meshwork agent: routes: {e}");
        }
        self.write_status();
    }

    /// Learns where local clients sit, tells peers (the announcement), weighs what peers said
    /// and makes the agent's routes match.
    async fn track_routes(&mut self, nl: &Netlink) -> std::io::Result<()> {
        let (units, running): (Vec<String>, Vec<String>) = {
            let s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            (s.units.keys().cloned().collect(), s.units.iter().filter(|(_, up)| **up).map(|(u, _)| u.clone()).collect())
        };
        self.clients.follow(&self.layout, &units);
        let located = self.clients.learn(&running).await;
        let loaded = &self.loaded;
        let Role::Controller { table, .. } = &loaded.role else { return Ok(()) };
        let announcement = Announcement {
            controller: self.cfg.host.name.clone(),
            topology: loaded.desired.topology.clone(),
            checksum: loaded.desired.checksum.clone(),
            ca: loaded.ca.clone(),
            lans: table.local.lans.clone(),
            clients: located
                .iter()
                .filter_map(|(name, loc)| {
                    let held = mesh::Held { address: loc.address?, unit: loc.unit.clone(), since: loc.since? };
                    Some((name.clone(), held))
                })
                .collect(),
        };
        self.feed.publish(announcement);
        self.route(nl, located).await.map(|_| ())
    }

    /// Routes again after a peer's change, with the local clients as last learned. True when
    /// where clients sit or what is routed changed.
    async fn follow_peers(&mut self, nl: &Netlink) -> std::io::Result<bool> {
        let located = self.status.lock().unwrap_or_else(|e| e.into_inner()).clients.clone();
        self.route(nl, located).await
    }

    /// Weighs what peers said and makes the agent's routes match, with `located` the clients
    /// this controller holds. True when where clients sit or what is routed changed.
    async fn route(&mut self, nl: &Netlink, located: BTreeMap<String, status::Location>) -> std::io::Result<bool> {
        let loaded = &self.loaded;
        let Role::Controller { table, targets } = &loaded.role else { return Ok(false) };
        let (table, targets) = (table.clone(), targets.clone());
        let heard = self.hearing.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (peers, believed) =
            mesh::assess(&targets.peers, &heard, &loaded.desired.checksum, &loaded.ca, Instant::now());
        self.note_disagreements(&peers);
        let tunnels = routes::tunnels_up(nl).await?;
        let claims = routes::claims(&located, &believed);
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.hold(routes::held_here(&claims));
        }
        let wanted = routes::wanted(&table, &claims, &believed, &tunnels);
        let (added, removed) = routes::sync(nl, &wanted).await?;
        if added + removed > 0 {
            eprintln!("meshwork agent: routes: {added} added, {removed} removed");
        }
        let remote: BTreeMap<String, String> = believed
            .iter()
            .flat_map(|(peer, a)| a.clients.keys().map(move |c| (c.clone(), peer.clone())))
            .filter(|(c, _)| !located.contains_key(c))
            .collect();
        let mut changed = added + removed > 0;
        self.with_status(|s| {
            changed |= s.clients != located || s.remote_clients != remote;
            s.clients = located;
            s.remote_clients = remote;
            s.peers = peers;
            s.agent_routes = wanted.len();
        });
        Ok(changed)
    }

    /// Logs a peer that starts or stops disagreeing on the checksum or the CA.
    fn note_disagreements(&mut self, peers: &BTreeMap<String, mesh::PeerStatus>) {
        for (name, p) in peers {
            let disagrees = p.agrees == Some(false);
            if disagrees && self.disagreeing.insert(name.clone()) {
                eprintln!(
                    "meshwork agent: peer {name} runs topology checksum {} (this controller: {}) or another CA; \
                     its routes are not taken",
                    p.checksum.as_deref().unwrap_or("?"),
                    self.loaded.desired.checksum
                );
            } else if !disagrees && p.agrees.is_some() && self.disagreeing.remove(name) {
                eprintln!("meshwork agent: peer {name} agrees again (checksum {})", self.loaded.desired.checksum);
            }
        }
    }

    /// `status.json` next to the controller's state, for local tools (`meshwork lab status`).
    fn write_status(&mut self) {
        self.status_file.written(Instant::now());
        if let Some(heartbeat) = &self.heartbeat {
            let sent = heartbeat.sent();
            self.with_status(|s| s.heartbeats_sent = sent);
        }
        let json = self.status.lock().unwrap_or_else(|e| e.into_inner()).json();
        let path = self.layout.status_file();
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&json).unwrap_or_default();
        if std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, &path)).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent of `host` following `file`, with no API and the default exchange.
    fn config(file: PathBuf, host: HostId, state_dir: PathBuf) -> AgentConfig {
        AgentConfig {
            file,
            host,
            state_dir,
            resync: Duration::from_secs(30),
            listen: None,
            read_token: None,
            join_token: None,
            mesh_exchange: mesh::exchange::Exchange::Stream,
        }
    }

    /// Regression: a file read while an editor was still writing it (truncated, then written)
    /// was refused, and the agent remembered the finished file's stamp, so it never read the
    /// finished file (a node agent in the gate kept its old topology after an edit).
    #[test]
    fn a_file_finished_after_a_refused_read_is_read_again() {
        let dir = std::env::temp_dir().join(format!("meshwork-agent-halfwritten-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/two-pdc.kdl")).unwrap();
        let file = dir.join("two-pdc.kdl");
        std::fs::write(&file, &example).unwrap();
        let cfg = config(file.clone(), HostId::node("cn-2"), dir.join("state"));
        let analysis =
            meshwork_compiler::analyze(meshwork_compiler::source::SourceFile::new("two-pdc.kdl", example.as_str()));
        let net = analysis.network.expect("the example is valid");
        crate::keys::Keyset::init(&cfg.state_dir, &net, time::OffsetDateTime::now_utc()).expect("a keyset");
        let mut agent = Agent::new(cfg).expect("the example loads");
        let first = agent.loaded.desired.checksum.clone();

        // The editor has truncated the file when the agent reads it...
        std::fs::write(&file, "").unwrap();
        let seen = stamp(&agent.cfg);
        let result = load(&agent.cfg);
        assert!(result.is_err(), "an empty file is refused");
        // ...and has finished writing (an edit: one more comment line) before the agent
        // takes what it read.
        std::fs::write(&file, format!("{example}// edited\n")).unwrap();
        agent.take_reload(seen, result);
        assert_ne!(agent.loaded.stamp, stamp(&agent.cfg), "the finished file would never be read");
        assert_eq!(agent.loaded.desired.checksum, first, "the last good topology is kept meanwhile");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Regression (issue 12, item 1): editing the watched file into a shape that overflowed the
    /// KDL parser's stack or panicked the report renderer killed the agent. `load` (which every
    /// reload goes through) now refuses each with diagnostics and keeps the last good topology.
    /// Test threads have 2 MiB stacks, like tokio's workers.
    #[test]
    fn hostile_topology_files_are_refused_not_fatal() {
        let dir = std::env::temp_dir().join(format!("meshwork-agent-hostile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let head = "topology \"t\"\noverlay \"100.127.255.192/26\"\n";
        let cases: [(&str, Vec<u8>); 3] = [
            ("deep.kdl", format!("{head}{}{}", "a{".repeat(5000), "}".repeat(5000)).into_bytes()),
            ("long.kdl", format!("{head}{}bogus 1\n", " ".repeat(70_000)).into_bytes()),
            ("latin1.kdl", [head.as_bytes(), b"client \"caf\xe9\"\n"].concat()),
        ];
        for (name, bytes) in cases {
            let file = dir.join(name);
            std::fs::write(&file, bytes).unwrap();
            let cfg = config(file, HostId::controller("east"), dir.join("state"));
            match load(&cfg) {
                Ok(_) => panic!("{name} loaded"),
                Err(e) => assert!(e.contains("keeping the last good topology"), "{name}: {e}"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
