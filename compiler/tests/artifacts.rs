//! Every artifact of every example, snapshotted into `snapshots/` (reviewed like code), and
//! the guarantees around them: KDL and TOML give byte-identical artifacts and one checksum,
//! and building twice gives the same bytes.

use std::path::{Path, PathBuf};

use meshwork_compiler::source::SourceFile;
use meshwork_compiler::{Artifacts, build};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn examples(ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

fn compile(path: &Path) -> Artifacts {
    let text = std::fs::read_to_string(path).expect("read example");
    let name = format!("examples/{}", path.file_name().unwrap().to_string_lossy());
    match build(SourceFile::new(name, text)) {
        Ok(a) => a,
        Err(analysis) => panic!(
            "{} does not compile:\n{}",
            path.display(),
            meshwork_compiler::diagnostic::render_plain(&analysis.file, &analysis.diagnostics)
        ),
    }
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s
}

#[test]
fn every_artifact_of_every_example() {
    let examples = examples("kdl");
    assert!(examples.len() >= 3, "expected the quickstart, three-controller and partial-mesh examples");
    for path in examples {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let artifacts = compile(&path);
        assert!(artifacts.iter().any(|(p, _)| p.ends_with("nftables.json")), "{stem}: no nftables.json");
        settings().bind(|| {
            let links: String =
                artifacts.links().iter().map(|(path, target)| format!("{path} -> {target}\n")).collect();
            insta::assert_snapshot!(format!("{stem}__links"), links);
            for (artifact, content) in artifacts.iter() {
                let name = format!("{stem}__{}", artifact.replace('/', "__"));
                insta::with_settings!({ description => format!("{stem}: {artifact}") }, {
                    insta::assert_snapshot!(name, content);
                });
            }
        });
    }
}

#[test]
fn every_example_compiles_clean_in_both_forms() {
    for path in examples("kdl").into_iter().chain(examples("toml")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let a = meshwork_compiler::analyze(SourceFile::new(path.display().to_string(), text));
        assert!(
            a.diagnostics.is_empty(),
            "{} is not clean:\n{}",
            path.display(),
            meshwork_compiler::diagnostic::render_plain(&a.file, &a.diagnostics)
        );
    }
}

#[test]
fn kdl_and_toml_forms_give_identical_artifacts_and_checksum() {
    for kdl in examples("kdl") {
        let toml = kdl.with_extension("toml");
        assert!(toml.exists(), "{} has no TOML twin {}", kdl.display(), toml.display());
        let (a, b) = (compile(&kdl), compile(&toml));
        assert_eq!(a.checksum(), b.checksum(), "{}: checksums differ", kdl.display());
        for (path, content) in a.iter() {
            assert_eq!(Some(content.as_str()), b.get(path), "{}: {path} differs between KDL and TOML", kdl.display());
        }
        assert_eq!(a, b, "{}: different artifact sets", kdl.display());
    }
}

#[test]
fn building_twice_is_byte_identical() {
    for path in examples("kdl") {
        assert_eq!(compile(&path), compile(&path), "{} is not deterministic", path.display());
    }
}

#[test]
fn checksum_changes_with_the_topology() {
    let path = examples_dir().join("quickstart.kdl");
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text.replace("port=5432", "port=5433");
    assert_ne!(text, changed);
    let a = build(SourceFile::new("a.kdl", text)).unwrap();
    let b = build(SourceFile::new("b.kdl", changed)).unwrap();
    assert_ne!(a.checksum(), b.checksum());
    assert_eq!(a.checksum().len(), 64);
}

/// How diagnostics read to a person: reviewed as snapshots like the artifacts.
#[test]
fn rendered_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    fixtures.sort();
    assert!(!fixtures.is_empty());
    for path in fixtures {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = format!("fixtures/{}", path.file_name().unwrap().to_string_lossy());
        let a = meshwork_compiler::analyze(SourceFile::new(name, text));
        assert!(a.has_errors(), "{} should have errors", path.display());
        let rendered = meshwork_compiler::diagnostic::render_plain(&a.file, &a.diagnostics);
        let snap = format!("diagnostics__{}", path.file_name().unwrap().to_string_lossy().replace('.', "_"));
        settings().bind(|| insta::assert_snapshot!(snap, rendered));
    }
}

#[test]
fn checksum_includes_the_ca_fingerprint() {
    let path = examples_dir().join("quickstart.kdl");
    let text = std::fs::read_to_string(&path).unwrap();
    let net = meshwork_compiler::analyze(SourceFile::new("q.kdl", text)).network.unwrap();
    let opts = |f: Option<&str>| meshwork_compiler::artifacts::BuildOptions { ca_fingerprint: f.map(str::to_string) };
    let plain = meshwork_compiler::artifacts::checksum(&net, &opts(None));
    let one = meshwork_compiler::artifacts::checksum(&net, &opts(Some("aa")));
    let other = meshwork_compiler::artifacts::checksum(&net, &opts(Some("bb")));
    assert!(plain != one && one != other && plain != other, "keysets must show in the checksum");
    let built = meshwork_compiler::artifacts::build_with(&net, &opts(Some("aa")));
    assert_eq!(built.checksum(), one);
    assert_eq!(built.get("ca-fingerprint"), Some("aa\n"));
}

/// `meshwork graph` of every example, reviewed like the artifacts: controllers with their
/// overlay addresses and primary clients, LANs, tunnels, PDCs and the legend.
#[test]
fn graph_of_every_example() {
    for path in examples("kdl") {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("read example");
        let analysis = meshwork_compiler::analyze(SourceFile::new(format!("examples/{stem}.kdl"), text));
        let net = analysis.network.unwrap_or_else(|| panic!("{stem} does not compile"));
        settings().bind(|| insta::assert_snapshot!(format!("{stem}__graph.dot"), meshwork_compiler::graph::dot(&net)));
    }
}
