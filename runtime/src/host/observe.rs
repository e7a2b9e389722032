//! What is on the host now, of everything meshwork owns there: its nft table, plugin0 and the
//! `mw-e*` veths, the controller's engine namespaces and what is inside them, routes with
//! meshwork's protocol numbers, files under the controller's state directory, and the OpenVPN
//! processes its pid files name.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use meshwork_compiler::network::PLUGIN_BRIDGE;
use serde::{Deserialize, Serialize};

use super::applied::Applied;
use super::desired::{self, NFT_TABLE};
use super::layout::Layout;
use super::resource::{Kind, Resource, ResourceMap, Spec, by_id};
use super::{ENGINE_LINK, ENGINE_TABLE, ROUTE_PROTO_AGENT, ROUTE_PROTO_STATIC};
use crate::daemon::Inspection;
use crate::netlink::{Netlink, RouteInfo};
use crate::{netns, nft};

/// Files larger than this are compared by digest only (no line diff in plans).
const MAX_DIFF_FILE: u64 = 64 * 1024;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Observed {
    pub resources: ResourceMap,
    /// `nft -s list table inet meshwork`, when the table exists.
    pub nft_listing: Option<String>,
    /// Text of the small non-secret files, for line diffs in plans.
    #[serde(skip)]
    pub file_text: BTreeMap<String, String>,
    /// The /32 routes the agent installed for clients on engines.
    pub client_routes: Vec<RouteInfo>,
}

impl Observed {
    /// A digest of everything observed: a saved plan is only applied to the state it was made
    /// against.
    pub fn fingerprint(&self) -> String {
        let json =
            serde_json::to_vec(&(&self.resources.values().collect::<Vec<_>>(), &self.nft_listing)).unwrap_or_default();
        desired::digest(&json)
    }
}

/// The prefix of this controller's engine namespaces (`mw-<controller>-e<k>`).
pub fn engine_netns_prefix(controller: &str) -> String {
    format!("mw-{controller}-e")
}

fn owned_link(name: &str) -> bool {
    name == PLUGIN_BRIDGE || (name.starts_with("mw-e") && name[4..].chars().all(|c| c.is_ascii_digit()))
}

