//! What the topology wants on one controller, as resources plus the content they need
//! (file bytes, the nftables ruleset).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use meshwork_compiler::artifacts::{self, BuildOptions};
use meshwork_compiler::emit::{nftables, openvpn};
use meshwork_compiler::network::{ControllerNet, Network, PLUGIN_BRIDGE, TUN_DEVICE};
use sha2::{Digest, Sha256};

use super::resource::{Kind, Resource, Spec};
use super::{ENGINE_LINK, ENGINE_RULE_PRIORITY, ENGINE_TABLE, ROUTE_PROTO_STATIC, engine_veth};
use crate::keys::Keyset;
use crate::netlink::{RouteInfo, RuleInfo};

/// The name of the nftables resource.
pub const NFT_TABLE: &str = "inet meshwork";
/// Forwarding must be on wherever overlay traffic is routed.
pub const IP_FORWARD: &str = "net.ipv4.ip_forward";
const RP_FILTER_ALL: &str = "net.ipv4.conf.all.rp_filter";
const RP_FILTER_ENGINE_LINK: &str = "net.ipv4.conf.eth0.rp_filter";
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
    pub controller: String,
    pub checksum: String,
    pub ca_fingerprint: String,
    /// `nft -j -f` input that replaces table inet meshwork.
    pub nft_json: String,
    /// The same ruleset in nft syntax, shown in plans when it changes.
    pub nft_text: String,
    /// Relative to the controller's OpenVPN directory.
    pub files: BTreeMap<String, DesiredFile>,
    pub resources: Vec<Resource>,
}

#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("the topology has no controller named `{0}` (it has: {1})")]
    NoController(String, String),
    #[error("the keyset cannot provide `{0}`: {1}; run `meshwork keys sync FILE` on the root controller")]
    Keys(String, String),
}

/// Short hex digests: enough to tell versions apart in a plan, without walls of hex.
pub fn digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Desired {
    pub fn new(net: &Network, controller: &str, keyset: &Keyset) -> Result<Desired, DesiredError> {
        let c = net.controller(controller).ok_or_else(|| {
            let names: Vec<&str> = net.controllers.iter().map(|c| c.name.as_str()).collect();
            DesiredError::NoController(controller.to_string(), names.join(", "))
        })?;
        let ca_fingerprint = keyset.ca_fingerprint();
        let checksum = artifacts::checksum(net, &BuildOptions { ca_fingerprint: Some(ca_fingerprint.clone()) });
        let renderer = nftables::Renderer::new(net);
        let nft_json = renderer.json(net, c);
        let nft_text = renderer.text(net, c);
        let files = files(net, c, keyset)?;
        let mut d = Desired {
            topology: net.name.clone(),
            controller: c.name.clone(),
            checksum,
            ca_fingerprint,
            nft_json,
            nft_text,
            files,
            resources: Vec::new(),
        };
        d.resources = resources(c, &d);
        Ok(d)
    }

    pub fn resource_map(&self) -> super::resource::ResourceMap {
        super::resource::by_id(self.resources.iter().cloned())
    }
}

fn files(net: &Network, c: &ControllerNet, keyset: &Keyset) -> Result<BTreeMap<String, DesiredFile>, DesiredError> {
    let plain = |content: String| DesiredFile { content: content.into_bytes(), mode: 0o644, secret: false };
    let secret = |content: String| DesiredFile { content: content.into_bytes(), mode: 0o600, secret: true };
    let keys =
        |what: &str, r: crate::keys::Result<String>| r.map_err(|e| DesiredError::Keys(what.to_string(), e.to_string()));
    let mut out = BTreeMap::new();
    for (name, content) in openvpn::configs(net, c) {
        out.insert(name, plain(content));
    }
    for (client, content) in openvpn::ccd_files(net) {
        out.insert(format!("{}/{client}", openvpn::CCD_DIR), plain(content));
    }
    out.insert(openvpn::CA_PATH.to_string(), plain(keys("ca.crt", keyset.ca_pem())?));
    out.insert(openvpn::CRL_PATH.to_string(), plain(keys("crl.pem", keyset.crl_pem())?));
    out.insert(openvpn::TLS_CRYPT_PATH.to_string(), secret(keys("tls-crypt.key", keyset.tls_crypt())?));
    let mut identities = vec![c.name.clone()];
    if let Some(set) = &c.engines {
        identities.extend(set.engines.iter().map(|e| e.name.clone()));
    }
    if !net.mesh.neighbours(&c.name).is_empty() {
        identities.push(openvpn::peer_cn(&c.name));
    }
    for cn in identities {
        out.insert(openvpn::cert_path(&cn), plain(keys(&cn, keyset.cert_pem(&cn))?));
        out.insert(openvpn::key_path(&cn), secret(keys(&cn, keyset.key_pem(&cn))?));
    }
    Ok(out)
}

