//! Topologies shared by the runtime's tests, with named constants for what the tests assert.

/// A controller with one client, and three compute nodes with external addresses: `cn-1` and
/// `cn-2` in PDC `a`, `cn-3` in PDC `b`. The IPsec pairs (one pre-shared key each) are
/// [`TWO_PDCS_PAIRS`]; `cn-1`–`cn-2` is a same-PDC pair and has none.
pub const TWO_PDCS: &str = r#"
topology "two-pdcs"
overlay "100.127.255.192/26"
controller "east" id=1 {
    address "192.0.2.10"
}
client "web-1"
node "cn-1" pdc="a" admin="10.100.0.11/24" external="198.18.0.11/24"
node "cn-2" pdc="a" admin="10.100.0.12/24" external="198.18.0.12/24"
node "cn-3" pdc="b" admin="10.100.1.13/24" external="198.18.1.13/24"
"#;

/// The cross-PDC pairs of [`TWO_PDCS`], as (low, high).
pub const TWO_PDCS_PAIRS: [(&str, &str); 2] = [("cn-1", "cn-3"), ("cn-2", "cn-3")];

/// A fourth node for [`TWO_PDCS`], in PDC `b`: it pairs with `cn-1` and `cn-2`, not with `cn-3`.
pub const TWO_PDCS_CN4: &str = "node \"cn-4\" pdc=\"b\" admin=\"10.100.1.14/24\" external=\"198.18.1.14/24\"\n";
