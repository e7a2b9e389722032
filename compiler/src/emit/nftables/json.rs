//! Renders the ruleset as `nft -j -f` input through the `nftables` crate's schema: an atomic,
//! idempotent replace of the table (add, delete, add), then sets, chains and rules.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::Ipv4Addr;

use ::nftables::expr::{
    self, Expression, JHash, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, SetItem,
};
use ::nftables::schema::{self, NfCmd, NfListObject, NfObject, Nftables, SetFlag, SetType, SetTypeValue};
use ::nftables::stmt::{self, Counter, JumpTarget, Mangle, NAT, NATFamily, Operator, Statement};
use ::nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::TABLE;
use super::ir::{Chain, ChainKind, Elem, Hook, Key, NamedSet, Rule, Ruleset, SetKind, Stmt, Value, Verdict, push_addr};

const NF_FAMILY: NfFamily = NfFamily::INet;

/// The `nftables` crate (0.6) has no `rt ipsec` key, which a node's output chain needs to tell
/// plaintext VXLAN from VXLAN bound for an SA. meshwork never matches the routing realm
/// (`rt classid`), so that key stands in while the schema serialises and is renamed in the
/// JSON text ([`Elements::write`]); `nft -c -j -f` of every node ruleset checks the result.
const RT_IPSEC_STAND_IN: expr::RTKey = expr::RTKey::ClassId;
const RT_IPSEC_STAND_IN_JSON: &str = r#"{"rt":{"key":"classid"}}"#;
const RT_IPSEC_JSON: &str = r#"{"rt":{"key":"ipsec"}}"#;

pub fn render(rs: &Ruleset) -> Nftables<'static> {
    let rules: usize = rs.chains.iter().map(|c| c.rules.len()).sum();
    let mut objects: Vec<NfObject<'static>> = Vec::with_capacity(3 + rs.sets.len() + rs.chains.len() + rules);
    objects.extend(table_commands());
    objects.extend(rs.sets.iter().map(set));
    objects.extend(rs.chains.iter().map(chain));
    for c in &rs.chains {
        objects.extend(c.rules.iter().map(|r| rule(c.name, r)));
    }
    Nftables { objects: objects.into() }
}

/// Add, delete and add the table: an idempotent replace in one transaction.
pub fn table_commands() -> [NfObject<'static>; 3] {
    let table = || NfListObject::Table(schema::Table { family: NF_FAMILY, name: TABLE.into(), handle: None });
    [NfObject::CmdObject(NfCmd::Add(table())), NfObject::CmdObject(NfCmd::Delete(table())), add(table())]
}

/// `add set`, with its elements.
pub fn set(set: &NamedSet) -> NfObject<'static> {
    add(NfListObject::Set(Box::new(schema::Set {
        family: NF_FAMILY,
        table: TABLE.into(),
        name: set.name.clone().into(),
        handle: None,
        set_type: SetTypeValue::Single(match set.kind {
            SetKind::Addr => SetType::Ipv4Addr,
            SetKind::Service => SetType::InetService,
        }),
        policy: None,
        // One flag at most: the crate keeps flags in a HashSet, whose order is not fixed.
        flags: set.interval.then(|| HashSet::from([SetFlag::Interval])),
        elem: (!set.elements.is_empty()).then(|| set.elements.iter().map(elem).collect::<Vec<_>>().into()),
        timeout: None,
        gc_interval: None,
        size: None,
        comment: None,
    })))
}

/// `add chain`, without its rules.
pub fn chain(chain: &Chain) -> NfObject<'static> {
    let base = chain.base;
    add(NfListObject::Chain(schema::Chain {
        family: NF_FAMILY,
        table: TABLE.into(),
        name: chain.name.into(),
        newname: None,
        handle: None,
        _type: base.map(|b| match b.kind {
            ChainKind::Filter => NfChainType::Filter,
            ChainKind::Nat => NfChainType::NAT,
        }),
        hook: base.map(|b| match b.hook {
            Hook::Prerouting => NfHook::Prerouting,
            Hook::Input => NfHook::Input,
            Hook::Forward => NfHook::Forward,
            Hook::Output => NfHook::Output,
        }),
        prio: base.map(|b| b.priority.value()),
        dev: None,
        policy: base.map(|b| match b.policy {
            Verdict::Drop => NfChainPolicy::Drop,
            Verdict::Accept | Verdict::Jump(_) => NfChainPolicy::Accept,
        }),
    }))
}

/// `add rule` to chain `chain`.
pub fn rule(chain: &'static str, r: &Rule) -> NfObject<'static> {
    add(NfListObject::Rule(schema::Rule {
        family: NF_FAMILY,
        table: TABLE.into(),
        chain: chain.into(),
        expr: r.stmts.iter().map(statement).collect::<Vec<_>>().into(),
        handle: None,
        index: None,
        comment: r.comment.clone().map(Cow::Owned),
    }))
}

/// The layout of `nftables.json`: the `nftables` array with one command per line, each in
/// compact JSON. Large sets stay one line each, so the file is about a third of pretty JSON's
/// size (it is machine input; `nftables.nft` is the form for reading) while a review still sees
/// one changed line per changed command. A document is spliced together from objects rendered
/// separately (some only once for every controller): [`OPEN`], the objects separated by
/// [`SEPARATOR`], then [`CLOSE`].
pub const OPEN: &str = "{\"nftables\": [\n";
/// Between two objects of the array.
pub const SEPARATOR: &str = ",\n";
/// After the last object, with a trailing newline.
pub const CLOSE: &str = "\n]}\n";

/// Writes objects as elements of the `nftables` array, compact.
#[derive(Default)]
pub struct Elements;

impl Elements {
    /// Appends `obj`, without a separator.
    pub fn write(&mut self, out: &mut String, obj: &NfObject<'_>) {
        // The schema has no maps with non-string keys, so serialising cannot fail.
        let mut json = serde_json::to_string(obj).expect("nftables schema serialises to JSON");
        if json.contains(RT_IPSEC_STAND_IN_JSON) {
            json = json.replace(RT_IPSEC_STAND_IN_JSON, RT_IPSEC_JSON);
        }
        out.push_str(&json);
    }

    /// Appends each object, each preceded by [`SEPARATOR`].
    pub fn write_each<'a>(&mut self, out: &mut String, objs: impl IntoIterator<Item = NfObject<'a>>) {
        for obj in objs {
            out.push_str(SEPARATOR);
            self.write(out, &obj);
        }
    }
}

