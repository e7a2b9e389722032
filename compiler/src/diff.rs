//! `meshwork diff OLD NEW`: what changes on each controller between two versions of a topology,
//! written for a pull-request review (`render`) and for programs (`serde::Serialize`).
//!
//! Identity is by name everywhere (controllers, clients, peers, sets); engines by index; routes by
//! destination network. The firewall and the client list are the same on every controller, so
//! their changes are reported once, under "all controllers"; each controller's own section holds
//! only what differs per controller: its attributes, routes, engines and peers.
//!
//! Everything is keyed (BTreeMap, or a merge of sorted lists), so the diff is deterministic and
//! O(n log n) in the number of clients; only the firewall's rule list, which is ordered (first
//! match wins), is compared as a sequence, with `similar`, so an inserted rule is one insertion.
//!
//! Summary counts: one per marked line, except that an added or removed controller counts once
//! (the lines under it describe it; they are not separate changes).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;
use similar::{Algorithm, DiffOp, capture_diff_slices};

use crate::lock::{ChangeKind, Lock};
use crate::model::Action;
use crate::network::{ClientNet, ControllerNet, EngineNet, EngineSet, Network};

/// What happens to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Add,
    Change,
    Remove,
}

impl Op {
    pub(crate) fn marker(self) -> char {
        match self {
            Op::Add => '+',
            Op::Change => '~',
            Op::Remove => '-',
        }
    }

    /// The op between two optional values; None when both are absent or equal.
    fn of<T: PartialEq>(old: Option<&T>, new: Option<&T>) -> Option<Op> {
        match (old, new) {
            (None, None) => None,
            (None, Some(_)) => Some(Op::Add),
            (Some(_), None) => Some(Op::Remove),
            (Some(a), Some(b)) => (a != b).then_some(Op::Change),
        }
    }
}

/// Everything that differs between two versions of a topology. Serialises as the `--format json`
/// output of `meshwork diff`.
#[derive(Clone, Debug, Serialize)]
pub struct TopologyDiff {
    /// The topology's name (in the new version).
    pub topology: String,
    pub summary: Summary,
    /// Changes that reach every controller: topology attributes, the firewall, the clients.
    pub all_controllers: SharedDiff,
    /// Controllers with changes of their own, by id (then name).
    pub controllers: Vec<ControllerDiff>,
    /// Nodes, overlay rules, overlays, vNICs and IPsec pairs that change, by kind then name.
    pub vxlan: Vec<crate::vxlan::diff::ObjectChange>,
    /// Objects that keep their name but get another address, port or MAC (in lock order):
    /// said once and plainly, so that a client that moves does not read as one that left its
    /// tags and another that joined them.
    pub moved: Vec<crate::lock::Change>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
    pub controllers_added: usize,
    /// Controllers in both versions whose configuration changes (every one of them when
    /// `all_controllers` is not empty).
    pub controllers_changed: usize,
    pub controllers_removed: usize,
}

impl Summary {
    fn count(&mut self, op: Op) {
        match op {
            Op::Add => self.add += 1,
            Op::Change => self.change += 1,
            Op::Remove => self.remove += 1,
        }
    }
}

