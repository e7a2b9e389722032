//! `--locked`: the lock file must already say what the topology resolves to. Each entry that
//! would change is one error, on the object in the topology (new or moving) or on the entry in
//! the lock file (its object is gone), as Cargo refuses a `Cargo.lock` that "needs to be updated".

use super::parse::ParsedLock;
use super::{ChangeKind, Key, Lock, Section, changes};
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::model::Topology;
use crate::network::engine_name;
use crate::source::{SourceFile, Span, at};

const HELP: &str =
    "the lock file needs to be updated, and --locked forbids it: run `meshwork lock FILE` and commit the lock file";

/// One error per entry that differs between the lock file (`file`, read as `read`) and `new`.
pub fn diagnostics(t: &Topology, file: Option<&SourceFile>, read: Option<&ParsedLock>, new: &Lock) -> Vec<Diagnostic> {
    let (Some(file), Some(read)) = (file, read) else {
        let place = t.name.as_ref().map_or(at(0, 0), |n| n.span);
        return vec![
            Diagnostic::error(
                Code::LockOutdated,
                format!("the topology has no lock file, and --locked forbids writing one ({} entries)", new.len()),
                place,
                "no lock file",
            )
            .with_help(HELP),
        ];
    };
    changes(&read.lock, new)
        .into_iter()
        .map(|c| {
            let d = match c.kind {
                ChangeKind::Add => Diagnostic::error(
                    Code::LockOutdated,
                    format!("{} is not in the lock file (it would get {})", c.key, c.values()),
                    object_span(t, &c.key),
                    "not locked",
                ),
                ChangeKind::Move => Diagnostic::error(
                    Code::LockOutdated,
                    format!("{} would move: {}", c.key, c.values()),
                    object_span(t, &c.key),
                    "would move",
                ),
                ChangeKind::Remove => Diagnostic::error(
                    Code::LockOutdated,
                    format!("{} is in the lock file but no longer in the topology", c.key),
                    read.spans.get(&c.key).copied().unwrap_or(at(0, 0)),
                    "would be removed",
                )
                .in_file(file),
            };
            d.with_help(HELP)
        })
        .collect()
}

/// Where the object an entry belongs to is declared (the topology's name when it cannot be found).
fn object_span(t: &Topology, key: &Key) -> Span {
    let name = &key.name;
    let found = match key.section {
        Section::Clients => t.clients.iter().find(|c| &c.name.value == name).map(|c| c.name.span),
        Section::Engines => t.controllers.iter().find_map(|c| {
            let e = c.engines.as_ref()?;
            (1..=e.count.value).any(|k| &engine_name(&c.name.value, k) == name).then_some(e.count.span)
        }),
        Section::RulePorts => t.overlay_rules.iter().find(|r| &r.name.value == name).map(|r| r.name.span),
        Section::Vteps | Section::AdminOverlay => t.nodes.iter().find(|n| &n.name.value == name).map(|n| n.name.span),
        Section::Vnics => t
            .vxlans
            .iter()
            .filter(|x| x.name.value == key.overlay)
            .flat_map(|x| &x.vnics)
            .find(|v| &v.name.value == name)
            .map(|v| v.name.span),
    };
    found.or_else(|| t.name.as_ref().map(|n| n.span)).unwrap_or(at(0, 0))
}
