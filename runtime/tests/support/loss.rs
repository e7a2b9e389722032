//! Random packet loss on one interface of a namespace, made with nftables (`tc netem` is not
//! available everywhere): a table of its own in that namespace drops a share of the UDP that
//! goes out of and comes in on the interface, at random (`numgen random`), and counts what it
//! saw and what it dropped, so a test can show that the rules sit where the traffic passes and
//! that loss really happened.

use super::{output, run};

/// The table, in the namespace the loss is made in (which is the test's own).
const TABLE: &str = "mwf_loss";
/// Comments of the rules, for [`counts`].
const SEEN_IN: &str = "mwf-seen-in";
const SEEN_OUT: &str = "mwf-seen-out";
const DROPPED_IN: &str = "mwf-loss-in";
const DROPPED_OUT: &str = "mwf-loss-out";

/// Drops `percent` % of the UDP packets between `ns` and a server's UDP `port`, both ways,
/// where they leave or enter `ns` through `dev`. In the namespace where the client that sends
/// and receives them runs, its packets pass the output and input hooks, whatever routes them.
pub fn add(ns: &str, dev: &str, port: u16, percent: u8) {
    let rules = format!(
        "table inet {TABLE} {{\n\
         chain output {{ type filter hook output priority 0; policy accept;\n\
           oifname \"{dev}\" udp dport {port} counter comment \"{SEEN_OUT}\"\n\
           oifname \"{dev}\" udp dport {port} numgen random mod 100 < {percent} counter drop comment \"{DROPPED_OUT}\"\n\
         }}\n\
         chain input {{ type filter hook input priority 0; policy accept;\n\
           iifname \"{dev}\" udp sport {port} counter comment \"{SEEN_IN}\"\n\
           iifname \"{dev}\" udp sport {port} numgen random mod 100 < {percent} counter drop comment \"{DROPPED_IN}\"\n\
         }}\n\
         }}\n"
    );
    let file = std::env::temp_dir().join(format!("mwf-loss-{}-{ns}.nft", std::process::id()));
    std::fs::write(&file, rules).expect("write the loss rules");
    run("ip", &["netns", "exec", ns, "nft", "-f", file.to_str().expect("a UTF-8 path")]);
    let _ = std::fs::remove_file(&file);
}

/// Packets the rules [`add`] made in `ns` counted so far, each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Into the namespace: seen, dropped.
    pub seen_in: u64,
    pub dropped_in: u64,
    /// Out of it: seen, dropped.
    pub seen_out: u64,
    pub dropped_out: u64,
}

pub fn counts(ns: &str) -> Counts {
    let text = output("ip", &["netns", "exec", ns, "nft", "-j", "list", "table", "inet", TABLE]);
    let v: serde_json::Value = serde_json::from_str(&text).expect("nft -j");
    let mut c = Counts::default();
    for rule in v["nftables"].as_array().into_iter().flatten().filter_map(|i| i.get("rule")) {
        let packets: u64 = rule["expr"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("counter"))
            .filter_map(|c| c["packets"].as_u64())
            .sum();
        match rule["comment"].as_str().unwrap_or_default() {
            SEEN_IN => c.seen_in += packets,
            DROPPED_IN => c.dropped_in += packets,
            SEEN_OUT => c.seen_out += packets,
            DROPPED_OUT => c.dropped_out += packets,
            _ => {}
        }
    }
    c
}