/// One attribute of the topology or a controller (`address`, `lan`, `subnet`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttrChange {
    pub op: Op,
    pub attribute: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValueChange {
    pub old: String,
    pub new: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SharedDiff {
    /// `name`, `overlay`.
    pub attributes: Vec<AttrChange>,
    pub firewall: FirewallDiff,
    /// By name.
    pub clients: Vec<ClientChange>,
}

impl SharedDiff {
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.firewall.is_empty() && self.clients.is_empty()
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FirewallDiff {
    /// `accept` / `drop`.
    pub policy: Option<ValueChange>,
    /// In rule order.
    pub rules: Vec<RuleChange>,
    /// Membership of the tags and fwsets that rules use in both versions, by set then member.
    pub sets: Vec<SetChange>,
}

impl FirewallDiff {
    pub fn is_empty(&self) -> bool {
        self.policy.is_none() && self.rules.iter().all(|r| r.op().is_none()) && self.sets.is_empty()
    }
}

/// One step of the rule list's sequence diff. Numbers are 1-based rule numbers: `number` in the
/// old list for a removal, in the new list for an addition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RuleChange {
    Add {
        number: usize,
        rule: String,
    },
    Remove {
        number: usize,
        rule: String,
    },
    Change {
        old_number: usize,
        new_number: usize,
        old: String,
        new: String,
    },
    /// Context, not a change: `count` unchanged rules that now have other numbers.
    Renumber {
        old_first: usize,
        new_first: usize,
        count: usize,
    },
}

impl RuleChange {
    fn op(&self) -> Option<Op> {
        match self {
            RuleChange::Add { .. } => Some(Op::Add),
            RuleChange::Remove { .. } => Some(Op::Remove),
            RuleChange::Change { .. } => Some(Op::Change),
            RuleChange::Renumber { .. } => None,
        }
    }
}

/// A member joining (`add`) or leaving (`remove`) a set, e.g. `tag:db + 100.127.255.199 (db-2)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SetChange {
    pub op: Op,
    /// `tag:NAME` or `fwset:NAME`.
    pub set: String,
    pub member: String,
    /// The client that has this address, for tag members.
    pub client: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientState {
    pub ip: Ipv4Addr,
    pub tags: Vec<String>,
    pub revoked: bool,
    pub redirect_gateway: bool,
}

impl From<&ClientNet> for ClientState {
    fn from(c: &ClientNet) -> Self {
        Self { ip: c.ip, tags: c.tags.clone(), revoked: c.revoked, redirect_gateway: c.redirect_gateway }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientChange {
    pub op: Op,
    pub name: String,
    pub old: Option<ClientState>,
    pub new: Option<ClientState>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ControllerDiff {
    /// `add` and `remove` describe the whole controller; `change` lists what differs.
    pub op: Op,
    pub name: String,
    /// The new id, or the old one for a removed controller.
    pub id: u32,
    /// `id`, `address`, `interface`, `cores`, `overlay_ip`, one `lan` per network.
    pub attributes: Vec<AttrChange>,
    /// To every other controller's overlay address and LANs, by destination.
    pub routes: Vec<RouteChange>,
    pub engines: EnginesDiff,
    /// Tunnels to other controllers, by the peer's id.
    pub peers: Vec<PeerChange>,
}

impl ControllerDiff {
    fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.routes.is_empty() && self.engines.is_empty() && self.peers.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    pub via: String,
    pub cost: u32,
    /// From this controller to the destination's, both included.
    pub path: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteChange {
    pub op: Op,
    pub destination: Ipv4Net,
    /// The controller the destination is behind.
    pub controller: String,
    pub old: Option<Route>,
    pub new: Option<Route>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EnginesDiff {
    pub old_count: usize,
    pub new_count: usize,
    /// `engine set` (appearing or going), or `subnet`, `seed`, `offset`.
    pub set: Vec<AttrChange>,
    /// By index.
    pub engines: Vec<EngineChange>,
}

impl EnginesDiff {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.engines.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EngineState {
    pub overlay_ip: Ipv4Addr,
    pub plugin_ip: Ipv4Addr,
    pub mark: u32,
}

impl From<&EngineNet> for EngineState {
    fn from(e: &EngineNet) -> Self {
        Self { overlay_ip: e.overlay_ip, plugin_ip: e.plugin_ip, mark: e.mark }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EngineChange {
    pub op: Op,
    pub index: u32,
    pub name: String,
    pub old: Option<EngineState>,
    pub new: Option<EngineState>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerChange {
    pub op: Op,
    pub peer: String,
    pub old_cost: Option<u32>,
    pub new_cost: Option<u32>,
}

/// Compares two versions of a topology.
pub fn diff(old: &Network, new: &Network) -> TopologyDiff {
    let mut attributes = Vec::new();
    attr(&mut attributes, "name", Some(&old.name), Some(&new.name));
    attr(&mut attributes, "overlay", old.overlay.as_ref(), new.overlay.as_ref());
    let shared = SharedDiff { attributes, firewall: firewall_diff(old, new), clients: clients_diff(old, new) };

    let old_by_name: BTreeMap<&str, &ControllerNet> = old.controllers.iter().map(|c| (c.name.as_str(), c)).collect();
    let new_by_name: BTreeMap<&str, &ControllerNet> = new.controllers.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut summary = Summary::default();
    let mut controllers = Vec::new();
    for (name, o, n) in merge(&old_by_name, &new_by_name) {
        let d = controller_diff(old, new, name, o.copied(), n.copied());
        match d.op {
            Op::Add => summary.controllers_added += 1,
            Op::Remove => summary.controllers_removed += 1,
            Op::Change if !d.is_empty() || !shared.is_empty() => summary.controllers_changed += 1,
            Op::Change => {}
        }
        if !d.is_empty() || d.op != Op::Change {
            controllers.push(d);
        }
    }
    controllers.sort_by(|a, b| (a.id, &a.name).cmp(&(b.id, &b.name)));

    for a in &shared.attributes {
        summary.count(a.op);
    }
    if shared.firewall.policy.is_some() {
        summary.count(Op::Change);
    }
    shared.firewall.rules.iter().filter_map(RuleChange::op).for_each(|op| summary.count(op));
    shared.firewall.sets.iter().for_each(|s| summary.count(s.op));
    shared.clients.iter().for_each(|c| summary.count(c.op));
    for c in &controllers {
        if c.op != Op::Change {
            summary.count(c.op);
            continue;
        }
        let ops = c.attributes.iter().map(|a| a.op).chain(c.routes.iter().map(|r| r.op));
        let ops = ops.chain(c.engines.set.iter().map(|a| a.op)).chain(c.engines.engines.iter().map(|e| e.op));
        ops.chain(c.peers.iter().map(|p| p.op)).for_each(|op| summary.count(op));
    }

    let vxlan = crate::vxlan::diff::diff(&old.vxlan, &new.vxlan);
    for c in &vxlan {
        match c.op {
            Op::Change => c.attributes.iter().for_each(|a| summary.count(a.op)),
            op => summary.count(op),
        }
    }
    let moved = crate::lock::changes(&Lock::of(old), &Lock::of(new))
        .into_iter()
        .filter(|c| c.kind == ChangeKind::Move)
        .collect();
    TopologyDiff { topology: new.name.clone(), summary, all_controllers: shared, controllers, vxlan, moved }
}

/// Merges two maps into (key, old, new), in key order.
fn merge<'a, K: Ord, V>(
    old: &'a BTreeMap<K, V>,
    new: &'a BTreeMap<K, V>,
) -> Vec<(&'a K, Option<&'a V>, Option<&'a V>)> {
    let mut out = Vec::with_capacity(old.len().max(new.len()));
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        let step = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
        };
        match step {
            std::cmp::Ordering::Less => {
                let (k, v) = a.next().expect("peeked");
                out.push((k, Some(v), None));
            }
            std::cmp::Ordering::Greater => {
                let (k, v) = b.next().expect("peeked");
                out.push((k, None, Some(v)));
            }
            std::cmp::Ordering::Equal => {
                let ((k, va), (_, vb)) = (a.next().expect("peeked"), b.next().expect("peeked"));
                out.push((k, Some(va), Some(vb)));
            }
        }
    }
    out
}

/// Members of two sorted, deduplicated lists that leave (`Remove`) or join (`Add`), in order.
fn set_changes<T: Ord + Copy>(old: &[T], new: &[T]) -> Vec<(Op, T)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                out.push((Op::Remove, *a));
                i += 1;
            }
            (Some(a), None) => {
                out.push((Op::Remove, *a));
                i += 1;
            }
            (_, Some(b)) => {
                out.push((Op::Add, *b));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

fn sorted_unique<T: Ord + Copy>(items: &[T]) -> Vec<T> {
    let mut v = items.to_vec();
    v.sort();
    v.dedup();
    v
}

fn attr<T: PartialEq + std::fmt::Display>(out: &mut Vec<AttrChange>, name: &str, old: Option<&T>, new: Option<&T>) {
    if let Some(op) = Op::of(old, new) {
        out.push(AttrChange {
            op,
            attribute: name.to_string(),
            old: old.map(ToString::to_string),
            new: new.map(ToString::to_string),
        });
    }
}

fn policy_name(a: Action) -> &'static str {
    match a {
        Action::Accept => "accept",
        Action::Drop => "drop",
    }
}

fn firewall_diff(old: &Network, new: &Network) -> FirewallDiff {
    let (of, nf) = (&old.firewall, &new.firewall);
    let policy = (of.policy != nf.policy)
        .then(|| ValueChange { old: policy_name(of.policy).into(), new: policy_name(nf.policy).into() });

    let a: Vec<String> = of.rules.iter().map(|r| r.describe()).collect();
    let b: Vec<String> = nf.rules.iter().map(|r| r.describe()).collect();
    let old_number = |i: usize| of.rules[i].number;
    let new_number = |i: usize| nf.rules[i].number;
    let removed = |i: usize| RuleChange::Remove { number: old_number(i), rule: a[i].clone() };
    let added = |j: usize| RuleChange::Add { number: new_number(j), rule: b[j].clone() };
    let mut rules = Vec::new();
    for op in capture_diff_slices(Algorithm::Myers, &a, &b) {
        match op {
            DiffOp::Equal { old_index, new_index, len } => {
                if old_number(old_index) != new_number(new_index) {
                    rules.push(RuleChange::Renumber {
                        old_first: old_number(old_index),
                        new_first: new_number(new_index),
                        count: len,
                    });
                }
            }
            DiffOp::Delete { old_index, old_len, .. } => rules.extend((old_index..old_index + old_len).map(removed)),
            DiffOp::Insert { new_index, new_len, .. } => rules.extend((new_index..new_index + new_len).map(added)),
            DiffOp::Replace { old_index, old_len, new_index, new_len } => {
                // A run replaced by a run: pair them up as changed rules, the rest as removed
                // or added.
                let paired = old_len.min(new_len);
                rules.extend((0..paired).map(|k| {
                    let (i, j) = (old_index + k, new_index + k);
                    RuleChange::Change {
                        old_number: old_number(i),
                        new_number: new_number(j),
                        old: a[i].clone(),
                        new: b[j].clone(),
                    }
                }));
                rules.extend((old_index + paired..old_index + old_len).map(removed));
                rules.extend((new_index + paired..new_index + new_len).map(added));
            }
        }
    }
    if rules.iter().all(|r| r.op().is_none()) {
        rules.clear();
    }

    let mut sets = Vec::new();
    let mut old_names = ClientNames::new(old);
    let mut new_names = ClientNames::new(new);
    for (tag, o, n) in merge(&of.tags, &nf.tags) {
        let (Some(o), Some(n)) = (o, n) else { continue };
        for (op, ip) in set_changes(o, n) {
            let names = if op == Op::Add { &mut new_names } else { &mut old_names };
            sets.push(SetChange { op, set: format!("tag:{tag}"), member: ip.to_string(), client: names.get(ip) });
        }
    }
    for (name, o, n) in merge(&of.net_sets, &nf.net_sets) {
        let (Some(o), Some(n)) = (o, n) else { continue };
        for (op, net) in set_changes(&sorted_unique(o), &sorted_unique(n)) {
            sets.push(SetChange { op, set: format!("fwset:{name}"), member: net.to_string(), client: None });
        }
    }
    for (name, o, n) in merge(&of.port_sets, &nf.port_sets) {
        let (Some(o), Some(n)) = (o, n) else { continue };
        for (op, range) in set_changes(&sorted_unique(o), &sorted_unique(n)) {
            sets.push(SetChange { op, set: format!("fwset:{name}"), member: range.to_string(), client: None });
        }
    }
    FirewallDiff { policy, rules, sets }
}

/// Address -> client name, built on first use (most diffs never need it).
struct ClientNames<'a> {
    net: &'a Network,
    map: Option<HashMap<Ipv4Addr, &'a str>>,
}

impl<'a> ClientNames<'a> {
    fn new(net: &'a Network) -> Self {
        Self { net, map: None }
    }

    fn get(&mut self, ip: Ipv4Addr) -> Option<String> {
        let net = self.net;
        let map = self.map.get_or_insert_with(|| net.clients.iter().map(|c| (c.ip, c.name.as_str())).collect());
        map.get(&ip).map(|s| s.to_string())
    }
}

fn clients_diff(old: &Network, new: &Network) -> Vec<ClientChange> {
    let o: BTreeMap<&str, &ClientNet> = old.clients.iter().map(|c| (c.name.as_str(), c)).collect();
    let n: BTreeMap<&str, &ClientNet> = new.clients.iter().map(|c| (c.name.as_str(), c)).collect();
    merge(&o, &n)
        .into_iter()
        .filter_map(|(name, a, b)| {
            let (a, b) = (a.map(|c| ClientState::from(*c)), b.map(|c| ClientState::from(*c)));
            let op = Op::of(a.as_ref(), b.as_ref())?;
            Some(ClientChange { op, name: name.to_string(), old: a, new: b })
        })
        .collect()
}

fn controller_diff(
    old_net: &Network,
    new_net: &Network,
    name: &str,
    o: Option<&ControllerNet>,
    n: Option<&ControllerNet>,
) -> ControllerDiff {
    let op = match (o, n) {
        (None, _) => Op::Add,
        (_, None) => Op::Remove,
        _ => Op::Change,
    };
    let id = n.or(o).map_or(0, |c| c.id);

    let mut attributes = Vec::new();
    attr(&mut attributes, "id", o.map(|c| &c.id), n.map(|c| &c.id));
    attr(&mut attributes, "address", o.map(|c| &c.address), n.map(|c| &c.address));
    attr(&mut attributes, "interface", o.map(|c| &c.interface), n.map(|c| &c.interface));
    attr(&mut attributes, "cores", o.and_then(|c| c.cores.as_ref()), n.and_then(|c| c.cores.as_ref()));
    attr(&mut attributes, "overlay_ip", o.map(|c| &c.overlay_ip), n.map(|c| &c.overlay_ip));
    let lans = |c: Option<&ControllerNet>| c.map_or_else(Vec::new, |c| sorted_unique(&c.lans));
    for (op, lan) in set_changes(&lans(o), &lans(n)) {
        let (old, new) = if op == Op::Add { (None, Some(&lan)) } else { (Some(&lan), None) };
        attr(&mut attributes, "lan", old, new);
    }

    let old_routes = o.map_or_else(BTreeMap::new, |c| routes(old_net, c));
    let new_routes = n.map_or_else(BTreeMap::new, |c| routes(new_net, c));
    let routes = merge(&old_routes, &new_routes)
        .into_iter()
        .filter_map(|((dest, controller), a, b)| {
            let key = |r: &Route| (r.via.clone(), r.cost);
            let op = Op::of(a.map(key).as_ref(), b.map(key).as_ref())?;
            Some(RouteChange {
                op,
                destination: *dest,
                controller: controller.clone(),
                old: a.cloned(),
                new: b.cloned(),
            })
        })
        .collect();

    let engines = engines_diff(o.and_then(|c| c.engines.as_ref()), n.and_then(|c| c.engines.as_ref()));

    let tunnels = |net: &Network| -> BTreeMap<String, u32> {
        net.tunnels
            .iter()
            .filter_map(|t| {
                if t.low == name {
                    Some((t.high.clone(), t.cost))
                } else if t.high == name {
                    Some((t.low.clone(), t.cost))
                } else {
                    None
                }
            })
            .collect()
    };
    let (old_peers, new_peers) = (
        if o.is_some() { tunnels(old_net) } else { BTreeMap::new() },
        if n.is_some() { tunnels(new_net) } else { BTreeMap::new() },
    );
    let peer_id = |peer: &str| new_net.mesh.id(peer).or_else(|| old_net.mesh.id(peer)).unwrap_or(u32::MAX);
    let mut peers: Vec<PeerChange> = merge(&old_peers, &new_peers)
        .into_iter()
        .filter_map(|(peer, a, b)| {
            let op = Op::of(a, b)?;
            Some(PeerChange { op, peer: peer.clone(), old_cost: a.copied(), new_cost: b.copied() })
        })
        .collect();
    peers.sort_by(|a, b| (peer_id(&a.peer), &a.peer).cmp(&(peer_id(&b.peer), &b.peer)));

    ControllerDiff { op, name: name.to_string(), id, attributes, routes, engines, peers }
}

/// This controller's routes: to every other reachable controller's overlay address and LANs.
fn routes(net: &Network, c: &ControllerNet) -> BTreeMap<(Ipv4Net, String), Route> {
    let by_name: HashMap<&str, &ControllerNet> = net.controllers.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut out = BTreeMap::new();
    for (dest, hop) in net.mesh.routes_from(&c.name) {
        let Some(d) = by_name.get(dest.as_str()) else { continue };
        let route = Route { via: hop.next, cost: hop.cost, path: hop.path };
        for net in std::iter::once(Ipv4Net::from(d.overlay_ip)).chain(d.lans.iter().copied()) {
            out.insert((net, dest.clone()), route.clone());
        }
    }
    out
}

fn engines_diff(o: Option<&EngineSet>, n: Option<&EngineSet>) -> EnginesDiff {
    let count = |s: Option<&EngineSet>| s.map_or(0, |s| s.engines.len());
    let mut set = Vec::new();
    let whole = |s: &EngineSet| format!("subnet={} seed={:#x} offset={:#x}", s.subnet, s.seed, s.offset);
    match (o, n) {
        (Some(a), Some(b)) => {
            attr(&mut set, "subnet", Some(&a.subnet), Some(&b.subnet));
            attr(&mut set, "seed", Some(&Hex(a.seed)), Some(&Hex(b.seed)));
            attr(&mut set, "offset", Some(&Hex(a.offset)), Some(&Hex(b.offset)));
        }
        _ => attr(&mut set, "engine set", o.map(whole).as_ref(), n.map(whole).as_ref()),
    }
    let (a, b) = (by_index(o), by_index(n));
    let engines = merge(&a, &b)
        .into_iter()
        .filter_map(|(index, x, y)| {
            let (sx, sy) = (x.map(|e| EngineState::from(*e)), y.map(|e| EngineState::from(*e)));
            let op = Op::of(sx.as_ref(), sy.as_ref())?;
            let name = y.or(x).map(|e| e.name.clone()).unwrap_or_default();
            Some(EngineChange { op, index: *index, name, old: sx, new: sy })
        })
        .collect();
    EnginesDiff { old_count: count(o), new_count: count(n), set, engines }
}

fn by_index(s: Option<&EngineSet>) -> BTreeMap<u32, &EngineNet> {
    s.map_or_else(BTreeMap::new, |s| s.engines.iter().map(|e| (e.index, e)).collect())
}

#[derive(PartialEq)]
struct Hex(u32);

impl std::fmt::Display for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Text

/// Longest client name padded to in the clients section; longer names just push the line.
const MAX_NAME_COLUMN: usize = 32;

impl TopologyDiff {
    pub fn is_empty(&self) -> bool {
        self.all_controllers.is_empty() && self.controllers.is_empty() && self.vxlan.is_empty() && self.moved.is_empty()
    }

    /// The diff for a human reviewer: `+` add, `~` change, `-` remove, two-space indentation,
    /// topology-wide changes once, then each controller's own, then a one-line summary.
    pub fn render(&self) -> String {
        if self.is_empty() {
            return "No changes.\n".to_string();
        }
        let mut out = String::new();
        let s = &self.summary;
        let mut parts = Vec::new();
        for (n, what) in
            [(s.controllers_changed, "changed"), (s.controllers_added, "added"), (s.controllers_removed, "removed")]
        {
            if n > 0 {
                let noun = match (parts.is_empty(), n) {
                    (false, _) => "",
                    (true, 1) => " controller",
                    (true, _) => " controllers",
                };
                parts.push(format!("{n}{noun} {what}"));
            }
        }
        if !self.vxlan.is_empty() {
            parts.push(format!("{} node and overlay change(s)", self.vxlan.len()));
        }
        let head = if parts.is_empty() { "no controller changes".to_string() } else { parts.join(", ") };
        let _ = writeln!(out, "Topology \"{}\": {head}.", self.topology);
        out += "  (checksum changes are not shown here; rebuild to see them)\n";

        if !self.moved.is_empty() {
            out += "\nmoved addresses (the objects stay; only their addresses change)\n";
            for m in &self.moved {
                let _ = writeln!(out, "  {m}");
            }
        }

        let shared = &self.all_controllers;
        if !shared.is_empty() {
            out += "\nall controllers\n";
            if !shared.attributes.is_empty() {
                out += "  topology\n";
                for a in &shared.attributes {
                    attr_line(&mut out, 4, a);
                }
            }
            if !shared.firewall.is_empty() {
                out += "  firewall\n";
                render_firewall(&mut out, &shared.firewall);
            }
            if !shared.clients.is_empty() {
                out += "  clients\n";
                render_clients(&mut out, &shared.clients);
            }
        }

        for c in &self.controllers {
            out += "\n";
            match c.op {
                Op::Change => {}
                op => {
                    out.push(op.marker());
                    out.push(' ');
                }
            }
            let _ = writeln!(out, "controller \"{}\"", c.name);
            for a in &c.attributes {
                attr_line(&mut out, 2, a);
            }
            if !c.routes.is_empty() {
                out += "  routes\n";
                for r in &c.routes {
                    let hop = |r: &Route| format!("via {} (cost {})", r.via, r.cost);
                    let _ = write!(out, "    {} {} ({}) ", r.op.marker(), r.destination, r.controller);
                    match (&r.old, &r.new) {
                        (Some(a), Some(b)) => {
                            let _ = writeln!(out, "{} → {}", hop(a), hop(b));
                        }
                        (Some(x), None) | (None, Some(x)) => {
                            let _ = writeln!(out, "{}", hop(x));
                        }
                        (None, None) => out += "\n",
                    }
                }
            }
            let e = &c.engines;
            if !e.is_empty() {
                if e.old_count == e.new_count {
                    out += "  engines\n";
                } else {
                    let _ = writeln!(out, "  engines ({} → {})", e.old_count, e.new_count);
                }
                for a in &e.set {
                    attr_line(&mut out, 4, a);
                }
                for x in &e.engines {
                    render_engine(&mut out, x);
                }
            }
            if !c.peers.is_empty() {
                out += "  peers\n";
                for p in &c.peers {
                    let _ = write!(out, "    {} peer \"{}\"", p.op.marker(), p.peer);
                    match (p.old_cost, p.new_cost) {
                        (Some(a), Some(b)) => {
                            let _ = writeln!(out, ": cost {a} → {b}");
                        }
                        (Some(x), None) | (None, Some(x)) => {
                            let _ = writeln!(out, " (cost {x})");
                        }
                        (None, None) => out += "\n",
                    }
                }
            }
        }

        crate::vxlan::diff::render(&mut out, &self.vxlan);
        let _ = writeln!(out, "\nSummary: {} to add, {} to change, {} to remove.", s.add, s.change, s.remove);
        out
    }
}

fn attr_line(out: &mut String, indent: usize, a: &AttrChange) {
    let pad = " ".repeat(indent);
    let attribute = a.attribute.replace('_', " ");
    let _ = match (&a.old, &a.new) {
        (Some(x), Some(y)) => writeln!(out, "{pad}{} {attribute}: {x} → {y}", a.op.marker()),
        (Some(x), None) | (None, Some(x)) => writeln!(out, "{pad}{} {attribute}: {x}", a.op.marker()),
        (None, None) => writeln!(out, "{pad}{} {attribute}", a.op.marker()),
    };
}

fn render_firewall(out: &mut String, fw: &FirewallDiff) {
    for r in &fw.rules {
        let _ = match r {
            RuleChange::Add { number, rule } => writeln!(out, "    + rule {number}: {rule}"),
            RuleChange::Remove { number, rule } => writeln!(out, "    - rule {number}: {rule}"),
            RuleChange::Change { old_number, new_number, old, new } => {
                let numbers = if old_number == new_number {
                    format!("{new_number}")
                } else {
                    format!("{old_number} → {new_number}")
                };
                let head = format!("    ~ rule {numbers}: ");
                let _ = writeln!(out, "{head}{old}");
                writeln!(out, "{:>width$}{new}", "→ ", width = head.chars().count())
            }
            RuleChange::Renumber { old_first, new_first, count: 1 } => {
                writeln!(out, "    # rule {old_first} unchanged, now {new_first}")
            }
            RuleChange::Renumber { old_first, new_first, count } => writeln!(
                out,
                "    # rules {old_first}-{} unchanged, now {new_first}-{}",
                old_first + count - 1,
                new_first + count - 1
            ),
        };
    }
    if let Some(p) = &fw.policy {
        let _ = writeln!(out, "    ~ policy: {} → {}", p.old, p.new);
    }
    for s in &fw.sets {
        let _ = write!(out, "    {} {} {}", s.op.marker(), s.set, s.member);
        let _ = match &s.client {
            Some(c) => writeln!(out, " ({c})"),
            None => writeln!(out),
        };
    }
}

fn render_clients(out: &mut String, clients: &[ClientChange]) {
    let width = clients.iter().map(|c| c.name.chars().count()).max().unwrap_or(0).min(MAX_NAME_COLUMN);
    let tags = |t: &[String]| if t.is_empty() { "(none)".to_string() } else { t.join(",") };
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    for c in clients {
        let _ = write!(out, "    {} {:<width$}  ", c.op.marker(), c.name);
        let line = match (&c.old, &c.new) {
            (Some(a), Some(b)) => {
                let mut changes = Vec::new();
                if a.ip != b.ip {
                    changes.push(format!("ip: {} → {}", a.ip, b.ip));
                }
                if a.tags != b.tags {
                    changes.push(format!("tags: {} → {}", tags(&a.tags), tags(&b.tags)));
                }
                if a.revoked != b.revoked {
                    changes.push(format!("revoked: {} → {}", yes_no(a.revoked), yes_no(b.revoked)));
                }
                if a.redirect_gateway != b.redirect_gateway {
                    changes.push(format!(
                        "redirect-gateway: {} → {}",
                        yes_no(a.redirect_gateway),
                        yes_no(b.redirect_gateway)
                    ));
                }
                changes.join(", ")
            }
            (Some(x), None) | (None, Some(x)) => {
                let mut line = x.ip.to_string();
                if !x.tags.is_empty() {
                    let _ = write!(line, "  tags={}", x.tags.join(","));
                }
                if x.revoked {
                    line += "  revoked";
                }
                line
            }
            (None, None) => String::new(),
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn render_engine(out: &mut String, e: &EngineChange) {
    let _ = write!(out, "    {} engine {}  ", e.op.marker(), e.index);
    let _ = match (&e.old, &e.new) {
        (Some(a), Some(b)) => {
            let mut changes = Vec::new();
            if a.overlay_ip != b.overlay_ip {
                changes.push(format!("overlay {} → {}", a.overlay_ip, b.overlay_ip));
            }
            if a.plugin_ip != b.plugin_ip {
                changes.push(format!("plugin {} → {}", a.plugin_ip, b.plugin_ip));
            }
            if a.mark != b.mark {
                changes.push(format!("mark {:#x} → {:#x}", a.mark, b.mark));
            }
            writeln!(out, "{}", changes.join(", "))
        }
        (Some(x), None) | (None, Some(x)) => {
            writeln!(out, "overlay {}  plugin {}  mark {:#x}", x.overlay_ip, x.plugin_ip, x.mark)
        }
        (None, None) => writeln!(out),
    };
}

#[cfg(test)]
mod tests {
    use crate::testing::network as net;
    use std::collections::BTreeSet;

    use super::*;

    const BASE: &str = r#"
topology "acme"
overlay "100.127.255.192/26"

controller "east" id=1 {
    address "192.0.2.10"
    cores 8
    engines 3 subnet="198.51.100.0/28"
    lan "10.10.0.0/16"
}
controller "west" id=2 {
    address "192.0.2.20"
    lan "10.30.0.0/16"
}

client "web-1" tags="web"
client "db-1" tags="db"
client "batch-1" tags="batch"

firewall policy="drop" {
    allow from="tag:web" to="tag:db" proto="tcp" port=5432
    allow from="overlay" to="overlay" proto="icmp"
}
"#;

    #[test]
    fn identical_inputs_have_no_changes() {
        let d = diff(&net(BASE), &net(BASE));
        assert!(d.is_empty());
        assert_eq!(d.render(), "No changes.\n");
        assert_eq!(d.summary, Summary::default());
    }

    #[test]
    fn one_engine_more_and_one_client_less() {
        let new = BASE.replace("engines 3", "engines 4").replace("client \"batch-1\" tags=\"batch\"\n", "");
        let d = diff(&net(BASE), &net(&new));
        assert!(!d.is_empty());

        let shared = &d.all_controllers;
        assert!(shared.attributes.is_empty() && shared.firewall.is_empty(), "{shared:#?}");
        assert_eq!(shared.clients.len(), 1);
        assert_eq!((shared.clients[0].op, shared.clients[0].name.as_str()), (Op::Remove, "batch-1"));

        assert_eq!(d.controllers.len(), 1, "{:#?}", d.controllers);
        let east = &d.controllers[0];
        assert_eq!((east.op, east.name.as_str()), (Op::Change, "east"));
        assert!(east.attributes.is_empty() && east.routes.is_empty() && east.peers.is_empty(), "{east:#?}");
        assert!(east.engines.set.is_empty());
        assert_eq!((east.engines.old_count, east.engines.new_count), (3, 4));
        assert_eq!(east.engines.engines.len(), 1);
        let e4 = &east.engines.engines[0];
        assert_eq!((e4.op, e4.index, e4.name.as_str()), (Op::Add, 4, "east-e4"));
        assert_eq!(e4.new.as_ref().map(|e| e.mark), Some(0x1004));

        assert_eq!(d.summary.add, 1);
        assert_eq!(d.summary.remove, 1);
        assert_eq!(d.summary.change, 0);
        // Clients are served by every controller, so both change.
        assert_eq!(d.summary.controllers_changed, 2);

        let text = d.render();
        assert!(text.starts_with("Topology \"acme\": 2 controllers changed.\n"), "{text}");
        assert!(text.contains("\nall controllers\n  clients\n    - batch-1  100.127.255.195  tags=batch\n"), "{text}");
        assert!(text.contains("\ncontroller \"east\"\n  engines (3 → 4)\n    + engine 4  overlay "), "{text}");
        assert!(text.contains("  plugin 198.51.100.5  mark 0x1004\n"), "{text}");
        assert!(!text.contains("controller \"west\""), "{text}");
        assert!(text.ends_with("\nSummary: 1 to add, 0 to change, 1 to remove.\n"), "{text}");
        assert_eq!(text.lines().filter(|l| l.trim_start().starts_with(['+', '-', '~'])).count(), 2, "{text}");
    }

    #[test]
    fn rule_inserted_at_the_top_is_one_insertion() {
        let new = BASE.replace(
            "firewall policy=\"drop\" {\n",
            "firewall policy=\"drop\" {\n    deny from=\"tag:batch\" to=\"tag:db\"\n",
        );
        let d = diff(&net(BASE), &net(&new));
        let fw = &d.all_controllers.firewall;
        assert_eq!(
            fw.rules,
            vec![
                RuleChange::Add { number: 1, rule: "deny from=\"tag:batch\" to=\"tag:db\"".into() },
                RuleChange::Renumber { old_first: 1, new_first: 2, count: 2 },
            ]
        );
        assert!(fw.policy.is_none() && fw.sets.is_empty());
        assert_eq!((d.summary.add, d.summary.change, d.summary.remove), (1, 0, 0));
        let text = d.render();
        assert!(
            text.contains(
                "  firewall\n    + rule 1: deny from=\"tag:batch\" to=\"tag:db\"\n    # rules 1-2 unchanged, now 2-3\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn rule_edit_policy_and_tag_membership() {
        let new = BASE
            .replace("port=5432", "port=5433")
            .replace("policy=\"drop\"", "policy=\"accept\"")
            .replace("client \"batch-1\" tags=\"batch\"", "client \"batch-1\" tags=\"batch,db\"");
        let d = diff(&net(BASE), &net(&new));
        let fw = &d.all_controllers.firewall;
        assert_eq!(fw.rules.len(), 1);
        assert!(matches!(&fw.rules[0], RuleChange::Change { old_number: 1, new_number: 1, .. }));
        assert_eq!(fw.policy, Some(ValueChange { old: "drop".into(), new: "accept".into() }));
        assert_eq!(
            fw.sets,
            vec![SetChange {
                op: Op::Add,
                set: "tag:db".into(),
                member: "100.127.255.195".into(),
                client: Some("batch-1".into())
            }]
        );
        let text = d.render();
        assert!(text.contains("    ~ policy: drop → accept\n"), "{text}");
        assert!(text.contains("    + tag:db 100.127.255.195 (batch-1)\n"), "{text}");
        assert!(
            text.contains("    ~ rule 1: allow from=\"tag:web\" to=\"tag:db\" proto=\"tcp\" port=5432\n"),
            "{text}"
        );
        assert!(
            text.contains("            → allow from=\"tag:web\" to=\"tag:db\" proto=\"tcp\" port=5433\n"),
            "{text}"
        );
        assert!(text.contains("    ~ batch-1  tags: batch → batch,db\n"), "{text}");
    }

    #[test]
    fn moved_addresses_are_said_once_and_plainly() {
        // Without a lock, a client inserted above batch-1 moves it (that is what locks prevent).
        let new = BASE.replace("client \"batch-1\"", "client \"new-1\"\nclient \"batch-1\"");
        let d = diff(&net(BASE), &net(&new));
        let moved: Vec<String> = d.moved.iter().map(ToString::to_string).collect();
        assert_eq!(moved, ["~ client batch-1: 100.127.255.195 → 100.127.255.196"]);
        let text = d.render();
        assert!(
            text.contains("\nmoved addresses (the objects stay; only their addresses change)\n  ~ client batch-1: 100.127.255.195 → 100.127.255.196\n"),
            "{text}"
        );
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v["moved"][0],
            serde_json::json!({"op": "move", "kind": "clients", "overlay": null, "name": "batch-1",
                "old": "100.127.255.195", "new": "100.127.255.196"})
        );
        assert!(diff(&net(BASE), &net(BASE)).moved.is_empty());
    }

    const TRIANGLE: &str = r#"
topology "tri"
overlay "100.127.255.192/26"
controller "a" id=1 {
    address "192.0.2.1"
    lan "10.1.0.0/16"
}
controller "b" id=2 {
    address "192.0.2.2"
    lan "10.2.0.0/16"
}
controller "c" id=3 {
    address "192.0.2.3"
    lan "10.3.0.0/16"
}
peering {
    link "a" "b" cost=1
    link "b" "c" cost=1
    link "a" "c" cost=5
}
"#;

    #[test]
    fn next_hop_follows_link_cost() {
        let new = TRIANGLE.replace("link \"a\" \"b\" cost=1", "link \"a\" \"b\" cost=10");
        let d = diff(&net(TRIANGLE), &net(&new));
        assert!(d.all_controllers.is_empty());
        let a = d.controllers.iter().find(|c| c.name == "a").expect("a changes");
        let to_c = a.routes.iter().find(|r| r.destination.to_string() == "10.3.0.0/16").expect("route to c's LAN");
        assert_eq!(to_c.op, Op::Change);
        assert_eq!(to_c.controller, "c");
        let (old, new) = (to_c.old.as_ref().unwrap(), to_c.new.as_ref().unwrap());
        assert_eq!((old.via.as_str(), old.cost), ("b", 2));
        assert_eq!((new.via.as_str(), new.cost), ("c", 5));
        assert_eq!(new.path, vec!["a", "c"]);
        assert_eq!(
            a.peers,
            vec![PeerChange { op: Op::Change, peer: "b".into(), old_cost: Some(1), new_cost: Some(10) }]
        );

        let text = d.render();
        assert!(text.contains("    ~ 10.3.0.0/16 (c) via b (cost 2) → via c (cost 5)\n"), "{text}");
        assert!(text.contains("    ~ 10.2.0.0/16 (b) via b (cost 1) → via c (cost 6)\n"), "{text}");
        assert!(text.contains("  peers\n    ~ peer \"b\": cost 1 → 10\n"), "{text}");
        // Controllers are in id order.
        let (pa, pb) = (text.find("controller \"a\"").unwrap(), text.find("controller \"b\"").unwrap());
        assert!(pa < pb, "{text}");
    }

    #[test]
    fn added_controller_counts_once_and_shows_everywhere() {
        let new = TRIANGLE.replace(
            "peering {",
            "controller \"d\" id=4 {\n    address \"192.0.2.4\"\n    lan \"10.4.0.0/16\"\n}\npeering {\n    link \"c\" \"d\" cost=1",
        );
        let d = diff(&net(TRIANGLE), &net(&new));
        assert_eq!(d.summary.controllers_added, 1);
        let added = d.controllers.iter().find(|c| c.name == "d").unwrap();
        assert_eq!(added.op, Op::Add);
        assert!(added.attributes.iter().all(|a| a.op == Op::Add));
        let text = d.render();
        assert!(text.contains("\n+ controller \"d\"\n  + id: 4\n  + address: 192.0.2.4\n"), "{text}");
        assert!(text.contains("    + 10.4.0.0/16 (d) via c (cost 2)\n"), "{text}");
        assert!(text.starts_with("Topology \"tri\": 3 controllers changed, 1 added.\n"), "{text}");
    }

    #[test]
    fn json_has_the_expected_keys() {
        let new = BASE.replace("engines 3", "engines 4").replace("client \"batch-1\" tags=\"batch\"\n", "");
        let d = diff(&net(BASE), &net(&new));
        let v = serde_json::to_value(&d).unwrap();
        let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<BTreeSet<_>>();
        let set = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(keys(&v), set(&["topology", "summary", "all_controllers", "controllers", "vxlan", "moved"]));
        assert_eq!(v["topology"], "acme");
        assert_eq!(keys(&v["all_controllers"]), set(&["attributes", "firewall", "clients"]));
        assert_eq!(keys(&v["all_controllers"]["firewall"]), set(&["policy", "rules", "sets"]));
        assert_eq!(v["summary"]["add"], 1);
        assert_eq!(v["summary"]["remove"], 1);
        let client = &v["all_controllers"]["clients"][0];
        assert_eq!(client["op"], "remove");
        assert_eq!(client["name"], "batch-1");
        assert_eq!(client["old"]["ip"], "100.127.255.195");
        assert!(client["new"].is_null());
        let east = &v["controllers"][0];
        assert_eq!(keys(east), set(&["op", "name", "id", "attributes", "routes", "engines", "peers"]));
        assert_eq!(east["engines"]["new_count"], 4);
        assert_eq!(east["engines"]["engines"][0]["op"], "add");
        assert_eq!(east["engines"]["engines"][0]["new"]["mark"], 0x1004);

        let rule = serde_json::to_value(RuleChange::Add { number: 1, rule: "x".into() }).unwrap();
        assert_eq!(rule, serde_json::json!({"op": "add", "number": 1, "rule": "x"}));
    }

    #[test]
    fn large_client_lists_are_keyed_not_quadratic() {
        let old = net(BASE);
        let mut a = old.clone();
        let mut b = old.clone();
        let client = |i: u32| ClientNet {
            name: format!("c-{i:05}"),
            ip: Ipv4Addr::from(0x0a00_0000 + i),
            tags: vec!["bulk".into()],
            revoked: false,
            redirect_gateway: true,
        };
        a.clients = (0..50_000).map(client).collect();
        b.clients = (1..50_001).map(client).rev().collect();
        b.clients[100].revoked = true;
        let d = diff(&a, &b);
        let ops: Vec<(Op, &str)> = d.all_controllers.clients.iter().map(|c| (c.op, c.name.as_str())).collect();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0], (Op::Remove, "c-00000"));
        assert_eq!(ops[1].0, Op::Change);
        assert_eq!(ops[2], (Op::Add, "c-50000"));
    }
}
