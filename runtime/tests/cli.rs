//! The `meshwork` binary as a user meets it: exit codes, JSON output, build safety, explain,
//! diff and graph.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn meshwork(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshwork")).args(args).output().expect("run meshwork")
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name).display().to_string()
}

/// A scratch directory of this test's own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshwork-cli-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const WARNING_ONLY: &str = "topology \"w\"\noverlay \"100.127.255.192/26\"\n\
    controller \"east\" id=1 { address \"192.0.2.10\"; cores 2; engines 2 subnet=\"198.51.100.0/28\"; }\n";
const BROKEN: &str = "topology \"b\"\noverlay \"100.127.255.192/26\"\ncontroller \"east\" id=1 { adress \"x\"; }\n";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_exit_codes() {
    let s = Scratch::new("check");
    let (warn, broken) = (s.file("warn.kdl", WARNING_ONLY), s.file("broken.kdl", BROKEN));
    assert_eq!(meshwork(&["check", &example("quickstart.kdl")]).status.code(), Some(0));
    let o = meshwork(&["check", &warn]);
    assert_eq!(o.status.code(), Some(0), "warnings alone pass: {}", stderr(&o));
    assert!(stderr(&o).contains("meshwork::engines::exceed-cores"));
    assert!(stdout(&o).contains(": valid, 0 errors, 1 warning"), "{}", stdout(&o));
    let o = meshwork(&["check", "--deny-warnings", &warn]);
    assert_eq!(o.status.code(), Some(1));
    // Never "valid" on the way to failing.
    assert!(stdout(&o).contains(": invalid (warnings are denied), 0 errors, 1 warning"), "{}", stdout(&o));
    let o = meshwork(&["check", &broken]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&format!("{broken}:3:")), "diagnostics name file:line:col: {}", stderr(&o));
    let missing = s.path("nope.kdl");
    let o = meshwork(&["check", &missing]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
}

