//! What `sync` and `renew` must do: a pure function of the index, the topology's identities and
//! the clock, so it is tested without touching the disk.

use std::collections::{BTreeSet, HashSet};

use meshwork_compiler::identity::{Identity, Kind};
use meshwork_compiler::vxlan::names::NodePair;
use time::OffsetDateTime;

use super::error::KeyError;
use super::index::{Index, Reason};
use super::store::check_name;

/// The changes that bring a keyset in line with a topology.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New certificates: new identities, un-revoked ones, and names that changed kind.
    pub issue: Vec<(String, Kind)>,
    /// Serials that go into the CRL, with the CN they belonged to.
    pub revoke: Vec<(String, u64, Reason)>,
    /// Records that stay (files too) but are flagged revoked.
    pub mark_revoked: Vec<String>,
    /// Records (and files) that go: identities no longer in the topology.
    pub drop: Vec<String>,
    pub unchanged: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.issue.is_empty() && self.revoke.is_empty() && self.mark_revoked.is_empty() && self.drop.is_empty()
    }
}

/// Validates the identities' names and that none repeats.
pub fn check_identities(ids: &[Identity]) -> Result<(), KeyError> {
    let mut seen = HashSet::with_capacity(ids.len());
    for id in ids {
        check_name(&id.cn)?;
        if !seen.insert(id.cn.as_str()) {
            return Err(KeyError::DuplicateIdentity { cn: id.cn.clone() });
        }
    }
    Ok(())
}

pub fn sync(index: &Index, ids: &[Identity]) -> Result<Plan, KeyError> {
    check_identities(ids)?;
    let mut plan = Plan::default();
    let mut seen: HashSet<&str> = HashSet::with_capacity(ids.len());
    for id in ids {
        seen.insert(&id.cn);
        let Some(rec) = index.identities.get(&id.cn) else {
            if id.revoked {
                // Declared revoked before it ever had a certificate: nothing to do.
                plan.unchanged += 1;
            } else {
                plan.issue.push((id.cn.clone(), id.kind));
            }
            continue;
        };
        if rec.kind != id.kind {
            if !rec.revoked {
                let reason = if id.revoked { Reason::Revoked } else { Reason::Superseded };
                plan.revoke.push((id.cn.clone(), rec.serial, reason));
            }
            if id.revoked {
                plan.drop.push(id.cn.clone());
            } else {
                plan.issue.push((id.cn.clone(), id.kind));
            }
            continue;
        }
        match (rec.revoked, id.revoked) {
            (false, true) => {
                plan.revoke.push((id.cn.clone(), rec.serial, Reason::Revoked));
                plan.mark_revoked.push(id.cn.clone());
            }
            // Un-revoked: a new certificate with a new serial; the old serial stays revoked.
            (true, false) => plan.issue.push((id.cn.clone(), id.kind)),
            _ => plan.unchanged += 1,
        }
    }
    for (cn, rec) in &index.identities {
        if !seen.contains(cn.as_str()) {
            if !rec.revoked {
                plan.revoke.push((cn.clone(), rec.serial, Reason::Removed));
            }
            plan.drop.push(cn.clone());
        }
    }
    Ok(plan)
}

/// The changes that bring a keyset's pre-shared keys in line with a topology's node pairs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PskPlan {
    /// Pairs that need a new key: new pairs, and recorded ones whose file is gone.
    pub create: Vec<NodePair>,
    /// Of `create`, the pairs the index records but whose file is missing.
    pub recreate: Vec<NodePair>,
    /// Pairs no longer in the topology (nodes removed, moved into one PDC, or without
    /// `external`): their records and files go.
    pub remove: Vec<NodePair>,
    pub unchanged: usize,
}

impl PskPlan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.remove.is_empty()
    }
}

/// Validates the topology's pairs as file names (the compiler's names, checked again because
/// the keyset builds paths from them).
pub fn check_pairs(pairs: &[NodePair]) -> Result<(), KeyError> {
    for p in pairs {
        check_name(&p.low)?;
        check_name(&p.high)?;
    }
    Ok(())
}

/// `recorded`: the pairs in the index; `wanted`: the topology's; `has_file`: whether a
/// recorded pair's key file exists. Keys of pairs that stay are never touched.
pub fn psks(recorded: &[NodePair], wanted: &[NodePair], has_file: impl Fn(&NodePair) -> bool) -> PskPlan {
    let recorded_set: BTreeSet<&NodePair> = recorded.iter().collect();
    let wanted_set: BTreeSet<&NodePair> = wanted.iter().collect();
    let mut plan = PskPlan::default();
    for p in wanted_set.iter().copied() {
        if !recorded_set.contains(p) {
            plan.create.push(p.clone());
        } else if !has_file(p) {
            plan.create.push(p.clone());
            plan.recreate.push(p.clone());
        } else {
            plan.unchanged += 1;
        }
    }
    plan.remove = recorded_set.difference(&wanted_set).map(|p| (*p).clone()).collect();
    plan
}

