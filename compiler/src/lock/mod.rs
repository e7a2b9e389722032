//! The lock file: every address meshwork allocated for a topology, kept beside it in git (like
//! `Cargo.lock`) so that an object's address never moves because someone else's line was
//! added, removed or reordered (issue 13).
//!
//! The lock is an input like the topology: the allocators keep a locked address whenever it is
//! still free and inside its range, and give new objects free addresses (see [`crate::pool`]).
//! The lock a topology resolves to is [`Lock::of`] its network, so it records exactly what the
//! artifacts use. Without a lock the allocators behave as they always did (declaration order),
//! so a topology's first lock records the addresses it already had.
//!
//! What is locked, by section of the file (TOML, one entry per object, sorted by name):
//!
//! ```toml
//! version = 1
//!
//! [clients]                    # overlay address of every client (ip= ones too)
//! web-1 = "100.127.255.193"
//! [engines]                    # overlay address of every engine, by its name CONTROLLER-eK
//! east-e1 = "100.127.255.252"
//! [rule-ports]                 # UDP port of every overlay rule
//! tenants = 4790
//! [vteps]                      # VTEP address of every node in the IPsec mesh
//! cn-1 = "198.19.254.1"
//! [admin-overlay]              # every node's admin-overlay vNIC
//! cn-1 = { ip = "10.99.0.11", mac = "02:5e:10:2a:7b:01" }
//! [vnics.tenant-a]             # every vNIC of overlay tenant-a, MAC derived or not
//! vm-1 = { ip = "10.44.0.10", mac = "02:00:00:00:00:01" }
//! ```
//!
//! Controllers are not locked: a controller's address is a function of its id, which the
//! topology states, as VNS3 numbers them.

pub mod changes;
pub mod outdated;
pub mod parse;
pub mod render;

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use crate::network::Network;
use crate::vxlan::OverlayKind;
use crate::vxlan::alloc::VnicAddress;

pub use changes::{Change, ChangeKind, changes};
pub use parse::parse;
pub use render::render;

/// The lock format this meshwork reads and writes.
pub const VERSION: i64 = 1;

/// One kind of locked object, and its table in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    Clients,
    Engines,
    RulePorts,
    Vteps,
    AdminOverlay,
    /// One table per overlay: `[vnics.NAME]`.
    Vnics,
}

impl Section {
    pub const ALL: [Section; 6] =
        [Section::Clients, Section::Engines, Section::RulePorts, Section::Vteps, Section::AdminOverlay, Section::Vnics];

    /// Its table name in the file.
    pub fn table(self) -> &'static str {
        match self {
            Section::Clients => "clients",
            Section::Engines => "engines",
            Section::RulePorts => "rule-ports",
            Section::Vteps => "vteps",
            Section::AdminOverlay => "admin-overlay",
            Section::Vnics => "vnics",
        }
    }

    pub fn from_table(name: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.table() == name)
    }

    /// What its values are, for "expected ..." messages.
    fn expects(self) -> &'static str {
        match self {
            Section::Clients | Section::Engines | Section::Vteps => "an IPv4 address as a string",
            Section::RulePorts => "a UDP port number",
            Section::AdminOverlay | Section::Vnics => "a table { ip = \"…\", mac = \"…\" }",
        }
    }
}

/// Which object an entry belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub section: Section,
    /// The overlay, for vNICs; empty otherwise.
    pub overlay: String,
    /// The client, engine, rule or node name; the vNIC's name for vNICs.
    pub name: String,
}

impl Key {
    pub fn new(section: Section, name: impl Into<String>) -> Self {
        Self { section, overlay: String::new(), name: name.into() }
    }

    pub fn vnic(overlay: impl Into<String>, name: impl Into<String>) -> Self {
        Self { section: Section::Vnics, overlay: overlay.into(), name: name.into() }
    }
}

/// For messages: "client `web-1`", "vNIC `vm-1` of overlay `tenant-a`".
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        match self.section {
            Section::Clients => write!(f, "client `{name}`"),
            Section::Engines => write!(f, "engine `{name}`"),
            Section::RulePorts => write!(f, "the port of overlay rule `{name}`"),
            Section::Vteps => write!(f, "the VTEP of node `{name}`"),
            Section::AdminOverlay => write!(f, "the admin-overlay vNIC of node `{name}`"),
            Section::Vnics => write!(f, "vNIC `{name}` of overlay `{}`", self.overlay),
        }
    }
}

/// What an entry locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    Address(Ipv4Addr),
    Port(u16),
    Vnic(VnicAddress),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Address(ip) => ip.fmt(f),
            Value::Port(port) => write!(f, "port {port}"),
            Value::Vnic(v) => write!(f, "{} {}", v.ip, v.mac),
        }
    }
}

/// Every locked entry, in a fixed order (section, overlay, name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    entries: BTreeMap<Key, Value>,
}

impl Lock {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn insert(&mut self, key: Key, value: Value) {
        self.entries.insert(key, value);
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.entries.get(key)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.entries.iter()
    }

    /// The locked address of a client, engine or VTEP.
    pub fn address(&self, section: Section, name: &str) -> Option<Ipv4Addr> {
        match self.entries.get(&Key::new(section, name)) {
            Some(Value::Address(ip)) => Some(*ip),
            _ => None,
        }
    }

    /// The locked port of an overlay rule.
    pub fn port(&self, rule: &str) -> Option<u16> {
        match self.entries.get(&Key::new(Section::RulePorts, rule)) {
            Some(Value::Port(p)) => Some(*p),
            _ => None,
        }
    }

    /// The locked address and MAC of a vNIC (`overlay` is ignored for the admin overlay).
    pub fn vnic(&self, section: Section, overlay: &str, name: &str) -> Option<VnicAddress> {
        let key = match section {
            Section::Vnics => Key::vnic(overlay, name),
            _ => Key::new(section, name),
        };
        match self.entries.get(&key) {
            Some(Value::Vnic(v)) => Some(*v),
            _ => None,
        }
    }

    /// The lock a resolved network implies: every address its artifacts use.
    pub fn of(net: &Network) -> Lock {
        let mut lock = Lock::default();
        for c in &net.clients {
            lock.insert(Key::new(Section::Clients, &c.name), Value::Address(c.ip));
        }
        for e in net.controllers.iter().flat_map(|c| c.engines.iter().flat_map(|s| &s.engines)) {
            lock.insert(Key::new(Section::Engines, &e.name), Value::Address(e.overlay_ip));
        }
        let vx = &net.vxlan;
        // The admin overlay's port is a setting of its own (default 4793), not allocated.
        let admin_rules: Vec<usize> =
            vx.overlays.iter().filter(|o| o.kind == OverlayKind::Admin).map(|o| o.rule).collect();
        for (i, r) in vx.rules.iter().enumerate() {
            if !admin_rules.contains(&i) {
                lock.insert(Key::new(Section::RulePorts, &r.name), Value::Port(r.port));
            }
        }
        for n in &vx.nodes {
            if let Some(vtep) = n.vtep {
                lock.insert(Key::new(Section::Vteps, &n.name), Value::Address(vtep));
            }
            if let Some(v) = n.admin_vnic {
                lock.insert(Key::new(Section::AdminOverlay, &n.name), Value::Vnic(v));
            }
        }
        for o in vx.overlays.iter().filter(|o| o.kind == OverlayKind::Tenant) {
            for v in &o.vnics {
                lock.insert(Key::vnic(&o.name, &v.name), Value::Vnic(VnicAddress { ip: v.ip, mac: v.mac }));
            }
        }
        lock
    }
}
