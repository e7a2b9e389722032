//! KDL v2 front end: `kdl` parses, we copy its tree (with spans) into the raw document.

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};

use super::{RawDoc, RawNode, RawProp, RawValue, Scalar};
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::source::Span;

pub fn parse(text: &str) -> Result<RawDoc, Vec<Diagnostic>> {
    // Before the parser, which recurses per level and would overflow the stack.
    if let Some(too_deep) = super::depth::check_kdl(text) {
        return Err(vec![too_deep]);
    }
    on_parser_stack(|| parse_checked(text))
}

/// Stack of the thread the parser runs on. The pre-scan bounds nesting as the parser will see
/// it; where the two could still disagree (error recovery that reads a string's text as code),
/// this stack, about 50 times a default thread's (address space, committed only as used), is
/// what stands between a crafted file and a crash.
const PARSER_STACK: usize = 128 << 20;

/// Runs `f` (parsing, and the recursive copy and drop of the tree) on a thread with a large
/// stack, or here if no thread can be made.
fn on_parser_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    // Taken by whichever runs it: the thread, or this one when there is no thread.
    let f = std::sync::Mutex::new(Some(f));
    let run = || f.lock().unwrap_or_else(|e| e.into_inner()).take().map(|f| f());
    std::thread::scope(|scope| {
        let spawned =
            std::thread::Builder::new().name("kdl-parse".into()).stack_size(PARSER_STACK).spawn_scoped(scope, run);
        let done = match spawned {
            Ok(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => None,
        };
        done.or_else(run).expect("the parse ran on one of the two")
    })
}

fn parse_checked(text: &str) -> Result<RawDoc, Vec<Diagnostic>> {
    match KdlDocument::parse(text) {
        Ok(doc) => Ok(RawDoc { nodes: doc.nodes().iter().map(node).collect() }),
        Err(err) => Err(err
            .diagnostics
            .iter()
            .map(|d| {
                let message = d.message.clone().unwrap_or_else(|| "invalid KDL".to_string());
                let label = d.label.clone().unwrap_or_else(|| "here".to_string());
                let diag = Diagnostic::error(Code::Syntax, message, d.span, label);
                match &d.help {
                    Some(h) => diag.with_help(h.clone()),
                    None => diag,
                }
            })
            .collect()),
    }
}

fn node(n: &KdlNode) -> RawNode {
    let mut args = Vec::new();
    let mut props = Vec::new();
    for entry in n.entries() {
        match entry.name() {
            None => args.push(RawValue { value: scalar(entry.value()), span: entry.span() }),
            Some(key) => props.push(RawProp {
                key: key.value().to_string(),
                key_span: key.span(),
                value: RawValue { value: scalar(entry.value()), span: value_span(entry) },
            }),
        }
    }
    RawNode {
        name: n.name().value().to_string(),
        name_span: n.name().span(),
        span: n.span(),
        args,
        props,
        children: n.children().map(|c| c.nodes().iter().map(node).collect()).unwrap_or_default(),
    }
}

/// A property's entry span covers `key=value`; diagnostics about the value point at the value
/// alone, which is the tail of the entry as written.
fn value_span(entry: &KdlEntry) -> Span {
    let whole = entry.span();
    match entry.format() {
        Some(f) if !f.value_repr.is_empty() && f.value_repr.len() <= whole.len() => {
            let len = f.value_repr.len();
            crate::source::at(whole.offset() + whole.len() - len, len)
        }
        _ => whole,
    }
}

fn scalar(v: &KdlValue) -> Scalar {
    match v {
        KdlValue::String(s) => Scalar::String(s.clone()),
        KdlValue::Integer(i) => Scalar::Integer(*i),
        KdlValue::Float(f) => Scalar::Float(*f),
        KdlValue::Bool(b) => Scalar::Bool(*b),
        KdlValue::Null => Scalar::Null,
    }
}
