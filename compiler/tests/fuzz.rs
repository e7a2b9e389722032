//! Robustness: whatever text comes in, `analyze` and the renderers must not panic, every
//! diagnostic must point inside the text, and a network exists exactly when there is no error.
//!
//! Inputs: random strings, random bytes decoded lossily, and mutations of every example file.

use std::path::Path;

use meshwork_compiler::diagnostic::{JsonDiagnostic, render_plain};
use meshwork_compiler::source::SourceFile;
use meshwork_compiler::{Analysis, analyze};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

/// 256 cases per property, or `PROPTEST_CASES` for a longer run. Failing cases are reported
/// (shrunk) but not written next to the sources.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Analyses `text` as `name` and checks every invariant; Err describes the first broken one.
fn check(name: &str, text: &str) -> Result<(), TestCaseError> {
    let analysis = analyze(SourceFile::new(name, text));
    invariants(&analysis, text)
}

fn invariants(analysis: &Analysis, text: &str) -> Result<(), TestCaseError> {
    if let Some(net) = &analysis.network {
        // A valid file also compiles.
        meshwork_compiler::artifacts::build(net);
    }
    report_invariants(analysis, text)
}

/// The invariants of the diagnostics and their reports (not compiling: the byte-level loop
/// runs thousands of mutants, most of them still valid, and compiling is what costs).
fn report_invariants(analysis: &Analysis, text: &str) -> Result<(), TestCaseError> {
    for d in &analysis.diagnostics {
        let end = d.primary.span.offset() + d.primary.span.len();
        prop_assert!(
            end <= text.len(),
            "primary span {:?} of {:?} ({}) ends past the text ({} bytes)",
            d.primary.span,
            d.message,
            d.code,
            text.len()
        );
        for l in &d.secondary {
            let end = l.span.offset() + l.span.len();
            prop_assert!(
                end <= text.len(),
                "secondary span {:?} of {:?} ends past the text ({} bytes)",
                l.span,
                d.message,
                text.len()
            );
        }
        let json = JsonDiagnostic::new(&analysis.file, d);
        prop_assert!(json.line >= 1 && json.column >= 1);
        serde_json::to_string(&json).expect("a diagnostic serialises");
    }
    let rendered = render_plain(&analysis.file, &analysis.diagnostics);
    prop_assert_eq!(rendered.is_empty(), analysis.diagnostics.is_empty());
    prop_assert_eq!(
        analysis.network.is_some(),
        !analysis.has_errors(),
        "network present: {}, errors: {:#?}",
        analysis.network.is_some(),
        analysis.diagnostics
    );
    Ok(())
}

/// Both front ends get every random text.
fn check_both(text: &str) -> Result<(), TestCaseError> {
    check("fuzz.kdl", text)?;
    check("fuzz.toml", text)
}

/// Characters that matter to KDL and TOML, so random text reaches past the first token.
const ALPHABET: &str = "[a-z0-9 \\t\\n\"'{}()\\[\\]=;#/*\\\\.,:+_-]{0,160}";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_strings(text in any::<String>()) {
        check_both(&text)?;
    }

    #[test]
    fn random_syntax_soup(text in ALPHABET) {
        check_both(&text)?;
    }

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_both(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn mutated_examples((name, text) in mutated_example()) {
        check(&name, &text)?;
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete {
        start: Index,
        len: Index,
    },
    Duplicate {
        start: Index,
        len: Index,
        to: Index,
    },
    Insert {
        at: Index,
        what: String,
    },
    SwapLines(Index, Index),
    DuplicateLine(Index),
    DeleteLine(Index),
    /// Replaces the contents of one quoted string or one number, keeping the syntax intact.
    ReplaceValue {
        which: Index,
        with: String,
    },
    Truncate(Index),
}

fn insertion() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "\"",
            "'",
            "'''",
            "\"\"\"",
            "{",
            "}",
            "[",
            "]",
            "[[",
            "]]",
            "=",
            "#",
            "/-",
            "//",
            "/*",
            "*/",
            "\\",
            "\n",
            ";",
            ",",
            ".",
            "-",
            "0x",
            "#true",
            "#null",
            "r#\"",
            "\u{feff}",
            "é",
            "\u{200b}",
            "\t",
            "-1",
            "0",
            "65535",
            "65536",
            "4294967296",
            "170141183460469231731687303715884105728",
        ])
        .prop_map(str::to_string),
        "[0-9]{1,12}",
        "[a-z-]{1,8}",
        "[a-z]{1,6}=\"[a-z0-9.:/-]{0,12}\"",
        any::<char>().prop_map(String::from),
    ]
}

