//! The compiled output: one text file per path, laid out as `meshwork build` writes it.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::emit;
use crate::network::Network;

/// Path (relative, '/'-separated) -> content. Ordered, so iteration is deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Artifacts(pub BTreeMap<String, String>);

impl Artifacts {
    pub fn insert(&mut self, path: impl Into<String>, content: impl Into<String>) {
        self.0.insert(path.into(), content.into());
    }
    pub fn get(&self, path: &str) -> Option<&str> {
        self.0.get(path).map(String::as_str)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }
    pub fn checksum(&self) -> &str {
        self.get(CHECKSUM_PATH).map_or("", str::trim_end)
    }
}

pub const CHECKSUM_PATH: &str = "checksum";

pub fn build(net: &Network) -> Artifacts {
    let mut out = Artifacts::default();
    for c in &net.controllers {
        let dir = format!("controllers/{}", c.name);
        let ruleset = emit::nftables::ruleset(net, c);
        out.insert(format!("{dir}/nftables.json"), emit::nftables::to_json(&ruleset));
        out.insert(format!("{dir}/nftables.nft"), emit::nftables::to_text(net, c));
        out.insert(format!("{dir}/vns3-firewall.txt"), emit::vns3::firewall(net, c));
        out.insert(format!("{dir}/routes.json"), emit::routes::to_json(net, c));
        for (path, content) in emit::openvpn::configs(net, c) {
            out.insert(format!("{dir}/openvpn/{path}"), content);
        }
    }
    let sum = checksum(&out);
    out.insert(CHECKSUM_PATH, format!("{sum}\n"));
    out
}

/// The topology checksum: SHA-256 over every artifact (path and content), so two controllers
/// agree exactly when they were built from the same topology, whatever its file format.
pub fn checksum(artifacts: &Artifacts) -> String {
    let mut h = Sha256::new();
    for (path, content) in artifacts.iter().filter(|(p, _)| p.as_str() != CHECKSUM_PATH) {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(content.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
