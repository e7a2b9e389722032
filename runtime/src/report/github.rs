//! GitHub Actions workflow commands: one `::error` or `::warning` line per diagnostic, which
//! the runner turns into an annotation on the file, line and columns of the pull request.
//!
//! `::error file=net.kdl,line=3,col=26,endLine=3,endColumn=32,title=meshwork::shape::unknown-node::…`
//!
//! Escaping follows the runner (actions/toolkit `command.ts`): the message escapes `%`, CR and
//! LF as `%25`, `%0D`, `%0A`; property values also escape `:` and `,` as `%3A`, `%2C`. Columns
//! are sent only when the span starts and ends on one line, as GitHub's annotations require.

use std::fmt::Write;

use meshwork_compiler::diagnostic::{Diagnostic, Position, Severity};
use meshwork_compiler::source::SourceFile;

use super::{Notice, Report};

/// Escapes a command's message.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a command's property value.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

fn command(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// One diagnostic as one workflow command line (without its newline).
pub fn annotation(path: &str, file: &SourceFile, d: &Diagnostic) -> String {
    let p = Position::of(file, d.primary.span);
    let mut props = format!("file={},line={}", escape_property(path), p.line);
    if p.line == p.end_line {
        let _ = write!(props, ",col={},endLine={},endColumn={}", p.column, p.end_line, p.end_column);
    } else {
        let _ = write!(props, ",endLine={}", p.end_line);
    }
    let _ = write!(props, ",title={}", escape_property(d.code.name()));
    format!("::{} {props}::{}", command(d.severity), escape_data(&message(file, d)))
}

/// The annotation's text: the message, every label with its place, then the help.
fn message(file: &SourceFile, d: &Diagnostic) -> String {
    let mut text = d.message.clone();
    for label in std::iter::once(&d.primary).chain(&d.secondary) {
        if label.text.is_empty() {
            continue;
        }
        let p = Position::of(file, label.span);
        let _ = write!(text, "\n  {}:{}: {}", p.line, p.column, label.text);
    }
    if let Some(help) = &d.help {
        let _ = write!(text, "\nhelp: {help}");
    }
    text
}

/// A notice (no place in a file, or only the file) as a workflow command line.
pub fn notice(path: Option<&str>, n: &Notice) -> String {
    let mut props = Vec::new();
    if let Some(path) = path {
        props.push(("file", path));
    }
    props.push(("title", n.title.as_str()));
    workflow_command(command(n.severity), &props, &n.message)
}

/// Any workflow command, e.g. `workflow_command("notice", &[("title", "meshwork diff")], text)`,
/// with its property values and message escaped.
pub fn workflow_command(name: &str, properties: &[(&str, &str)], message: &str) -> String {
    let props: Vec<String> = properties.iter().map(|(k, v)| format!("{k}={}", escape_property(v))).collect();
    let sep = if props.is_empty() { "" } else { " " };
    format!("::{name}{sep}{}::{}", props.join(","), escape_data(message))
}

/// Every notice, then every diagnostic of every file, one command per line.
pub fn render(report: &Report<'_>) -> String {
    let mut out = String::new();
    for n in &report.notices {
        let path = n.file.as_deref().map(|f| report.path(f));
        out += &notice(path.as_deref(), n);
        out.push('\n');
    }
    for (topology, diagnostics) in &report.files {
        for d in diagnostics.iter() {
            // A diagnostic in the topology's lock file names that file.
            let file = d.file_or(topology);
            out += &annotation(&report.path(&file.name), file, d);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshwork_compiler::codes::Code;
    use meshwork_compiler::source::at;

    #[test]
    fn escaping_matches_the_runner() {
        assert_eq!(escape_data("50% done\r\nnext: a, b"), "50%25 done%0D%0Anext: a, b");
        assert_eq!(escape_property("a:b,c%d\ne"), "a%3Ab%2Cc%25d%0Ae");
        // Escaping `%` first: an existing `%0A` in the text stays text.
        assert_eq!(escape_data("%0A"), "%250A");
    }

    #[test]
    fn one_line_per_diagnostic_with_exclusive_end_columns() {
        let file = SourceFile::new("n,et.kdl", "topology \"t\"\nfoo bar\n");
        let d = Diagnostic::error(Code::UnknownNode, "unknown node `foo`", at(13, 3), "here")
            .with_label(at(0, 8), "in this file")
            .with_help("did you mean `for`?\nor nothing");
        assert_eq!(
            annotation("n,et.kdl", &file, &d),
            "::error file=n%2Cet.kdl,line=2,col=1,endLine=2,endColumn=4,title=meshwork%3A%3Ashape%3A%3Aunknown-node\
             ::unknown node `foo`%0A  2:1: here%0A  1:1: in this file%0Ahelp: did you mean `for`?%0Aor nothing"
        );
    }

    #[test]
    fn any_command_escapes_its_properties() {
        assert_eq!(workflow_command("notice", &[], "a\nb"), "::notice::a%0Ab");
        assert_eq!(
            workflow_command("notice", &[("file", "x.kdl"), ("title", "meshwork diff: 1, 2")], "m"),
            "::notice file=x.kdl,title=meshwork diff%3A 1%2C 2::m"
        );
    }

    #[test]
    fn a_span_over_several_lines_has_no_columns() {
        let file = SourceFile::new("a.kdl", "a {\n}\n");
        let d = Diagnostic::warning(Code::UnknownNode, "m", at(0, 5), "");
        assert_eq!(
            annotation("a.kdl", &file, &d),
            "::warning file=a.kdl,line=1,endLine=2,title=meshwork%3A%3Ashape%3A%3Aunknown-node::m"
        );
    }
}
