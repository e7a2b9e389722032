//! STUB — to be written: the controller's nft ruleset (JSON via the nftables crate, and nft text).
use crate::network::{ControllerNet, Network};

pub fn ruleset(_net: &Network, _c: &ControllerNet) -> nftables::schema::Nftables<'static> {
    nftables::schema::Nftables { objects: Default::default() }
}
pub fn to_json(r: &nftables::schema::Nftables<'_>) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}
pub fn to_text(_net: &Network, _c: &ControllerNet) -> String {
    String::new()
}