fn add(obj: NfListObject<'static>) -> NfObject<'static> {
    NfObject::CmdObject(NfCmd::Add(obj))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField {
        protocol: protocol.into(),
        field: field.into(),
    })))
}

fn key(k: Key) -> Expression<'static> {
    match k {
        Key::IifName => meta(MetaKey::Iifname),
        Key::OifName => meta(MetaKey::Oifname),
        Key::L4Proto => meta(MetaKey::L4proto),
        Key::Mark => meta(MetaKey::Mark),
        Key::CtState => {
            Expression::Named(NamedExpression::CT(expr::CT { key: "state".into(), family: None, dir: None }))
        }
        Key::IpSaddr => payload("ip", "saddr"),
        Key::IpDaddr => payload("ip", "daddr"),
        Key::UdpSport => payload("udp", "sport"),
        Key::UdpDport => payload("udp", "dport"),
        Key::TcpDport => payload("tcp", "dport"),
        Key::ThDport => payload("th", "dport"),
        // The crate's name for `meta ipsec`; nft reads it back as `meta ipsec`.
        Key::IpsecIn => meta(MetaKey::Secpath),
        Key::IpsecOut => Expression::Named(NamedExpression::RT(expr::RT { key: RT_IPSEC_STAND_IN, family: None })),
    }
}

fn string(s: impl Into<Cow<'static, str>>) -> Expression<'static> {
    Expression::String(s.into())
}

fn addr(a: Ipv4Addr) -> String {
    let mut s = String::with_capacity(15);
    push_addr(&mut s, a);
    s
}

fn elem(e: &Elem) -> Expression<'static> {
    match *e {
        Elem::Addr(a) => string(addr(a)),
        Elem::Net(n) => Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(string(addr(n.network()))),
            len: u32::from(n.prefix_len()),
        })),
        Elem::Port(p) => Expression::Number(u32::from(p)),
        Elem::Ports(lo, hi) => Expression::Range(Box::new(expr::Range {
            range: [Expression::Number(lo.into()), Expression::Number(hi.into())],
        })),
    }
}

fn anonymous_set(items: impl Iterator<Item = Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(items.map(SetItem::Element).collect()))
}

fn value(v: &Value) -> (Operator, Expression<'static>) {
    match v {
        Value::Name(n) => (Operator::EQ, string(n.clone())),
        Value::Names(ns) => (Operator::EQ, anonymous_set(ns.iter().map(|n| string(n.clone())))),
        Value::Mark(m) => (Operator::EQ, Expression::Number(*m)),
        Value::Protos(ps) if ps.len() == 1 => (Operator::EQ, string(ps[0])),
        Value::Protos(ps) => (Operator::EQ, anonymous_set(ps.iter().map(|p| string(*p)))),
        Value::CtStates(ss) => (Operator::IN, Expression::List(ss.iter().map(|s| string(*s)).collect())),
        Value::Elem(e) => (Operator::EQ, elem(e)),
        Value::Set(es) => (Operator::EQ, anonymous_set(es.iter().map(elem))),
        Value::SetRef(name) => (Operator::EQ, string(format!("@{name}"))),
        Value::Exists(b) => (Operator::EQ, Expression::Boolean(*b)),
    }
}

fn statement(s: &Stmt) -> Statement<'static> {
    match s {
        Stmt::Match(k, v) => {
            let (op, right) = value(v);
            Statement::Match(stmt::Match { left: key(*k), right, op })
        }
        Stmt::MarkJhash { modulus, seed, offset } => Statement::Mangle(Mangle {
            key: meta(MetaKey::Mark),
            value: Expression::Named(NamedExpression::JHash(JHash {
                hash_mod: *modulus,
                offset: Some(*offset),
                expr: Box::new(Expression::Named(NamedExpression::Concat(vec![
                    payload("ip", "saddr"),
                    payload("udp", "sport"),
                ]))),
                seed: Some(*seed),
            })),
        }),
        Stmt::DnatIp(addr, port) => Statement::DNAT(Some(NAT {
            addr: Some(string(addr.to_string())),
            family: Some(NATFamily::IP),
            port: Some(Expression::Number(u32::from(*port))),
            flags: None,
        })),
        Stmt::Counter => Statement::Counter(Counter::Anonymous(None)),
        Stmt::Verdict(Verdict::Accept) => Statement::Accept(None),
        Stmt::Verdict(Verdict::Drop) => Statement::Drop(None),
        Stmt::Verdict(Verdict::Jump(target)) => Statement::Jump(JumpTarget { target: (*target).into() }),
    }
}
