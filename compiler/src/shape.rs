//! Checks the raw document against the grammar: known nodes and properties, required values,
//! value types, no repetition of once-only things. Reports everything it finds.

use crate::codes::Code;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::grammar::{self, NodeSpec};
use crate::source::{Span, at};
use crate::syntax::{RawDoc, RawNode};
use crate::values;

pub fn check(doc: &RawDoc, out: &mut Diagnostics) {
    let file_start = at(0, 0);
    check_level(&doc.nodes, grammar::TOP, None, file_start, out);
}

/// Checks the nodes at one place: the top of the file, or the children of `parent`.
fn check_level(
    nodes: &[RawNode],
    specs: &[&NodeSpec],
    parent: Option<&NodeSpec>,
    parent_span: Span,
    out: &mut Diagnostics,
) {
    for (i, n) in nodes.iter().enumerate() {
        let Some(spec) = specs.iter().find(|s| s.name == n.name) else {
            let message = match parent {
                Some(p) => format!("`{}` does not take a `{}`", p.name, n.name),
                None => format!("unknown node `{}`", n.name),
            };
            let mut d = Diagnostic::error(Code::UnknownNode, message, n.name_span, "unknown here");
            d.help = match grammar::did_you_mean(&n.name, specs.iter().map(|s| s.name)) {
                Some(m) => Some(format!("did you mean `{m}`?")),
                None if specs.is_empty() => None,
                None => Some(format!("expected one of: {}", names(specs))),
            };
            out.push(d);
            continue;
        };
        if !spec.many
            && let Some(first) = nodes[..i].iter().find(|m| m.name == n.name)
        {
            out.push(
                Diagnostic::error(
                    Code::Duplicate,
                    format!("`{}` given more than once", n.name),
                    n.name_span,
                    "given again here",
                )
                .with_label(first.name_span, "first given here"),
            );
            continue;
        }
        check_node(n, spec, out);
    }
    for spec in specs.iter().filter(|s| s.required) {
        if !nodes.iter().any(|n| n.name == spec.name) {
            let message = match parent {
                Some(p) => format!("`{}` needs `{}`", p.name, spec.name),
                None => format!("the file has no `{}`", spec.name),
            };
            out.push(
                Diagnostic::error(Code::MissingValue, message, parent_span, format!("`{}` missing", spec.name))
                    .with_help(spec.doc),
            );
        }
    }
}

fn check_node(n: &RawNode, spec: &NodeSpec, out: &mut Diagnostics) {
    for (i, arg) in n.args.iter().enumerate() {
        match spec.args.get(i) {
            Some(arg_spec) => value(arg_spec, arg, out),
            None => out.push(Diagnostic::error(
                Code::TooManyArguments,
                format!("`{}` takes {} argument(s), found {}", n.name, spec.args.len(), n.args.len()),
                arg.span,
                "unexpected argument",
            )),
        }
    }
    for missing in spec.args.iter().skip(n.args.len()).filter(|a| a.required) {
        out.push(
            Diagnostic::error(
                Code::MissingValue,
                format!("`{}` needs its {} ({})", n.name, missing.key, missing.doc),
                n.name_span,
                format!("{} missing", missing.key),
            )
            .with_help(format!("TOML: key `{}`", missing.key)),
        );
    }
    for (i, p) in n.props.iter().enumerate() {
        let Some(prop_spec) = spec.value(&p.key) else {
            let candidates = spec.props.iter().map(|v| v.key).chain(spec.children.iter().map(|c| c.name));
            let mut d = Diagnostic::error(
                Code::UnknownProperty,
                format!("`{}` has no property `{}`", n.name, p.key),
                p.key_span,
                "unknown property",
            );
            // `[[firewall.allow]]`: the KDL node's name used as a TOML key, where TOML tags the
            // entry instead.
            let tagged = spec.children.iter().find(|c| c.name == p.key).and_then(|c| c.toml_tagged);
            d.help = match (tagged, grammar::did_you_mean(&p.key, candidates)) {
                (Some((table, tag)), _) => Some(format!(
                    "in TOML every such entry is a `[[{}.{table}]]` table with {tag} = \"{}\"",
                    n.name, p.key
                )),
                (None, Some(m)) => Some(format!("did you mean `{m}`?")),
                (None, None) if spec.props.is_empty() => Some(format!("`{}` takes no properties", n.name)),
                (None, None) => Some(format!(
                    "expected one of: {}",
                    spec.props.iter().map(|v| v.key).collect::<Vec<_>>().join(", ")
                )),
            };
            out.push(d);
            continue;
        };
        if let Some(first) = n.props[..i].iter().find(|q| q.key == p.key) {
            out.push(
                Diagnostic::error(
                    Code::Duplicate,
                    format!("`{}` given more than once", p.key),
                    p.key_span,
                    "given again here",
                )
                .with_label(first.key_span, "first given here"),
            );
            continue;
        }
        value(prop_spec, &p.value, out);
    }
    for missing in spec.props.iter().filter(|v| v.required && n.prop(v.key).is_none()) {
        out.push(Diagnostic::error(
            Code::MissingValue,
            format!("`{}` needs `{}` ({})", n.name, missing.key, missing.doc),
            n.name_span,
            format!("`{}` missing", missing.key),
        ));
    }
    check_level(&n.children, spec.children, Some(spec), n.name_span, out);
}

fn value(spec: &grammar::Value, v: &crate::syntax::RawValue, out: &mut Diagnostics) {
    if let Err(r) = values::check(spec.ty, v) {
        let mut d = Diagnostic::error(r.code, r.message, v.span, r.label);
        d.help = r.help;
        out.push(d);
    }
}

fn names(specs: &[&NodeSpec]) -> String {
    specs.iter().map(|s| format!("`{}`", s.name)).collect::<Vec<_>>().join(", ")
}
