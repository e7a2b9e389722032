//! `index.json`: the keyset's inventory. It is the commit point of every change and the only
//! thing read to answer "what is issued, to whom, until when" (certificates are not parsed).

use std::collections::BTreeMap;
use std::path::Path;

use meshwork_compiler::identity::Kind;
use meshwork_compiler::vxlan::names::NodePair;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::KeyError;
use super::store::check_name;

/// Bumped when the format changes incompatibly.
pub const INDEX_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub version: u32,
    /// The topology this keyset belongs to; syncing another topology is refused.
    pub topology: String,
    /// Hex SHA-256 of the CA certificate's DER.
    pub ca_fingerprint: String,
    pub ca: Validity,
    /// The serial the next certificate gets (serials are never reused).
    pub next_serial: u64,
    pub crl: CrlState,
    /// The current certificate of every identity, by CN.
    pub identities: BTreeMap<String, Record>,
    /// Every serial in the CRL, by serial.
    pub revoked: Vec<RevokedSerial>,
    /// The pre-shared key of every pair of nodes in different PDCs, sorted by pair. Absent
    /// when empty, so keysets without nodes keep the index they always had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub psks: Vec<PskRecord>,
}

/// One pair's pre-shared key (the key itself is only in its file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PskRecord {
    pub low: String,
    pub high: String,
    /// When the current key was made (by init, sync or rotate-psk).
    #[serde(with = "rfc3339")]
    pub created: OffsetDateTime,
}

impl PskRecord {
    pub fn pair(&self) -> NodePair {
        NodePair::new(&self.low, &self.high)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validity {
    pub serial: u64,
    #[serde(with = "rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "rfc3339")]
    pub not_after: OffsetDateTime,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlState {
    /// CRL number of `crl.pem` (increases with every new CRL).
    pub number: u64,
    #[serde(with = "rfc3339")]
    pub this_update: OffsetDateTime,
    /// OpenSSL refuses an expired CRL, so this is watched like a certificate's expiry.
    #[serde(with = "rfc3339")]
    pub next_update: OffsetDateTime,
}

/// One identity's current certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub kind: Kind,
    pub serial: u64,
    #[serde(with = "rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "rfc3339")]
    pub not_after: OffsetDateTime,
    /// Marked revoked in the topology: the serial is in the CRL, the files stay.
    pub revoked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_opt")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// Why a serial is in the CRL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Marked `revoked=#true` in the topology.
    Revoked,
    /// No longer in the topology.
    Removed,
    /// The name now belongs to another kind of identity; it got a new certificate.
    Superseded,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedSerial {
    pub serial: u64,
    pub cn: String,
    #[serde(with = "rfc3339")]
    pub revoked_at: OffsetDateTime,
    pub reason: Reason,
}

impl Index {
    pub fn parse(path: &Path, text: &str) -> Result<Index, KeyError> {
        let index: Index = serde_json::from_str(text)
            .map_err(|e| KeyError::Index { path: path.to_path_buf(), message: format!("not a keyset index: {e}") })?;
        if index.version != INDEX_VERSION {
            return Err(KeyError::Index {
                path: path.to_path_buf(),
                message: format!(
                    "index version {} is not supported (this meshwork reads version {INDEX_VERSION})",
                    index.version
                ),
            });
        }
        let bad = |message: String| Err(KeyError::Index { path: path.to_path_buf(), message });
        for (cn, r) in &index.identities {
            if r.serial >= index.next_serial {
                return bad(format!("`{cn}` has serial {} but next_serial is {}", r.serial, index.next_serial));
            }
        }
        if index.revoked.windows(2).any(|w| w[0].serial >= w[1].serial) {
            return bad("revoked serials are not in increasing order".into());
        }
        // Pairs become file names: the same checks as any name the keyset builds a path from.
        for r in &index.psks {
            if check_name(&r.low).is_err() || check_name(&r.high).is_err() || r.low >= r.high {
                return bad(format!(
                    "pre-shared key pair `{}`/`{}` is not two valid node names in order",
                    r.low, r.high
                ));
            }
        }
        if index.psks.windows(2).any(|w| (&w[0].low, &w[0].high) >= (&w[1].low, &w[1].high)) {
            return bad("pre-shared key pairs are not sorted or appear twice".into());
        }
        Ok(index)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail; fall back to an empty object
        // rather than panic, which `parse` would then refuse loudly.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_else(|_| b"{}".to_vec());
        out.push(b'\n');
        out
    }

    /// Takes the next serial.
    pub fn take_serial(&mut self) -> u64 {
        let s = self.next_serial;
        self.next_serial += 1;
        s
    }

    /// The pairs that have a key.
    pub fn psk_pairs(&self) -> Vec<NodePair> {
        self.psks.iter().map(PskRecord::pair).collect()
    }

    /// Records a new key for `pair` made at `created` (replacing the record of an older one).
    pub fn record_psk(&mut self, pair: &NodePair, created: OffsetDateTime) {
        let rec = PskRecord { low: pair.low.clone(), high: pair.high.clone(), created };
        match self.psks.binary_search_by(|r| (&r.low, &r.high).cmp(&(&pair.low, &pair.high))) {
            Ok(at) => self.psks[at] = rec,
            Err(at) => self.psks.insert(at, rec),
        }
    }

    /// Forgets `pair`'s key.
    pub fn drop_psk(&mut self, pair: &NodePair) {
        self.psks.retain(|r| r.low != pair.low || r.high != pair.high);
    }

    /// Puts a serial in the CRL list (keeping it sorted; a serial is listed once).
    pub fn revoke_serial(&mut self, entry: RevokedSerial) {
        match self.revoked.binary_search_by_key(&entry.serial, |r| r.serial) {
            Ok(_) => {}
            Err(at) => self.revoked.insert(at, entry),
        }
    }
}

/// RFC 3339 timestamps (`2026-11-21T10:00:00Z`), readable in the file.
pub(super) mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = t.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)
    }
}