#[test]
fn check_json_has_code_severity_file_line_column_message_help() {
    let s = Scratch::new("json");
    let broken = s.file("broken.kdl", BROKEN);
    let o = meshwork(&["check", "--format", "json", &broken]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let d = &v["files"][0]["diagnostics"];
    let unknown =
        d.as_array().unwrap().iter().find(|d| d["code"] == "meshwork::shape::unknown-node").expect("unknown-node");
    assert_eq!(unknown["severity"], "error");
    assert_eq!(unknown["file"], broken.as_str());
    assert_eq!(unknown["line"], 3);
    assert_eq!(unknown["column"], 26);
    assert!(unknown["message"].as_str().unwrap().contains("adress"));
    assert_eq!(unknown["help"], "did you mean `address`?");
    assert_eq!(
        v["errors"].as_u64().unwrap() as usize,
        d.as_array().unwrap().iter().filter(|d| d["severity"] == "error").count()
    );
}

#[test]
fn build_writes_every_artifact_and_replaces_only_its_own_directory() {
    let s = Scratch::new("build");
    let out = s.path("out");
    let o = meshwork(&["build", &example("quickstart.kdl"), "-o", &out]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = PathBuf::from(out);
    for f in ["checksum", "controllers/east/nftables.json", "controllers/east/openvpn/server.conf", "ccd/web-1"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // Each controller's ccd resolves to the shared one.
    assert!(out.join("controllers/east/openvpn/ccd/web-1").is_file());
    // Building again replaces the directory.
    assert_eq!(
        meshwork(&["build", &example("quickstart.kdl"), "-o", &out.display().to_string()]).status.code(),
        Some(0)
    );
    // A directory that is not a meshwork build is never replaced.
    let foreign = s.path("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(format!("{foreign}/precious.txt"), "keep me").unwrap();
    let o = meshwork(&["build", &example("quickstart.kdl"), "-o", &foreign]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("refusing"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(format!("{foreign}/precious.txt")).unwrap(), "keep me");
    // An invalid topology writes nothing.
    let broken = s.file("broken.kdl", BROKEN);
    let none = s.path("none");
    assert_eq!(meshwork(&["build", &broken, "-o", &none]).status.code(), Some(1));
    assert!(!Path::new(&none).exists());
}

#[test]
fn explain_between_vnics_names_the_overlays_and_the_path() {
    let file = example("two-pdc.kdl");
    let o = meshwork(&["explain", &file, "a-web", "a-db", "icmp"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("ALLOW") && text.contains("IPsec tunnel") && text.contains("VNI 123"), "{text}");
    // Same addresses, other overlay: isolated.
    let o = meshwork(&["explain", &file, "a-web", "b-db", "icmp", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "drop");
    assert!(v["why"].as_str().unwrap().contains("isolated though they share a subnet"), "{v}");
    // Within one PDC the path is in clear.
    let o = meshwork(&["explain", &file, "p-app", "p-store", "tcp", "9000"]);
    assert!(stdout(&o).contains("in clear within PDC prague"), "{}", stdout(&o));
    let o = meshwork(&["explain", &file, "a-wbe", "a-db", "icmp"]);
    assert!(stderr(&o).contains("did you mean `a-web`"), "{}", stderr(&o));
}

#[test]
fn explain_prints_verdict_and_deciding_rule_with_location() {
    let o = meshwork(&["explain", &example("quickstart.kdl"), "batch-1", "db-1", "tcp", "5432"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("DROP"), "{text}");
    assert!(text.contains("rule 4 at "), "{text}");
    assert!(text.contains("quickstart.kdl:32:5"), "{text}");
    let o = meshwork(&["explain", &example("quickstart.kdl"), "web-1", "db-1", "tcp", "5432", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["rule"]["number"], 1);
    // Policy decides when nothing matches.
    let o = meshwork(&["explain", &example("quickstart.kdl"), "web-1", "web-2", "udp", "9"]);
    assert!(stdout(&o).contains("policy"), "{}", stdout(&o));
    // TCP without a port asks for one.
    let o = meshwork(&["explain", &example("quickstart.kdl"), "web-1", "db-1", "tcp"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("decided by their port: give one"), "{}", stderr(&o));
    // A typo is a clear error.
    let o = meshwork(&["explain", &example("quickstart.kdl"), "web1", "db-1", "tcp", "5432"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("did you mean `web-1`"), "{}", stderr(&o));
}

#[test]
fn diff_shows_changes_for_review() {
    let s = Scratch::new("diff");
    let old = std::fs::read_to_string(example("quickstart.kdl")).unwrap();
    let new = old
        .replace("engines 3 subnet", "engines 2 subnet")
        .replace("client \"admin\" tags=\"ops\"\n", "client \"admin\" tags=\"ops\"\nclient \"new-1\"\n");
    let (a, b) = (s.file("old.kdl", &old), s.file("new.kdl", &new));
    let o = meshwork(&["diff", &a, &a, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("No changes."));
    let o = meshwork(&["diff", &a, &b, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("+ new-1"), "{text}");
    assert!(text.contains("- engine 3"), "{text}");
    let o = meshwork(&["diff", &a, &b, "--format", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let _: serde_json::Value = serde_json::from_slice(&o.stdout).expect("diff JSON");
}

#[test]
fn graph_is_dot_with_spof_marked() {
    let s = Scratch::new("graph");
    let chain = s.file(
        "chain.kdl",
        "topology \"c\"\noverlay \"100.127.1.0/24\"\ncontroller \"a\" id=1 { address \"192.0.2.1\"; }\n\
         controller \"b\" id=2 { address \"192.0.2.2\"; }\ncontroller \"c\" id=3 { address \"192.0.2.3\"; }\n\
         peering { link \"a\" \"b\"; link \"b\" \"c\"; }\n",
    );
    let o = meshwork(&["graph", &chain]);
    assert_eq!(o.status.code(), Some(0));
    let dot = stdout(&o);
    assert!(dot.starts_with("//") || dot.starts_with("graph"), "{dot}");
    assert!(dot.contains("graph \"c\""), "{dot}");
    assert!(dot.contains("single point of failure"), "{dot}");
}

#[test]
fn codes_lists_and_explains() {
    let o = meshwork(&["codes"]);
    assert!(stdout(&o).contains("meshwork::peering::disconnected"));
    let o = meshwork(&["codes", "peering::disconnected"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Add links between the parts"));
    assert_eq!(meshwork(&["codes", "nope"]).status.code(), Some(1));
}

/// `check --state-dir`: the CA fingerprint is part of the checksum, and certificates that
/// expire soon warn while expired ones fail.
#[test]
fn check_with_a_keyset_shows_its_ca_and_expiry() {
    use meshwork::keys::{Keyset, Policy};
    use time::{Duration, OffsetDateTime};

    let s = Scratch::new("keyset");
    let file = example("quickstart.kdl");
    let text = std::fs::read_to_string(&file).unwrap();
    let net = meshwork_compiler::analyze(meshwork_compiler::source::SourceFile::new("q.kdl", text)).network.unwrap();
    let checksum = |state: &str| {
        let o = meshwork(&["check", "--format", "json", "--state-dir", state, &file]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (o.status.code(), v["files"][0]["checksum"].as_str().unwrap().to_string(), v["keys"].as_array().unwrap().len())
    };
    let now = OffsetDateTime::now_utc();
    let (none, one, two) = (s.path("none"), s.path("one"), s.path("two"));
    Keyset::init(std::path::Path::new(&one), &net, now).unwrap();
    Keyset::init(std::path::Path::new(&two), &net, now).unwrap();
    let (code, plain, _) = checksum(&none);
    assert_eq!(code, Some(0));
    let (code, with_one, notices) = checksum(&one);
    assert_eq!((code, notices), (Some(0), 0));
    let (_, with_two, _) = checksum(&two);
    assert!(plain != with_one && with_one != with_two, "controllers on different keysets must disagree");

    // Leaves that expire in 10 days warn; exit 0 unless warnings are denied.
    let soon = s.path("soon");
    let short = Policy { leaf_validity: Duration::days(10), ..Policy::default() };
    Keyset::init_with(std::path::Path::new(&soon), &net, now, &short).unwrap();
    let o = meshwork(&["check", "--state-dir", &soon, &file]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning"), "{}", stderr(&o));
    assert_eq!(meshwork(&["check", "--deny-warnings", "--state-dir", &soon, &file]).status.code(), Some(1));

    // Issued 900 days ago with the default 825-day validity: expired, so check fails.
    let old = s.path("old");
    Keyset::init(std::path::Path::new(&old), &net, now - Duration::days(900)).unwrap();
    let o = meshwork(&["check", "--state-dir", &old, &file]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("error"), "{}", stderr(&o));

    // A keyset whose key is readable by others is refused with the file named.
    use std::os::unix::fs::PermissionsExt;
    let key = std::path::Path::new(&one).join("keyset/ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = meshwork(&["check", "--state-dir", &one, &file]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("ca.key"), "{}", stderr(&o));
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    // `meshwork codes | head -1`: the pipe's read end is closed before meshwork writes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshwork"))
        .arg("codes")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run meshwork");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}: {err}", out.status);
}

/// The lock file (issue 13): `lock` and `build` write NAME.lock beside the topology, every verb
/// reads it, and `check --locked` fails naming each entry that would change.
const LOCKED: &str = "topology \"l\"\noverlay \"100.127.255.192/26\"\n\
    controller \"east\" id=1 { address \"192.0.2.10\"; }\n\
    client \"web-1\"\nclient \"web-2\"\nclient \"web-3\"\n";

#[test]
fn lock_build_and_check_locked() {
    let s = Scratch::new("lock");
    let topo = s.file("net.kdl", LOCKED);
    let lock = s.path("net.lock");
    // No lock yet: --locked fails, naming the missing lock; `lock` writes it.
    let o = meshwork(&["check", "--locked", &topo]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("meshwork::lock::outdated"), "{}", stderr(&o));
    let o = meshwork(&["lock", &topo]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("net.lock: 3 added, 0 moved, 0 removed.\n  + client web-1: 100.127.255.193\n"),
        "{}",
        stdout(&o)
    );
    let written = std::fs::read_to_string(&lock).expect("net.lock written");
    assert!(stdout(&meshwork(&["lock", &topo])).contains("is up to date (3 locked objects)"));
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), written, "the same bytes again");
    assert_eq!(meshwork(&["check", "--locked", &topo]).status.code(), Some(0));

    // A client inserted in the middle: the others keep their addresses, --locked names the new
    // one, and build records it.
    std::fs::write(&topo, LOCKED.replace("client \"web-2\"", "client \"new-1\"\nclient \"web-2\"")).unwrap();
    let o = meshwork(&["check", "--locked", &topo]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("client `new-1` is not in the lock file (it would get 100.127.255.196)"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains(&format!("{topo}:5:8")), "{}", stderr(&o));
    let out = s.path("out");
    let o = meshwork(&["build", "--locked", &topo, "-o", &out]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!Path::new(&out).exists(), "build --locked writes nothing");
    let o = meshwork(&["build", &topo, "-o", &out]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("net.lock: 1 added, 0 moved, 0 removed.\n  + client new-1: 100.127.255.196\n"),
        "{}",
        stdout(&o)
    );
    let ccd = std::fs::read_to_string(format!("{out}/ccd/web-2")).unwrap();
    assert!(ccd.contains("100.127.255.194"), "web-2 kept its address: {ccd}");
    assert_eq!(meshwork(&["check", "--locked", &topo]).status.code(), Some(0));

    // A malformed lock is located in the lock file, in text and JSON, and nothing is built.
    std::fs::write(&lock, written.replace("version = 1", "version = 1\n<<<<<<< HEAD")).unwrap();
    let o = meshwork(&["check", &topo]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&format!("{lock}:6:1")), "{}", stderr(&o));
    let o = meshwork(&["check", "--format", "json", &topo]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let d = &v["files"][0]["diagnostics"][0];
    assert_eq!(
        (d["code"].as_str(), d["file"].as_str(), d["line"].as_u64()),
        (Some("meshwork::lock::syntax"), Some(lock.as_str()), Some(6))
    );
    assert_eq!(meshwork(&["build", &topo, "-o", &s.path("out2")]).status.code(), Some(1));
}

#[test]
fn examples_pass_check_locked_in_both_forms() {
    for name in ["quickstart", "three-controllers", "partial-mesh", "two-pdc", "combined"] {
        for ext in ["kdl", "toml"] {
            let o = meshwork(&["check", "--locked", &example(&format!("{name}.{ext}"))]);
            assert_eq!(o.status.code(), Some(0), "{name}.{ext}: {}", stderr(&o));
        }
    }
}

#[test]
fn diff_shows_moved_addresses_explicitly() {
    let s = Scratch::new("diff-moved");
    // Both versions without a lock: the inserted client moves web-2 and web-3.
    let old = s.file("old.kdl", LOCKED);
    let new = s.file("new.kdl", &LOCKED.replace("client \"web-2\"", "client \"new-1\"\nclient \"web-2\""));
    let o = meshwork(&["diff", &old, &new]);
    let text = stdout(&o);
    assert!(text.contains("moved addresses (the objects stay; only their addresses change)\n  ~ client web-2: 100.127.255.194 → 100.127.255.195\n  ~ client web-3: 100.127.255.195 → 100.127.255.196\n"), "{text}");
    // With the old version's lock beside the new one, nothing moves.
    assert_eq!(meshwork(&["lock", &old]).status.code(), Some(0));
    std::fs::copy(s.path("old.lock"), s.path("new.lock")).unwrap();
    let text = stdout(&meshwork(&["diff", &old, &new]));
    assert!(!text.contains("moved addresses"), "{text}");
    assert!(text.contains("+ new-1"), "{text}");
}
