//! SARIF 2.1.0 (OASIS), the format code-scanning services read (GitHub's
//! `upload-sarif`, GitLab, Azure DevOps). One run; its tool's rules are every code of
//! `meshwork codes`, with the summary and the explanation; each diagnostic is a result with
//! its region (columns in Unicode code points, end exclusive) and its secondary labels as
//! related locations. Problems that are about no place in a file (a file that cannot be read,
//! a certificate that expires) are tool execution notifications.

use meshwork_compiler::codes::Code;
use meshwork_compiler::diagnostic::{Diagnostic, Position, Severity};
use meshwork_compiler::source::{SourceFile, Span};
use serde_sarif::sarif;

use super::{Notice, Report};

/// The official schema of the OASIS standard (2.1.0 with errata 01).
pub const SCHEMA: &str = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// The SARIF log of a report. `properties` go into the run's property bag (e.g. `diff`'s
/// changes).
pub fn log(report: &Report<'_>, properties: Option<sarif::PropertyBag>) -> sarif::Sarif {
    let rules: Vec<sarif::ReportingDescriptor> = Code::ALL.iter().map(|c| rule(*c)).collect();
    let driver = sarif::ToolComponent::builder()
        .name("meshwork")
        .version(env!("CARGO_PKG_VERSION"))
        .semantic_version(env!("CARGO_PKG_VERSION"))
        .rules(rules)
        .build();
    let mut results = Vec::new();
    for (topology, diagnostics) in &report.files {
        results.extend(diagnostics.iter().map(|d| {
            // A diagnostic in the topology's lock file names that file.
            let file = d.file_or(topology);
            result(&uri_reference(&report.path(&file.name)), file, d)
        }));
    }
    let notifications: Vec<sarif::Notification> = report.notices.iter().map(|n| notification(report, n)).collect();
    let unreadable = report.notices.iter().any(|n| n.file.is_some() && n.severity == Severity::Error);
    let invocation = if notifications.is_empty() {
        sarif::Invocation::builder().execution_successful(!unreadable).build()
    } else {
        sarif::Invocation::builder()
            .execution_successful(!unreadable)
            .tool_execution_notifications(notifications)
            .build()
    };
    let run = sarif::Run::builder()
        .tool(sarif::Tool::builder().driver(driver).build())
        .results(results)
        .invocations(vec![invocation])
        .column_kind("unicodeCodePoints");
    let run = match properties {
        Some(p) => run.properties(p).build(),
        None => run.build(),
    };
    sarif::Sarif::builder().schema(SCHEMA).version("2.1.0").runs(vec![run]).build()
}

/// A code as a rule: id, summary and explanation (what `meshwork codes CODE` prints).
fn rule(code: Code) -> sarif::ReportingDescriptor {
    let text = |s: String| sarif::MultiformatMessageString::builder().text(s).build();
    sarif::ReportingDescriptor::builder()
        .id(code.name())
        .short_description(text(code.summary().to_string()))
        .full_description(text(code.explanation().to_string()))
        .help(text(format!("{}\n\nSee `meshwork codes {}`.", code.explanation(), code.name())))
        .build()
}

fn message(text: impl Into<String>) -> sarif::Message {
    sarif::Message::builder().text(text.into()).build()
}

fn result(uri: &str, file: &SourceFile, d: &Diagnostic) -> sarif::Result {
    let mut text = d.message.clone();
    if let Some(help) = &d.help {
        text += &format!("\nhelp: {help}");
    }
    let primary = location(uri, file, d.primary.span, &d.primary.text, None);
    let level = match d.severity {
        Severity::Error => sarif::ResultLevel::Error,
        Severity::Warning => sarif::ResultLevel::Warning,
    };
    let index = Code::ALL.iter().position(|c| *c == d.code).unwrap_or(0) as i64;
    let result = sarif::Result::builder()
        .rule_id(d.code.name())
        .rule_index(index)
        .level(level)
        .message(message(text))
        .locations(vec![primary]);
    if d.secondary.is_empty() {
        return result.build();
    }
    let related: Vec<sarif::Location> =
        d.secondary.iter().enumerate().map(|(i, l)| location(uri, file, l.span, &l.text, Some(i as i64 + 1))).collect();
    result.related_locations(related).build()
}

fn location(uri: &str, file: &SourceFile, span: Span, label: &str, id: Option<i64>) -> sarif::Location {
    let p = Position::of(file, span);
    let region = sarif::Region::builder()
        .start_line(p.line as i64)
        .start_column(p.column as i64)
        .end_line(p.end_line as i64)
        .end_column(p.end_column as i64)
        .build();
    let physical = sarif::PhysicalLocation::builder()
        .artifact_location(sarif::ArtifactLocation::builder().uri(uri).build())
        .region(region)
        .build();
    sarif::Location {
        id,
        message: (!label.is_empty()).then(|| message(label)),
        physical_location: Some(physical),
        ..Default::default()
    }
}

fn notification(report: &Report<'_>, n: &Notice) -> sarif::Notification {
    let level = match n.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let text = format!("{}: {}", n.title, n.message);
    match &n.file {
        Some(f) => {
            let at = sarif::Location {
                physical_location: Some(
                    sarif::PhysicalLocation::builder()
                        .artifact_location(
                            sarif::ArtifactLocation::builder().uri(uri_reference(&report.path(f))).build(),
                        )
                        .build(),
                ),
                ..Default::default()
            };
            sarif::Notification::builder().level(level).message(message(text)).locations(vec![at]).build()
        }
        None => sarif::Notification::builder().level(level).message(message(text)).build(),
    }
}

/// A file name as a URI reference (RFC 3986): a relative path stays relative (GitHub resolves it
/// against the repository), an absolute one becomes a `file://` URI; bytes outside the
/// unreserved set and `/` are percent-encoded.
pub fn uri_reference(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out += "file://";
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::uri_reference;

    #[test]
    fn file_names_become_uri_references() {
        assert_eq!(uri_reference("net/a.kdl"), "net/a.kdl");
        assert_eq!(uri_reference("/tmp/my net/ä.kdl"), "file:///tmp/my%20net/%C3%A4.kdl");
        assert_eq!(uri_reference("a:b#c?.kdl"), "a%3Ab%23c%3F.kdl");
    }
}
