//! The JSON Schema of the TOML form: the committed file is current, it is a valid 2020-12 schema,
//! and every TOML example (and a few inline topologies) validates against it.
//!
//! Regenerate the committed file with:
//!     MESHWORK_UPDATE_SCHEMA=1 cargo test -p meshwork-compiler --test schema

use std::path::{Path, PathBuf};

use meshwork_compiler::schema::json_schema;
use meshwork_compiler::source::SourceFile;
use serde_json::Value as Json;

const REGENERATE: &str = "MESHWORK_UPDATE_SCHEMA=1 cargo test -p meshwork-compiler --test schema";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the compiler crate sits in the workspace").to_path_buf()
}

fn rendered() -> String {
    serde_json::to_string_pretty(&json_schema()).expect("a JSON value always serialises") + "\n"
}

#[test]
fn committed_schema_is_current() {
    let path = workspace().join("schemas/topology.schema.json");
    let expected = rendered();
    if std::env::var("MESHWORK_UPDATE_SCHEMA").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &expected).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == expected,
        "{} is stale or missing (it is generated from compiler/src/grammar.rs); regenerate it with:\n    {REGENERATE}",
        path.display()
    );
}

fn validator() -> jsonschema::Validator {
    let schema = json_schema();
    jsonschema::draft202012::meta::validate(&schema).expect("the schema is a valid draft 2020-12 schema");
    jsonschema::draft202012::options().should_validate_formats(true).build(&schema).expect("the schema compiles")
}

/// The schema's complaints about a TOML text, one line each.
fn violations(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
    let instance: Json = toml::from_str(text).expect("valid TOML");
    validator.iter_errors(&instance).map(|e| format!("at `{}`: {e}", e.instance_path())).collect()
}

#[test]
fn toml_examples_validate() {
    let validator = validator();
    let dir = workspace().join("examples");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let problems = violations(&validator, &text);
        assert!(problems.is_empty(), "{} does not match the schema:\n{}", path.display(), problems.join("\n"));
        // Taplo-based editors find the schema from the first line.
        let directive = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("#:schema "))
            .unwrap_or_else(|| panic!("{} does not start with a `#:schema` line", path.display()));
        let schema = path.parent().unwrap().join(directive.trim());
        assert!(schema.is_file(), "{}: #:schema names {}, which does not exist", path.display(), schema.display());
    }
    // And the repository's .taplo.toml maps the examples to the same schema.
    let taplo = std::fs::read_to_string(workspace().join(".taplo.toml")).expect(".taplo.toml");
    assert!(taplo.contains("path = \"./schemas/topology.schema.json\""), "{taplo}");
}

const VALID: &str = r#"
topology = "acme"
overlay = "100.127.255.192/26"
peering = "full"

[license]
controllers = 4
clients = 25

[[controller]]
name = "east"
id = 1
address = "192.0.2.10"
interface = "eth0"
cores = 4
engines = { count = 3, subnet = "198.51.100.0/28" }
lan = ["10.10.0.0/16", { network = "10.11.0.0/16" }]

[[controller]]
name = "west"
id = 2
address = { address = "west.example.net" }
engines = { count = 1, subnet = "198.51.101.0/28", seed = 0xf1e2d3c4, offset = 0x1000 }

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
count = 4
tags = "batch"

[[fwset]]
name = "office"
type = "net"
net = ["203.0.113.0/24", "198.18.0.1"]

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
from = "fwset:office"
to = "tag:web"
proto = "tcp"
port = "fwset:web-ports"

[[firewall.rule]]
action = "allow"
from = "overlay"
to = "overlay"
proto = "icmp"

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

#[test]
fn inline_valid_topology_validates_and_compiles() {
    let problems = violations(&validator(), VALID);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The schema and the compiler agree about this file.
    let analysis = meshwork_compiler::analyze(SourceFile::new("valid.toml", VALID));
    assert!(!analysis.has_errors(), "{:#?}", analysis.diagnostics);
}

