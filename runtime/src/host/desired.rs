//! What the topology wants on one host, as resources plus the content they need (file bytes,
//! the nftables ruleset): what the [parts](super::part) of its kind want.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use meshwork_compiler::artifacts::{self, BuildOptions};
use meshwork_compiler::network::Network;
use sha2::{Digest, Sha256};

use super::identity::{HostId, HostKind};
use super::part::{Topology, parts};
use super::resource::{Kind, Resource, Spec};
use crate::keys::Keyset;
use crate::netlink::{RouteInfo, RuleInfo};

/// The name of the nftables resource.
pub const NFT_TABLE: &str = "inet meshwork";
/// Forwarding must be on wherever overlay traffic is routed.
pub const IP_FORWARD: &str = "net.ipv4.ip_forward";
/// The kernel's main routing table.
pub const MAIN_TABLE: u32 = 254;

/// A file as the topology wants it.
#[derive(Clone, Debug)]
pub struct DesiredFile {
    pub content: Vec<u8>,
    pub mode: u32,
    pub secret: bool,
}

#[derive(Clone, Debug)]
pub struct Desired {
    pub topology: String,
    pub host: HostId,
    pub checksum: String,
    pub ca_fingerprint: String,
    /// `nft -j -f` input that replaces table inet meshwork.
    pub nft_json: String,
    /// The same ruleset in nft syntax, shown in plans when it changes.
    pub nft_text: String,
    /// Relative to the host's working directory ([`Layout::work`](super::layout::Layout::work)).
    pub files: BTreeMap<String, DesiredFile>,
    pub resources: Vec<Resource>,
}

#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("the topology has no {} named `{}` (it has: {known})", .host.kind.as_str(), .host.name)]
    NoHost { host: HostId, known: String },
    #[error("the keyset cannot provide `{0}`: {1}; run `meshwork keys sync FILE` on the root controller")]
    Keys(String, String),
}

/// Short hex digests: enough to tell versions apart in a plan, without walls of hex.
pub fn digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Desired {
    /// What the topology wants on `host`: the sum of what the parts of its kind want.
    pub fn new(net: &Network, host: &HostId, keyset: &Keyset) -> Result<Desired, DesiredError> {
        let t = Topology { net, keyset, host };
        let exists = match host.kind {
            HostKind::Controller => t.controller().is_ok(),
            HostKind::Node => t.node().is_ok(),
        };
        if !exists {
            return Err(t.unknown());
        }
        let ca_fingerprint = keyset.ca_fingerprint();
        let checksum = artifacts::checksum(net, &BuildOptions { ca_fingerprint: Some(ca_fingerprint.clone()) });
        let mut d = Desired {
            topology: net.name.clone(),
            host: host.clone(),
            checksum,
            ca_fingerprint,
            nft_json: String::new(),
            nft_text: String::new(),
            files: BTreeMap::new(),
            resources: Vec::new(),
        };
        for part in parts(host.kind) {
            part.desire(&t, &mut d)?;
        }
        Ok(d)
    }

    pub fn resource_map(&self) -> super::resource::ResourceMap {
        super::resource::by_id(self.resources.iter().cloned())
    }

    /// Adds a managed file and its resource.
    pub fn add_file(&mut self, path: impl Into<String>, file: DesiredFile) {
        let path = path.into();
        let mut r = Resource::new(
            Kind::File,
            path.clone(),
            Spec::File { path: path.clone(), mode: file.mode, secret: file.secret },
        )
        .attr("mode", format!("{:04o}", file.mode))
        .attr("sha256", digest(&file.content));
        if file.secret {
            r = r.attr("sensitive", "true");
        }
        self.resources.push(r);
        self.files.insert(path, file);
    }

    /// What a process's configuration amounts to: the files it reads at start.
    pub fn files_digest<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> String {
        let mut h = Sha256::new();
        for path in paths {
            if let Some(f) = self.files.get(path) {
                h.update(path.as_bytes());
                h.update(&f.content);
            }
        }
        h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

impl DesiredFile {
    pub fn plain(content: impl Into<Vec<u8>>) -> DesiredFile {
        DesiredFile { content: content.into(), mode: 0o644, secret: false }
    }
    /// A key: 0600, its digest and content never shown.
    pub fn secret(content: impl Into<Vec<u8>>) -> DesiredFile {
        DesiredFile { content: content.into(), mode: 0o600, secret: true }
    }
}

fn scoped(netns: Option<&str>, what: String) -> String {
    match netns {
        Some(ns) => format!("{ns}:{what}"),
        None => what,
    }
}

pub fn address(netns: Option<&str>, link: &str, net: Ipv4Net) -> Resource {
    Resource::new(
        Kind::Address,
        scoped(netns, format!("{link} {net}")),
        Spec::Address { netns: netns.map(str::to_string), link: link.into(), net },
    )
}

pub fn route_resource(netns: Option<&str>, route: RouteInfo) -> Resource {
    let dst = if route.dst.prefix_len() == 0 { "default".to_string() } else { route.dst.to_string() };
    let mut r = Resource::new(
        Kind::Route,
        scoped(netns, format!("{dst} table {}", route.table)),
        Spec::Route { netns: netns.map(str::to_string), route: route.clone() },
    )
    .attr("proto", route.protocol.to_string());
    if let Some(gw) = route.gateway {
        r = r.attr("via", gw.to_string());
    }
    if let Some(dev) = &route.dev {
        r = r.attr("dev", dev.clone());
    }
    r
}

pub fn rule_resource(netns: Option<&str>, rule: RuleInfo) -> Resource {
    let iif = rule.iif.clone().unwrap_or_else(|| "any".into());
    Resource::new(
        Kind::Rule,
        scoped(netns, format!("iif {iif} lookup {}", rule.table)),
        Spec::Rule { netns: netns.map(str::to_string), rule: rule.clone() },
    )
    .attr("priority", rule.priority.to_string())
}
