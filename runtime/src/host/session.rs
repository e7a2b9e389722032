//! One pass over a host: read the last apply's record, observe the host, plan; and apply
//! a plan, recording what the host looks like afterwards.

use std::io;

use super::applied::Applied;
use super::compose;
use super::desired::Desired;
use super::execute::{self, ExecError, Executor};
use super::identity::HostId;
use super::layout::Layout;
use super::observe::Observed;
use super::plan::{self, Change, Plan};
use super::resource::Kind;

pub struct Refreshed {
    pub applied: Option<Applied>,
    pub observed: Observed,
    pub plan: Plan,
    /// The kinds this refresh looked at (None: all).
    pub scope: Option<Vec<Kind>>,
}

pub async fn refresh(layout: &Layout, host: &HostId, desired: Option<&Desired>) -> io::Result<Refreshed> {
    refresh_only(layout, host, desired, None).await
}

/// [`refresh`] of the kinds of `scope` only (None: all): the agent's pass after an event reads
/// and plans only what the event concerns. Without a record of the last apply, everything.
pub async fn refresh_only(
    layout: &Layout,
    host: &HostId,
    desired: Option<&Desired>,
    scope: Option<&[Kind]>,
) -> io::Result<Refreshed> {
    let applied = Applied::load(&layout.applied())?;
    let scope = scope.filter(|_| applied.is_some());
    let wanted = desired.map(Desired::resource_map).unwrap_or_default();
    let observed = compose::observe(layout, host, applied.as_ref(), &wanted, scope).await?;
    let plan = plan::plan_only(host, desired, &observed, applied.as_ref(), scope);
    Ok(Refreshed { applied, observed, plan, scope: scope.map(<[Kind]>::to_vec) })
}

/// The host after a scoped apply, as the record keeps it: what the pass looked at as it is now,
/// everything else as the last record had it (the nft listing too, unless the table was looked
/// at).
fn merged(applied: &Applied, mut after: Observed, scope: &[Kind]) -> Observed {
    after.resources.retain(|id, _| scope.contains(&id.kind));
    for r in applied.resources.iter().filter(|r| !scope.contains(&r.id.kind)) {
        after.resources.insert(r.id.clone(), r.clone());
    }
    if !scope.contains(&Kind::Nftables) {
        after.nft_listing = applied.nft.as_ref().map(|n| n.listing.clone());
    }
    after
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("cannot read the host back after applying: {0}")]
    Observe(io::Error),
    #[error("cannot record the applied state: {0}")]
    Record(io::Error),
}

/// Runs `plan` and records the result (also after a failure, so the next plan starts from the
/// truth). Returns the number of actions done.
pub async fn apply(
    layout: &Layout,
    host: &HostId,
    desired: Option<&Desired>,
    refreshed: &Refreshed,
    plan: &Plan,
    report: &mut dyn FnMut(&Change),
) -> Result<usize, ApplyError> {
    let mut exec = Executor::new(layout, desired);
    let outcome = exec.run(plan, report).await;
    // The kernel's listing stands for the desired ruleset if this run loaded it, or if it was
    // already in place (not if it is only outside this plan, e.g. a subsystem's part of one).
    let wanted_ruleset = desired.and_then(|d| {
        d.resources.iter().find(|r| r.id.kind == Kind::Nftables).and_then(|r| r.attrs.get("ruleset").cloned())
    });
    let live_ruleset = refreshed
        .observed
        .resources
        .values()
        .find(|r| r.id.kind == Kind::Nftables)
        .and_then(|r| r.attrs.get("ruleset").cloned());
    let nft_loaded = exec.nft_loaded || (wanted_ruleset.is_some() && wanted_ruleset == live_ruleset);
    let wanted = desired.map(Desired::resource_map).unwrap_or_default();
    let scope = refreshed.scope.as_deref();
    let after = compose::observe(layout, host, refreshed.applied.as_ref(), &wanted, scope)
        .await
        .map_err(ApplyError::Observe)?;
    let after = match (scope, &refreshed.applied) {
        (Some(scope), Some(applied)) => merged(applied, after, scope),
        _ => after,
    };
    if desired.is_none() && outcome.is_ok() {
        // Destroyed: nothing is left to compare with.
        for path in [layout.applied(), layout.applied_source()] {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(ApplyError::Record(e)),
                _ => {}
            }
        }
    } else {
        let record = execute::record(desired, after, refreshed.applied.as_ref(), nft_loaded);
        record.save(&layout.applied()).map_err(ApplyError::Record)?;
    }
    Ok(outcome?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::applied::AppliedNft;
    use crate::host::resource::{Resource, Spec};

    fn rule(name: &str, priority: &str) -> Resource {
        let spec =
            Spec::Rule { netns: None, rule: crate::netlink::RuleInfo { priority: 1000, iif: None, table: 1194 } };
        Resource::new(Kind::Rule, name, spec).attr("priority", priority)
    }

    /// The record after a scoped apply: the kinds the pass read as they are now, the rest (and
    /// the nft listing, when the table was not read) as the last record had them.
    #[test]
    fn a_scoped_apply_records_what_it_read_over_the_last_record() {
        let nft = Resource::new(Kind::Nftables, "inet meshwork", Spec::Nftables).attr("ruleset", "r1");
        let listing =
            AppliedNft { ruleset: "r1".into(), listing: "table inet meshwork {}".into(), text: String::new() };
        let applied =
            Applied { resources: vec![nft.clone(), rule("old", "1000")], nft: Some(listing), ..Applied::default() };
        let mut after = Observed::default();
        after.add(rule("new", "1000"));
        let merged = merged(&applied, after, &[Kind::Rule]);
        let names: Vec<&str> = merged.resources.keys().map(|id| id.name.as_str()).collect();
        assert_eq!(names, ["new", "inet meshwork"], "the rules as read now, the table kept");
        assert_eq!(merged.nft_listing.as_deref(), Some("table inet meshwork {}"));
    }
}
