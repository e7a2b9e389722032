//! A nesting limit checked before the KDL parser sees the text. The `kdl` crate parses children
//! blocks and `/* */` comments (which nest in KDL) by recursion, so a few hundred levels of
//! `a{a{a{…` overflow the stack and abort the process (no panic to catch): in a debug build on
//! a 2 MiB thread, 64 levels are enough. A lexical pre-scan is cheap and cannot itself recurse.
//!
//! The scan follows KDL v2's lexical rules closely enough to skip braces inside strings and
//! comments; where it cannot be sure (an unterminated string), it keeps counting, which can only
//! make it stricter, never let a deep file through. TOML needs no scan: its parser bounds
//! nesting itself and reports it as a syntax error.

use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::source::at;

/// Deepest nesting of `{ }` blocks, and separately of `/* */` comments, that is parsed.
/// A topology uses three or four levels; the parser survives about 48 in a debug build on a
/// 2 MiB stack (tokio's and the test harness's default), so 32 leaves room for what follows.
pub const MAX_DEPTH: usize = 32;

/// The first place where `text` nests deeper than [`MAX_DEPTH`], as a diagnostic. A level is an
/// open `{`, an open `/*`, or a slashdash (`/-`) directly followed by another one: the parser
/// recurses for each of the three (the fuzz test found the last).
pub fn check_kdl(text: &str) -> Option<Diagnostic> {
    let b = text.as_bytes();
    let mut braces = 0usize;
    // Slashdashes in a row, with only whitespace between them.
    let mut chain = 0usize;
    let mut i = 0;
    while i < b.len() {
        let next = b.get(i + 1).copied();
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'/' if next == Some(b'-') => {
                chain += 1;
                if braces + chain > MAX_DEPTH {
                    return Some(too_deep(i, 2, "slashdashes (`/-`) in a row", "this `/-` comments out another"));
                }
                i += 2;
            }
            b'/' if next == Some(b'/') => i = line_end(b, i),
            b'/' if next == Some(b'*') => match block_comment(b, i, MAX_DEPTH - (braces + chain).min(MAX_DEPTH)) {
                Ok(end) => i = end,
                Err(at) => return Some(too_deep(at, 2, "comments (`/* */`) nested", "this `/*` opens")),
            },
            c => {
                chain = 0;
                match c {
                    b'{' => {
                        braces += 1;
                        if braces > MAX_DEPTH {
                            return Some(too_deep(i, 1, "blocks (`{ }`) nested", "this `{` opens"));
                        }
                        i += 1;
                    }
                    b'}' => {
                        braces = braces.saturating_sub(1);
                        i += 1;
                    }
                    // A quote inside a bare token (`allow"y`) starts no string: the parser
                    // skips the token up to the next space as one bad value (found by the fuzz
                    // test: `verdict="allow"y" proto="tcp" /- /- …`).
                    b'"' if i > 0 && !starts_token(b[i - 1]) => i += 1,
                    b'"' => i = string_end(b, i),
                    b'#' => i = raw_string_end(b, i),
                    _ => i += 1,
                }
            }
        }
    }
    None
}

fn too_deep(offset: usize, len: usize, what: &str, label: &str) -> Diagnostic {
    Diagnostic::error(
        Code::TooDeep,
        format!("{what} more than {MAX_DEPTH} levels deep"),
        at(offset, len),
        format!("{label} level {}", MAX_DEPTH + 1),
    )
    .with_help(format!(
        "a topology needs a few levels of nesting; meshwork reads at most {MAX_DEPTH}. \
         A missing closing `}}` or `*/` above this point is the usual cause"
    ))
}

/// Whether a string may start right after byte `c`: after a separator, not inside a bare word.
/// Bytes of multi-byte characters count as separators, which can only make the scan stricter.
fn starts_token(c: u8) -> bool {
    !(c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_'
                | b'.'
                | b'"'
                | b'+'
                | b'!'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b','
                | b':'
                | b'<'
                | b'>'
                | b'?'
                | b'@'
                | b'^'
                | b'`'
                | b'|'
                | b'~'
        ))
}

/// Length of the KDL newline at `i` (CR, LF, VT, FF, NEL, LS, PS), or 0. KDL ends lines at all
/// of them, so a string or comment the parser ends at a bare CR must end there here too (the
/// fuzz test found `"…\r{a{a{…`).
fn newline_at(b: &[u8], i: usize) -> usize {
    match b[i] {
        b'\n' | b'\r' | 0x0b | 0x0c => 1,
        0xc2 if b.get(i + 1) == Some(&0x85) => 2,
        0xe2 if b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xa8 | 0xa9)) => 3,
        _ => 0,
    }
}

/// Index of the newline ending the line that `i` is on (or the end).
fn line_end(b: &[u8], i: usize) -> usize {
    (i..b.len()).find(|&j| newline_at(b, j) > 0).unwrap_or(b.len())
}

/// End of the (nested) block comment starting at `i`, or where it nests deeper than `room`.
/// An unterminated comment hides nothing: the scan goes on after its `/*`.
fn block_comment(b: &[u8], start: usize, room: usize) -> Result<usize, usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            if depth > room {
                return Err(i);
            }
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Ok(i);
            }
        } else {
            i += 1;
        }
    }
    Ok(start + 2)
}

