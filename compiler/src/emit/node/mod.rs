//! A compute node's artifacts (`nodes/<name>/`, DESIGN §9): its Linux network (`network.json`),
//! the SmartOS equivalents (`overlay_files/<rule>.json`, `usbkey-config`), strongSwan
//! (`swanctl.conf`, `strongswan.conf`) when it has peers in other PDCs, and its firewall
//! (`nftables.json`/`.nft`, `ipf.conf`). Pre-shared keys are never here: `swanctl.conf`
//! includes them from the keyset by path.

pub mod ipf;
pub mod network;
pub mod nftables;
pub mod smartos;
pub mod strongswan;

use crate::network::Network;
use crate::vxlan::NodeNet;

/// Where a node's artifacts live in a build.
pub fn dir(node: &str) -> String {
    format!("nodes/{node}")
}

pub const NETWORK_JSON: &str = "network.json";
pub const NFTABLES_JSON: &str = "nftables.json";
pub const NFTABLES_NFT: &str = "nftables.nft";
pub const IPF_CONF: &str = "ipf.conf";
pub const USBKEY_CONFIG: &str = "usbkey-config";
pub const OVERLAY_FILES_DIR: &str = "overlay_files";
pub const SWANCTL_CONF: &str = "swanctl.conf";
pub const STRONGSWAN_CONF: &str = "strongswan.conf";
/// With `datapath="auto"`: the configuration for the userspace path, used when the probe
/// finds that the kernel cannot hold an ESP SA.
pub const STRONGSWAN_USERSPACE_CONF: &str = "strongswan-userspace.conf";

/// The node's nft table: `nftables.json` (`nft -j -f` input) and `nftables.nft` (for review).
pub fn ruleset(net: &Network, node: &NodeNet) -> (String, String) {
    let rs = nftables::plan(&net.vxlan, node);
    (crate::emit::nftables::to_json(&crate::emit::nftables::json::render(&rs)), nftables::text(net, node, &rs))
}

/// Every artifact of `node`, paths relative to its directory, in a fixed order.
pub fn artifacts(net: &Network, node: &NodeNet) -> Vec<(String, String)> {
    let vx = &net.vxlan;
    let mut out = vec![(NETWORK_JSON.to_string(), network::to_json(net, node))];
    for (rule, content) in smartos::overlay_files(vx, node) {
        out.push((format!("{OVERLAY_FILES_DIR}/{rule}.json"), content));
    }
    out.push((USBKEY_CONFIG.to_string(), smartos::usbkey_config(vx, node)));
    if vx.ipsec_peers(node).next().is_some() {
        out.push((SWANCTL_CONF.to_string(), strongswan::swanctl_conf(vx, node)));
        for (file, content) in strongswan::strongswan_confs(vx, node) {
            out.push((file.to_string(), content));
        }
    }
    let (json, text) = ruleset(net, node);
    out.push((NFTABLES_JSON.to_string(), json));
    out.push((NFTABLES_NFT.to_string(), text));
    out.push((IPF_CONF.to_string(), ipf::conf(vx, node)));
    out
}
