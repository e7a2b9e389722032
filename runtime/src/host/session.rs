//! One pass over a host: read the last apply's record, observe the host, plan; and apply
//! a plan, recording what the host looks like afterwards.

use std::io;

use super::applied::Applied;
use super::desired::Desired;
use super::execute::{self, ExecError, Executor};
use super::identity::HostId;
use super::layout::Layout;
use super::observe::{self, Observed};
use super::plan::{self, Change, Plan};
use super::resource::Kind;

pub struct Refreshed {
    pub applied: Option<Applied>,
    pub observed: Observed,
    pub plan: Plan,
}

pub async fn refresh(layout: &Layout, host: &HostId, desired: Option<&Desired>) -> io::Result<Refreshed> {
    let applied = Applied::load(&layout.applied())?;
    let wanted = desired.map(Desired::resource_map).unwrap_or_default();
    let observed = observe::observe(layout, host, applied.as_ref(), &wanted).await?;
    let plan = plan::plan(host, desired, &observed, applied.as_ref());
    Ok(Refreshed { applied, observed, plan })
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
    let after =
        observe::observe(layout, host, refreshed.applied.as_ref(), &wanted).await.map_err(ApplyError::Observe)?;
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
