//! meshwork's compiler: a pure function from a topology file to diagnostics and, when the file
//! is valid, every host's configuration. No I/O, no clock, no randomness: the same file always
//! gives byte-identical artifacts.
//!
//! Pipeline: front end (KDL or TOML) -> raw document -> shape check (grammar) -> lowering
//! (model) -> validation rules -> resolution (addresses, mesh, firewall) -> emitters.

pub mod alloc;
pub mod artifacts;
pub mod codes;
pub mod diagnostic;
pub mod diff;
pub mod emit;
pub mod encoding;
pub mod explain;
pub mod failover;
pub mod firewall;
pub mod grammar;
pub mod graph;
pub mod identity;
pub mod lines;
pub mod lock;
pub mod lower;
pub mod model;
pub mod network;
pub mod peering;
pub mod plural;
pub mod pool;
pub mod render;
pub mod rules;
pub mod schema;
pub mod shape;
pub mod source;
pub mod syntax;
#[cfg(test)]
mod testing;
pub mod values;
pub mod vxlan;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::lock::Lock;
use crate::model::Topology;
use crate::network::Network;
use crate::source::{Format, SourceFile};

pub use artifacts::Artifacts;

/// Everything `check` learns about a file.
#[derive(Debug)]
pub struct Analysis {
    pub file: SourceFile,
    /// Sorted by position in the file; those located in the lock file (they carry it) last.
    pub diagnostics: Vec<Diagnostic>,
    pub topology: Option<Topology>,
    /// Present when there are no errors.
    pub network: Option<Network>,
    /// The lock file as read; None when there is none or it is not a valid lock.
    pub lock_read: Option<Lock>,
    /// The lock this topology resolves to, what `meshwork lock` writes: present with the network.
    pub lock: Option<Lock>,
}

impl Analysis {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// What writing [`Analysis::lock`] would change in the lock file read (everything is added
    /// when there was none); empty when the topology does not resolve.
    pub fn lock_changes(&self) -> Vec<lock::Change> {
        match &self.lock {
            Some(new) => lock::changes(self.lock_read.as_ref().unwrap_or(&Lock::default()), new),
            None => Vec::new(),
        }
    }
}

/// The lock file that goes with a topology, and how it may be used.
#[derive(Clone, Debug, Default)]
pub struct LockInput {
    /// The lock file as read; None when there is none (addresses then follow declaration order).
    pub file: Option<SourceFile>,
    /// `--locked`: every entry the lock file would have to change is an error.
    pub locked: bool,
    /// The lock file's bytes were not UTF-8 (see [`LockInput::from_bytes`]).
    encoding: Option<Diagnostic>,
}

impl LockInput {
    pub fn new(file: Option<SourceFile>, locked: bool) -> Self {
        Self { file, locked, encoding: None }
    }

    /// A lock file as read from disk: bytes that are not UTF-8 are a located diagnostic.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>, locked: bool) -> Self {
        match encoding::decode(name, bytes) {
            Ok(file) => Self::new(Some(file), locked),
            Err(bad) => {
                let (file, d) = *bad;
                let d = d.in_file(&file);
                Self { file: Some(file), locked, encoding: Some(d) }
            }
        }
    }
}

/// Parses, validates and resolves one file, reporting every problem found. Without a lock,
/// addresses follow declaration order.
pub fn analyze(file: SourceFile) -> Analysis {
    analyze_with(file, LockInput::default())
}

/// [`analyze`] with the topology's lock file: locked addresses are kept where they can be,
/// and the analysis carries the lock to write.
pub fn analyze_with(file: SourceFile, input: LockInput) -> Analysis {
    let mut diags = Diagnostics::default();
    let mut lock_problems: Vec<Diagnostic> = input.encoding.iter().cloned().collect();
    let parsed = match (&input.file, &input.encoding) {
        (Some(lock_file), None) => match lock::parse(lock_file) {
            Ok(parsed) => Some(parsed),
            Err(problems) => {
                lock_problems.extend(problems);
                None
            }
        },
        _ => None,
    };
    diags.extend(lock_problems);
    let raw = match file.format() {
        Format::Kdl => syntax::kdl::parse(&file.text),
        Format::Toml => syntax::toml::parse(&file.text).map(|(doc, problems)| {
            diags.extend(problems);
            doc
        }),
    };
    let raw = match raw {
        Ok(raw) => raw,
        Err(errors) => {
            diags.extend(errors);
            let lock_read = parsed.map(|p| p.lock);
            return Analysis {
                file,
                diagnostics: diags.into_sorted(),
                topology: None,
                network: None,
                lock_read,
                lock: None,
            };
        }
    };
    shape::check(&raw, &mut diags);
    let topology = lower::lower(&raw);
    let empty = Lock::default();
    let ctx = rules::Context::new(&topology, parsed.as_ref().map_or(&empty, |p| &p.lock));
    rules::check_all(&ctx, &mut diags);
    let network = if diags.has_errors() {
        None
    } else {
        Network::resolve(&topology, &ctx.allocation, &ctx.vx_allocation, ctx.mesh.clone())
    };
    if let Some(net) = &network {
        rules::expects::check(&topology, net, &mut diags);
    }
    let resolved = network.as_ref().map(Lock::of);
    for r in ctx.allocation.relocations.iter().chain(&ctx.vx_allocation.relocations) {
        diags.push(r.diagnostic(resolved.as_ref()));
    }
    if input.locked
        && let Some(new) = &resolved
        && !diags.has_errors()
    {
        diags.extend(lock::outdated::diagnostics(&topology, input.file.as_ref(), parsed.as_ref(), new));
    }
    let (network, resolved) = if diags.has_errors() { (None, None) } else { (network, resolved) };
    Analysis {
        file,
        diagnostics: diags.into_sorted(),
        topology: Some(topology),
        network,
        lock_read: parsed.map(|p| p.lock),
        lock: resolved,
    }
}

/// [`analyze`] for a file as read from disk: bytes that are not UTF-8 are one located
/// diagnostic (and nothing else is checked), not a failure to read.
pub fn analyze_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Analysis {
    analyze_bytes_with(name, bytes, LockInput::default())
}

/// [`analyze_bytes`] with the topology's lock file.
pub fn analyze_bytes_with(name: impl Into<String>, bytes: Vec<u8>, lock: LockInput) -> Analysis {
    match encoding::decode(name, bytes) {
        Ok(file) => analyze_with(file, lock),
        Err(bad) => {
            let (file, d) = *bad;
            Analysis { file, diagnostics: vec![d], topology: None, network: None, lock_read: None, lock: None }
        }
    }
}

/// Compiles a valid file into its artifacts, or returns the analysis with its errors.
pub fn build(file: SourceFile) -> Result<Artifacts, Box<Analysis>> {
    let analysis = analyze(file);
    match &analysis.network {
        Some(net) => Ok(artifacts::build(net)),
        None => Err(Box::new(analysis)),
    }
}
