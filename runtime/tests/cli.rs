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
    // `meshwork codes | head -1`: the pipe's read end is closed before meshwork writes (closed
    // before it starts: with the read end open for a while, output that fits in the pipe's
    // buffer would be written before the close, and no signal would come).
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_meshwork"))
        .arg("codes")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run meshwork");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}: {err}", out.status);
}

/// One workflow command as the GitHub Actions runner reads it (actions/runner
/// `ActionCommand.TryParseV2`, ported): `::name k=v,k=v::data`, properties split at `,` and the
/// first `=`, then unescaped; the data unescaped.
#[derive(Debug)]
struct WorkflowCommand {
    name: String,
    properties: std::collections::BTreeMap<String, String>,
    data: String,
}

fn parse_workflow_command(line: &str) -> Option<WorkflowCommand> {
    let line = line.trim_start();
    let rest = line.strip_prefix("::")?;
    let end = rest.find("::")?;
    let (info, data) = (&rest[..end], &rest[end + 2..]);
    let (name, props) = match info.find(' ') {
        Some(i) => (&info[..i], info[i + 1..].trim()),
        None => (info, ""),
    };
    let unescape_data = |s: &str| s.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%");
    let unescape_property = |s: &str| {
        s.replace("%0D", "\r").replace("%0A", "\n").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")
    };
    let mut properties = std::collections::BTreeMap::new();
    for p in props.split(',').filter(|p| !p.is_empty()) {
        if let Some((k, v)) = p.split_once('=').filter(|(k, v)| !k.is_empty() && !v.is_empty()) {
            properties.insert(k.to_string(), unescape_property(v));
        }
    }
    Some(WorkflowCommand { name: name.to_string(), properties, data: unescape_data(data) })
}

#[test]
fn check_github_annotations_read_back_as_the_runner_reads_them() {
    let s = Scratch::new("github");
    // A file name with every character that needs escaping in a property.
    let broken = s.file("a,b:c%d.kdl", BROKEN);
    let warn = s.file("warn.kdl", WARNING_ONLY);
    let o = meshwork(&["check", "--format", "github", &broken, &warn]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // stdout is commands only; the report for people is on stderr.
    let commands: Vec<WorkflowCommand> =
        stdout(&o).lines().map(|l| parse_workflow_command(l).unwrap_or_else(|| panic!("not a command: {l}"))).collect();
    assert!(stderr(&o).contains("did you mean `address`?"), "{}", stderr(&o));
    assert!(stderr(&o).contains(": invalid, "), "{}", stderr(&o));
    let unknown = commands
        .iter()
        .find(|c| c.properties.get("title").map(String::as_str) == Some("meshwork::shape::unknown-node"))
        .expect("an unknown-node annotation");
    assert_eq!(unknown.name, "error");
    assert_eq!(unknown.properties["file"], broken);
    let at = |k: &str| unknown.properties[k].as_str();
    assert_eq!((at("line"), at("col"), at("endLine"), at("endColumn")), ("3", "26", "3", "32"));
    assert!(unknown.data.starts_with("`controller` does not take a `adress`\n"), "{:?}", unknown.data);
    assert!(unknown.data.ends_with("\nhelp: did you mean `address`?"), "{:?}", unknown.data);
    let warning = commands.iter().find(|c| c.name == "warning").expect("a warning annotation");
    assert_eq!(warning.properties["title"], "meshwork::engines::exceed-cores");
    assert_eq!(warning.properties["file"], warn);

    // Under $GITHUB_WORKSPACE, file names are relative to it, as annotations need.
    let o = Command::new(env!("CARGO_BIN_EXE_meshwork"))
        .args(["check", "--format", "github", &warn])
        .env("GITHUB_WORKSPACE", &s.0)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let c = parse_workflow_command(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(c.properties["file"], "warn.kdl");
}

/// The official SARIF 2.1.0 schema (OASIS, errata 01): `tests/support/sarif-schema-2.1.0.json`
/// is `sarif-2.1/schema/sarif-schema-2.1.0.json` of github.com/oasis-tcs/sarif-spec at commit
/// e0583813964ec43cea53b6b531b402866095ed1f, unchanged.
fn sarif_validator() -> jsonschema::Validator {
    let text = include_str!("support/sarif-schema-2.1.0.json");
    let schema: serde_json::Value = serde_json::from_str(text).unwrap();
    jsonschema::draft4::options().should_validate_formats(true).build(&schema).expect("the SARIF schema compiles")
}

fn assert_valid_sarif(json: &[u8]) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(json).expect("SARIF is JSON");
    let errors: Vec<String> =
        sarif_validator().iter_errors(&v).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "not valid SARIF 2.1.0: {errors:#?}");
    // And a real SARIF object model reads it.
    let _: serde_sarif::sarif::Sarif = serde_json::from_value(v.clone()).expect("serde-sarif reads it");
    v
}

