//! Plans for people (Terraform's shape: drift first, then `+`/`~`/`-` per object, then the
//! count) and for programs (`--format json`). Secrets never appear: sensitive files show no
//! digest and no content.

use std::fmt::Write;

use serde_json::json;
use similar::{ChangeTag, TextDiff};

use super::applied::Applied;
use super::desired::Desired;
use super::identity::HostId;
use super::observe::Observed;
use super::parts::ipsec::KEY_ATTR_PREFIX;
use super::plan::{Action, Plan};
use super::resource::{Attrs, Kind, Resource, attr_changes};

/// Most diff lines shown per object; the rest are counted.
const MAX_DIFF_LINES: usize = 40;
const SENSITIVE: &str = "(sensitive value)";

/// What a plan's text needs besides the plan.
pub struct Context<'a> {
    pub desired: Option<&'a Desired>,
    pub observed: &'a Observed,
    pub applied: Option<&'a Applied>,
}

/// `Controller east`, `Node cn-1`: how a plan names its host.
fn capitalised(host: &HostId) -> String {
    let text = host.to_string();
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn shown(attrs: &Attrs, key: &str, value: &str) -> String {
    let secret_digest = key == "sha256" && attrs.get("sensitive").is_some_and(|s| s == "true");
    if secret_digest || key.starts_with(KEY_ATTR_PREFIX) { SENSITIVE.to_string() } else { format!("{value:?}") }
}

fn redacted(r: &Resource) -> serde_json::Value {
    let attrs: serde_json::Map<String, serde_json::Value> =
        r.attrs.iter().map(|(k, v)| (k.clone(), json!(shown(&r.attrs, k, v).trim_matches('"')))).collect();
    serde_json::Value::Object(attrs)
}

/// Changed lines between two texts, `-`/`+` prefixed, at most MAX_DIFF_LINES.
fn line_diff(out: &mut String, indent: &str, old: &str, new: &str) {
    let diff = TextDiff::from_lines(old, new);
    let mut lines = 0usize;
    let mut hidden = 0usize;
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Equal => continue,
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
        };
        if lines < MAX_DIFF_LINES {
            let _ = writeln!(out, "{indent}{sign} {}", change.value().trim_end());
            lines += 1;
        } else {
            hidden += 1;
        }
    }
    if hidden > 0 {
        let _ = writeln!(out, "{indent}  ... {hidden} more changed line(s)");
    }
}

fn attr_lines(out: &mut String, before: Option<&Resource>, after: Option<&Resource>) {
    let empty = Attrs::new();
    let b = before.map_or(&empty, |r| &r.attrs);
    let a = after.map_or(&empty, |r| &r.attrs);
    let width = a.keys().chain(b.keys()).filter(|k| *k != "sensitive").map(String::len).max().unwrap_or(0);
    for (key, old, new) in attr_changes(b, a) {
        if key == "sensitive" {
            continue;
        }
        let line = match (old, new) {
            (None, Some(n)) => format!("+ {key:width$} = {}", shown(a, &key, &n)),
            (Some(o), None) => format!("- {key:width$} = {}", shown(b, &key, &o)),
            (Some(o), Some(n)) => format!("~ {key:width$} = {} -> {}", shown(b, &key, &o), shown(a, &key, &n)),
            (None, None) => continue,
        };
        let _ = writeln!(out, "      {line}");
    }
}

pub fn text(plan: &Plan, cx: &Context<'_>) -> String {
    let mut out = String::new();
    if let Some(d) = cx.desired {
        let _ = writeln!(out, "{} of topology {} (checksum {})", capitalised(&d.host), d.topology, d.checksum);
    } else {
        let _ = writeln!(out, "{}: destroy everything meshwork owns here", capitalised(&plan.host));
    }
    if !plan.drift.is_empty() {
        let _ = writeln!(out, "\nChanged outside meshwork since the last apply:");
        for d in &plan.drift {
            let (sign, what) = match (&d.applied, &d.live) {
                (Some(_), None) => ("-", "deleted"),
                (None, Some(_)) => ("+", "appeared"),
                _ => ("~", "modified"),
            };
            let _ = writeln!(out, "  {sign} {} ({what})", d.id);
            attr_lines(&mut out, d.applied.as_ref(), d.live.as_ref());
            if d.id.kind == Kind::Nftables
                && let (Some(a), Some(live)) = (cx.applied.and_then(|a| a.nft.as_ref()), &cx.observed.nft_listing)
            {
                line_diff(&mut out, "      ", &a.listing, live);
            }
        }
    }
    if plan.changes.is_empty() {
        let _ = writeln!(out, "\nNo changes. The host matches the topology.");
        return out;
    }
    let _ = writeln!(out, "\nmeshwork will perform these actions:");
    for c in &plan.changes {
        let _ = writeln!(out, "  {} {}", c.action.symbol(), c.id);
        if c.action != Action::Delete {
            attr_lines(&mut out, c.before.as_ref(), c.after.as_ref());
        }
        match c.id.kind {
            Kind::File if c.action == Action::Update => {
                let old = cx.observed.file_text.get(&c.id.name);
                let new = cx.desired.and_then(|d| d.files.get(&c.id.name)).filter(|f| !f.secret);
                if let (Some(old), Some(new)) = (old, new) {
                    line_diff(&mut out, "      ", old, &String::from_utf8_lossy(&new.content));
                }
            }
            Kind::Nftables if c.action == Action::Update => {
                if let (Some(a), Some(d)) = (cx.applied.and_then(|a| a.nft.as_ref()), cx.desired) {
                    line_diff(&mut out, "      ", &a.text, &d.nft_text);
                }
            }
            _ => {}
        }
    }
    let s = &plan.summary;
    let _ = writeln!(out, "\nPlan: {} to add, {} to change, {} to destroy.", s.add, s.change, s.destroy);
    out
}

pub fn json(plan: &Plan, cx: &Context<'_>) -> serde_json::Value {
    let resource = |r: &Option<Resource>| r.as_ref().map(redacted);
    json!({
        plan.host.kind.as_str(): plan.host.name,
        "topology": cx.desired.map(|d| d.topology.clone()),
        "checksum": cx.desired.map(|d| d.checksum.clone()),
        "drift": plan.drift.iter().map(|d| json!({
            "kind": d.id.kind, "name": d.id.name,
            "applied": resource(&d.applied), "live": resource(&d.live),
        })).collect::<Vec<_>>(),
        "changes": plan.changes.iter().map(|c| json!({
            "action": c.action, "kind": c.id.kind, "name": c.id.name,
            "before": resource(&c.before), "after": resource(&c.after),
        })).collect::<Vec<_>>(),
        "summary": plan.summary,
    })
}