/// Values that are well-formed somewhere, so replacements reach the semantic checks.
fn replacement() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "0",
            "1",
            "2",
            "255",
            "256",
            "65535",
            "1000000",
            "0xFFFFFFFF",
            "-5",
            "east",
            "west",
            "web-1",
            "db-1",
            "batch-1",
            "batch-9",
            "any",
            "overlay",
            "tag:web",
            "tag:nope",
            "fwset:office",
            "fwset:web-ports",
            "fwset:nope",
            "controller:east",
            "controller:nope",
            "100.127.255.193",
            "100.127.255.253",
            "100.127.255.254",
            "100.127.255.192/26",
            "100.127.255.0/24",
            "100.127.255.192/30",
            "0.0.0.0/0",
            "10.10.0.0/16",
            "198.51.100.0/28",
            "198.51.100.0/31",
            "203.0.113.7",
            "1.2.3.4/33",
            "999.1.1.1",
            "8000-8080",
            "8080-8000",
            "0-1",
            "tcp",
            "udp",
            "icmp",
            "allow",
            "drop",
            "deny",
            "accept",
            "partial",
            "full",
            "net",
            "port",
            "eth0",
            "a-very-long-interface-name",
            "web,db,,critical",
            "x.example.net",
        ])
        .prop_map(str::to_string),
        "[0-9]{1,6}",
        "[a-z0-9:./,-]{0,12}",
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => (any::<Index>(), any::<Index>()).prop_map(|(start, len)| Mutation::Delete { start, len }),
        2 => (any::<Index>(), any::<Index>(), any::<Index>()).prop_map(|(start, len, to)| Mutation::Duplicate { start, len, to }),
        4 => (any::<Index>(), insertion()).prop_map(|(at, what)| Mutation::Insert { at, what }),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        2 => any::<Index>().prop_map(Mutation::DuplicateLine),
        2 => any::<Index>().prop_map(Mutation::DeleteLine),
        8 => (any::<Index>(), replacement()).prop_map(|(which, with)| Mutation::ReplaceValue { which, with }),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

/// Byte offsets of every char boundary, end included.
fn boundaries(text: &str) -> Vec<usize> {
    text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len())).collect()
}

/// A char-boundary range starting at `start`, at most 40 chars long.
fn range(text: &str, start: &Index, len: &Index) -> std::ops::Range<usize> {
    let b = boundaries(text);
    let s = start.index(b.len());
    let e = (s + len.index(41)).min(b.len() - 1);
    b[s]..b[e]
}

fn apply(text: &str, m: &Mutation) -> String {
    let b = boundaries(text);
    match m {
        Mutation::Delete { start, len } => {
            let r = range(text, start, len);
            format!("{}{}", &text[..r.start], &text[r.end..])
        }
        Mutation::Duplicate { start, len, to } => {
            let r = range(text, start, len);
            let at = b[to.index(b.len())];
            format!("{}{}{}", &text[..at], &text[r], &text[at..])
        }
        Mutation::Insert { at, what } => {
            let at = b[at.index(b.len())];
            format!("{}{what}{}", &text[..at], &text[at..])
        }
        Mutation::SwapLines(x, y) => {
            let mut lines: Vec<&str> = text.split('\n').collect();
            let (i, j) = (x.index(lines.len()), y.index(lines.len()));
            lines.swap(i, j);
            lines.join("\n")
        }
        Mutation::DuplicateLine(i) => {
            let mut lines: Vec<&str> = text.split('\n').collect();
            let i = i.index(lines.len());
            lines.insert(i, lines[i]);
            lines.join("\n")
        }
        Mutation::DeleteLine(i) => {
            let mut lines: Vec<&str> = text.split('\n').collect();
            lines.remove(i.index(lines.len()));
            lines.join("\n")
        }
        Mutation::ReplaceValue { which, with } => {
            let spots = values(text);
            if spots.is_empty() {
                return text.to_string();
            }
            let r = spots[which.index(spots.len())].clone();
            format!("{}{with}{}", &text[..r.start], &text[r.end..])
        }
        Mutation::Truncate(at) => text[..b[at.index(b.len())]].to_string(),
    }
}

