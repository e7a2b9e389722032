//! The keyset's pre-shared keys as a whole: which node pairs have one (the index records them
//! like certificates, so "what exists" is read from one place), writing new ones, removing the
//! keys of pairs that are gone, and `rotate-psk`.
//!
//! The pairs are the compiler's (`network.vxlan.ipsec.pairs`): every two nodes in different PDCs
//! that both have an `external` address. Same-PDC traffic is clear VXLAN and has no key.
//! Reports and errors name pairs, never key material.

use meshwork_compiler::network::Network;
use meshwork_compiler::vxlan::names::NodePair;
use time::OffsetDateTime;

use super::index::{Index, PskRecord};
use super::plan::{self, PskPlan};
use super::psk::{self, Psk};
use super::store::{self, Commit, INDEX, Layout};
use super::{KeyError, Keyset, Report, Result, normalize};

/// What `sync` would do to the pre-shared keys of the keyset for `net`.
pub(super) fn plan(layout: &Layout, index: &Index, net: &Network) -> Result<PskPlan> {
    let wanted = &net.vxlan.ipsec.pairs;
    plan::check_pairs(wanted)?;
    let has_file = |p: &NodePair| std::fs::symlink_metadata(layout.psk(p)).is_ok();
    Ok(plan::psks(&index.psk_pairs(), wanted, has_file))
}

/// Writes a new key for each of `pairs` into a keyset being created (a staging directory, so
/// plain creates suffice) and records them.
pub(super) fn write_new_psks(
    layout: &Layout,
    index: &mut Index,
    pairs: &[NodePair],
    now: OffsetDateTime,
) -> Result<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    store::create_dir(&layout.psk_dir())?;
    for p in pairs {
        store::write_new(&layout.psk(p), &Psk::generate()?.to_file())?;
        index.record_psk(p, now);
    }
    Ok(())
}

/// Stages a new key for each of `pairs` in `commit` (renamed into place before the index, the
/// commit point) and records them in `index`.
pub(super) fn stage_psks(
    layout: &Layout,
    commit: &mut Commit,
    index: &mut Index,
    pairs: &[NodePair],
    now: OffsetDateTime,
) -> Result<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    // Keysets made before the topology had node pairs have no psk/ yet.
    let dir = layout.psk_dir();
    if std::fs::symlink_metadata(&dir).is_err() {
        store::create_dir(&dir)?;
    }
    for p in pairs {
        commit.stage(layout.psk(p), &Psk::generate()?.to_file())?;
        index.record_psk(p, now);
    }
    Ok(())
}

/// Removes `*.psk` files the index does not record: left by a run interrupted between
/// committing the index and removing a gone pair's file. Anything else in psk/ is left alone
/// (temporaries are `remove_stale_tmp`'s); a failure is a warning.
pub(super) fn remove_strays(layout: &Layout, index: &Index, report: &mut Report) {
    let dir = layout.psk_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    let known: Vec<String> = index.psk_pairs().iter().map(NodePair::psk_file).collect();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".psk") || known.contains(&name) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => report.warnings.push(format!("removed {}: no pair of the topology uses it", path.display())),
            Err(e) => report.warnings.push(format!("could not remove {}: {e}", path.display())),
        }
    }
}

/// The pair `a`–`b` of `net`, or why the two nodes have no key.
fn pair_of(net: &Network, a: &str, b: &str) -> Result<NodePair> {
    let refuse = |why: String| Err(KeyError::NotAPair { a: a.to_string(), b: b.to_string(), why });
    if a == b {
        return refuse("a node does not pair with itself".into());
    }
    let pair = NodePair::new(a, b);
    if net.vxlan.ipsec.pairs.contains(&pair) {
        return Ok(pair);
    }
    let vx = &net.vxlan;
    let (Some(na), Some(nb)) = (vx.node(a), vx.node(b)) else {
        let unknown = if vx.node(a).is_none() { a } else { b };
        return refuse(format!("`{unknown}` is not a node of the topology"));
    };
    if na.pdc == nb.pdc {
        return refuse(format!(
            "both are in PDC `{}`; nodes of one PDC send VXLAN in clear over the admin network and share no key",
            na.pdc
        ));
    }
    if let Some(n) = [na, nb].into_iter().find(|n| n.external.is_none()) {
        return refuse(format!("`{}` has no `external` address, so there is no IPsec tunnel between them", n.name));
    }
    refuse("they are not an IPsec pair of the topology".into())
}

