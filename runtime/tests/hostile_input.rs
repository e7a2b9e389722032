//! Regressions of issue 12 at the command line: files shaped to crash the parser or the report
//! renderer, text that is not UTF-8, and thousands of diagnostics. Every verb that reads a
//! topology must answer with located diagnostics and exit 1: never abort (134) or panic (101).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn meshwork(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshwork")).args(args).output().expect("run meshwork")
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshwork-hostile-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const HEAD: &str = "topology \"t\"\noverlay \"100.127.255.192/26\"\n";
const GOOD: &str = "topology \"g\"\noverlay \"100.127.255.192/26\"\ncontroller \"east\" id=1 { address \"192.0.2.10\"; }\nclient \"web-1\"\n";

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name).display().to_string()
}

/// Every verb that reads a topology, on `file`.
fn verbs(file: &str) -> Vec<Vec<String>> {
    let q = example("quickstart.kdl");
    [
        vec!["check", file],
        vec!["graph", file],
        vec!["diff", &q, file],
        vec!["diff", file, &q],
        vec!["explain", file, "a", "b", "tcp", "80"],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect()
}

#[track_caller]
fn refused(args: &[String], code: &str) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = meshwork(&args);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
    assert!(stderr(&o).contains(code), "{args:?} does not name {code}: {}", stderr(&o));
}

/// 1,250 levels of `a{` aborted every verb with a stack overflow (exit 134).
#[test]
fn deep_nesting_is_a_diagnostic_in_every_verb() {
    let s = Scratch::new("deep");
    let deep = s.file("deep.kdl", format!("{HEAD}{}{}\n", "a{".repeat(5000), "}".repeat(5000)));
    for args in verbs(&deep) {
        refused(&args, "meshwork::parse::too-deep");
    }
    let o = meshwork(&["check", &deep]);
    assert!(stderr(&o).contains("deep.kdl:3:66"), "located at the 33rd brace: {}", stderr(&o));
    let toml = s.file("deep.toml", format!("a = {}{}\n", "[".repeat(5000), "]".repeat(5000)));
    refused(&["check".into(), toml], "meshwork::parse::syntax");
}

/// A diagnostic past column 65,535 panicked in miette's renderer (exit 101).
#[test]
fn a_diagnostic_on_a_very_long_line_is_reported() {
    let s = Scratch::new("long");
    let long = s.file("long.kdl", format!("{HEAD}{}bogus 1\n", " ".repeat(70_000)));
    for args in verbs(&long) {
        refused(&args, "meshwork::shape::unknown-node");
    }
    let o = meshwork(&["check", &long]);
    assert!(stderr(&o).contains("long.kdl:3:70001"), "{}", stderr(&o));
    assert!(stderr(&o).len() < 10_000, "the long line is not printed whole");
}

/// Text that is not UTF-8 was an error without line or column, JSON printed nothing, and the
/// next file was never checked.
#[test]
fn invalid_utf8_is_located_and_the_next_file_is_checked() {
    let s = Scratch::new("utf8");
    let bad = s.file("bad.kdl", [HEAD.as_bytes(), b"client \"caf\xe9\"\n"].concat());
    let good = s.file("good.kdl", GOOD);

    let o = meshwork(&["check", &bad, &good]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("meshwork::parse::encoding"), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.kdl:3:12"), "{}", stderr(&o));
    assert!(stdout(&o).contains("bad.kdl: invalid, 1 error"), "{}", stdout(&o));
    assert!(stdout(&o).contains("good.kdl: valid"), "the second file is checked: {}", stdout(&o));

    let o = meshwork(&["check", "--format", "json", &bad, &good]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let d = &json["files"][0]["diagnostics"][0];
    assert_eq!(d["code"], "meshwork::parse::encoding");
    assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(3), Some(12)));
    assert_eq!(json["files"][1]["diagnostics"].as_array().map(Vec::len), Some(0));
    assert_eq!(json["errors"], 1);
}

/// A file that cannot be read at all is one error; the others are still checked.
#[test]
fn an_unreadable_file_does_not_stop_the_others() {
    let s = Scratch::new("missing");
    let good = s.file("good.kdl", GOOD);
    let missing = s.0.join("missing.kdl").display().to_string();
    let o = meshwork(&["check", &missing, &good]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
    assert!(stdout(&o).contains("good.kdl: valid"), "{}", stdout(&o));
}

/// 10,000 duplicate clients took 9 s to report (each report rescanned the whole file). The cost
/// is measured by meshwork-bench; here, that every one is reported at its own line.
#[test]
fn thousands_of_diagnostics_are_each_reported_in_place() {
    let s = Scratch::new("many");
    let n = 3000;
    let mut text = format!("{HEAD}controller \"east\" id=1 {{ address \"192.0.2.10\"; }}\nlicense clients=100000\n");
    for _ in 0..n {
        text.push_str("client \"dup\"\n");
    }
    let file = s.file("many.kdl", &text);
    let o = meshwork(&["check", &file]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.matches("meshwork::name::duplicate").count(), n - 1, "{}", &err[..err.len().min(2000)]);
    // Every duplicate is drawn at its own line (the clients are on lines 5..5+n), all with the
    // first declaration.
    for line in [6, 5 + n / 2, 4 + n] {
        assert!(
            err.contains(&format!("many.kdl:{line}:8]")),
            "line {line}: {}",
            &err[err.len().saturating_sub(2000)..]
        );
    }
    assert_eq!(err.matches("client `dup` is declared twice").count(), n - 1);
}
