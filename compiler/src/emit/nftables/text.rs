//! Renders the ruleset in nft syntax (`nft -f` input) for review: the same objects as the JSON,
//! in one buffer.

use std::fmt::Write;

use super::ir::{BaseChain, ChainKind, Elem, Hook, NamedSet, Rule, Ruleset, SetKind, Stmt, Value, Verdict};
use super::{FAMILY, TABLE};

/// Set elements per line, so large sets stay readable.
const ELEMENTS_PER_LINE: usize = 8;

/// `header` lines are written as `#` comments before the commands.
pub fn render(rs: &Ruleset, header: &[String]) -> String {
    let elements: usize = rs.sets.iter().map(|s| s.elements.len()).sum();
    let rules: usize = rs.chains.iter().map(|c| c.rules.len()).sum();
    let mut out = String::with_capacity(512 + 20 * elements + 120 * rules);
    for line in header {
        out.push_str("# ");
        out.push_str(&line.replace(|c: char| c.is_control(), " "));
        out.push('\n');
    }
    // `add` makes `delete` succeed on a host that has no table yet; the whole file is one
    // transaction, so the table is replaced atomically.
    let _ = writeln!(out, "add table {FAMILY} {TABLE}");
    let _ = writeln!(out, "delete table {FAMILY} {TABLE}");
    let _ = writeln!(out, "\ntable {FAMILY} {TABLE} {{");
    let mut first = true;
    for set in &rs.sets {
        if !first {
            out.push('\n');
        }
        first = false;
        named_set(&mut out, set);
    }
    for chain in &rs.chains {
        if !first {
            out.push('\n');
        }
        first = false;
        let _ = writeln!(out, "\tchain {} {{", chain.name);
        if let Some(base) = chain.base {
            base_chain(&mut out, base);
        }
        for r in &chain.rules {
            rule(&mut out, r);
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    out
}

fn named_set(out: &mut String, set: &NamedSet) {
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
    let _ = write!(out, "{e}");
}
