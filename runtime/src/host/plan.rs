//! The difference between what the topology wants and what is there: drift (what changed
//! outside meshwork since the last apply) and the actions that converge the host.

use serde::{Deserialize, Serialize};

use super::applied::Applied;
use super::desired::Desired;
use super::identity::HostId;
use super::observe::Observed;
use super::resource::{Kind, Resource, ResourceId, ResourceMap, by_id};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    /// Delete, then create (an attribute that cannot be changed in place).
    Replace,
    Delete,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Change {
    pub action: Action,
    pub id: ResourceId,
    /// What is there now (None when creating).
    pub before: Option<Resource>,
    /// What will be there (None when deleting).
    pub after: Option<Resource>,
}

/// A resource that is not what the last apply left.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Drift {
    pub id: ResourceId,
    /// As the last apply left it (None: it appeared since).
    pub applied: Option<Resource>,
    /// As it is now (None: it is gone).
    pub live: Option<Resource>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub host: HostId,
    pub drift: Vec<Drift>,
    pub changes: Vec<Change>,
    pub summary: Summary,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The actions on one kind of resource (the agent reconciles subsystem by subsystem).
    pub fn only(&self, kinds: &[Kind]) -> Plan {
        let changes: Vec<Change> = self.changes.iter().filter(|c| kinds.contains(&c.id.kind)).cloned().collect();
        let drift = self.drift.iter().filter(|d| kinds.contains(&d.id.kind)).cloned().collect();
        Plan { host: self.host.clone(), drift, summary: summarise(&changes), changes }
    }
}

/// Which attribute differences need the resource deleted and made again.
fn needs_replace(before: &Resource, after: &Resource) -> bool {
    let differs = |k: &str| before.attrs.get(k) != after.attrs.get(k);
    match after.id.kind {
        // A VXLAN device's VNI, port and addressing are fixed when it is made.
        Kind::Link => ["kind", "peer", "vni", "port", "local", "learning", "proxy"].into_iter().any(differs),
        Kind::Rule => differs("priority"),
        _ => false,
    }
}

fn summarise(changes: &[Change]) -> Summary {
    let mut s = Summary::default();
    for c in changes {
        match c.action {
            Action::Create => s.add += 1,
            Action::Update => s.change += 1,
            Action::Replace => {
                s.add += 1;
                s.destroy += 1
            }
            Action::Delete => s.destroy += 1,
        }
    }
    s
}

/// The plan that takes `observed` to `desired` (None: destroy everything meshwork owns).
pub fn plan(host: &HostId, desired: Option<&Desired>, observed: &Observed, applied: Option<&Applied>) -> Plan {
    plan_only(host, desired, observed, applied, None)
}

/// [`plan`] of the resources of `scope`'s kinds only (all: None), for a pass that observed only
/// those: what it did not look at is neither created, deleted nor drift.
pub fn plan_only(
    host: &HostId,
    desired: Option<&Desired>,
    observed: &Observed,
    applied: Option<&Applied>,
    scope: Option<&[Kind]>,
) -> Plan {
    let in_scope = |id: &ResourceId| scope.is_none_or(|s| s.contains(&id.kind));
    let mut wanted: ResourceMap = desired.map(Desired::resource_map).unwrap_or_default();
    wanted.retain(|id, _| in_scope(id));
    let scoped_live: ResourceMap;
    let live = match scope {
        None => &observed.resources,
        Some(_) => {
            scoped_live =
                observed.resources.iter().filter(|(id, _)| in_scope(id)).map(|(i, r)| (i.clone(), r.clone())).collect();
            &scoped_live
        }
    };
    let mut changes = Vec::new();
    for (id, after) in &wanted {
        match live.get(id) {
            None => changes.push(Change {
                action: Action::Create,
                id: id.clone(),
                before: None,
                after: Some(after.clone()),
            }),
            Some(before) if before.attrs != after.attrs => {
                let action = if needs_replace(before, after) { Action::Replace } else { Action::Update };
                changes.push(Change {
                    action,
                    id: id.clone(),
                    before: Some(before.clone()),
                    after: Some(after.clone()),
                })
            }
            Some(_) => {}
        }
    }
    for (id, before) in live {
        if !wanted.contains_key(id) {
            changes.push(Change { action: Action::Delete, id: id.clone(), before: Some(before.clone()), after: None });
        }
    }
    changes.sort_by(|a, b| a.id.cmp(&b.id));

    let mut drift = Vec::new();
    if let Some(applied) = applied {
        let before = by_id(applied.resources.iter().filter(|r| in_scope(&r.id)).cloned());
        for (id, was) in &before {
            match live.get(id) {
                // Sysctls are read only where the topology sets them (meshwork does not own the
                // others): one the topology no longer sets, or a destroy, reads none.
                None if id.kind == Kind::Sysctl && !wanted.contains_key(id) => {}
                None => drift.push(Drift { id: id.clone(), applied: Some(was.clone()), live: None }),
                Some(now) if now.attrs != was.attrs => {
                    drift.push(Drift { id: id.clone(), applied: Some(was.clone()), live: Some(now.clone()) })
                }
                Some(_) => {}
            }
        }
        for (id, now) in live {
            // Sysctls are read only where the topology sets them: not being in the record
            // means the topology started setting one, not that it appeared.
            if !before.contains_key(id) && id.kind != Kind::Sysctl {
                drift.push(Drift { id: id.clone(), applied: None, live: Some(now.clone()) });
            }
        }
        drift.sort_by(|a, b| a.id.cmp(&b.id));
    }
    Plan { host: host.clone(), drift, summary: summarise(&changes), changes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::resource::{Resource, Spec};

    fn ip_forward() -> Resource {
        let key = "net.ipv4.ip_forward";
        Resource::new(Kind::Sysctl, key, Spec::Sysctl { netns: None, key: key.into(), value: "1".into() })
            .attr("value", "1")
    }

    fn nft(ruleset: &str) -> Resource {
        Resource::new(Kind::Nftables, "inet meshwork", Spec::Nftables).attr("ruleset", ruleset)
    }

    /// The agent's pass after an event reads only some kinds: what it did not read is neither
    /// created, deleted nor drift, and what it did read is planned as a full plan would.
    #[test]
    fn a_scoped_plan_leaves_other_kinds_alone() {
        let host = HostId::controller("east");
        let applied = Applied { resources: vec![ip_forward(), nft("a")], ..Applied::default() };
        // Observed: the sysctl only (the table was not read).
        let mut observed = Observed::default();
        observed.add(ip_forward().attr("value", "0"));
        let scoped = plan_only(&host, None, &observed, Some(&applied), Some(&[Kind::Sysctl]));
        assert_eq!(scoped.drift.len(), 1, "{:?}", scoped.drift);
        assert_eq!(scoped.drift[0].id.kind, Kind::Sysctl);
        assert!(scoped.changes.iter().all(|c| c.id.kind == Kind::Sysctl), "{:?}", scoped.changes);
        // Unscoped, the table not observed is drift (gone).
        let full = plan(&host, None, &observed, Some(&applied));
        assert!(full.drift.iter().any(|d| d.id.kind == Kind::Nftables));
    }

    #[test]
    fn destroy_shows_no_drift_for_a_setting_it_does_not_read() {
        let applied = Applied { resources: vec![ip_forward()], ..Applied::default() };
        let p = plan(&HostId::controller("east"), None, &Observed::default(), Some(&applied));
        assert!(p.drift.is_empty(), "{:?}", p.drift);
        assert!(p.changes.is_empty());
    }
}
