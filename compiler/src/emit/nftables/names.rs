//! Names of the named sets the firewall needs, shared by the nft and VNS3 emitters so an operator
//! sees the same name in both: `tag_<tag>` for tags, `fwset_<name>` for fwsets.

use std::collections::{BTreeMap, HashSet};

use crate::firewall::CompiledFirewall;

/// Prefix of the set holding a tag's client addresses.
pub const TAG_SET_PREFIX: &str = "tag_";
/// Prefix of the set holding an fwset's networks or ports.
pub const FWSET_SET_PREFIX: &str = "fwset_";
/// Longest base name before a uniqueness suffix (nft allows 255; names in the file allow 64).
const MAX_BASE: usize = 72;

/// Tag or fwset name -> set name. Every set name is a valid nft identifier (ASCII letters, digits
/// and `_`, starting with a letter) and unique across the three maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetNames {
    pub tags: BTreeMap<String, String>,
    pub nets: BTreeMap<String, String>,
    pub ports: BTreeMap<String, String>,
}

impl SetNames {
    /// Names every set the firewall uses. Deterministic: tags, then net fwsets, then port
    /// fwsets, each in name order; a clash gets `_2`, `_3`, ...
    pub fn new(fw: &CompiledFirewall) -> Self {
        let mut used = HashSet::new();
        let mut name_all = |prefix: &str, keys: &mut dyn Iterator<Item = &String>| -> BTreeMap<String, String> {
            keys.map(|k| (k.clone(), unique(&mut used, sanitise(prefix, k)))).collect()
        };
        let tags = name_all(TAG_SET_PREFIX, &mut fw.tags.keys());
        let nets = name_all(FWSET_SET_PREFIX, &mut fw.net_sets.keys());
        let ports = name_all(FWSET_SET_PREFIX, &mut fw.port_sets.keys());
        SetNames { tags, nets, ports }
    }

    pub fn tag(&self, tag: &str) -> &str {
        self.tags.get(tag).map_or("", String::as_str)
    }
    pub fn net(&self, fwset: &str) -> &str {
        self.nets.get(fwset).map_or("", String::as_str)
    }
    pub fn port(&self, fwset: &str) -> &str {
        self.ports.get(fwset).map_or("", String::as_str)
    }
}

/// `prefix` + the name with every character other than an ASCII letter, digit or `_` as `_`.
fn sanitise(prefix: &str, name: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + name.len());
    s.push_str(prefix);
    s.extend(name.chars().take(MAX_BASE).map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }));
    s
}

fn unique(used: &mut HashSet<String>, base: String) -> String {
    if used.insert(base.clone()) {
        return base;
    }
    let mut n = 2u32;
    loop {
        let candidate = format!("{base}_{n}");
        if used.insert(candidate.clone()) {
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Action;

    #[test]
    fn names_are_identifiers_and_unique() {
        let mut fw = CompiledFirewall {
            policy: Action::Drop,
            rules: vec![],
            tags: BTreeMap::new(),
            net_sets: BTreeMap::new(),
            port_sets: BTreeMap::new(),
        };
        for t in ["a-b", "a.b", "a_b", "a_b_2", "web"] {
            fw.tags.insert(t.into(), vec![]);
        }
        fw.net_sets.insert("web-ports".into(), vec![]);
        fw.port_sets.insert("web-ports".into(), vec![]);
        let n = SetNames::new(&fw);
        assert_eq!(n.tag("web"), "tag_web");
        assert_eq!(n.tag("a-b"), "tag_a_b");
        assert_eq!(n.tag("a.b"), "tag_a_b_2");
        assert_eq!(n.tag("a_b"), "tag_a_b_3");
        assert_eq!(n.tag("a_b_2"), "tag_a_b_2_2");
        assert_eq!(n.net("web-ports"), "fwset_web_ports");
        assert_eq!(n.port("web-ports"), "fwset_web_ports_2");
        let all: Vec<&String> = n.tags.values().chain(n.nets.values()).chain(n.ports.values()).collect();
        let distinct: HashSet<&&String> = all.iter().collect();
        assert_eq!(all.len(), distinct.len());
        for name in all {
            assert!(name.chars().next().unwrap().is_ascii_alphabetic());
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{name}");
        }
    }
}