/// Identities of the topology whose current certificate expires by `deadline` (expired ones
/// included). Revoked, missing or changed identities are left to `sync`.
pub fn renew(index: &Index, ids: &[Identity], deadline: OffsetDateTime) -> Vec<(String, Kind)> {
    ids.iter()
        .filter(|id| !id.revoked)
        .filter(|id| {
            index.identities.get(&id.cn).is_some_and(|r| !r.revoked && r.kind == id.kind && r.not_after <= deadline)
        })
        .map(|id| (id.cn.clone(), id.kind))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use time::macros::datetime;

    use super::*;
    use crate::keys::index::{CrlState, INDEX_VERSION, Record, Validity};

    const T: OffsetDateTime = datetime!(2026-11-21 10:00 UTC);

    fn id(cn: &str, kind: Kind, revoked: bool) -> Identity {
        Identity { cn: cn.into(), kind, revoked }
    }

    fn index(records: &[(&str, Kind, u64, bool)]) -> Index {
        let identities: BTreeMap<String, Record> = records
            .iter()
            .map(|&(cn, kind, serial, revoked)| {
                let r = Record {
                    kind,
                    serial,
                    not_before: T,
                    not_after: T + time::Duration::days(serial as i64),
                    revoked,
                    revoked_at: revoked.then_some(T),
                };
                (cn.to_string(), r)
            })
            .collect();
        Index {
            version: INDEX_VERSION,
            topology: "t".into(),
            ca_fingerprint: String::new(),
            ca: Validity { serial: 1, not_before: T, not_after: T },
            next_serial: 100,
            crl: CrlState { number: 1, this_update: T, next_update: T },
            identities,
            revoked: vec![],
            psks: vec![],
        }
    }

    #[test]
    fn an_unchanged_topology_plans_nothing() {
        let i = index(&[("a", Kind::Controller, 2, false), ("c", Kind::Client, 3, false)]);
        let p = sync(&i, &[id("a", Kind::Controller, false), id("c", Kind::Client, false)]).unwrap();
        assert!(p.is_empty());
        assert_eq!(p.unchanged, 2);
    }

    #[test]
    fn adds_revokes_removes_and_reissues() {
        let i = index(&[
            ("a", Kind::Controller, 2, false),
            ("gone", Kind::Client, 3, false),
            ("bad", Kind::Client, 4, false),
            ("back", Kind::Client, 5, true),
            ("morph", Kind::Client, 6, false),
            ("old-revoked", Kind::Client, 7, true),
        ]);
        let p = sync(
            &i,
            &[
                id("a", Kind::Controller, false),
                id("new", Kind::Client, false),
                id("bad", Kind::Client, true),
                id("back", Kind::Client, false),
                id("morph", Kind::Engine, false),
                id("born-revoked", Kind::Client, true),
            ],
        )
        .unwrap();
        assert_eq!(
            p.issue,
            [("new".to_string(), Kind::Client), ("back".into(), Kind::Client), ("morph".into(), Kind::Engine)]
        );
        assert_eq!(
            p.revoke,
            [
                ("bad".to_string(), 4, Reason::Revoked),
                ("morph".into(), 6, Reason::Superseded),
                ("gone".into(), 3, Reason::Removed)
            ]
        );
        assert_eq!(p.mark_revoked, ["bad"]);
        assert_eq!(p.drop, ["gone", "old-revoked"]);
        assert_eq!(p.unchanged, 2);
    }

    #[test]
    fn duplicate_and_unsafe_names_are_refused() {
        let i = index(&[]);
        let e = sync(&i, &[id("a", Kind::Client, false), id("a", Kind::Engine, false)]).unwrap_err();
        assert!(matches!(e, KeyError::DuplicateIdentity { .. }));
        let e = sync(&i, &[id("../etc", Kind::Client, false)]).unwrap_err();
        assert!(matches!(e, KeyError::InvalidName { .. }));
    }

    #[test]
    fn psk_plan_creates_new_pairs_removes_gone_ones_and_keeps_the_rest() {
        let p = |a: &str, b: &str| NodePair::new(a, b);
        let recorded = [p("a", "c"), p("b", "c"), p("c", "d")];
        let wanted = [p("d", "c"), p("a", "c"), p("a", "e")];
        let plan = psks(&recorded, &wanted, |_| true);
        assert_eq!(plan.create, [p("a", "e")]);
        assert_eq!(plan.remove, [p("b", "c")]);
        assert_eq!(plan.unchanged, 2);
        assert!(plan.recreate.is_empty());
        let plan = psks(&recorded, &wanted, |pair| pair != &p("c", "d"));
        assert_eq!(plan.create, [p("a", "e"), p("c", "d")]);
        assert_eq!(plan.recreate, [p("c", "d")]);
        assert!(psks(&recorded, &recorded, |_| true).is_empty());
        assert!(check_pairs(&[p("a", "../b")]).is_err());
    }

    #[test]
    fn renew_takes_only_what_is_due() {
        let i =
            index(&[("a", Kind::Controller, 2, false), ("b", Kind::Client, 30, false), ("r", Kind::Client, 3, true)]);
        let ids = [id("a", Kind::Controller, false), id("b", Kind::Client, false), id("r", Kind::Client, true)];
        assert_eq!(renew(&i, &ids, T + time::Duration::days(10)), [("a".to_string(), Kind::Controller)]);
        assert_eq!(renew(&i, &ids, T + time::Duration::days(30)).len(), 2);
    }
}
