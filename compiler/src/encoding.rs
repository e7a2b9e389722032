//! Turning a file's bytes into text. A file that is not UTF-8 is still a [`SourceFile`] (decoded
//! lossily, so it can be shown) with one diagnostic on its first invalid byte: callers report it
//! like any other problem, with a line and column, in text and JSON alike.

use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::source::{SourceFile, at};

/// The file's text, or the lossily decoded text and a diagnostic on the first invalid byte.
pub fn decode(name: impl Into<String>, bytes: Vec<u8>) -> Result<SourceFile, Box<(SourceFile, Diagnostic)>> {
    let name = name.into();
    match String::from_utf8(bytes) {
        Ok(text) => Ok(SourceFile::new(name, text)),
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let bad = bytes[offset];
            // The text is the same up to `offset`, where U+FFFD (3 bytes) replaces the bad byte,
            // so the offset and the line and column computed from it are the file's own.
            let file = SourceFile::new(name, String::from_utf8_lossy(&bytes).into_owned());
            let d = Diagnostic::error(
                Code::Encoding,
                format!("the file is not UTF-8 text: byte 0x{bad:02x} at offset {offset} is not valid UTF-8"),
                at(offset, '\u{fffd}'.len_utf8()),
                "not UTF-8",
            )
            .with_help("topology files are UTF-8; re-save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)");
            Err(Box::new((file, d)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_invalid_byte_is_located() {
        let (file, d) = *decode("x.kdl", b"topology \"t\"\nover\xffay \xfe\n".to_vec()).unwrap_err();
        assert_eq!(d.code, Code::Encoding);
        assert_eq!(file.line_col(d.primary.span.offset()), (2, 5));
        assert!(d.message.contains("0xff"), "{}", d.message);
        assert!(decode("x.kdl", "é".as_bytes().to_vec()).is_ok());
    }
}
