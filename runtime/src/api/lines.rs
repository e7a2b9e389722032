//! Splitting a byte stream into lines of bounded length: what a streamed answer (NDJSON) is
//! read with. A sender that never ends its line costs the reader at most `max` bytes.

/// Bytes in, complete lines out.
#[derive(Debug)]
pub struct Lines {
    partial: Vec<u8>,
    max: usize,
}

/// A line longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a line longer than {0} bytes")]
pub struct TooLong(pub usize);

impl Lines {
    pub fn new(max: usize) -> Lines {
        Lines { partial: Vec::new(), max }
    }

    /// The lines `bytes` completes, without their `\n` (nor a `\r` before it); empty lines
    /// are skipped. What follows the last newline waits for more.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, TooLong> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            if self.partial.len() + at > self.max {
                return Err(TooLong(self.max));
            }
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&rest[..at]);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if !line.is_empty() {
                out.push(line);
            }
            rest = &rest[at + 1..];
        }
        if self.partial.len() + rest.len() > self.max {
            return Err(TooLong(self.max));
        }
        self.partial.extend_from_slice(rest);
        Ok(out)
    }

    /// Bytes of an unfinished line.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut l = Lines::new(16);
        assert_eq!(l.push(b"ab").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(l.push(b"c\nde\r\n\nf").unwrap(), vec![b"abc".to_vec(), b"de".to_vec()]);
        assert_eq!(l.pending(), 1);
        assert_eq!(l.push(b"\n").unwrap(), vec![b"f".to_vec()]);
    }

    #[test]
    fn a_line_over_the_limit_is_refused_whether_or_not_it_ends() {
        let mut l = Lines::new(4);
        assert_eq!(l.push(b"abcd\n").unwrap().len(), 1);
        assert_eq!(l.push(b"abcde\n"), Err(TooLong(4)));
        let mut l = Lines::new(4);
        assert_eq!(l.push(b"abc").unwrap().len(), 0);
        assert_eq!(l.push(b"de"), Err(TooLong(4)), "no newline needed to refuse it");
    }
}