#[test]
fn partial_peering_table_validates() {
    let text = r#"
topology = "mesh"
overlay = "100.127.255.192/26"
[[controller]]
name = "a"
id = 1
address = "192.0.2.1"
[[controller]]
name = "b"
id = 2
address = "192.0.2.2"
[peering]
mode = "partial"
link = [{ from = "a", to = "b", cost = 10 }]
"#;
    let problems = violations(&validator(), text);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Each of these breaks one mapping rule; the schema must refuse every one.
#[test]
fn mistakes_are_refused() {
    let validator = validator();
    let base = "topology = \"acme\"\noverlay = \"100.127.255.192/26\"\n";
    let cases = [
        // A misspelt key in a controller table.
        "[[controller]]\nname = \"east\"\nid = 1\nadress = \"192.0.2.10\"\n",
        // A misspelt top-level key.
        "[[clinet]]\nname = \"web-1\"\n",
        // A repeatable node given once, not as an array.
        "[client]\nname = \"web-1\"\n",
        // A firewall rule without its action, and one with an unknown action.
        "[[firewall.rule]]\nfrom = \"any\"\nto = \"any\"\n",
        "[[firewall.rule]]\naction = \"permit\"\nfrom = \"any\"\nto = \"any\"\n",
        // A node whose required property is missing may not be a plain value.
        "engines = 3\n",
        // Types and ranges.
        "[[client]]\nname = \"-web\"\n",
        "[[client]]\nname = \"web\"\nip = \"100.127.255.300\"\n",
        "[[client]]\nname = \"web\"\nrevoked = \"yes\"\n",
        "[license]\ncontrollers = 0\n",
        "[[expect]]\nfrom = \"a\"\nto = \"b\"\nverdict = \"maybe\"\n",
        "[[fwset]]\nname = \"p\"\ntype = \"port\"\nport = [70000]\n",
    ];
    for case in cases {
        let text = format!("{base}{case}");
        assert!(!violations(&validator, &text).is_empty(), "the schema accepts:\n{text}");
    }
    // The required top-level node (`overlay` is required only with controllers or clients,
    // which is the compiler's business: a file of compute nodes has none).
    assert!(!violations(&validator, "overlay = \"100.127.255.192/26\"\n").is_empty());
    // The VXLAN part's forms.
    for case in [
        "[[vxlan]]\nname = \"a\"\nrule = \"t\"\nvni = 0\nsubnet = \"10.0.0.0/24\"\n",
        "[[vxlan]]\nname = \"a\"\nrule = \"t\"\nvni = 1\nsubnet = \"10.0.0.0/24\"\nvnic = [{ name = \"v\", node = \"n\", mac = \"zz\" }]\n",
        "[[node]]\nname = \"n\"\npdc = \"p\"\n",
        "[[overlay-rule]]\nname = \"rule1\"\n",
        "[ipsec]\ndatapath = \"fast\"\n",
        "[[node-firewall.rule]]\nfrom = \"any\"\n",
    ] {
        let text = format!("{base}{case}");
        assert!(!violations(&validator, &text).is_empty(), "the schema accepts:\n{text}");
    }
    // A bad CIDR (host bits are the compiler's business, but the form is the schema's).
    assert!(!violations(&validator, "topology = \"a\"\noverlay = \"100.127.255.192\"\n").is_empty());
}

#[test]
fn misspelt_key_is_refused_by_schema_and_compiler() {
    let text = r#"
topology = "acme"
overlay = "100.127.255.192/26"

[[controller]]
name = "east"
id = 1
address = "192.0.2.10"
enignes = { count = 1, subnet = "198.51.100.0/28" }
"#;
    let problems = violations(&validator(), text);
    assert!(problems.iter().any(|p| p.contains("enignes")), "{problems:#?}");
    let analysis = meshwork_compiler::analyze(SourceFile::new("typo.toml", text));
    assert!(analysis.has_errors());
}
