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
pub mod firewall;
pub mod grammar;
pub mod graph;
pub mod identity;
pub mod lines;
pub mod lower;
pub mod model;
pub mod network;
pub mod peering;
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
use crate::model::Topology;
use crate::network::Network;
use crate::source::{Format, SourceFile};

pub use artifacts::Artifacts;

/// Everything `check` learns about a file.
#[derive(Debug)]
pub struct Analysis {
    pub file: SourceFile,
    /// Sorted by position in the file.
    pub diagnostics: Vec<Diagnostic>,
    pub topology: Option<Topology>,
    /// Present when there are no errors.
    pub network: Option<Network>,
}

impl Analysis {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Parses, validates and resolves one file, reporting every problem found.
pub fn analyze(file: SourceFile) -> Analysis {
    let mut diags = Diagnostics::default();
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
            return Analysis { file, diagnostics: diags.into_sorted(), topology: None, network: None };
        }
    };
    shape::check(&raw, &mut diags);
    let topology = lower::lower(&raw);
    let ctx = rules::Context::new(&topology);
    rules::check_all(&ctx, &mut diags);
    let network = if diags.has_errors() {
        None
    } else {
        Network::resolve(&topology, &ctx.allocation, &ctx.vx_allocation, ctx.mesh.clone())
    };
    if let Some(net) = &network {
        rules::expects::check(&topology, net, &mut diags);
    }
    let network = if diags.has_errors() { None } else { network };
    Analysis { file, diagnostics: diags.into_sorted(), topology: Some(topology), network }
}

/// [`analyze`] for a file as read from disk: bytes that are not UTF-8 are one located
/// diagnostic (and nothing else is checked), not a failure to read.
pub fn analyze_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Analysis {
    match encoding::decode(name, bytes) {
        Ok(file) => analyze(file),
        Err(bad) => {
            let (file, d) = *bad;
            Analysis { file, diagnostics: vec![d], topology: None, network: None }
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
