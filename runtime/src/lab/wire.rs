//! What crosses the lab's wires, counted by nftables: on the internet (every packet between two
//! nodes' external addresses is routed there) plaintext VXLAN, ESP in UDP, IKE, bare ESP and IP
//! fragments; on each PDC's admin segment the VXLAN that goes in clear, as it should within a
//! PDC. The tables are the lab's own (`meshwork_lab`), in namespaces only the lab makes, loaded
//! with one `nft -j -f` each and read back with `nft -j`.

use std::collections::BTreeMap;
use std::io;

use serde::Serialize;
use serde_json::{Value, json};

use super::nodes::NodeLayout;
use crate::{netns, nft};

/// The lab's table in the internet's and the segments' namespaces.
pub const TABLE: &str = "meshwork_lab";
/// Rule comments: the names of the counters.
pub const PLAINTEXT: &str = "plaintext VXLAN";
pub const ESP_IN_UDP: &str = "ESP in UDP";
pub const IKE: &str = "IKE";
pub const ESP: &str = "ESP";
pub const FRAGMENTS: &str = "IP fragments";
pub const CLEAR: &str = "VXLAN in clear";

const NAT_T_PORT: u16 = 4500;
const IKE_PORT: u16 = 500;

/// The counters of one lab, read at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Wire {
    /// On the internet: UDP to an overlay rule's port. Must stay 0.
    pub plaintext_vxlan: u64,
    /// On the internet: UDP 4500 (IKE after NAT-T detection, and every ESP packet).
    pub esp_in_udp: u64,
    pub ike: u64,
    /// On the internet: ESP not in UDP (meshwork always encapsulates: 0).
    pub esp: u64,
    /// On the internet: IP fragments (a DF probe of the vNIC MTU must never need one: 0).
    pub fragments: u64,
    /// Per PDC: VXLAN in clear on its admin segment (same-PDC traffic).
    pub clear_on_admin: BTreeMap<String, u64>,
}

fn udp_dport(ports: &[u16]) -> Value {
    let right = match ports {
        [one] => json!(one),
        many => json!({ "set": many }),
    };
    json!({ "match": { "op": "==", "left": { "payload": { "protocol": "udp", "field": "dport" } }, "right": right } })
}

fn counting(family: &str, comment: &str, matches: Vec<Value>) -> Value {
    let mut expr = matches;
    expr.push(json!({ "counter": { "packets": 0, "bytes": 0 } }));
    json!({ "add": { "rule": { "family": family, "table": TABLE, "chain": "forward", "comment": comment, "expr": expr } } })
}

/// A table `FAMILY meshwork_lab` with a forward chain (policy accept) and the given rules; the
/// table is replaced if it exists.
fn ruleset(family: &str, rules: Vec<Value>) -> String {
    let mut commands = vec![
        json!({ "add": { "table": { "family": family, "name": TABLE } } }),
        json!({ "delete": { "table": { "family": family, "name": TABLE } } }),
        json!({ "add": { "table": { "family": family, "name": TABLE } } }),
        json!({ "add": { "chain": { "family": family, "table": TABLE, "name": "forward", "type": "filter",
            "hook": "forward", "prio": 0, "policy": "accept" } } }),
    ];
    commands.extend(rules);
    json!({ "nftables": commands }).to_string()
}

/// The internet's counters (family inet, routed packets).
pub fn internet_ruleset(vxlan_ports: &[u16]) -> String {
    let fragments = json!({ "match": { "op": "!=",
        "left": { "&": [ { "payload": { "protocol": "ip", "field": "frag-off" } }, 0x3fff ] }, "right": 0 } });
    let esp = json!({ "match": { "op": "==", "left": { "meta": { "key": "l4proto" } }, "right": "esp" } });
    ruleset(
        "inet",
        vec![
            counting("inet", FRAGMENTS, vec![fragments]),
            counting("inet", PLAINTEXT, vec![udp_dport(vxlan_ports)]),
            counting("inet", ESP_IN_UDP, vec![udp_dport(&[NAT_T_PORT])]),
            counting("inet", IKE, vec![udp_dport(&[IKE_PORT])]),
            counting("inet", ESP, vec![esp]),
        ],
    )
}

/// An admin segment's counter (family bridge: frames the segment's bridge forwards).
pub fn segment_ruleset(vxlan_ports: &[u16]) -> String {
    ruleset("bridge", vec![counting("bridge", CLEAR, vec![udp_dport(vxlan_ports)])])
}

