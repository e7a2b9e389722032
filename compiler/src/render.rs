//! Drawing diagnostics for people with miette, at a cost that does not grow with the file.
//!
//! miette's own `SourceCode` for a string scans from the start of the text to find a span's line,
//! three times per label, and the report used to own a copy of the whole text: a report of N
//! diagnostics cost N times the file (10,000 duplicate clients took 9 s). Here miette reads a
//! [`Window`] instead: the lines around the span, found through the file's line index, with
//! line numbers shifted back to the file's own.
//!
//! miette also panics when a label starts past column 65,535 (it pads with a `{:width$}` that
//! cannot be that wide), and drawing a megabyte-long line is slow and useless. A diagnostic whose
//! labelled lines are longer than [`MAX_SHOWN_LINE`] is written in a plain one-line-per-place
//! form instead; long lines around it are left out of the context.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use miette::{
    GraphicalReportHandler, LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents,
};

use crate::diagnostic::{Diagnostic, Label, Severity};
use crate::lines::LineIndex;
use crate::source::SourceFile;

/// Longest line (in bytes) drawn as source; longer ones get the plain form.
pub const MAX_SHOWN_LINE: usize = 4096;
/// A label covering more lines than this is drawn on its first line only.
pub const MAX_LABEL_LINES: usize = 50;

/// Every diagnostic drawn with `handler`, one after the other.
pub fn render(handler: &GraphicalReportHandler, file: &SourceFile, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        render_one(handler, file, d, &mut out);
    }
    out
}

/// One diagnostic, drawn by miette when its lines can be shown, else in the plain form.
pub fn render_one(handler: &GraphicalReportHandler, file: &SourceFile, d: &Diagnostic, out: &mut String) {
    let file = d.file_or(file);
    if has_long_line(file, d) {
        plain(file, d, out);
        return;
    }
    // miette is third-party code fed with hostile files, and the agent must not die drawing a
    // report: any panic left in it falls back to the plain form.
    let drawn = catch_unwind(AssertUnwindSafe(|| {
        let mut s = String::new();
        handler.render_report(&mut s, &Located::new(file, d)).map(|()| s)
    }));
    match drawn {
        Ok(Ok(s)) => out.push_str(&s),
        _ => plain(file, d, out),
    }
}

/// The labels as drawn: a label over many lines is cut to its first line.
fn shown(file: &SourceFile, label: &Label) -> SourceSpan {
    let lines = file.lines();
    let (start, len) = (label.span.offset(), label.span.len());
    let first = lines.line_of(start);
    if lines.line_of(start + len) - first <= MAX_LABEL_LINES {
        return label.span;
    }
    let end = lines.range(first).end;
    SourceSpan::from((start, end.saturating_sub(start).max(1)))
}

fn labels(d: &Diagnostic) -> impl Iterator<Item = &Label> {
    std::iter::once(&d.primary).chain(&d.secondary)
}

/// Whether a line a label is on is too long to draw.
fn has_long_line(file: &SourceFile, d: &Diagnostic) -> bool {
    let lines = file.lines();
    labels(d).any(|l| {
        let span = shown(file, l);
        let first = lines.line_of(span.offset());
        let last = lines.line_of(span.offset() + span.len());
        (first..=last).any(|n| lines.range(n).len() > MAX_SHOWN_LINE)
    })
}

/// `file:line:col: label` per place, the message and help around them; no source text.
fn plain(file: &SourceFile, d: &Diagnostic, out: &mut String) {
    use std::fmt::Write;
    let severity = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let _ = writeln!(out, "{severity}[{}]: {}", d.code, d.message);
    for l in labels(d) {
        let (line, col) = file.line_col(l.span.offset());
        let _ = writeln!(out, "  --> {}:{line}:{col}: {}", file.name, l.text);
    }
    let (line, _) = file.line_col(d.primary.span.offset());
    let long = file.lines().range(line - 1).len();
    if long > MAX_SHOWN_LINE {
        let _ = writeln!(out, "  (line {line} is {long} bytes long; its text is not shown)");
    }
    if let Some(help) = &d.help {
        let _ = writeln!(out, "  help: {help}");
    }
    out.push('\n');
}

/// The part of a file miette needs for one span: its lines and up to the requested context.
struct Window<'a> {
    name: &'a str,
    text: &'a str,
    lines: &'a LineIndex,
}

impl SourceCode for Window<'_> {
    fn read_span<'b>(
        &'b self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'b> + 'b>, MietteError> {
        let lines = self.lines;
        let start = span.offset().min(self.text.len());
        let end = (span.offset() + span.len()).min(self.text.len());
        let first = lines.line_of(start);
        let last = lines.line_of(end.saturating_sub(1).max(start));
        // One line more each way than asked, so miette's own scan ends the context exactly as
        // it would on the whole file; long lines end the context early instead.
        let short = |n: usize| lines.range(n).len() <= MAX_SHOWN_LINE;
        let mut lo = first;
        while lo > 0 && first - lo <= before && short(lo - 1) {
            lo -= 1;
        }
        let mut hi = last;
        while hi + 1 < lines.count() && hi - last <= after && short(hi + 1) {
            hi += 1;
        }
        let base = lines.range(lo).start;
        let window = &self.text.as_bytes()[base..lines.range(hi).end];
        let inner = SourceSpan::from((span.offset() - base, span.len()));
        let c = window.read_span(&inner, before, after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.to_string(),
            c.data(),
            SourceSpan::from((c.span().offset() + base, c.span().len())),
            c.line() + lo,
            c.column(),
            c.line_count() + lo,
        )))
    }
}

/// A diagnostic tied to its file, so miette can draw it.
pub struct Located<'a> {
    file: &'a SourceFile,
    diagnostic: &'a Diagnostic,
    window: Window<'a>,
}

impl<'a> Located<'a> {
    pub fn new(file: &'a SourceFile, diagnostic: &'a Diagnostic) -> Self {
        let window = Window { name: &file.name, text: &file.text, lines: file.lines() };
        Self { file, diagnostic, window }
    }
}

impl fmt::Debug for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Located").field("file", &self.file.name).field("diagnostic", self.diagnostic).finish()
    }
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Located<'_> {}

impl miette::Diagnostic for Located<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.diagnostic.code))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diagnostic.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.window)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let d = self.diagnostic;
        let primary = LabeledSpan::new_primary_with_span(Some(d.primary.text.clone()), shown(self.file, &d.primary));
        let rest = d.secondary.iter().map(|l| LabeledSpan::new_with_span(Some(l.text.clone()), shown(self.file, l)));
        Some(Box::new(std::iter::once(primary).chain(rest)))
    }
}
