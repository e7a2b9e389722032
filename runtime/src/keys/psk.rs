//! Pre-shared keys for IPsec between compute nodes in different PDCs: the key material, its file
//! format and the one way to read a key file back.
//!
//! One key per pair, 256 bits from the OS RNG (ring's `SystemRandom`, as for tls-crypt), in
//! `keyset/psk/<low>+<high>.psk` (names from `meshwork_compiler::vxlan::names`). The file is
//! exactly the line `secret = 0x<64 lowercase hex>\n`, because the nodes' `swanctl.conf`
//! includes it verbatim inside a `secrets { ike-… { … } }` block: it must stay a valid
//! swanctl.conf fragment, nothing more.
//!
//! A [`Psk`] cannot be printed: it has no `Display`, and its `Debug` says nothing about the
//! bytes, so a stray `{:?}` in a log or error cannot leak it.

use std::io::Read;
use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};

use super::error::KeyError;
use super::store;

/// 256 bits.
pub const PSK_LEN: usize = 32;
const PREFIX: &str = "secret = 0x";
/// The exact length of a key file: prefix, 64 hex digits, newline.
const FILE_LEN: usize = PREFIX.len() + 2 * PSK_LEN + 1;

/// A pre-shared key. A secret: it never reaches output.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk([u8; PSK_LEN]);

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Psk(<secret>)")
    }
}

impl Psk {
    /// A new key from the OS RNG.
    pub fn generate() -> Result<Psk, KeyError> {
        let mut bytes = [0u8; PSK_LEN];
        SystemRandom::new().fill(&mut bytes).map_err(|_| KeyError::Random)?;
        Ok(Psk(bytes))
    }

    /// The raw key (for a caller that installs it elsewhere). A secret: never print it.
    pub fn bytes(&self) -> &[u8; PSK_LEN] {
        &self.0
    }

    /// The key file's content: `secret = 0x<64 lowercase hex>\n`.
    pub fn to_file(&self) -> Vec<u8> {
        let mut out = String::with_capacity(FILE_LEN);
        out.push_str(PREFIX);
        for b in self.0 {
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0xf));
        }
        out.push('\n');
        out.into_bytes()
    }

    /// Parses a key file. The error names the file and what is wrong with its shape, never
    /// its content (which may be a key that is merely malformed).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Psk, KeyError> {
        let bad = |why: &str| KeyError::BadPsk { path: path.to_path_buf(), why: why.to_string() };
        let hex = bytes
            .strip_prefix(PREFIX.as_bytes())
            .ok_or_else(|| bad("it does not start with `secret = 0x`"))?
            .strip_suffix(b"\n")
            .ok_or_else(|| bad("it does not end with one newline"))?;
        if hex.len() != 2 * PSK_LEN {
            return Err(bad("the key is not 64 hex digits (256 bits)"));
        }
        let mut key = [0u8; PSK_LEN];
        for (i, pair) in hex.chunks(2).enumerate() {
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(h), Some(l)) => key[i] = h << 4 | l,
                _ => return Err(bad("the key is not lowercase hex")),
            }
        }
        Ok(Psk(key))
    }
}

fn hex_digit(v: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(v & 0xf)])
}

/// Lowercase only: the file is ours, and one spelling means byte-identical files.
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Reads a key file through the keyset's checked open (no link, a regular file of this user's
/// that group and others cannot access), like every key of the keyset.
pub fn read(path: &Path) -> Result<Psk, KeyError> {
    let mut file = store::open_checked(path)?;
    // One byte more than a valid file, so an oversized one is refused without reading it all.
    let mut bytes = Vec::with_capacity(FILE_LEN + 1);
    file.by_ref().take(FILE_LEN as u64 + 1).read_to_end(&mut bytes).map_err(KeyError::io("read", path))?;
    Psk::parse(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_one_swanctl_line_and_parses_back() {
        let k = Psk::generate().unwrap();
        let file = k.to_file();
        let text = std::str::from_utf8(&file).unwrap();
        assert_eq!(text.len(), FILE_LEN);
        assert!(text.starts_with("secret = 0x") && text.ends_with('\n'), "shape");
        assert!(text[11..75].bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_eq!(Psk::parse(Path::new("x.psk"), &file).unwrap(), k);
        assert_ne!(Psk::generate().unwrap(), k, "two keys from the RNG differ");
        assert_eq!(format!("{k:?}"), "Psk(<secret>)");
    }

    #[test]
    fn malformed_files_are_refused_without_showing_content() {
        let p = Path::new("keyset/psk/a+b.psk");
        let good = format!("secret = 0x{}\n", "ab".repeat(32));
        for bad in [
            String::new(),
            good.trim_end().to_string(),
            good.replace("ab", "AB"),
            good.replace("0xab", "0xzz"),
            format!("secret = 0x{}\n", "ab".repeat(31)),
            format!("{good}\n"),
            format!(" {good}"),
        ] {
            let e = Psk::parse(p, bad.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("keyset/psk/a+b.psk"), "{e}");
            assert!(!e.contains("abab"), "{e}");
        }
        Psk::parse(p, good.as_bytes()).unwrap();
    }
}