/// What a process's configuration amounts to: its config file and every key file it loads at
/// start (the CRL and ccd files are re-read per connection, so they don't restart it).
fn process_digest(d: &Desired, config: &str, cn: &str) -> String {
    let mut h = Sha256::new();
    for path in [config, openvpn::CA_PATH, openvpn::TLS_CRYPT_PATH, &openvpn::cert_path(cn), &openvpn::key_path(cn)] {
        if let Some(f) = d.files.get(path) {
            h.update(path.as_bytes());
            h.update(&f.content);
        }
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn resources(c: &ControllerNet, d: &Desired) -> Vec<Resource> {
    let mut out = Vec::new();
    out.push(
        Resource::new(
            Kind::Sysctl,
            IP_FORWARD,
            Spec::Sysctl { netns: None, key: IP_FORWARD.into(), value: "1".into() },
        )
        .attr("value", "1"),
    );
    for (path, f) in &d.files {
        let mut r =
            Resource::new(Kind::File, path.clone(), Spec::File { path: path.clone(), mode: f.mode, secret: f.secret })
                .attr("mode", format!("{:04o}", f.mode))
                .attr("sha256", digest(&f.content));
        if f.secret {
            r = r.attr("sensitive", "true");
        }
        out.push(r);
    }
    out.push(Resource::new(Kind::Nftables, NFT_TABLE, Spec::Nftables).attr("ruleset", digest(d.nft_json.as_bytes())));
    out.push(
        Resource::new(
            Kind::Process,
            "server",
            Spec::Process { unit: "server".into(), config: openvpn::SERVER_CONF.into(), netns: None },
        )
        .attr("config", process_digest(d, openvpn::SERVER_CONF, &c.name))
        .attr("state", "running"),
    );
    // Peering tunnels: one point-to-point OpenVPN per neighbour in the peering graph.
    if d.files.contains_key(&openvpn::cert_path(&openvpn::peer_cn(&c.name))) {
        for remote in d.files.keys().filter_map(|f| f.strip_prefix("peer-")?.strip_suffix(".conf")) {
            let unit = format!("peer-{remote}");
            let config = openvpn::peer_conf(remote);
            out.push(
                Resource::new(Kind::Process, unit.clone(), Spec::Process { unit, config: config.clone(), netns: None })
                    .attr("config", process_digest(d, &config, &openvpn::peer_cn(&c.name)))
                    .attr("state", "running"),
            );
        }
    }
    let Some(set) = &c.engines else { return out };
    let prefix = set.subnet.prefix_len();
    let bridge_net = Ipv4Net::new(set.bridge_ip, prefix).expect("prefix from a valid subnet");
    out.push(
        Resource::new(Kind::Link, PLUGIN_BRIDGE, Spec::Bridge { name: PLUGIN_BRIDGE.into() })
            .attr("kind", "bridge")
            .attr("state", "up"),
    );
    out.push(address(None, PLUGIN_BRIDGE, bridge_net));
    for e in &set.engines {
        let ns = openvpn::engine_netns(&e.name);
        let veth = engine_veth(e.index);
        out.push(Resource::new(Kind::Netns, ns.clone(), Spec::Netns { name: ns.clone() }));
        out.push(
            Resource::new(
                Kind::Link,
                veth.clone(),
                Spec::Veth {
                    name: veth.clone(),
                    master: PLUGIN_BRIDGE.into(),
                    peer: ENGINE_LINK.into(),
                    peer_netns: ns.clone(),
                },
            )
            .attr("kind", "veth")
            .attr("master", PLUGIN_BRIDGE)
            .attr("peer", format!("{ENGINE_LINK}@{ns}"))
            .attr("state", "up"),
        );
        out.push(
            Resource::new(
                Kind::Link,
                format!("{ns}:{ENGINE_LINK}"),
                Spec::PeerLink { netns: ns.clone(), name: ENGINE_LINK.into() },
            )
            .attr("kind", "veth")
            .attr("state", "up"),
        );
        out.push(address(Some(&ns), ENGINE_LINK, Ipv4Net::new(e.plugin_ip, prefix).expect("valid prefix")));
        // The engine's OpenVPN answers clients through the controller (main table); what its
        // clients send goes to the controller too (ENGINE_TABLE, by the rule below), even to
        // the overlay subnet that is on its own tun, so the controller's firewall sees it.
        for table in [MAIN_TABLE, ENGINE_TABLE] {
            let route = RouteInfo {
                dst: Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0"),
                gateway: Some(set.bridge_ip),
                dev: Some(ENGINE_LINK.into()),
                table,
                protocol: ROUTE_PROTO_STATIC,
                source: None,
            };
            out.push(route_resource(Some(&ns), route));
        }
        let rule = RuleInfo { priority: ENGINE_RULE_PRIORITY, iif: Some(TUN_DEVICE.into()), table: ENGINE_TABLE };
        out.push(rule_resource(Some(&ns), rule));
        // Forwarding on; reverse-path filtering off, since overlay sources arrive on eth0 while
        // the overlay subnet is on tun0.
        for (key, value) in [(IP_FORWARD, "1"), (RP_FILTER_ALL, "0"), (RP_FILTER_ENGINE_LINK, "0")] {
            out.push(
                Resource::new(
                    Kind::Sysctl,
                    format!("{ns}:{key}"),
                    Spec::Sysctl { netns: Some(ns.clone()), key: key.into(), value: value.into() },
                )
                .attr("value", value),
            );
        }
        let unit = format!("engine-{}", e.index);
        let config = openvpn::engine_conf(e.index);
        out.push(
            Resource::new(
                Kind::Process,
                unit.clone(),
                Spec::Process { unit, config: config.clone(), netns: Some(ns.clone()) },
            )
            .attr("config", process_digest(d, &config, &e.name))
            .attr("netns", ns)
            .attr("state", "running"),
        );
    }
    out
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
