//! `meshwork diff --format markdown`: a pull-request comment. A hidden marker first (so a
//! workflow can find and update its own comment), a heading, the summary, the changes in a
//! `diff` block (GitHub colours its `+` and `-` lines) and the new file's warnings.

use std::fmt::Write;

use meshwork_compiler::diagnostic::{Diagnostic, Position};
use meshwork_compiler::diff::TopologyDiff;
use meshwork_compiler::source::SourceFile;

use crate::plural::count;

/// The first line of every comment, for `gh`/API scripts that update the comment in place.
pub const MARKER: &str = "<!-- meshwork diff -->";

/// The comment for the changes from `old` to `new_file` (None: a file does not compile), with
/// `diagnostics`, the new file's errors and warnings.
pub fn diff_comment(
    diff: Option<&TopologyDiff>,
    old: &str,
    new_file: &SourceFile,
    diagnostics: &[Diagnostic],
) -> String {
    let new = new_file.name.as_str();
    let mut out = match diff {
        Some(d) => format!("{MARKER}\n### meshwork diff: topology {}\n\n", code(&d.topology)),
        None => format!("{MARKER}\n### meshwork diff\n\n"),
    };
    let _ = writeln!(out, "{} → {}\n", code(old), code(new));
    match diff {
        None => out += "**Nothing to compare: a file has errors** (`meshwork check` shows them).\n",
        Some(d) if d.is_empty() => out += "No changes.\n",
        Some(d) => {
            let s = &d.summary;
            let _ = writeln!(out, "**{} to add, {} to change, {} to remove.**\n", s.add, s.change, s.remove);
            let body = diff_block(&d.render());
            let fence = fence_for(&body);
            let _ = write!(out, "{fence}diff\n{body}{fence}\n");
        }
    }
    if !diagnostics.is_empty() {
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        let counts = match errors {
            0 => count(diagnostics.len(), "warning"),
            _ => format!("{}, {}", count(errors, "error"), count(diagnostics.len() - errors, "warning")),
        };
        let _ = writeln!(out, "\n{counts} in {}:\n", code(new));
        for d in diagnostics {
            let file = d.file_or(new_file);
            let p = Position::of(file, d.primary.span);
            let place = match std::ptr::eq(file, new_file) {
                true => format!("line {}", p.line),
                false => format!("{} line {}", code(&file.name), p.line),
            };
            let _ = writeln!(out, "- {} {place}: {}", code(d.code.name()), escape(&d.message));
        }
    }
    out
}

/// The text diff with each `+`/`-` marker moved to the first column, where a `diff` block
/// wants it; every other line is indented one space (context).
fn diff_block(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match trimmed.split_at_checked(2) {
            Some((m @ ("+ " | "- "), rest)) => {
                let _ = writeln!(out, "{}{}  {rest}", &m[..1], " ".repeat(indent));
            }
            _ => {
                let _ = writeln!(out, " {line}");
            }
        }
    }
    out
}

/// A code fence longer than any run of backticks in `body`.
fn fence_for(body: &str) -> String {
    "`".repeat(longest_backtick_run(body).max(2) + 1)
}

fn longest_backtick_run(s: &str) -> usize {
    s.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// Inline code that holds any text, backticks included.
fn code(s: &str) -> String {
    let ticks = "`".repeat(longest_backtick_run(s) + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') { " " } else { "" };
    format!("{ticks}{pad}{s}{pad}{ticks}")
}

/// Text outside code: characters that would start markup or HTML are escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\`*_[]<>#|~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_move_to_the_first_column() {
        let text = "Topology \"t\": 1 controller changed.\n  clients\n    + new-1    10.0.0.1\n    ~ a  ip: x → y\n\
                    - controller \"old\"\n";
        assert_eq!(
            diff_block(text),
            " Topology \"t\": 1 controller changed.\n   clients\n+      new-1    10.0.0.1\n     ~ a  ip: x → y\n\
             -  controller \"old\"\n"
        );
    }

    #[test]
    fn code_and_fences_hold_backticks() {
        assert_eq!(code("plain"), "`plain`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(fence_for("no ticks"), "```");
        assert_eq!(fence_for("x ```` y"), "`````");
        assert_eq!(escape("a <b> *c*"), "a \\<b\\> \\*c\\*");
    }
}