/// Byte ranges of the insides of one-line quoted strings and of digit runs outside them.
fn values(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let end = text[i + 1..].find(['"', '\n']).map_or(bytes.len(), |e| i + 1 + e);
                if bytes.get(end) == Some(&b'"') {
                    out.push(i + 1..end);
                }
                i = end + 1;
            }
            b'0'..=b'9' => {
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                out.push(start..i);
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'-' => {
                // Skip identifiers, so "web-1" in a bare key is not split.
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'-')) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Every example file (KDL and TOML) with its fuzz name.
fn examples() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            let name = match path.extension()?.to_str()? {
                "kdl" => "fuzz.kdl",
                "toml" => "fuzz.toml",
                _ => return None,
            };
            Some((name.to_string(), std::fs::read_to_string(&path).unwrap()))
        })
        .collect();
    files.sort();
    files
}

/// A TOML topology that uses every TOML form, so TOML mutations are fuzzed even before any
/// `examples/*.toml` exists.
const TOML_SEED: &str = r#"
topology = "seed"
overlay = "100.127.255.192/26"
peering = { mode = "partial", link = [{ from = "east", to = "west", cost = 10 }] }

[license]
controllers = 2
clients = 25

[[controller]]
name = "east"
id = 1
address = "192.0.2.10"
interface = { name = "eth0" }
cores = 4
engines = { count = 3, subnet = "198.51.100.0/28", seed = 0xf1e2d3c4 }
lan = ["10.10.0.0/16", { network = "10.11.0.0/16" }]

[[controller]]
name = "west"
id = 2
address = "west.example.net"
engines = { count = 1, subnet = "198.51.101.0/28" }

[[client]]
name = "web-1"
tags = "web"

[[client]]
name = "db-1"
ip = "100.127.255.210"
tags = "db,critical"
redirect-gateway = true

[[clients]]
name = "batch"
count = 3
tags = "batch"

[[fwset]]
name = "office"
type = "net"
net = ["203.0.113.0/24"]

[[fwset]]
name = "web-ports"
type = "port"
port = [80, "443", "8000-8080"]

[firewall]
policy = "drop"

[[firewall.rule]]
action = "allow"
from = "tag:web"
to = "tag:db"
proto = "tcp"
port = 5432

[[firewall.rule]]
action = "deny"
from = "tag:batch"
to = "tag:critical"

[[firewall.rule]]
action = "allow"
from = "fwset:office"
to = "tag:web"
proto = "tcp"
port = "fwset:web-ports"

[[expect]]
name = "web reaches db"
from = "web-1"
to = "db-1"
proto = "tcp"
port = 5432
verdict = "allow"

[[expect]]
from = "batch-1"
to = "db-1"
verdict = "drop"
"#;

/// The examples and the TOML seed.
fn seeds() -> Vec<(String, String)> {
    let mut seeds = examples();
    seeds.push(("fuzz.toml".into(), TOML_SEED.into()));
    seeds
}

fn mutated_example() -> impl Strategy<Value = (String, String)> {
    let files = seeds();
    (prop::sample::select(files), prop::collection::vec(mutation(), 1..4)).prop_map(|((name, text), mutations)| {
        let text = mutations.iter().fold(text, |t, m| apply(&t, m));
        (name, text)
    })
}