mod rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::rfc3339")] OffsetDateTime);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn sample() -> Index {
        let t = datetime!(2026-11-21 10:00:00 UTC);
        let mut identities = BTreeMap::new();
        identities.insert(
            "web-1".to_string(),
            Record { kind: Kind::Client, serial: 2, not_before: t, not_after: t, revoked: true, revoked_at: Some(t) },
        );
        Index {
            version: INDEX_VERSION,
            topology: "t".into(),
            ca_fingerprint: "00".into(),
            ca: Validity { serial: 1, not_before: t, not_after: t },
            next_serial: 3,
            crl: CrlState { number: 1, this_update: t, next_update: t },
            identities,
            revoked: vec![RevokedSerial { serial: 2, cn: "web-1".into(), revoked_at: t, reason: Reason::Revoked }],
            psks: vec![],
        }
    }

    #[test]
    fn round_trips_through_json() {
        let i = sample();
        let text = String::from_utf8(i.to_json()).unwrap();
        assert!(text.contains("\"not_after\": \"2026-11-21T10:00:00Z\""), "{text}");
        assert!(text.contains("\"kind\": \"client\""), "{text}");
        assert_eq!(Index::parse(Path::new("index.json"), &text).unwrap(), i);
    }

    #[test]
    fn refuses_a_serial_beyond_next_serial_and_other_versions() {
        let mut i = sample();
        i.next_serial = 2;
        let text = String::from_utf8(i.to_json()).unwrap();
        let e = Index::parse(Path::new("index.json"), &text).unwrap_err().to_string();
        assert!(e.contains("next_serial"), "{e}");
        let mut i = sample();
        i.version = 99;
        let e = Index::parse(Path::new("index.json"), &String::from_utf8(i.to_json()).unwrap()).unwrap_err();
        assert!(e.to_string().contains("version 99"), "{e}");
        assert!(Index::parse(Path::new("index.json"), "{").is_err());
    }

    #[test]
    fn psk_records_stay_sorted_round_trip_and_are_absent_when_empty() {
        let mut i = sample();
        assert!(!String::from_utf8(i.to_json()).unwrap().contains("psks"), "old indexes stay byte-identical");
        let t = i.ca.not_before;
        i.record_psk(&NodePair::new("cn-3", "cn-1"), t);
        i.record_psk(&NodePair::new("cn-1", "cn-2"), t);
        i.record_psk(&NodePair::new("cn-1", "cn-3"), t + time::Duration::days(1));
        assert_eq!(i.psk_pairs(), [NodePair::new("cn-1", "cn-2"), NodePair::new("cn-1", "cn-3")]);
        assert_eq!(i.psks[1].created, t + time::Duration::days(1), "a rotation replaces the record");
        let text = String::from_utf8(i.to_json()).unwrap();
        assert_eq!(Index::parse(Path::new("index.json"), &text).unwrap(), i);
        i.drop_psk(&NodePair::new("cn-2", "cn-1"));
        assert_eq!(i.psk_pairs(), [NodePair::new("cn-1", "cn-3")]);

        let swapped = text
            .replace("\"low\": \"cn-1\",\n      \"high\": \"cn-2\"", "\"low\": \"cn-2\",\n      \"high\": \"cn-1\"");
        assert_ne!(swapped, text);
        assert!(Index::parse(Path::new("index.json"), &swapped).is_err());
        let escaping = text.replace("\"cn-2\"", "\"../x\"");
        assert!(Index::parse(Path::new("index.json"), &escaping).is_err());
    }

    #[test]
    fn revoked_serials_stay_sorted_and_unique() {
        let mut i = sample();
        let t = i.ca.not_before;
        for s in [7, 4, 7, 9] {
            i.revoke_serial(RevokedSerial { serial: s, cn: "x".into(), revoked_at: t, reason: Reason::Removed });
        }
        assert_eq!(i.revoked.iter().map(|r| r.serial).collect::<Vec<_>>(), [2, 4, 7, 9]);
    }
}
