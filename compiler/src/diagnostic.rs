//! A diagnostic is a code, a severity, a message and labels on exact spans; this module also
//! turns them into JSON for programs ([`crate::render`] draws them for people).

use serde::Serialize;

use crate::codes::Code;
use crate::source::{SourceFile, Span};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    /// The label on the exact place the problem is.
    pub primary: Label,
    /// Other places involved ("first defined here").
    pub secondary: Vec<Label>,
    pub help: Option<String>,
    /// The file the spans point into when it is not the analysed topology (its lock file).
    pub file: Option<SourceFile>,
}

impl Diagnostic {
    pub fn error(code: Code, message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Self {
            code,
            severity: Severity::Error,
            message: message.into(),
            primary: Label { span, text: label.into() },
            secondary: Vec::new(),
            help: None,
            file: None,
        }
    }

    pub fn warning(code: Code, message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, ..Self::error(code, message, span, label) }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_label(mut self, span: Span, text: impl Into<String>) -> Self {
        self.secondary.push(Label { span, text: text.into() });
        self
    }

    /// Locates the diagnostic in `file` instead of the topology being analysed.
    pub fn in_file(mut self, file: &SourceFile) -> Self {
        self.file = Some(file.clone());
        self
    }

    /// The file its spans point into: its own, or else `topology`.
    pub fn file_or<'a>(&'a self, topology: &'a SourceFile) -> &'a SourceFile {
        self.file.as_ref().unwrap_or(topology)
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Diagnostics collected over one run, for one file.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn extend(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        self.0.extend(ds);
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
    /// In file order (then by code), so reports read top to bottom and are deterministic; those
    /// located in another file (the lock) after the topology's.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        let key = |d: &Diagnostic| (d.file.as_ref().map(|f| f.name.clone()), d.primary.span.offset(), d.code);
        self.0.sort_by(|a, b| (key(a), &a.message).cmp(&(key(b), &b.message)));
        self.0.dedup();
        self.0
    }
}

/// Where a span is in its file, 1-based. The end is exclusive: the position just past the
/// span's last character (as in SARIF and LSP), so an empty span ends where it starts. Columns
/// count characters (Unicode scalar values), not bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

impl Position {
    /// Never panics: offsets past the end of the file or inside a character are clamped.
    pub fn of(file: &SourceFile, span: Span) -> Self {
        let (line, column) = file.line_col(span.offset());
        let (end_line, end_column) = file.line_col(span.offset().saturating_add(span.len()));
        Self { line, column, end_line, end_column }
    }
}

/// A diagnostic as programs read it (`--format json`).
#[derive(Clone, Debug, Serialize)]
pub struct JsonDiagnostic {
    pub code: Code,
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Where the primary label's span ends (exclusive, see [`Position`]).
    pub end_line: usize,
    pub end_column: usize,
    pub message: String,
    /// The primary label's text.
    pub label: String,
    pub help: Option<String>,
    /// Other places involved ("first defined here"), in the same file.
    pub labels: Vec<JsonLabel>,
}

/// A secondary label as programs read it.
#[derive(Clone, Debug, Serialize)]
pub struct JsonLabel {
    #[serde(flatten)]
    pub position: Position,
    pub text: String,
}

impl JsonDiagnostic {
    /// `file` is the topology; a diagnostic located in its lock file names that file instead.
    pub fn new(file: &SourceFile, d: &Diagnostic) -> Self {
        let file = d.file_or(file);
        let Position { line, column, end_line, end_column } = Position::of(file, d.primary.span);
        Self {
            code: d.code,
            severity: d.severity,
            file: file.name.clone(),
            line,
            column,
            end_line,
            end_column,
            message: d.message.clone(),
            label: d.primary.text.clone(),
            help: d.help.clone(),
            labels: d
                .secondary
                .iter()
                .map(|l| JsonLabel { position: Position::of(file, l.span), text: l.text.clone() })
                .collect(),
        }
    }
}

/// Renders diagnostics as text without colours at a fixed width: what tests and snapshots see.
pub fn render_plain(file: &SourceFile, diagnostics: &[Diagnostic]) -> String {
    let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor()).with_width(100);
    crate::render::render(&handler, file, diagnostics)
}
