//! The peering mesh as a graph: which tunnels exist, the next hop from every controller to
//! every other by cost, and the controllers and links whose loss would split the mesh.

use std::collections::BTreeMap;

use petgraph::algo::{articulation_points::articulation_points, bridges::bridges, connected_components, dijkstra};
use petgraph::graph::{NodeIndex, UnGraph};
use petgraph::visit::EdgeRef;

use crate::model::{DEFAULT_LINK_COST, Peering, Topology};

/// First UDP port of the peering range: for controllers i < j, i listens on BASE + j.
pub const PEER_PORT_BASE: u16 = 1194;

/// A tunnel between two controllers; `low` has the lower id and listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunnel {
    pub low: String,
    pub high: String,
    pub cost: u32,
    /// Index of the declaring `link` in the file, for diagnostics (None in a full mesh).
    pub link: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Mesh {
    graph: UnGraph<String, u32>,
    index: BTreeMap<String, NodeIndex>,
    ids: BTreeMap<String, u32>,
    /// dist[a][b]: cheapest cost from node a to node b, None when unreachable.
    dist: Vec<Vec<Option<u32>>>,
}

impl Mesh {
    /// The mesh over controllers that have a name and an id; links naming unknown controllers
    /// or a controller twice are left out (the rules report them).
    pub fn new(t: &Topology) -> Self {
        let mut graph = UnGraph::new_undirected();
        let mut index = BTreeMap::new();
        let mut ids = BTreeMap::new();
        let mut controllers: Vec<_> =
            t.controllers.iter().filter_map(|c| Some((c.id.as_ref()?.value, &c.name.value))).collect();
        controllers.sort();
        controllers.dedup_by_key(|(id, _)| *id);
        for (id, name) in controllers {
            if !index.contains_key(name) {
                index.insert(name.clone(), graph.add_node(name.clone()));
                ids.insert(name.clone(), id);
            }
        }
        let mut mesh = Self { graph, index, ids, dist: Vec::new() };
        for tunnel in tunnels_of(t, &mesh) {
            let (a, b) = (mesh.index[&tunnel.low], mesh.index[&tunnel.high]);
            mesh.graph.add_edge(a, b, tunnel.cost);
        }
        let n = mesh.graph.node_count();
        mesh.dist = mesh
            .graph
            .node_indices()
            .map(|a| {
                let reach = dijkstra(&mesh.graph, a, None, |e| *e.weight());
                (0..n).map(|b| reach.get(&NodeIndex::new(b)).copied()).collect()
            })
            .collect();
        mesh
    }

    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The tunnels, ordered by (low id, high id).
    pub fn tunnels(&self) -> Vec<Tunnel> {
        let mut out: Vec<Tunnel> = self
            .graph
            .edge_references()
            .map(|e| {
                let (a, b) = (&self.graph[e.source()], &self.graph[e.target()]);
                let (low, high) = if self.ids[a] < self.ids[b] { (a, b) } else { (b, a) };
                Tunnel { low: low.clone(), high: high.clone(), cost: *e.weight(), link: None }
            })
            .collect();
        out.sort_by_key(|t| (self.ids[&t.low], self.ids[&t.high]));
        out
    }

    /// The controllers `name` has a tunnel to, by id.
    pub fn neighbours(&self, name: &str) -> Vec<String> {
        let Some(&n) = self.index.get(name) else { return vec![] };
        let mut out: Vec<String> = self.graph.neighbors(n).map(|m| self.graph[m].clone()).collect();
        out.sort_by_key(|m| self.ids[m]);
        out.dedup();
        out
    }

    pub fn is_connected(&self) -> bool {
        self.graph.node_count() <= 1 || connected_components(&self.graph) == 1
    }

    /// Groups of controllers that reach each other, largest first; for diagnostics.
    pub fn components(&self) -> Vec<Vec<String>> {
        let mut groups = std::collections::BTreeSet::new();
        for &n in self.index.values() {
            let mut members: Vec<String> = self
                .graph
                .node_indices()
                .filter(|m| self.dist[n.index()][m.index()].is_some())
                .map(|m| self.graph[m].clone())
                .collect();
            members.sort();
            groups.insert(members);
        }
        let mut out: Vec<Vec<String>> = groups.into_iter().collect();
        out.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        out
    }

