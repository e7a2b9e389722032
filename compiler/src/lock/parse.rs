//! Reading a lock file: TOML in, a [`Lock`] out, or every problem in it as diagnostics located in
//! the lock file (a hand edit or a merge conflict must be found, never half-read or a panic).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Key, Lock, Section, VERSION, Value};
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::model::vxlan::Mac;
use crate::source::{SourceFile, Span, at, span};
use crate::vxlan::alloc::VnicAddress;

/// A lock as read, with where each entry's key is written (to point at entries that go).
#[derive(Clone, Debug, Default)]
pub struct ParsedLock {
    pub lock: Lock,
    pub spans: BTreeMap<Key, Span>,
}

/// Reads a lock file; any problem makes the whole lock unusable (its addresses could not be
/// trusted), and every problem is reported.
pub fn parse(file: &SourceFile) -> Result<ParsedLock, Vec<Diagnostic>> {
    let mut reader = Reader { file, out: ParsedLock::default(), problems: Vec::new() };
    let (root, errors) = DeTable::parse_recoverable(&file.text);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|e| {
                let place = e.span().map_or(at(0, 0), span);
                Diagnostic::error(Code::LockSyntax, e.message().trim().to_string(), place, "here")
                    .with_help("fix it, or delete the lock file and run `meshwork lock FILE` to write a new one")
                    .in_file(file)
            })
            .collect());
    }
    reader.root(root.get_ref());
    if reader.problems.is_empty() { Ok(reader.out) } else { Err(reader.problems) }
}

struct Reader<'f> {
    file: &'f SourceFile,
    out: ParsedLock,
    problems: Vec<Diagnostic>,
}

type Entry<'a, 'i> = (&'a Spanned<std::borrow::Cow<'i, str>>, &'a Spanned<DeValue<'i>>);

impl Reader<'_> {
    fn problem(&mut self, message: impl Into<String>, place: Span, label: impl Into<String>, help: Option<String>) {
        let mut d = Diagnostic::error(Code::LockInvalid, message, place, label);
        if let Some(help) = help {
            d = d.with_help(help);
        }
        self.problems.push(d.in_file(self.file));
    }

    fn root(&mut self, root: &DeTable<'_>) {
        let mut version = false;
        for (key, value) in root.iter() {
            let name: &str = key.get_ref();
            if name == "version" {
                version = true;
                self.version(value);
                continue;
            }
            let Some(section) = Section::from_table(name) else {
                let known: Vec<&str> = Section::ALL.iter().map(|s| s.table()).collect();
                self.problem(
                    format!("`{name}` is not a table of a lock file"),
                    span(key.span()),
                    "unknown",
                    Some(format!("a lock has `version` and the tables {}", known.join(", "))),
                );
                continue;
            };
            let Some(table) = self.table(value, &format!("`{name}`")) else { continue };
            if section == Section::Vnics {
                for (overlay, entries) in table.iter() {
                    let what = format!("`vnics.{}`", overlay.get_ref());
                    if let Some(entries) = self.table(entries, &what) {
                        for entry in entries.iter() {
                            self.entry(section, overlay.get_ref(), entry);
                        }
                    }
                }
            } else {
                for entry in table.iter() {
                    self.entry(section, "", entry);
                }
            }
        }
        if !version {
            self.problem(
                "the lock file has no `version`",
                at(0, 0),
                "version missing",
                Some(format!("a lock file starts with `version = {VERSION}`")),
            );
        }
    }

    fn version(&mut self, value: &Spanned<DeValue<'_>>) {
        let ok =
            matches!(value.get_ref(), DeValue::Integer(i) if i64::from_str_radix(i.as_str(), i.radix()) == Ok(VERSION));
        if !ok {
            self.problem(
                "this lock file's version is not one this meshwork reads",
                span(value.span()),
                format!("expected {VERSION}"),
                Some(
                    "it was written by another meshwork; use that one, or delete it and run `meshwork lock FILE`"
                        .into(),
                ),
            );
        }
    }

    fn table<'a, 'i>(&mut self, value: &'a Spanned<DeValue<'i>>, what: &str) -> Option<&'a DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.problem(format!("{what} must be a table"), span(value.span()), "not a table", None);
                None
            }
        }
    }

    fn entry(&mut self, section: Section, overlay: &str, (key, value): Entry<'_, '_>) {
        let name: &str = key.get_ref();
        let parsed = match section {
            Section::Clients | Section::Engines | Section::Vteps => {
                address(value).map(Value::Address).ok_or(Unread::Whole)
            }
            Section::RulePorts => port(value).map(Value::Port).ok_or(Unread::Whole),
            Section::AdminOverlay | Section::Vnics => self.vnic(value).map(Value::Vnic),
        };
        match parsed {
            Ok(parsed) => {
                let k = Key { section, overlay: overlay.to_string(), name: name.to_string() };
                self.out.spans.insert(k.clone(), span(key.span()));
                self.out.lock.insert(k, parsed);
            }
            Err(Unread::Whole) => self.problem(
                format!("the entry `{name}` in `{}` is not {}", section.table(), section.expects()),
                span(value.span()),
                format!("expected {}", section.expects()),
                None,
            ),
            Err(Unread::Reported) => {}
        }
    }

    /// `{ ip = "…", mac = "…" }`. A wrong part is reported on that part.
    fn vnic(&mut self, value: &Spanned<DeValue<'_>>) -> Result<VnicAddress, Unread> {
        let DeValue::Table(t) = value.get_ref() else { return Err(Unread::Whole) };
        let (mut ip, mut mac) = (None, None);
        let mut reported = false;
        for (key, part) in t.iter() {
            let k: &str = key.get_ref();
            match k {
                "ip" => match address(part) {
                    Some(a) => ip = Some(a),
                    None => {
                        reported = true;
                        self.problem("`ip` is not an IPv4 address", span(part.span()), "not an address", None);
                    }
                },
                "mac" => match part.get_ref().as_str().and_then(|s| s.parse::<Mac>().ok()) {
                    Some(m) if !m.is_multicast() && !m.is_zero() => mac = Some(m),
                    _ => {
                        reported = true;
                        self.problem(
                            "`mac` is not a unicast MAC address",
                            span(part.span()),
                            "not a vNIC's MAC",
                            Some("a MAC is six hex octets, unicast, e.g. \"02:00:00:00:00:01\"".into()),
                        );
                    }
                },
                _ => {
                    reported = true;
                    self.problem(
                        format!("`{k}` is not part of a vNIC entry"),
                        span(key.span()),
                        "unknown",
                        Some("a vNIC entry is { ip = \"…\", mac = \"…\" }".into()),
                    );
                }
            }
        }
        match (ip, mac) {
            (Some(ip), Some(mac)) => Ok(VnicAddress { ip, mac }),
            _ if reported => Err(Unread::Reported),
            _ => Err(Unread::Whole),
        }
    }
}

/// Why an entry was not read.
enum Unread {
    /// Its value is of the wrong kind: to be reported on the whole value.
    Whole,
    /// A part of it is wrong, and that was reported.
    Reported,
}

fn address(value: &Spanned<DeValue<'_>>) -> Option<Ipv4Addr> {
    match value.get_ref() {
        DeValue::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn port(value: &Spanned<DeValue<'_>>) -> Option<u16> {
    match value.get_ref() {
        DeValue::Integer(i) => u16::from_str_radix(i.as_str(), i.radix()).ok().filter(|p| *p != 0),
        _ => None,
    }
}