/// Loads `ruleset` in namespace `ns`, as one transaction.
pub fn load(ns: &str, ruleset: &str) -> io::Result<()> {
    netns::run_in(ns, || nft::apply(ruleset))?.map_err(|e| io::Error::other(format!("nft in {ns}: {e}")))
}

/// Loads the counters of every wire of the lab.
pub fn load_all(layout: &NodeLayout) -> io::Result<()> {
    let Some(internet) = &layout.internet else { return Ok(()) };
    load(&internet.netns, &internet_ruleset(&internet.vxlan_ports))?;
    for s in &layout.segments {
        load(&s.netns, &segment_ruleset(&internet.vxlan_ports))?;
    }
    Ok(())
}

/// Counter values by comment in a listing of `nft -j list table`.
pub fn counters_of(listing: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for item in listing["nftables"].as_array().into_iter().flatten() {
        let Some(rule) = item.get("rule") else { continue };
        let Some(comment) = rule["comment"].as_str() else { continue };
        let packets = rule["expr"].as_array().into_iter().flatten().find_map(|e| e.get("counter")?["packets"].as_u64());
        if let Some(p) = packets {
            *out.entry(comment.to_owned()).or_default() += p;
        }
    }
    out
}

fn counters(ns: &str, family: &str) -> Result<BTreeMap<String, u64>, String> {
    let listing = netns::run_in(ns, || nft::list_json(family, TABLE))
        .map_err(|e| format!("cannot enter {ns}: {e}"))?
        .map_err(|e| format!("nft in {ns}: {e}"))?
        .ok_or_else(|| format!("no table {family} {TABLE} in {ns}"))?;
    Ok(counters_of(&listing))
}

/// Reads every counter. None for a lab without an internet (one PDC, no external addresses).
pub fn read(layout: &NodeLayout) -> Result<Option<Wire>, String> {
    let Some(internet) = &layout.internet else { return Ok(None) };
    let c = counters(&internet.netns, "inet")?;
    let get = |name: &str| c.get(name).copied().unwrap_or(0);
    let mut wire = Wire {
        plaintext_vxlan: get(PLAINTEXT),
        esp_in_udp: get(ESP_IN_UDP),
        ike: get(IKE),
        esp: get(ESP),
        fragments: get(FRAGMENTS),
        clear_on_admin: BTreeMap::new(),
    };
    for s in &layout.segments {
        let c = counters(&s.netns, "bridge")?;
        wire.clear_on_admin.insert(s.pdc.clone(), c.get(CLEAR).copied().unwrap_or(0));
    }
    Ok(Some(wire))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rulesets_are_one_document_with_every_counter() {
        let doc: Value = serde_json::from_str(&internet_ruleset(&[4790, 4793])).expect("JSON");
        let commands = doc["nftables"].as_array().expect("commands");
        let comments: Vec<&str> = commands.iter().filter_map(|c| c["add"]["rule"]["comment"].as_str()).collect();
        assert_eq!(comments, [FRAGMENTS, PLAINTEXT, ESP_IN_UDP, IKE, ESP]);
        assert_eq!(commands[1]["delete"]["table"]["name"], TABLE);
        let plaintext = &commands[5]["add"]["rule"]["expr"][0]["match"]["right"];
        assert_eq!(plaintext, &json!({ "set": [4790, 4793] }));
        let seg: Value = serde_json::from_str(&segment_ruleset(&[4790])).expect("JSON");
        assert_eq!(seg["nftables"][4]["add"]["rule"]["expr"][0]["match"]["right"], json!(4790));
        assert_eq!(seg["nftables"][4]["add"]["rule"]["family"], "bridge");
    }

    #[test]
    fn counters_are_read_by_comment() {
        let listing = json!({ "nftables": [
            { "metainfo": { "version": "1.0.6" } },
            { "rule": { "comment": PLAINTEXT, "expr": [ { "match": {} }, { "counter": { "packets": 0, "bytes": 0 } } ] } },
            { "rule": { "comment": ESP_IN_UDP, "expr": [ { "counter": { "packets": 42, "bytes": 9000 } } ] } },
            { "rule": { "expr": [ { "counter": { "packets": 7, "bytes": 1 } } ] } },
        ] });
        let c = counters_of(&listing);
        assert_eq!(c.get(PLAINTEXT), Some(&0));
        assert_eq!(c.get(ESP_IN_UDP), Some(&42));
        assert_eq!(c.len(), 2);
    }
}