    /// Controllers whose loss splits the mesh, sorted by id.
    pub fn articulation_points(&self) -> Vec<String> {
        let mut out: Vec<String> =
            articulation_points(&self.graph).into_iter().map(|n| self.graph[n].clone()).collect();
        out.sort_by_key(|n| self.ids[n]);
        out
    }

    /// Links whose loss splits the mesh, as (low, high) names sorted by id.
    pub fn bridges(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = bridges(&self.graph)
            .map(|e| {
                let (a, b) = (self.graph[e.source()].clone(), self.graph[e.target()].clone());
                if self.ids[&a] < self.ids[&b] { (a, b) } else { (b, a) }
            })
            .collect();
        out.sort_by_key(|(a, b)| (self.ids[a], self.ids[b]));
        out
    }

    /// For every reachable destination from `from`: (next hop, total cost, path). Equal-cost
    /// paths are broken towards the lowest-id next hop, so the result is deterministic.
    pub fn routes_from(&self, from: &str) -> BTreeMap<String, Hop> {
        let mut out = BTreeMap::new();
        let Some(&src) = self.index.get(from) else { return out };
        // The next hop is the neighbour n that minimises cost(here, n) + dist(n, dst).
        let dist = |a: NodeIndex, b: NodeIndex| self.dist[a.index()][b.index()];
        for (name, &dst) in &self.index {
            if dst == src {
                continue;
            }
            let Some(total) = dist(src, dst) else { continue };
            let mut path = vec![from.to_string()];
            let mut here = src;
            while here != dst {
                let mut best: Option<(u32, NodeIndex)> = None;
                for e in self.graph.edges(here) {
                    let n = e.target();
                    let (Some(rest), Some(so_far)) = (dist(n, dst), dist(here, dst)) else { continue };
                    if e.weight() + rest == so_far {
                        let id = self.ids[&self.graph[n]];
                        if best.is_none_or(|(b, _)| id < b) {
                            best = Some((id, n));
                        }
                    }
                }
                let Some((_, n)) = best else { break };
                path.push(self.graph[n].clone());
                here = n;
            }
            out.insert(name.clone(), Hop { next: path.get(1).cloned().unwrap_or_default(), cost: total, path });
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    pub next: String,
    pub cost: u32,
    /// From the source to the destination, both included.
    pub path: Vec<String>,
}

fn tunnels_of(t: &Topology, mesh: &Mesh) -> Vec<Tunnel> {
    let mut out: BTreeMap<(u32, u32), Tunnel> = BTreeMap::new();
    match &t.peering {
        Peering::Full => {
            let names: Vec<&String> = mesh.ids.keys().collect();
            for (i, a) in names.iter().enumerate() {
                for b in &names[i + 1..] {
                    let (ia, ib) = (mesh.ids[*a], mesh.ids[*b]);
                    let (low, high) = if ia < ib { (a, b) } else { (b, a) };
                    out.insert(
                        (ia.min(ib), ia.max(ib)),
                        Tunnel { low: (*low).clone(), high: (*high).clone(), cost: DEFAULT_LINK_COST, link: None },
                    );
                }
            }
        }
        Peering::Partial(links) => {
            for (i, l) in links.iter().enumerate() {
                let (Some(ia), Some(ib)) = (mesh.id(&l.a.value), mesh.id(&l.b.value)) else { continue };
                if ia == ib {
                    continue;
                }
                let (low, high) = if ia < ib { (&l.a.value, &l.b.value) } else { (&l.b.value, &l.a.value) };
                out.entry((ia.min(ib), ia.max(ib))).or_insert(Tunnel {
                    low: low.clone(),
                    high: high.clone(),
                    cost: l.cost,
                    link: Some(i),
                });
            }
        }
    }
    out.into_values().collect()
}

/// Names of the tunnel device and the point-to-point addresses for a tunnel between ids
/// `local` and `remote`: `mw-p<remote>` and 169.254.<local>.<remote> -> 169.254.<remote>.<local>.
pub fn tunnel_device(remote: u32) -> String {
    format!("mw-p{remote}")
}

pub fn tunnel_addresses(local: u32, remote: u32) -> (std::net::Ipv4Addr, std::net::Ipv4Addr) {
    let (l, r) = (local as u8, remote as u8);
    (std::net::Ipv4Addr::new(169, 254, l, r), std::net::Ipv4Addr::new(169, 254, r, l))
}
