//! The host's daemons as their pid files name them (OpenVPN's and charon's alike), each
//! checked to be ours and in its namespace. The parts that run a daemon say they want it.

use super::super::observe::Observed;
use super::super::part::{Observing, Part, Pending};
use super::super::resource::{Kind, Resource, Spec};
use crate::daemon::Inspection;
use crate::netns;

/// What `state` of a process resource reads when it is not "running": the plan shows it as a
/// change ("~ process engine-3"), which stops what the pid file names (or removes the stale
/// file) and starts the unit again.
pub const PROCESS_ELSEWHERE: &str = "running in another network namespace";
pub const PROCESS_STALE: &str = "stale pid file";

pub struct Processes;

impl Part for Processes {
    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Process]
    }

    fn observe<'a>(&'a self, cx: &'a Observing<'a>, out: &'a mut Observed) -> Pending<'a> {
        Box::pin(async move {
            let here = netns::current_inode()?;
            let Ok(entries) = std::fs::read_dir(cx.layout.run()) else { return Ok(()) };
            let mut pidfiles: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            pidfiles.sort();
            for pidfile in pidfiles.into_iter().filter(|p| p.extension().is_some_and(|e| e == "pid")) {
                let Some(unit) = pidfile.file_stem().map(|s| s.to_string_lossy().into_owned()) else { continue };
                if let Some(found) = crate::daemon::inspect(&pidfile, here)? {
                    out.add(process_resource(cx, &unit, found));
                }
            }
            Ok(())
        })
    }
}

fn process_resource(cx: &Observing<'_>, unit: &str, found: Inspection) -> Resource {
    let (record, state) = match found {
        Inspection::Running(r) => (Some(r), "running".to_string()),
        Inspection::Elsewhere(r) => (Some(r), PROCESS_ELSEWHERE.to_string()),
        Inspection::Stale(why) => (None, format!("{PROCESS_STALE} ({why})")),
    };
    // The unit as the topology (or the last apply) knows it; a unit nobody knows is only ever
    // stopped, by its pid file.
    let known = cx
        .wanted
        .values()
        .chain(cx.applied.iter().flat_map(|a| a.resources.iter()))
        .find(|r| r.id.kind == Kind::Process && r.id.name == unit)
        .map(|r| r.spec.clone());
    let netns = record.as_ref().and_then(|r| r.netns.clone());
    let spec = match known {
        Some(Spec::Process { config, program, .. }) => {
            Spec::Process { unit: unit.to_string(), config, netns: netns.clone(), program }
        }
        _ => Spec::Process {
            unit: unit.to_string(),
            config: format!("{unit}.conf"),
            netns: netns.clone(),
            program: record.as_ref().map(|r| r.program).unwrap_or_default(),
        },
    };
    let mut r = Resource::new(Kind::Process, unit, spec)
        .attr("config", record.map(|r| r.config_sha256).unwrap_or_default())
        .attr("state", state);
    if let Some(ns) = netns {
        r = r.attr("netns", ns);
    }
    r
}