impl Keyset {
    /// Every pair with a key, in order, and when its key was made.
    pub fn psk_records(&self) -> &[PskRecord] {
        &self.index.psks
    }

    /// `pair`'s pre-shared key, read with the checks of [`psk::read`]. A secret: never print it.
    pub fn psk(&self, pair: &NodePair) -> Result<Psk> {
        if !self.index.psks.iter().any(|r| r.low == pair.low && r.high == pair.high) {
            return Err(KeyError::PskMissing { pair: pair.to_string() });
        }
        psk::read(&self.layout.psk(pair))
    }

    /// Replaces the key of the pair `a`–`b` (either order) or, with `None`, of every pair of
    /// `net` that has one. The pair must be one of `net`'s and already have a key (`sync`
    /// makes it). Every other key stays byte-identical.
    pub fn rotate_psk(&mut self, net: &Network, only: Option<(&str, &str)>, now: OffsetDateTime) -> Result<Report> {
        let now = normalize(now);
        let _lock = store::lock_dir(self.layout.root())?;
        self.reload(net)?;
        let pending = plan(&self.layout, &self.index, net)?;
        let recorded = self.index.psk_pairs();
        let targets: Vec<NodePair> = match only {
            Some((a, b)) => {
                let pair = pair_of(net, a, b)?;
                if !recorded.contains(&pair) {
                    return Err(KeyError::PskMissing { pair: pair.to_string() });
                }
                vec![pair]
            }
            None => recorded.into_iter().filter(|p| net.vxlan.ipsec.pairs.contains(p)).collect(),
        };
        let mut report = self.report();
        report.psk_unchanged = self.index.psks.len() - targets.len();
        if !pending.is_empty() {
            report.warnings.push(format!(
                "the topology's node pairs changed ({} pre-shared keys to create, {} to remove); run `meshwork keys sync`",
                pending.create.len(),
                pending.remove.len()
            ));
        }
        if targets.is_empty() {
            return Ok(report);
        }
        store::remove_stale_tmp(&self.layout)?;
        let mut index = self.index.clone();
        let mut commit = Commit::default();
        stage_psks(&self.layout, &mut commit, &mut index, &targets, now)?;
        commit.stage(self.layout.file(INDEX), &index.to_json())?;
        commit.commit(self.layout.root())?;
        self.index = index;
        report.psk_rotated = targets.iter().map(ToString::to_string).collect();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(kdl: &str) -> Network {
        let a = meshwork_compiler::analyze(meshwork_compiler::source::SourceFile::new("t.kdl", kdl.to_string()));
        a.network.unwrap_or_else(|| panic!("does not compile: {:#?}", a.diagnostics))
    }

    #[test]
    fn pair_of_says_why_two_nodes_have_no_key() {
        let n = net("topology \"t\"\n\
            node \"cn-1\" pdc=\"prague\" admin=\"10.100.0.11/24\" external=\"198.18.0.11/24\"\n\
            node \"cn-2\" pdc=\"prague\" admin=\"10.100.0.12/24\" external=\"198.18.0.12/24\"\n\
            node \"cn-3\" pdc=\"brno\" admin=\"10.100.1.13/24\" external=\"198.18.1.13/24\"\n");
        assert_eq!(pair_of(&n, "cn-3", "cn-1").unwrap(), NodePair::new("cn-1", "cn-3"));
        let why = |a, b| pair_of(&n, a, b).unwrap_err().to_string();
        let e = why("cn-1", "cn-2");
        assert!(e.contains("`cn-1` and `cn-2`") && e.contains("PDC `prague`"), "{e}");
        assert!(why("cn-1", "cn-9").contains("`cn-9` is not a node"));
        assert!(why("cn-1", "cn-1").contains("itself"));
    }
}
