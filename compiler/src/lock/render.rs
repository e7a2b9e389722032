//! Writing a lock file: the same lock always gives the same bytes. Sections in a fixed order,
//! entries sorted by name (so a moved address changes one line in place and a new object adds
//! one), one line per entry, and no timestamp or tool version that would churn in git.

use std::fmt::Write as _;

use super::{Key, Lock, Section, VERSION, Value};

const HEADER: &str = "\
# meshwork lock file: the address of every object of the topology beside it, so that none
# moves when another object is added, removed or reordered. Written by `meshwork lock` and
# `meshwork build`; commit it with the topology. `meshwork check --locked` fails when it is
# out of date. Edit an entry only to move that object on purpose.
";

pub fn render(lock: &Lock) -> String {
    let mut out = format!("{HEADER}version = {VERSION}\n");
    let mut table: Option<(Section, &str)> = None;
    for (key, value) in lock.entries() {
        let here = (key.section, key.overlay.as_str());
        if table != Some(here) {
            table = Some(here);
            let _ = match key.section {
                Section::Vnics => writeln!(out, "\n[{}.{}]", key.section.table(), bare_or_quoted(&key.overlay)),
                s => writeln!(out, "\n[{}]", s.table()),
            };
        }
        let _ = writeln!(out, "{} = {}", bare_or_quoted(&key.name), value_text(value));
    }
    out
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Address(ip) => format!("\"{ip}\""),
        Value::Port(port) => port.to_string(),
        Value::Vnic(v) => format!("{{ ip = \"{}\", mac = \"{}\" }}", v.ip, v.mac),
    }
}

/// A TOML key: bare when it can be (`web-1`), else a basic string (`"web.1"`).
fn bare_or_quoted(name: &str) -> String {
    let bare = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        return name.to_string();
    }
    let mut out = String::from("\"");
    for c in name.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The entry as it reads in the file, for messages (`web-1 = "100.127.255.193"`).
pub fn entry_line(key: &Key, value: &Value) -> String {
    format!("{} = {}", bare_or_quoted(&key.name), value_text(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    #[test]
    fn odd_names_are_quoted_and_read_back() {
        let mut lock = Lock::default();
        lock.insert(Key::new(Section::Clients, "web.1"), Value::Address("10.0.0.1".parse().unwrap()));
        lock.insert(Key::new(Section::Clients, "a\"b\\c"), Value::Address("10.0.0.2".parse().unwrap()));
        lock.insert(
            Key::vnic("ten.ant", "vm-1"),
            Value::Vnic(crate::vxlan::alloc::VnicAddress {
                ip: "10.44.0.1".parse().unwrap(),
                mac: crate::model::vxlan::Mac([2, 0, 0, 0, 0, 1]),
            }),
        );
        let text = render(&lock);
        assert!(text.contains("\n\"web.1\" = \"10.0.0.1\"\n"), "{text}");
        assert!(text.contains("\n[vnics.\"ten.ant\"]\n"), "{text}");
        let back = super::super::parse(&SourceFile::new("t.lock", text.clone())).expect("reads back");
        assert_eq!(back.lock, lock, "{text}");
    }
}