#[test]
fn check_sarif_is_valid_sarif_with_every_code_as_a_rule() {
    let s = Scratch::new("sarif");
    let text = BROKEN.replace(
        "controller \"east\" id=1 { adress \"x\"; }\n",
        "controller \"east\" id=1 { address \"192.0.2.1\"; }\ncontroller \"east\" id=2 { adress \"x\"; }\n",
    );
    let broken = s.file("my net.kdl", &text);
    let missing = s.path("missing.kdl");
    let o = meshwork(&["check", "--format", "sarif", &broken, &missing]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = assert_valid_sarif(&o.stdout);
    let run = &v["runs"][0];
    assert_eq!(v["version"], "2.1.0");
    assert_eq!(run["columnKind"], "unicodeCodePoints");
    // Rules: exactly what `meshwork codes` lists, with its summary.
    let codes = stdout(&meshwork(&["codes"]));
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), codes.lines().count());
    for (rule, line) in rules.iter().zip(codes.lines()) {
        let id = rule["id"].as_str().unwrap();
        assert!(line.starts_with(&format!("{id} ")), "{line}");
        assert!(line.ends_with(rule["shortDescription"]["text"].as_str().unwrap()), "{line}");
        assert!(!rule["fullDescription"]["text"].as_str().unwrap().is_empty());
    }
    let results = run["results"].as_array().unwrap();
    let unknown = results.iter().find(|r| r["ruleId"] == "meshwork::shape::unknown-node").expect("unknown-node");
    assert_eq!(rules[unknown["ruleIndex"].as_u64().unwrap() as usize]["id"], unknown["ruleId"]);
    assert_eq!(unknown["level"], "error");
    let loc = &unknown["locations"][0]["physicalLocation"];
    assert!(loc["artifactLocation"]["uri"].as_str().unwrap().ends_with("/my%20net.kdl"), "{loc}");
    let r = &loc["region"];
    assert_eq!(
        (&r["startLine"], &r["startColumn"], &r["endLine"], &r["endColumn"]),
        (&4.into(), &26.into(), &4.into(), &32.into())
    );
    // Secondary labels are related locations.
    let dup = results.iter().find(|r| r["ruleId"] == "meshwork::name::duplicate").expect("name::duplicate");
    let related = &dup["relatedLocations"][0];
    assert_eq!(related["physicalLocation"]["region"]["startLine"], 3, "{dup}");
    assert!(related["message"]["text"].as_str().unwrap().contains("first"), "{dup}");
    // The file that cannot be read is a tool notification, and the run did not succeed.
    let invocation = &run["invocations"][0];
    assert_eq!(invocation["executionSuccessful"], false);
    let note = &invocation["toolExecutionNotifications"][0];
    assert_eq!(note["level"], "error");
    assert!(note["message"]["text"].as_str().unwrap().contains("cannot read"), "{note}");

    // A clean file: valid SARIF with no results, exit 0.
    let o = meshwork(&["check", "--format", "sarif", &example("quickstart.kdl")]);
    assert_eq!(o.status.code(), Some(0));
    let v = assert_valid_sarif(&o.stdout);
    assert_eq!(v["runs"][0]["results"], serde_json::json!([]));
}

