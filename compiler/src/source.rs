//! A topology file as read from disk, and the byte spans that point into it.

use std::sync::{Arc, OnceLock};

pub use miette::SourceSpan as Span;

use crate::lines::LineIndex;

/// One topology file: its display name (as given on the command line) and its text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<str>,
    /// Built on first use and shared by clones: every diagnostic of a report needs it.
    lines: Arc<OnceLock<LineIndex>>,
}

/// Two files are the same when they have the same name and text.
impl PartialEq for SourceFile {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && (Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

impl Eq for SourceFile {}

/// Which front end reads a file; chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Kdl,
    Toml,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        Self { name: name.into(), text: text.into(), lines: Arc::default() }
    }

    /// Where the text's lines start.
    pub fn lines(&self) -> &LineIndex {
        self.lines.get_or_init(|| LineIndex::new(&self.text))
    }

    /// `.toml` files are TOML; everything else (`.kdl` and friends) is KDL.
    pub fn format(&self) -> Format {
        if self.name.ends_with(".toml") { Format::Toml } else { Format::Kdl }
    }

    /// 1-based line and column (in characters) of a byte offset; offsets past the end or inside
    /// a character are clamped so that this never panics.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        self.lines().line_col(&self.text, offset)
    }
}

/// A span of `len` bytes at `offset`.
pub fn at(offset: usize, len: usize) -> Span {
    Span::from((offset, len))
}

/// A span covering `range`.
pub fn span(range: std::ops::Range<usize>) -> Span {
    at(range.start, range.end.saturating_sub(range.start))
}

/// The smallest span covering both.
pub fn join(a: Span, b: Span) -> Span {
    let start = a.offset().min(b.offset());
    let end = (a.offset() + a.len()).max(b.offset() + b.len());
    at(start, end - start)
}