#[test]
fn seeds_keep_the_invariants() {
    let toml = analyze(SourceFile::new("seed.toml", TOML_SEED));
    assert!(!toml.has_errors(), "the TOML seed should be valid: {:#?}", toml.diagnostics);
    for (name, text) in seeds() {
        check(&name, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn every_truncation_of_every_example() {
    // Exhaustive over char boundaries (stepping to keep debug builds quick).
    for (name, text) in seeds() {
        for &at in boundaries(&text).iter().step_by(7) {
            check(&name, &text[..at]).unwrap_or_else(|e| panic!("{name} truncated at byte {at}: {e}"));
        }
    }
}

/// Regression (found by fuzzing): a client group's count above the cap was refused by the shape
/// checker but still expanded by the lowering, aborting the process out of memory.
#[test]
fn huge_client_group_is_not_expanded() {
    let text = "topology \"t\"\noverlay \"100.127.255.192/26\"\nclients \"b\" count=4294967295\n";
    let analysis = analyze(SourceFile::new("huge.kdl", text));
    assert!(analysis.has_errors());
}

/// Regression (found by fuzzing a mutated partial-mesh.toml): a link cost above the cap reached
/// the peering graph, where path costs overflowed u32.
#[test]
fn huge_link_cost_does_not_overflow() {
    let text = r#"
topology "t"
overlay "100.127.1.0/24"
controller "a" id=1 { address "192.0.2.1"; }
controller "b" id=2 { address "192.0.2.2"; }
controller "c" id=3 { address "192.0.2.3"; }
peering "partial" {
    link "a" "b" cost=4294967295
    link "b" "c"
}
"#;
    let analysis = analyze(SourceFile::new("cost.kdl", text));
    assert!(analysis.has_errors());
}

/// A small deterministic generator (xorshift64*), so a failing mutant is reproducible from the
/// seed and index that the failure message names.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Byte-level damage of the kinds a hostile or corrupted file has: flips, cuts, copies, deep
/// nesting, very long lines, bytes that are not UTF-8.
fn mutate_bytes(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    let at = rng.below(b.len() + 1);
    // Long lines are rare: parsing 66 kB in a debug build is what costs here.
    let kind = if rng.below(50) == 0 { 5 } else { [0, 1, 2, 3, 4, 6, 7, 8, 9][rng.below(9)] };
    match kind {
        0 | 1 => {
            if !b.is_empty() {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
        }
        2 => {
            let end = (at + 1 + rng.below(40)).min(b.len());
            b.drain(at..end);
        }
        3 => {
            let end = (at + 1 + rng.below(200)).min(b.len());
            let copy = b[at..end].to_vec();
            let to = rng.below(b.len() + 1);
            b.splice(to..to, copy);
        }
        4 => {
            let opener: &[u8] =
                [&b"a{"[..], b"{", b"/*", b"[", b"{a=", b"a.", b"[[", b"\"\"\"", b"x ", b"/- ", b"}"][rng.below(11)];
            let n = [10, 33, 100, 1000][rng.below(4)];
            b.splice(at..at, opener.repeat(n));
        }
        5 => {
            // A line long enough that a diagnostic after it starts past column 65,535.
            let filler: &[u8] = [&b" "[..], b"x", b"\t", b"#"][rng.below(4)];
            b.splice(at..at, filler.repeat(66_000 + rng.below(2000)));
        }
        6 => {
            let bad: &[u8] = [&b"\xff"[..], b"\xc3", b"\xed\xa0\x80", b"\xe2\x82", b"\x80\x80", b"\0"][rng.below(6)];
            b.splice(at..at, bad.iter().copied());
        }
        _ => {
            let token: &[u8] = [&b"}"[..], b"{", b"\"", b"\n", b"=", b"]", b"*/", b"//", b"#", b"\r"][rng.below(10)];
            b.splice(at..at, token.iter().copied());
        }
    }
    b
}

/// Regression (issue 12, item 1): the proptest mutations above stay inside UTF-8 and small
/// edits, so they never nested 1,250 levels deep or wrote a 70,000-column line, which crashed
/// the KDL parser and the report renderer. This loop throws several thousand byte-level mutants
/// of every example (KDL and TOML) at `analyze_bytes`, both renderers and the invariants.
/// `MESHWORK_FUZZ_MUTANTS` runs more; `MESHWORK_FUZZ_SEED` another sequence.
#[test]
fn hostile_byte_mutants_never_crash() {
    let total: usize = std::env::var("MESHWORK_FUZZ_MUTANTS").ok().and_then(|n| n.parse().ok()).unwrap_or(2000);
    let seed: u64 = std::env::var("MESHWORK_FUZZ_SEED").ok().and_then(|n| n.parse().ok()).unwrap_or(0x5eed_1234);
    let seeds = seeds();
    let mut rng = Rng(seed | 1);
    for i in 0..total {
        let (name, text) = &seeds[i % seeds.len()];
        let mut bytes = text.clone().into_bytes();
        for _ in 0..1 + rng.below(3) {
            bytes = mutate_bytes(&mut rng, bytes);
        }
        let analysis = meshwork_compiler::analyze_bytes(name.as_str(), bytes);
        let text = analysis.file.text.clone();
        report_invariants(&analysis, &text).unwrap_or_else(|e| panic!("mutant {i} (seed {seed}) of {name}: {e}"));
    }
}