pub async fn observe(
    layout: &Layout,
    controller: &str,
    applied: Option<&Applied>,
    wanted: &ResourceMap,
) -> io::Result<Observed> {
    let mut out = Vec::new();
    let nl = Netlink::connect().await?;

    // Namespaces, and what is inside each.
    let prefix = engine_netns_prefix(controller);
    let namespaces: Vec<String> = netns::list()?.into_iter().filter(|n| n.starts_with(&prefix)).collect();
    let mut peer_links = BTreeMap::new();
    for ns in &namespaces {
        out.push(Resource::new(Kind::Netns, ns.clone(), Spec::Netns { name: ns.clone() }));
        let inner = Netlink::connect_in(ns).await?;
        if let Some(link) = inner.link(ENGINE_LINK).await? {
            peer_links.insert(ns.clone(), link.clone());
            out.push(
                Resource::new(
                    Kind::Link,
                    format!("{ns}:{ENGINE_LINK}"),
                    Spec::PeerLink { netns: ns.clone(), name: ENGINE_LINK.into() },
                )
                .attr("kind", link.kind.clone().unwrap_or_default())
                .attr("state", if link.up { "up" } else { "down" }),
            );
            for net in inner.addresses(ENGINE_LINK).await? {
                out.push(desired::address(Some(ns), ENGINE_LINK, net));
            }
        }
        for route in inner.routes(Some(ROUTE_PROTO_STATIC), None).await? {
            out.push(desired::route_resource(Some(ns), route));
        }
        for rule in inner.rules().await?.into_iter().filter(|r| r.table == ENGINE_TABLE) {
            out.push(desired::rule_resource(Some(ns), rule));
        }
    }

    // Links in the controller's namespace.
    for link in nl.links().await?.into_iter().filter(|l| owned_link(&l.name)) {
        let kind = link.kind.clone().unwrap_or_default();
        let state = if link.up { "up" } else { "down" };
        if link.name == PLUGIN_BRIDGE && kind == "bridge" {
            out.push(
                Resource::new(Kind::Link, PLUGIN_BRIDGE, Spec::Bridge { name: PLUGIN_BRIDGE.into() })
                    .attr("kind", kind)
                    .attr("state", state),
            );
        } else if kind == "veth" && link.name != PLUGIN_BRIDGE {
            let ns = format!("{prefix}{}", &link.name[4..]);
            let peer = if peer_links.contains_key(&ns) { format!("{ENGINE_LINK}@{ns}") } else { "none".into() };
            let mut r = Resource::new(
                Kind::Link,
                link.name.clone(),
                Spec::Veth {
                    name: link.name.clone(),
                    master: link.master.clone().unwrap_or_default(),
                    peer: ENGINE_LINK.into(),
                    peer_netns: ns,
                },
            )
            .attr("kind", kind)
            .attr("peer", peer)
            .attr("state", state);
            if let Some(m) = &link.master {
                r = r.attr("master", m.clone());
            }
            out.push(r);
        } else {
            out.push(
                Resource::new(Kind::Link, link.name.clone(), Spec::Link { name: link.name.clone() })
                    .attr("kind", kind)
                    .attr("state", state),
            );
        }
        if link.name == PLUGIN_BRIDGE {
            for net in nl.addresses(PLUGIN_BRIDGE).await? {
                out.push(desired::address(None, PLUGIN_BRIDGE, net));
            }
        }
    }
    for route in nl.routes(Some(ROUTE_PROTO_STATIC), None).await? {
        out.push(desired::route_resource(None, route));
    }
    let client_routes = nl.routes(Some(ROUTE_PROTO_AGENT), None).await?;

    // Sysctls: only the ones the topology sets (meshwork does not own the others).
    for r in wanted.values() {
        if let Spec::Sysctl { netns: ns, key, .. } = &r.spec {
            if ns.as_ref().is_some_and(|n| !namespaces.contains(n)) {
                continue;
            }
            if let Ok(value) = netns::sysctl_read(ns.as_deref(), key) {
                let mut o = r.clone();
                o.attrs.insert("value".into(), value.trim().to_string());
                out.push(o);
            }
        }
    }

    // Files.
    let mut file_text = BTreeMap::new();
    let dir = layout.openvpn();
    let run = layout.run();
    walk(&dir, &mut |path, meta| {
        if path.starts_with(&run) {
            return;
        }
        let Ok(rel) = path.strip_prefix(&dir) else { return };
        let rel = rel.to_string_lossy().into_owned();
        let Ok(content) = std::fs::read(path) else { return };
        let mode = meta.permissions().mode() & 0o7777;
        let secret = rel.ends_with(".key");
        let mut r = Resource::new(Kind::File, rel.clone(), Spec::File { path: rel.clone(), mode, secret })
            .attr("mode", format!("{mode:04o}"))
            .attr("sha256", desired::digest(&content));
        if secret {
            r = r.attr("sensitive", "true");
        } else if meta.len() <= MAX_DIFF_FILE
            && let Ok(text) = String::from_utf8(content)
        {
            file_text.insert(rel, text);
        }
        out.push(r);
    })?;

    // The nftables table: its listing stands for the ruleset the last apply loaded as long as
    // it is what that apply left; anything else was changed outside meshwork.
    let nft_listing = nft::list_table().map_err(io::Error::other)?;
    if let Some(listing) = &nft_listing {
        let ruleset = match applied.and_then(|a| a.nft.as_ref()) {
            Some(a) if a.listing == *listing => a.ruleset.clone(),
            _ => format!("changed outside meshwork ({})", desired::digest(listing.as_bytes())),
        };
        out.push(Resource::new(Kind::Nftables, NFT_TABLE, Spec::Nftables).attr("ruleset", ruleset));
    }

    // OpenVPN processes, by their pid files, each checked to be ours and in its namespace.
    let here = netns::current_inode()?;
    if let Ok(entries) = std::fs::read_dir(&run) {
        let mut pidfiles: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        pidfiles.sort();
        for pidfile in pidfiles.into_iter().filter(|p| p.extension().is_some_and(|e| e == "pid")) {
            let Some(unit) = pidfile.file_stem().map(|s| s.to_string_lossy().into_owned()) else { continue };
            if let Some(found) = crate::daemon::inspect(&pidfile, here)? {
                out.push(process_resource(&unit, found));
            }
        }
    }

    Ok(Observed { resources: by_id(out), nft_listing, file_text, client_routes })
}

/// What `state` of a process resource reads when it is not "running": the plan shows it as a
/// change ("~ process engine-3"), which stops what the pid file names (or removes the stale
/// file) and starts the unit again.
pub const PROCESS_ELSEWHERE: &str = "running in another network namespace";
pub const PROCESS_STALE: &str = "stale pid file";

fn process_resource(unit: &str, found: Inspection) -> Resource {
    let (record, state) = match found {
        Inspection::Running(r) => (Some(r), "running".to_string()),
        Inspection::Elsewhere(r) => (Some(r), PROCESS_ELSEWHERE.to_string()),
        Inspection::Stale(why) => (None, format!("{PROCESS_STALE} ({why})")),
    };
    let config = if unit == "server" { "server.conf".to_string() } else { format!("{unit}.conf") };
    let netns = record.as_ref().and_then(|r| r.netns.clone());
    let mut r =
        Resource::new(Kind::Process, unit, Spec::Process { unit: unit.to_string(), config, netns: netns.clone() })
            .attr("config", record.map(|r| r.config_sha256).unwrap_or_default())
            .attr("state", state);
    if let Some(ns) = netns {
        r = r.attr("netns", ns);
    }
    r
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            walk(&path, f)?;
        } else if meta.is_file() {
            f(&path, &meta);
        }
    }
    Ok(())
}
