//! Helpers for the crate's unit tests.

use crate::network::Network;
use crate::source::SourceFile;

/// The resolved network of a KDL topology that must validate; panics with the rendered
/// diagnostics otherwise.
pub fn network(kdl: &str) -> Network {
    let a = crate::analyze(SourceFile::new("t.kdl", kdl));
    let report = crate::diagnostic::render_plain(&a.file, &a.diagnostics);
    a.network.unwrap_or_else(|| panic!("topology does not validate:\n{report}"))
}
