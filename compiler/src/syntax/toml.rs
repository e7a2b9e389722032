//! TOML front end. TOML mirrors KDL one-to-one:
//!
//! * a node is a key; a once-only node with only an argument may be a plain value
//!   (`topology = "acme"`), otherwise a table (`[license]`, `engines = { count = 3, ... }`);
//! * a repeatable node is an array (`[[controller]]`, `lan = ["10.0.0.0/16"]`);
//! * positional arguments are keys named in the grammar (`name`, `count`, `from`, `to`, ...);
//! * properties and child nodes are keys of the node's table;
//! * firewall rules are `[[firewall.rule]]` with `action = "allow"|"deny"`, since rule order
//!   matters and TOML cannot interleave two arrays.

use std::borrow::Cow;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{RawDoc, RawNode, RawProp, RawValue, Scalar};
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::grammar::{self, NodeSpec};
use crate::source::{Span, span};

/// Parses TOML into the raw document. Syntax errors are fatal; problems mapping TOML onto the
/// node shape (a rule without an action) are returned alongside the document.
pub fn parse(text: &str) -> Result<(RawDoc, Vec<Diagnostic>), Vec<Diagnostic>> {
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|e| {
                let at = e.span().map_or(crate::source::at(0, 0), span);
                Diagnostic::error(Code::Syntax, e.message().trim().to_string(), at, "here")
            })
            .collect());
    }
    let mut problems = Vec::new();
    let nodes = children(root.get_ref(), grammar::TOP, &mut problems);
    Ok((RawDoc { nodes }, problems))
}

/// Every key of `table` that is a child node (per `specs`), as raw nodes.
fn children(table: &DeTable<'_>, specs: &[&NodeSpec], problems: &mut Vec<Diagnostic>) -> Vec<RawNode> {
    let mut out = Vec::new();
    for (key, value) in table.iter() {
        let matching: Vec<&NodeSpec> = specs.iter().copied().filter(|s| s.toml_key() == key.get_ref()).collect();
        let key_span = span(key.span());
        match matching.first() {
            Some(first) if first.toml_tagged.is_some() => {
                for element in elements(value) {
                    tagged(key.get_ref(), key_span, element, &matching, problems, &mut out);
                }
            }
            spec => {
                for element in elements(value) {
                    out.push(node(key.get_ref().to_string(), key_span, element, spec.copied(), problems));
                }
            }
        }
    }
    out
}

fn elements<'a, 'i>(value: &'a Spanned<DeValue<'i>>) -> Vec<&'a Spanned<DeValue<'i>>> {
    match value.get_ref() {
        DeValue::Array(items) => items.iter().collect(),
        _ => vec![value],
    }
}

fn node(
    name: String,
    name_span: Span,
    value: &Spanned<DeValue<'_>>,
    spec: Option<&NodeSpec>,
    problems: &mut Vec<Diagnostic>,
) -> RawNode {
    let mut raw = RawNode { name, name_span, span: span(value.span()), args: vec![], props: vec![], children: vec![] };
    match value.get_ref() {
        DeValue::Table(table) => fill_from_table(&mut raw, table, spec, problems),
        _ => raw.args.push(raw_value(value)),
    }
    raw
}

fn fill_from_table(raw: &mut RawNode, table: &DeTable<'_>, spec: Option<&NodeSpec>, problems: &mut Vec<Diagnostic>) {
    let (arg_keys, child_specs): (&[grammar::Value], &[&NodeSpec]) = match spec {
        Some(s) => (s.args, s.children),
        None => (&[], &[]),
    };
    // Positional arguments in grammar order; a later one without an earlier one keeps its slot
    // empty, which the shape checker reports as missing.
    for arg in arg_keys {
        match table.iter().find(|(k, _)| k.get_ref() == arg.key) {
            Some((_, v)) => raw.args.push(raw_value(v)),
            None => break,
        }
    }
    let taken_args = &arg_keys[..raw.args.len()];
    for (key, value) in table.iter() {
        let k: &str = key.get_ref();
        if taken_args.iter().any(|a| a.key == k) {
            continue;
        }
        if child_specs.iter().any(|c| c.toml_key() == k) {
            let mut sub = DeTable::default();
            sub.insert(key.clone(), value.clone());
            raw.children.extend(children(&sub, child_specs, problems));
        } else {
            raw.props.push(RawProp { key: k.to_string(), key_span: span(key.span()), value: raw_value(value) });
        }
    }
}

/// A `[[firewall.rule]]` entry: the tag (`action`) picks the KDL node name.
fn tagged(
    key: &str,
    key_span: Span,
    element: &Spanned<DeValue<'_>>,
    specs: &[&NodeSpec],
    problems: &mut Vec<Diagnostic>,
    out: &mut Vec<RawNode>,
) {
    let tag_key = specs[0].toml_tagged.map_or("action", |(_, t)| t);
    let choices: Vec<&str> = specs.iter().map(|s| s.name).collect();
    let DeValue::Table(table) = element.get_ref() else {
        problems.push(Diagnostic::error(
            Code::WrongType,
            format!("`{key}` entries must be tables"),
            span(element.span()),
            format!("expected a table with `{tag_key}`"),
        ));
        return;
    };
    let tag = table.iter().find(|(k, _)| k.get_ref() == tag_key);
    let Some((_, tag_value)) = tag else {
        problems.push(
            Diagnostic::error(
                Code::MissingValue,
                format!("this `{key}` has no `{tag_key}`"),
                span(element.span()),
                format!("`{tag_key}` missing"),
            )
            .with_help(format!("add {tag_key} = \"{}\"", choices.join("\" or \""))),
        );
        return;
    };
    let tag_span = span(tag_value.span());
    let Some(spec) = tag_value.get_ref().as_str().and_then(|t| specs.iter().find(|s| s.name == t)) else {
        problems.push(
            Diagnostic::error(Code::InvalidValue, format!("unknown {tag_key}"), tag_span, "not a known action")
                .with_help(format!("expected one of: {}", choices.join(", "))),
        );
        return;
    };
    let mut rest = DeTable::default();
    for (k, v) in table.iter().filter(|(k, _)| k.get_ref() != tag_key) {
        rest.insert(k.clone(), v.clone());
    }
    let mut raw = RawNode {
        name: spec.name.to_string(),
        name_span: tag_span,
        span: span(element.span()),
        args: vec![],
        props: vec![],
        children: vec![],
    };
    fill_from_table(&mut raw, &rest, Some(spec), problems);
    out.push(raw);
    let _ = key_span;
}

fn raw_value(value: &Spanned<DeValue<'_>>) -> RawValue {
    let scalar = match value.get_ref() {
        DeValue::String(s) => Scalar::String(Cow::as_ref(s).to_string()),
        DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Scalar::Integer(n),
            Err(_) => Scalar::Other("an integer too large"),
        },
        DeValue::Float(f) => f.as_str().parse().map_or(Scalar::Other("a float"), Scalar::Float),
        DeValue::Boolean(b) => Scalar::Bool(*b),
        DeValue::Datetime(_) => Scalar::Other("a datetime"),
        DeValue::Array(_) => Scalar::Other("an array"),
        DeValue::Table(_) => Scalar::Other("a table"),
    };
    RawValue { value: scalar, span: span(value.span()) }
}
