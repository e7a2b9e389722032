//! Where lines start in a text, computed once per file, so that turning a byte offset into a
//! line and column is a binary search instead of a scan from the start of the file. Reports
//! with thousands of diagnostics would otherwise cost the file's size per diagnostic.

use std::ops::Range;

#[derive(Debug, Default)]
pub struct LineIndex {
    /// Byte offset of the start of every line; the first is 0. A line ends at its `\n`.
    starts: Vec<usize>,
    /// Whether each line is pure ASCII, so a column in characters is a subtraction.
    ascii: Vec<bool>,
    len: usize,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        let mut ascii = Vec::new();
        let mut line_ascii = true;
        for (i, b) in text.bytes().enumerate() {
            line_ascii &= b.is_ascii();
            if b == b'\n' {
                starts.push(i + 1);
                ascii.push(line_ascii);
                line_ascii = true;
            }
        }
        ascii.push(line_ascii);
        Self { starts, ascii, len: text.len() }
    }

    /// Number of lines (a text ending in `\n` has an empty last line).
    pub fn count(&self) -> usize {
        self.starts.len()
    }

    /// 0-based line holding byte `offset` (offsets past the end are on the last line).
    pub fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset).saturating_sub(1)
    }

    /// Bytes of line `line`, its `\n` included when it has one.
    pub fn range(&self, line: usize) -> Range<usize> {
        let start = self.starts[line];
        let end = self.starts.get(line + 1).copied().unwrap_or(self.len);
        start..end
    }

    /// 1-based line and column (in characters) of `offset`, which must be a char boundary of
    /// `text` (the text this index was built from).
    pub fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let line = self.line_of(offset);
        let start = self.starts[line];
        let column = if self.ascii[line] { offset - start } else { text[start..offset].chars().count() };
        (line + 1, column + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index agrees with a plain scan from the start, on every offset.
    #[test]
    fn agrees_with_a_scan() {
        let text = "a\nbé\n\n  x\r\nlast";
        let idx = LineIndex::new(text);
        for (offset, _) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[start..].chars().count() + 1;
            assert_eq!(idx.line_col(text, offset), (line, column), "offset {offset}");
        }
        assert_eq!(idx.count(), 5);
        assert_eq!(idx.range(1), 2..6);
        assert_eq!(idx.range(4), 12..16);
    }
}