/// End of the quoted string starting at `i`. A single-line string also ends at an unescaped
/// newline, where the parser gives up on it too. `"""` opens a multi-line string only when a
/// newline follows it and a closing `"""` exists; otherwise only the quotes are skipped, so a
/// malformed string never hides braces the parser may go on to read.
fn string_end(b: &[u8], i: usize) -> usize {
    if b[i..].starts_with(b"\"\"\"") {
        if !opens_multiline(b, i + 3) {
            return i + 3;
        }
        let mut j = i + 3;
        while j < b.len() {
            match b[j] {
                b'\\' => j += 2,
                b'"' if b[j..].starts_with(b"\"\"\"") => return j + 3,
                _ => j += 1,
            }
        }
        return i + 3;
    }
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ if newline_at(b, j) > 0 => return j,
            _ => j += 1,
        }
    }
    b.len()
}

/// Whether a newline follows `at` (after spaces and tabs): what a multi-line string starts with.
fn opens_multiline(b: &[u8], at: usize) -> bool {
    let at = at.min(b.len());
    let first = b[at..].iter().position(|&c| c != b' ' && c != b'\t').map_or(b.len(), |n| at + n);
    first < b.len() && newline_at(b, first) > 0
}

/// End of the raw string starting at `i` (`#"…"#`, `##"""…"""##`); a `#` that does not open
/// one (`#true`, a keyword), or a raw string that is never closed, is skipped alone.
fn raw_string_end(b: &[u8], i: usize) -> usize {
    let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
    let open = i + hashes;
    if b.get(open) != Some(&b'"') {
        return open;
    }
    let multiline = b[open..].starts_with(b"\"\"\"");
    if multiline && !opens_multiline(b, open + 3) {
        return open;
    }
    let quotes = if multiline { 3 } else { 1 };
    let mut close = vec![b'"'; quotes];
    close.extend(std::iter::repeat_n(b'#', hashes));
    let body = open + quotes;
    let end = b[body..].windows(close.len()).position(|w| w == close.as_slice()).map(|n| body + n + close.len());
    match end {
        // A single-line raw string cannot span lines.
        Some(end) if multiline || (body..end).all(|j| newline_at(b, j) == 0) => end,
        _ => open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, n: usize) -> String {
        format!("{}{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn the_limit_is_inclusive() {
        assert!(check_kdl(&nested("a{", "}", MAX_DEPTH)).is_none());
        let d = check_kdl(&nested("a{", "}", MAX_DEPTH + 1)).unwrap();
        assert_eq!(d.code, Code::TooDeep);
        assert_eq!(d.primary.span.offset(), 2 * MAX_DEPTH + 1);
        assert!(check_kdl(&nested("/*", "*/", MAX_DEPTH)).is_none());
        let d = check_kdl(&nested("/*", "*/", MAX_DEPTH + 1)).unwrap();
        assert_eq!(d.primary.span.offset(), 2 * MAX_DEPTH);
    }

    #[test]
    fn braces_in_strings_and_comments_do_not_count() {
        let many = "{".repeat(100);
        for text in [
            format!("a \"{many}\""),
            format!("a \"\"\"\n{many}\n\"\"\""),
            format!("a #\"{many}\"#"),
            format!("a ##\"\"\"\n{many}\"#\n\"\"\"##"),
            format!("a #\"{many}\"# b"),
            format!("a \"\\\"{many}\""),
            format!("// {many}\na"),
            format!("/* {many} */ a"),
            "a #true { b #false; }".to_string(),
        ] {
            assert!(check_kdl(&text).is_none(), "{text}");
        }
    }

    #[test]
    fn slashdash_chains_count_as_levels() {
        assert!(check_kdl(&format!("{}a", "/- ".repeat(MAX_DEPTH))).is_none());
        let d = check_kdl(&format!("{}a", "/- \n".repeat(MAX_DEPTH + 1))).unwrap();
        assert_eq!(d.primary.span.offset(), 4 * MAX_DEPTH);
        // Slashdashes on separate nodes or entries are not a chain.
        assert!(check_kdl(&"/- a\n".repeat(1000)).is_none());
        assert!(check_kdl(&format!("a {}", "/- 1 ".repeat(1000))).is_none());
    }

    /// Malformed or unterminated strings and comments hide nothing (found by the fuzz test:
    /// `"192""""…` followed by 100 `{` on a later line).
    #[test]
    fn malformed_strings_and_comments_do_not_hide_what_follows() {
        let deep = nested("b{", "}", 40);
        for prefix in [
            "a \"oops\n",
            "a \"oops\r",
            "a \"oops\u{2028}",
            "// x\r",
            "a \"192\"\"\"\"\" x\n",
            "a \"\"\"x\n",
            "a #\"never closed\n",
            "/* never closed\n",
            "a \"\"\"\nnever",
        ] {
            assert!(check_kdl(&format!("{prefix}{deep}")).is_some(), "{prefix:?}");
        }
    }
}
