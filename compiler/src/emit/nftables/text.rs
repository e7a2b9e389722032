//! Renders the ruleset in nft syntax (`nft -f` input) for review: the same objects as the JSON,
//! in one buffer.

use std::fmt::Write;

use super::ir::{BaseChain, Chain, ChainKind, Elem, Hook, NamedSet, Rule, Ruleset, SetKind, Stmt, Value, Verdict};
use super::{FAMILY, TABLE};

/// Set elements per line, so large sets stay readable.
const ELEMENTS_PER_LINE: usize = 8;

/// The whole ruleset with `header` lines as `#` comments first. [`super::Renderer`] writes the
/// same text from pieces: [`header`], [`open`], [`named_set`]s and [`chain`]s separated by
/// [`SEPARATOR`], [`CLOSE`].
pub fn render(rs: &Ruleset, header_lines: &[String]) -> String {
    let mut out = String::new();
    header(&mut out, header_lines);
    open(&mut out);
    let mut first = true;
    for set in &rs.sets {
        if !first {
            out.push_str(SEPARATOR);
        }
        first = false;
        named_set(&mut out, set);
    }
    for c in &rs.chains {
        if !first {
            out.push_str(SEPARATOR);
        }
        first = false;
        chain(&mut out, c);
    }
    out.push_str(CLOSE);
    out
}

/// Between two sets or chains in the table.
pub const SEPARATOR: &str = "\n";
/// Closes the table.
pub const CLOSE: &str = "}\n";

/// Each line as a `#` comment, control characters as spaces.
pub fn header(out: &mut String, lines: &[String]) {
    for line in lines {
        out.push_str("# ");
        out.extend(line.chars().map(|c| if c.is_control() { ' ' } else { c }));
        out.push('\n');
    }
}

/// The commands before the table's contents, through `table inet meshwork {`.
pub fn open(out: &mut String) {
    // `add` makes `delete` succeed on a host that has no table yet; the whole file is one
    // transaction, so the table is replaced atomically.
    let _ = writeln!(out, "add table {FAMILY} {TABLE}");
    let _ = writeln!(out, "delete table {FAMILY} {TABLE}");
    let _ = writeln!(out, "\ntable {FAMILY} {TABLE} {{");
}

/// A chain with its rules.
pub fn chain(out: &mut String, chain: &Chain) {
    let _ = writeln!(out, "\tchain {} {{", chain.name);
    if let Some(base) = chain.base {
        base_chain(out, base);
    }
    for r in &chain.rules {
        rule(out, r);
    }
    out.push_str("\t}\n");
}

pub fn named_set(out: &mut String, set: &NamedSet) {
    let _ = writeln!(out, "\tset {} {{", set.name);
    let kind = match set.kind {
        SetKind::Addr => "ipv4_addr",
        SetKind::Service => "inet_service",
    };
    let _ = writeln!(out, "\t\ttype {kind}");
    if set.interval {
        out.push_str("\t\tflags interval\n");
    }
    if !set.elements.is_empty() {
        out.push_str("\t\telements = {");
        for (i, e) in set.elements.iter().enumerate() {
            if i % ELEMENTS_PER_LINE == 0 {
                out.push_str(if i == 0 { " " } else { ",\n\t\t\t     " });
            } else {
                out.push_str(", ");
            }
            elem(out, e);
        }
        out.push_str(" }\n");
    }
    out.push_str("\t}\n");
}

fn base_chain(out: &mut String, b: BaseChain) {
    let kind = match b.kind {
        ChainKind::Filter => "filter",
        ChainKind::Nat => "nat",
    };
    let hook = match b.hook {
        Hook::Prerouting => "prerouting",
        Hook::Input => "input",
        Hook::Forward => "forward",
        Hook::Output => "output",
    };
    let policy = match b.policy {
        Verdict::Drop => "drop",
        Verdict::Accept | Verdict::Jump(_) => "accept",
    };
    let _ = writeln!(out, "\t\ttype {kind} hook {hook} priority {}; policy {policy};", b.priority.keyword());
}

fn rule(out: &mut String, r: &Rule) {
    if let Some(note) = &r.note {
        let _ = writeln!(out, "\t\t# {note}");
    }
    out.push_str("\t\t");
    for (i, s) in r.stmts.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        stmt(out, s);
    }
    if let Some(c) = &r.comment {
        let _ = write!(out, " comment \"{c}\"");
    }
    out.push('\n');
}

fn stmt(out: &mut String, s: &Stmt) {
    match s {
        Stmt::Match(k, v) => {
            out.push_str(k.text());
            out.push(' ');
            value(out, v);
        }
        Stmt::MarkJhash { modulus, seed, offset } => {
            let _ =
                write!(out, "meta mark set jhash ip saddr . udp sport mod {modulus} seed {seed:#x} offset {offset:#x}");
        }
        Stmt::DnatIp(addr, port) => {
            let _ = write!(out, "dnat ip to {addr}:{port}");
        }
        Stmt::Counter => out.push_str("counter"),
        Stmt::Verdict(Verdict::Accept) => out.push_str("accept"),
        Stmt::Verdict(Verdict::Drop) => out.push_str("drop"),
        Stmt::Verdict(Verdict::Jump(target)) => {
            let _ = write!(out, "jump {target}");
        }
    }
}

fn value(out: &mut String, v: &Value) {
    match v {
        Value::Name(n) => quoted(out, n),
        Value::Names(ns) => braced(out, ns, |out, n| quoted(out, n)),
        Value::Mark(m) => {
            let _ = write!(out, "{m:#x}");
        }
        Value::Protos(ps) if ps.len() == 1 => out.push_str(ps[0]),
        Value::Protos(ps) => braced(out, ps, |out, p| out.push_str(p)),
        Value::CtStates(ss) => out.push_str(&ss.join(",")),
        Value::Elem(e) => elem(out, e),
        Value::Set(es) => braced(out, es, elem),
        Value::SetRef(name) => {
            out.push('@');
            out.push_str(name);
        }
        Value::Exists(true) => out.push_str("exists"),
        Value::Exists(false) => out.push_str("missing"),
    }
}

fn braced<T>(out: &mut String, items: &[T], mut each: impl FnMut(&mut String, &T)) {
    out.push_str("{ ");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        each(out, item);
    }
    out.push_str(" }");
}

fn quoted(out: &mut String, s: &str) {
    out.push('"');
    out.push_str(s);
    out.push('"');
}

fn elem(out: &mut String, e: &Elem) {
    e.push_to(out);
}