#[test]
fn check_json_has_end_positions_and_secondary_labels() {
    let s = Scratch::new("json-labels");
    let file = s.file("dup.kdl", &format!("{WARNING_ONLY}client \"c\"\nclient \"c\"\n"));
    let o = meshwork(&["check", "--format", "json", &file]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let d = v["files"][0]["diagnostics"].as_array().unwrap();
    let dup = d.iter().find(|d| d["code"] == "meshwork::name::duplicate").expect("name::duplicate");
    assert_eq!(
        (&dup["line"], &dup["column"], &dup["end_line"], &dup["end_column"]),
        (&5.into(), &8.into(), &5.into(), &11.into())
    );
    let first = &dup["labels"][0];
    assert_eq!(
        (&first["line"], &first["column"], &first["end_line"], &first["end_column"]),
        (&4.into(), &8.into(), &4.into(), &11.into())
    );
    assert!(first["text"].as_str().unwrap().contains("first"), "{first}");
}

#[test]
fn diff_for_ci_github_sarif_and_a_markdown_comment() {
    let s = Scratch::new("diff-ci");
    let old = std::fs::read_to_string(example("quickstart.kdl")).unwrap();
    let new = old
        .replace("engines 3 subnet", "engines 2 subnet")
        .replace("client \"admin\" tags=\"ops\"\n", "client \"admin\" tags=\"ops\"\nclient \"new-1\"\n");
    let (a, b) = (s.file("old.kdl", &old), s.file("new.kdl", &new));

    let o = meshwork(&["diff", "--format", "github", "--detailed-exitcode", &a, &b]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let notice = stdout(&o).lines().filter_map(parse_workflow_command).find(|c| c.name == "notice").expect("a notice");
    assert_eq!(notice.properties["file"], b);
    assert_eq!(notice.properties["title"], "meshwork diff: 2 to add, 3 to change, 2 to remove");
    assert!(notice.data.contains("+ new-1"), "{}", notice.data);

    let o = meshwork(&["diff", "--format", "sarif", &a, &b]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = assert_valid_sarif(&o.stdout);
    assert_eq!(v["runs"][0]["properties"]["meshwork/diff"]["summary"]["add"], 2);

    let o = meshwork(&["diff", "--format", "markdown", &a, &b]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let md = stdout(&o);
    assert!(md.starts_with("<!-- meshwork diff -->\n### meshwork diff: topology `quickstart`\n"), "{md}");
    assert!(md.contains("**2 to add, 3 to change, 2 to remove.**"), "{md}");
    assert!(md.contains("```diff\n"), "{md}");
    assert!(md.lines().any(|l| l.starts_with('+') && l.contains("new-1")), "`+` in the first column: {md}");
    assert!(md.lines().any(|l| l.starts_with('-') && l.contains("engine 3")), "{md}");

    // A new file with errors: annotations for them, and exit 1 (not 2) even with changes asked for.
    let broken = s.file("broken.kdl", BROKEN);
    let o = meshwork(&["diff", "--format", "github", "--detailed-exitcode", &a, &broken]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let c: Vec<WorkflowCommand> = stdout(&o).lines().filter_map(parse_workflow_command).collect();
    assert!(c.iter().any(|c| c.name == "error" && c.properties["file"] == broken), "{c:?}");
    let o = meshwork(&["diff", "--format", "markdown", &a, &broken]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("Nothing to compare"), "{}", stdout(&o));
    assert!(stdout(&o).contains("`meshwork::shape::unknown-node` line 3"), "{}", stdout(&o));
}

#[test]
fn usage_errors_exit_64_never_2_and_every_verb_documents_its_exit_codes() {
    // 2 is "changes" under --detailed-exitcode: a typo must not look like it.
    for args in [
        &["diff", "--detailed-exitcode"][..],
        &["plan", "--bogus"],
        &["nope"],
        &[],
        &["check"],
        &["--color", "sometimes"],
    ] {
        let o = meshwork(args);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("error:") || stderr(&o).contains("Usage:"), "{args:?}: {}", stderr(&o));
    }
    for args in [&["--help"][..], &["--version"], &["check", "--help"], &["help", "diff"]] {
        let o = meshwork(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    }
    let help = |args: &[&str]| stdout(&meshwork(args));
    let verbs = [
        vec!["check"],
        vec!["build"],
        vec!["explain"],
        vec!["diff"],
        vec!["graph"],
        vec!["codes"],
        vec!["keys", "init"],
        vec!["keys", "rotate-psk"],
        vec!["plan"],
        vec!["apply"],
        vec!["destroy"],
        vec!["agent"],
        vec!["lab", "up"],
        vec!["lab", "test"],
        vec!["clientpack"],
        vec!["completions"],
        vec!["man"],
    ];
    for verb in verbs {
        let text = help(&[verb.clone(), vec!["--help"]].concat());
        assert!(text.contains("Exit status:\n  0 "), "{verb:?}: {text}");
        assert!(text.contains("\n  64  usage error"), "{verb:?}: {text}");
    }
    assert!(help(&["diff", "--help"]).contains("\n  2   changes (only with --detailed-exitcode)"));
    assert!(help(&["plan", "--help"]).contains("\n  2   changes (only with --detailed-exitcode)"));
    assert!(help(&["lab", "test", "--help"]).contains("\n  1   an expectation differs"));
    assert!(help(&["--help"]).contains("\n  64  usage error"));
}

/// Runs meshwork under a pseudo-terminal (util-linux `script`), so that `auto` sees a terminal.
fn on_a_terminal(args: &str, env: &[(&str, &str)]) -> String {
    let cmd = format!("{} {args}", env!("CARGO_BIN_EXE_meshwork"));
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"]).env_remove("NO_COLOR").env("TERM", "xterm");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("script(1) from util-linux");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn colour_follows_color_no_color_and_term() {
    const ESC: char = '\u{1b}';
    let s = Scratch::new("colour");
    let broken = s.file("broken.kdl", BROKEN);
    let coloured = |o: &Output| stderr(o).contains(ESC);
    // Off a terminal: plain unless asked.
    assert!(!coloured(&meshwork(&["check", &broken])));
    assert!(coloured(&meshwork(&["check", "--color", "always", &broken])));
    assert!(coloured(&meshwork(&["--color=always", "check", &broken])), "a global option");
    assert!(!coloured(&meshwork(&["check", "--color", "never", &broken])));
    let forced = Command::new(env!("CARGO_BIN_EXE_meshwork"))
        .args(["check", "--color", "always", &broken])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(coloured(&forced), "--color always beats NO_COLOR");
    // On a terminal: colour, unless NO_COLOR, TERM=dumb or --color never.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped the terminal half: no script(1)");
        return;
    }
    assert!(on_a_terminal(&format!("check {broken}"), &[]).contains(ESC));
    assert!(!on_a_terminal(&format!("check {broken}"), &[("NO_COLOR", "1")]).contains(ESC));
    assert!(!on_a_terminal(&format!("check {broken}"), &[("TERM", "dumb")]).contains(ESC));
    assert!(!on_a_terminal(&format!("check --color never {broken}"), &[]).contains(ESC));
    // clap's own usage errors follow the option too.
    assert!(on_a_terminal("check --bogus", &[]).contains(ESC));
    assert!(!on_a_terminal("check --bogus --color never", &[]).contains(ESC));
}

#[test]
fn completions_load_in_bash() {
    let o = meshwork(&["completions", "bash"]);
    assert_eq!(o.status.code(), Some(0));
    let script = stdout(&o);
    assert!(script.contains("meshwork"), "{script}");
    // bash loads it and completes the verbs.
    let probe = format!(
        "{script}\nCOMP_WORDS=(meshwork ch); COMP_CWORD=1; COMP_LINE='meshwork ch'; COMP_POINT=11\n\
         _meshwork meshwork ch meshwork\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
    );
    let o = Command::new("bash").args(["--norc", "-c", &probe]).output().expect("bash");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).split_whitespace().collect::<Vec<_>>(), ["check"], "{}", stderr(&o));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let o = meshwork(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}");
        assert!(stdout(&o).contains("meshwork"), "{shell}");
    }
    assert_eq!(meshwork(&["completions", "tcsh"]).status.code(), Some(64));
}

#[test]
fn man_pages_render() {
    let o = meshwork(&["man"]);
    assert_eq!(o.status.code(), Some(0));
    let page = stdout(&o);
    assert!(page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH meshwork 1"), "{page}");
    assert!(page.contains(".TH meshwork 1"), "{page}");
    let s = Scratch::new("man");
    let dir = s.path("man1");
    let o = meshwork(&["man", "--dir", &dir]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for page in ["meshwork.1", "meshwork-check.1", "meshwork-diff.1", "meshwork-keys-init.1", "meshwork-lab-test.1"] {
        assert!(std::path::Path::new(&dir).join(page).is_file(), "{page}");
    }
    // groff reads the verb's page without a warning and shows its exit codes.
    if Command::new("groff").arg("--version").output().is_err() {
        eprintln!("skipped rendering: no groff");
        return;
    }
    let o = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(std::path::Path::new(&dir).join("meshwork-diff.1"))
        .output()
        .unwrap();
    assert!(o.status.success() && o.stderr.is_empty(), "{}", stderr(&o));
    let o = Command::new("groff")
        .args(["-man", "-Tascii", "-P-cbou"])
        .arg(std::path::Path::new(&dir).join("meshwork-diff.1"))
        .output()
        .unwrap();
    let text = stdout(&o);
    assert!(text.contains("Exit status:"), "{text}");
    assert!(text.contains("--detailed-exitcode"), "{text}");
}

#[test]
fn long_outputs_to_a_reader_that_goes_away_end_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let s = Scratch::new("pipe");
    let broken = s.file("broken.kdl", BROKEN);
    for args in [
        vec!["--help"],
        vec!["completions", "bash"],
        vec!["man"],
        vec!["check", "--format", "sarif", broken.as_str()],
        vec!["lab", "status", "--format", "json"],
    ] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_meshwork"))
            .args(&args)
            .env("MESHWORK_STATE_DIR", s.path("state"))
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run meshwork");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        // Ended by SIGPIPE as `ls | head` is; help (printed before the signal is reset) ends
        // with 0; with no lab, `lab status` writes nothing and fails as it would anyway.
        let quiet = out.status.signal() == Some(libc::SIGPIPE) || matches!(out.status.code(), Some(0 | 1));
        assert!(quiet, "{args:?}: {:?} {err}", out.status);
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

/// The README's CI job uses only options that exist: each `meshwork` command in it, with
/// `--help` added, parses (an unknown option or format would exit 64).
#[test]
fn the_readme_ci_job_uses_real_options() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = &readme[readme.find("## CI: gating a pull request").expect("the CI section")..];
    let job = &section[section.find("```yaml\n").unwrap()..];
    let job = &job[..job[8..].find("```").unwrap() + 8];
    let mut seen = 0;
    for line in job.lines() {
        let Some(at) = line.find("meshwork check").or_else(|| line.find("meshwork diff")) else { continue };
        let command = line[at..].split(['>', '|']).next().unwrap();
        let mut args: Vec<String> =
            command.split_whitespace().skip(1).map(|w| w.trim_matches('"').to_string()).collect();
        args.push("--help".into());
        let o = meshwork(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.status.code(), Some(0), "{command}: {}", stderr(&o));
        seen += 1;
    }
    assert!(seen >= 3, "{job}");
}

#[test]
fn build_and_graph_speak_json() {
    let s = Scratch::new("json-build");
    let out = s.path("out");
    let o = meshwork(&["build", &example("quickstart.kdl"), "-o", &out, "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("build JSON");
    assert_eq!(v["out"], out.as_str());
    assert_eq!(v["controllers"], serde_json::json!(["east"]));
    let artifacts: Vec<&str> = v["artifacts"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(artifacts.windows(2).all(|w| w[0] < w[1]), "sorted: {artifacts:?}");
    for a in &artifacts {
        assert!(std::path::Path::new(&out).join(a).symlink_metadata().is_ok(), "{a} listed but not written");
    }
    let checksum_file =
        std::fs::read_to_string(std::path::Path::new(&out).join(meshwork_compiler::artifacts::CHECKSUM_PATH)).unwrap();
    assert!(checksum_file.contains(v["checksum"].as_str().unwrap()), "{checksum_file}");

    let chain = s.file(
        "chain.kdl",
        "topology \"c\"\noverlay \"100.127.1.0/24\"\ncontroller \"a\" id=1 { address \"192.0.2.1\"; }\n\
         controller \"b\" id=2 { address \"192.0.2.2\"; }\ncontroller \"c\" id=3 { address \"192.0.2.3\"; }\n\
         peering { link \"a\" \"b\"; link \"b\" \"c\"; }\nclients \"w\" count=6\n",
    );
    let o = meshwork(&["graph", "--format", "json", &chain]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("graph JSON");
    let spof: Vec<&str> = v["controllers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["single_point_of_failure"] == true)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(spof, ["b"]);
    assert_eq!(v["controllers"][0]["overlay_ip"], "100.127.1.253");
    let primaries: u64 =
        v["controllers"].as_array().unwrap().iter().map(|c| c["primary_clients"].as_u64().unwrap()).sum();
    assert_eq!(primaries, 6, "every client is one controller's primary: {v}");
    assert_eq!(v["tunnels"].as_array().unwrap().len(), 2);
    assert!(v["tunnels"].as_array().unwrap().iter().all(|t| t["single_point_of_failure"] == true), "{v}");
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

/// A problem in the lock file is annotated on the lock file, in every CI format.
#[test]
fn ci_formats_name_the_lock_file_for_its_own_problems() {
    let s = Scratch::new("lockci");
    let topology = s.file("net.kdl", LOCKED);
    let lock = s.file("net.lock", "version = 1\n\n[clients]\nweb-1 = \"not an address\"\n");
    let o = meshwork(&["check", "--format", "github", &topology]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let commands: Vec<WorkflowCommand> = stdout(&o).lines().filter_map(parse_workflow_command).collect();
    let invalid = commands
        .iter()
        .find(|c| c.properties.get("title").map(String::as_str) == Some("meshwork::lock::invalid"))
        .unwrap_or_else(|| panic!("no lock::invalid annotation: {}", stdout(&o)));
    assert_eq!(invalid.properties["file"], lock);
    assert_eq!(invalid.properties["line"], "4");
    let o = meshwork(&["check", "--format", "sarif", &topology]);
    let log: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("SARIF");
    let result = log["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "meshwork::lock::invalid")
        .expect("a lock::invalid result");
    let uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap();
    assert!(uri.ends_with("net.lock"), "{uri}");
}

// ---------------------------------------------------------------------------------------------
// The lab's first hour (issue 13, item 4): what the lab verbs refuse and say before they touch
// the kernel. A real lab is in lab_kernel.rs.

mod support;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn lab_down_without_a_lab_succeeds_and_says_so_twice() {
    let s = Scratch::new("labdown");
    let state = s.path("state");
    for _ in 0..2 {
        let o = meshwork(&["lab", "down", "--state-dir", &state]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stderr(&o).contains(&format!("no lab is up in {state}; nothing to do")), "{}", stderr(&o));
    }
    let o = meshwork(&["lab", "down", "--state-dir", &state, "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object on stdout");
    assert_eq!(v["was_up"], false);
    assert_eq!(v["state_dir"], state.as_str());
    assert_eq!(v["problems"], serde_json::json!([]));
}

#[test]
fn a_lab_verb_whose_readers_are_gone_neither_panics_nor_dies_of_sigpipe() {
    use std::process::Stdio;
    let s = Scratch::new("labpipe");
    let state = s.path("state");
    for args in [["lab", "down", "--format", "json"], ["lab", "status", "--format", "json"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshwork"))
            .args(args)
            .args(["--state-dir", &state])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Both pipes closed before the verb writes a word.
        drop(child.stdout.take());
        drop(child.stderr.take());
        let status = child.wait().unwrap();
        // down: 0 (no lab); status: 1 (no lab). Never 101 (a panic) or a signal.
        let want = if args[1] == "down" { 0 } else { 1 };
        assert_eq!(status.code(), Some(want), "{args:?}: {status:?}");
    }
}

#[test]
fn a_lab_verb_refuses_a_file_the_lab_was_not_brought_up_with_and_names_both() {
    let s = Scratch::new("labfile");
    let state = s.path("state");
    let quickstart = support::lab::record_only(Path::new(&state), Path::new(&example("quickstart.kdl")));
    let other = std::fs::canonicalize(example("three-controllers.kdl")).unwrap();
    for verb in ["status", "test", "sync", "down"] {
        let o = meshwork(&["lab", verb, other.to_str().unwrap(), "--state-dir", &state]);
        assert_eq!(o.status.code(), Some(1), "{verb}: {}", stderr(&o));
        let want = format!("the lab at {state} was brought up with {}, not {}", quickstart.display(), other.display());
        assert!(stderr(&o).contains(&want), "{verb}: {}", stderr(&o));
    }
    // The lab was left alone.
    assert!(Path::new(&state).join("lab/lab.json").exists());
    let o = meshwork(&["lab", "kill", "east", other.to_str().unwrap(), "--wait", "--state-dir", &state]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("was brought up with"), "{}", stderr(&o));
}

#[test]
fn lab_kill_wait_on_the_only_controller_is_refused_up_front() {
    if !root() {
        eprintln!("skipping: lab verbs past their refusals of FILE need root");
        return;
    }
    let s = Scratch::new("labonly");
    let state = s.path("state");
    let file = support::lab::record_only(Path::new(&state), Path::new(&example("quickstart.kdl")));
    // The same file given as the lab's own, by another spelling of its path: accepted.
    let o = meshwork(&["lab", "kill", "east", &example("quickstart.kdl"), "--wait", "--state-dir", &state]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let want = format!("refusing `lab kill east --wait`: east is the only controller of {}", file.display());
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("Nothing was killed"), "{err}");
    // The drill that works, with the real binary and state directory.
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_meshwork")).unwrap();
    assert!(err.contains(&format!("{} lab restore east --wait --state-dir {state}", exe.display())), "{err}");
    // Refused before anything: the record does not say east was killed.
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&state).join("lab/lab.json")).unwrap()).unwrap();
    assert_eq!(record["killed"], serde_json::json!([]), "{record}");
}
