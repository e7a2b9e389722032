//! The lock file (issue 13): addresses do not move when someone else's line is added, removed
//! or reordered; released addresses are reused; the lock is deterministic; a malformed lock is
//! a located error; `--locked` names every entry that would change; and a topology without a
//! lock allocates exactly as before, so its first lock records today's addresses.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use meshwork_compiler::lock::{self, Key, Lock, Section, Value};
use meshwork_compiler::source::SourceFile;
use meshwork_compiler::{Analysis, LockInput, analyze, analyze_with};

const BASE: &str = r#"
topology "acme"
overlay "100.127.255.192/26"
controller "east" id=1 {
    address "192.0.2.10"
    cores 4
    engines 2 subnet="198.51.100.0/28"
}
controller "west" id=2 {
    address "192.0.2.20"
    cores 4
    engines 1 subnet="198.51.101.0/28"
}
client "web-1"
client "web-2"
client "db-1" ip="100.127.255.210"
client "web-3"
clients "batch" count=2
"#;

fn with_lock(kdl: &str, lock: Option<&str>, locked: bool) -> Analysis {
    let file = lock.map(|text| SourceFile::new("t.lock", text));
    analyze_with(SourceFile::new("t.kdl", kdl), LockInput::new(file, locked))
}

/// The lock text a topology resolves to (with `lock` as its lock file); panics on errors.
fn lock_text(kdl: &str, lock: Option<&str>) -> String {
    let a = with_lock(kdl, lock, false);
    let report = meshwork_compiler::diagnostic::render_plain(&a.file, &a.diagnostics);
    lock::render(a.lock.as_ref().unwrap_or_else(|| panic!("does not resolve:\n{report}")))
}

fn resolved(kdl: &str, lock: Option<&str>) -> Lock {
    with_lock(kdl, lock, false).lock.expect("resolves")
}

fn client(l: &Lock, name: &str) -> Ipv4Addr {
    l.address(Section::Clients, name).unwrap_or_else(|| panic!("no client {name}"))
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Codes, severities and 1-based line:column (in the file each is located in) of a result.
fn found(a: &Analysis) -> Vec<(String, bool, String, usize, usize)> {
    a.diagnostics
        .iter()
        .map(|d| {
            let file = d.file_or(&a.file);
            let (line, col) = file.line_col(d.primary.span.offset());
            (d.code.name().to_string(), d.is_error(), file.name.clone(), line, col)
        })
        .collect()
}

#[test]
fn inserting_a_client_in_the_middle_keeps_every_other_address() {
    let first = lock_text(BASE, None);
    let inserted = BASE.replace("client \"web-2\"", "client \"new-1\"\nclient \"web-2\"");
    let before = resolved(BASE, None);
    let after = resolved(&inserted, Some(&first));
    for name in ["web-1", "web-2", "db-1", "web-3", "batch-1", "batch-2"] {
        assert_eq!(client(&after, name), client(&before, name), "{name} moved");
    }
    // The new client takes the lowest free address, above the others.
    assert_eq!(client(&after, "new-1"), ip("100.127.255.198"));
    // Without the lock, everyone after the insertion moves: what the lock is for.
    let unlocked = resolved(&inserted, None);
    assert_ne!(client(&unlocked, "web-2"), client(&before, "web-2"));
    assert!(with_lock(&inserted, Some(&first), false).diagnostics.is_empty());
}

#[test]
fn reordering_and_engines_added_elsewhere_move_nobody() {
    let first = lock_text(BASE, None);
    // Clients reordered, and east gets a third engine, which pushes west's engine down
    // without a lock.
    let changed = BASE
        .replace("client \"web-1\"\n", "")
        .replace("clients \"batch\" count=2", "clients \"batch\" count=2\nclient \"web-1\"")
        .replace("engines 2", "engines 3");
    let before = resolved(BASE, None);
    let after = resolved(&changed, Some(&first));
    assert_eq!(lock::changes(&before, &after).len(), 1, "only the new engine: {:?}", lock::changes(&before, &after));
    assert_eq!(after.address(Section::Engines, "west-e1"), before.address(Section::Engines, "west-e1"));
    assert!(after.address(Section::Engines, "east-e3").is_some());
    let unlocked = resolved(&changed, None);
    assert_ne!(unlocked.address(Section::Engines, "west-e1"), before.address(Section::Engines, "west-e1"));
}

#[test]
fn removing_a_client_frees_its_address_for_a_new_one() {
    let first = lock_text(BASE, None);
    let web_2 = client(&resolved(BASE, None), "web-2");
    let removed = BASE.replace("client \"web-2\"\n", "");
    let second = lock_text(&removed, Some(&first));
    assert!(!second.contains("web-2"), "{second}");
    let added = removed.replace("clients \"batch\"", "client \"late\"\nclients \"batch\"");
    let third = resolved(&added, Some(&second));
    assert_eq!(client(&third, "late"), web_2);
    assert_eq!(client(&third, "web-3"), client(&resolved(BASE, None), "web-3"));
}

#[test]
fn the_lock_is_deterministic_and_reads_back() {
    let a = lock_text(BASE, None);
    assert_eq!(a, lock_text(BASE, None));
    assert_eq!(a, lock_text(BASE, Some(&a)), "an up-to-date lock is written again byte for byte");
    let parsed = lock::parse(&SourceFile::new("t.lock", a.clone())).expect("reads back");
    assert_eq!(lock::render(&parsed.lock), a);
    assert!(a.starts_with("# meshwork lock file"), "{a}");
    assert!(a.contains("\nversion = 1\n\n[clients]\nbatch-1 = \"100.127.255.196\"\n"), "{a}");
    assert!(a.contains("\n[engines]\neast-e1 = \"100.127.255.251\"\n"), "{a}");
}

#[test]
fn an_explicit_ip_wins_over_the_lock_and_the_move_is_said() {
    let first = lock_text(BASE, None);
    let web_2 = client(&resolved(BASE, None), "web-2");
    let taken = BASE.replace("client \"db-1\" ip=\"100.127.255.210\"", &format!("client \"db-1\" ip=\"{web_2}\""));
    let a = with_lock(&taken, Some(&first), false);
    let new = a.lock.as_ref().expect("resolves");
    assert_eq!(client(new, "db-1"), web_2);
    assert_ne!(client(new, "web-2"), web_2);
    let d = a.diagnostics.iter().find(|d| d.code.name() == "meshwork::lock::relocated").expect("a warning");
    assert!(!d.is_error());
    assert!(
        d.message.contains(&format!(
            "client `web-2` cannot keep its locked address {web_2}: client `db-1` takes it with ip="
        )),
        "{}",
        d.message
    );
    assert!(d.message.contains(&format!("it moves to address {}", client(new, "web-2"))), "{}", d.message);
}

#[test]
fn two_entries_locking_one_address_after_a_merge_are_untangled() {
    // Two branches each added a client, and each got .198: git merges the lock cleanly.
    let merged = lock_text(BASE, None)
        .replace("[clients]\n", "[clients]\na-new = \"100.127.255.198\"\nb-new = \"100.127.255.198\"\n");
    let both = BASE.replace("clients \"batch\"", "client \"a-new\"\nclient \"b-new\"\nclients \"batch\"");
    let a = with_lock(&both, Some(&merged), false);
    let new = a.lock.as_ref().expect("resolves");
    assert_eq!(client(new, "a-new"), ip("100.127.255.198"));
    assert_ne!(client(new, "b-new"), ip("100.127.255.198"));
    assert_eq!(found(&a).iter().filter(|f| f.0 == "meshwork::lock::relocated").count(), 1, "{:?}", found(&a));
}

#[test]
fn a_changed_overlay_reallocates_what_no_longer_fits() {
    let first = lock_text(BASE, None);
    let moved = BASE.replace("100.127.255.192/26", "10.20.0.0/24").replace("100.127.255.210", "10.20.0.50");
    let a = with_lock(&moved, Some(&first), false);
    let new = a.lock.as_ref().expect("resolves");
    assert_eq!(client(new, "web-1"), ip("10.20.0.1"));
    assert!(found(&a).iter().filter(|f| f.0 == "meshwork::lock::relocated").count() >= 5, "{:?}", found(&a));
}

// --- the VXLAN part ----------------------------------------------------------------------

const VX: &str = r#"
topology "dc"
node "cn-1" pdc="prague" admin="10.100.0.11/24" external="198.18.0.11/24"
node "cn-2" pdc="brno" admin="10.100.1.12/24" external="198.18.1.12/24"
overlay-rule "tenants"
overlay-rule "backend"
admin-overlay subnet="10.99.0.0/24"
vxlan "tenant-a" rule="tenants" vni=123 subnet="10.44.0.0/24" {
    vnic "vm-1" node="cn-1"
    vnic "vm-2" node="cn-2"
    vnic "vm-3" node="cn-2"
}
"#;

#[test]
fn vnics_nodes_and_rules_inserted_in_the_middle_move_nobody() {
    let first = lock_text(VX, None);
    let inserted = VX
        .replace("    vnic \"vm-2\"", "    vnic \"vm-new\" node=\"cn-1\"\n    vnic \"vm-2\"")
        .replace(
            "node \"cn-2\"",
            "node \"cn-0\" pdc=\"brno\" admin=\"10.100.1.10/24\" external=\"198.18.1.10/24\"\nnode \"cn-2\"",
        )
        .replace("overlay-rule \"backend\"", "overlay-rule \"middle\"\noverlay-rule \"backend\"");
    let before = resolved(VX, None);
    let after = resolved(&inserted, Some(&first));
    let changes = lock::changes(&before, &after);
    assert!(changes.iter().all(|c| c.kind == lock::ChangeKind::Add), "{changes:#?}");
    assert_eq!(changes.len(), 4, "vm-new, cn-0's VTEP and admin vNIC, rule middle's port: {changes:#?}");
    assert_eq!(after.port("middle"), Some(4792));
    // Without the lock, vm-2, vm-3, cn-2's VTEP and admin address, and backend's port move.
    let unlocked = resolved(&inserted, None);
    let moved = lock::changes(&before, &unlocked).into_iter().filter(|c| c.kind == lock::ChangeKind::Move).count();
    assert_eq!(moved, 5, "{:#?}", lock::changes(&before, &unlocked));
}

#[test]
fn a_derived_mac_stays_when_the_topology_is_renamed() {
    let first = lock_text(VX, None);
    let renamed = VX.replace("topology \"dc\"", "topology \"dc-2\"");
    let before = resolved(VX, None);
    assert_eq!(resolved(&renamed, Some(&first)), before, "nothing moves with the lock");
    let unlocked = resolved(&renamed, None);
    let vm_1 = |l: &Lock| l.vnic(Section::Vnics, "tenant-a", "vm-1").unwrap().mac;
    assert_ne!(vm_1(&unlocked), vm_1(&before), "derived MACs hash the topology's name");
}

#[test]
fn an_explicit_mac_wins_over_a_locked_one() {
    let first = lock_text(VX, None);
    let vm_1 = resolved(VX, None).vnic(Section::Vnics, "tenant-a", "vm-1").unwrap().mac;
    // Renamed, so that vm-1's derived MAC is no longer the locked one it must give up.
    let taken = VX
        .replace("vnic \"vm-3\" node=\"cn-2\"", &format!("vnic \"vm-3\" node=\"cn-2\" mac=\"{vm_1}\""))
        .replace("topology \"dc\"", "topology \"dc-2\"");
    let a = with_lock(&taken, Some(&first), false);
    let new = a.lock.as_ref().unwrap_or_else(|| panic!("{:?}", a.diagnostics));
    assert_eq!(new.vnic(Section::Vnics, "tenant-a", "vm-3").unwrap().mac, vm_1);
    assert_ne!(new.vnic(Section::Vnics, "tenant-a", "vm-1").unwrap().mac, vm_1);
    assert!(found(&a).iter().any(|f| f.0 == "meshwork::lock::relocated"), "{:?}", found(&a));
}

// --- malformed locks ---------------------------------------------------------------------

#[test]
fn a_malformed_lock_is_a_located_error_and_nothing_is_built() {
    let cases: &[(&str, &str, usize, usize)] = &[
        ("version = 1\n[clients\n", "lock::syntax", 2, 9),
        ("version = 1\n<<<<<<< HEAD\n", "lock::syntax", 2, 1),
        ("version = 1\n[client]\nweb-1 = \"100.127.255.193\"\n", "lock::invalid", 2, 2),
        ("version = 1\n[clients]\nweb-1 = \"100.127.255.300\"\n", "lock::invalid", 3, 9),
        ("version = 1\n[clients]\nweb-1 = 7\n", "lock::invalid", 3, 9),
        ("version = 1\nclients = 3\n", "lock::invalid", 2, 11),
        ("version = 1\n[rule-ports]\ntenants = 0\n", "lock::invalid", 3, 11),
        ("version = 1\n[rule-ports]\ntenants = 70000\n", "lock::invalid", 3, 11),
        ("version = 1\n[vnics.a]\nvm = { ip = \"10.0.0.1\", mac = \"01:00:00:00:00:01\" }\n", "lock::invalid", 3, 31),
        ("version = 1\n[vnics.a]\nvm = { ip = \"10.0.0.1\" }\n", "lock::invalid", 3, 6),
        (
            "version = 1\n[vnics.a]\nvm = { ip = \"10.0.0.1\", mac = \"02:00:00:00:00:01\", x = 1 }\n",
            "lock::invalid",
            3,
            52,
        ),
        ("version = 1\n[admin-overlay]\ncn-1 = \"10.99.0.11\"\n", "lock::invalid", 3, 8),
        ("[clients]\n", "lock::invalid", 1, 1),
        ("version = 2\n", "lock::invalid", 1, 11),
    ];
    for (text, code, line, col) in cases {
        let a = with_lock(BASE, Some(text), false);
        let hit = found(&a);
        assert!(
            hit.iter().any(|(c, err, file, l, k)| c == &format!("meshwork::{code}")
                && *err
                && file == "t.lock"
                && (*l, *k) == (*line, *col)),
            "{text:?}: expected {code} at t.lock:{line}:{col}, found {hit:?}"
        );
        assert!(a.network.is_none() && a.lock.is_none(), "{text:?}: built with a malformed lock");
        // The report names the lock file and draws its line.
        let rendered = meshwork_compiler::diagnostic::render_plain(&a.file, &a.diagnostics);
        assert!(rendered.contains(&format!("t.lock:{line}:{col}")), "{rendered}");
    }
}

#[test]
fn a_lock_that_is_not_utf8_is_located() {
    let bytes = b"version = 1\n[clients]\nw\xe9b = \"100.127.255.193\"\n".to_vec();
    let a = analyze_with(SourceFile::new("t.kdl", BASE), LockInput::from_bytes("t.lock", bytes, false));
    assert_eq!(found(&a), [("meshwork::parse::encoding".to_string(), true, "t.lock".to_string(), 3, 2)]);
    assert!(a.network.is_none());
}

#[test]
fn entries_of_objects_that_are_gone_are_dropped_quietly() {
    let stale = format!("{}\n[vteps]\nghost = \"198.19.254.9\"\n", lock_text(BASE, None));
    let a = with_lock(BASE, Some(&stale), false);
    assert!(a.diagnostics.is_empty(), "{:?}", found(&a));
    assert!(!lock::render(a.lock.as_ref().unwrap()).contains("ghost"));
}

// --- --locked ------------------------------------------------------------------------------

#[test]
fn locked_names_every_entry_that_would_change() {
    let first = lock_text(BASE, None);
    assert!(with_lock(BASE, Some(&first), true).diagnostics.is_empty());

    // A new client (on its name in the topology) and a removed one (on its entry in the lock).
    let edited = BASE.replace("client \"web-3\"", "client \"web-4\"");
    let a = with_lock(&edited, Some(&first), true);
    let hits = found(&a);
    let outdated: Vec<_> = hits.iter().filter(|f| f.0 == "meshwork::lock::outdated").collect();
    assert_eq!(outdated.len(), 2, "{hits:?}");
    assert!(outdated.iter().any(|f| f.2 == "t.kdl" && (f.3, f.4) == (17, 8)), "{hits:?}");
    let web_3_line = first.lines().position(|l| l.starts_with("web-3 =")).unwrap() + 1;
    assert!(outdated.iter().any(|f| f.2 == "t.lock" && (f.3, f.4) == (web_3_line, 1)), "{hits:?}");
    assert!(a.network.is_none(), "--locked refuses to build");
    let messages: Vec<&str> = a.diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert!(
        messages.contains(&"client `web-4` is not in the lock file (it would get 100.127.255.195)"),
        "{messages:?}"
    );
    assert!(messages.contains(&"client `web-3` is in the lock file but no longer in the topology"), "{messages:?}");
    assert!(a.diagnostics.iter().all(|d| d.help.as_deref().is_some_and(|h| h.contains("meshwork lock FILE"))));

    // A move.
    let hand_edited =
        first.replace("web-1 = \"100.127.255.193\"", "web-1 = \"100.127.255.193\"\nweb-2 = \"100.127.255.200\"");
    let moved = hand_edited.replacen("web-2 = \"100.127.255.194\"\n", "", 1);
    let a = with_lock(BASE, Some(&moved), true);
    assert!(a.diagnostics.is_empty(), "a hand-moved entry is kept, so nothing would change: {:?}", found(&a));
    let taken = BASE.replace("100.127.255.210", "100.127.255.200");
    let a = with_lock(&taken, Some(&moved), true);
    assert!(
        a.diagnostics.iter().any(|d| d.message == "client `web-2` would move: 100.127.255.200 → 100.127.255.194"),
        "{:?}",
        a.diagnostics.iter().map(|d| &d.message).collect::<Vec<_>>()
    );

    // No lock file at all.
    let a = with_lock(BASE, None, true);
    assert_eq!(found(&a).iter().filter(|f| f.0 == "meshwork::lock::outdated").count(), 1, "{:?}", found(&a));
}

// --- migration and the examples ----------------------------------------------------------

fn examples(ext: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

#[test]
fn without_a_lock_addresses_follow_declaration_order_as_before() {
    // The first lock of a topology records the addresses it had before locks: the same network
    // compiled with that lock builds the same artifacts as without it.
    for path in examples("kdl") {
        let text = std::fs::read_to_string(&path).unwrap();
        let plain = analyze(SourceFile::new("t.kdl", text.clone()));
        let first = lock::render(plain.lock.as_ref().unwrap());
        let again = with_lock(&text, Some(&first), true);
        assert!(again.diagnostics.is_empty(), "{}: {:?}", path.display(), found(&again));
        let (a, b) = (plain.network.unwrap(), again.network.unwrap());
        assert_eq!(
            meshwork_compiler::artifacts::build(&a),
            meshwork_compiler::artifacts::build(&b),
            "{}",
            path.display()
        );
    }
}

#[test]
fn every_example_and_its_twin_pass_locked_with_the_committed_lock() {
    let kdl = examples("kdl");
    assert_eq!(examples("lock").len(), kdl.len(), "every example has a lock file");
    for path in kdl.into_iter().chain(examples("toml")) {
        let lock_path = path.with_extension("lock");
        let lock = std::fs::read_to_string(&lock_path).unwrap_or_else(|e| panic!("{}: {e}", lock_path.display()));
        let text = std::fs::read_to_string(&path).unwrap();
        let lock_file = SourceFile::new(lock_path.display().to_string(), lock.clone());
        let a = analyze_with(SourceFile::new(path.display().to_string(), text), LockInput::new(Some(lock_file), true));
        let report = meshwork_compiler::diagnostic::render_plain(&a.file, &a.diagnostics);
        assert!(a.diagnostics.is_empty(), "{} --locked:\n{report}", path.display());
        assert_eq!(lock::render(a.lock.as_ref().unwrap()), lock, "{}", path.display());
    }
}

#[test]
fn keys_and_values_read_as_expected() {
    let mut l = Lock::default();
    l.insert(Key::new(Section::Clients, "a"), Value::Address(ip("10.0.0.1")));
    assert_eq!(l.address(Section::Clients, "a"), Some(ip("10.0.0.1")));
    assert_eq!(l.address(Section::Engines, "a"), None);
    assert_eq!(Key::vnic("t", "v").to_string(), "vNIC `v` of overlay `t`");
}

// --- hostile locks -------------------------------------------------------------------------

/// Whatever the lock file holds: no panic, every diagnostic inside the file it names, a
/// network exactly when there is no error, and reports that render.
fn lock_invariants(kdl: &str, lock_text: &str) -> Result<(), proptest::test_runner::TestCaseError> {
    use proptest::{prop_assert, prop_assert_eq};
    let a = with_lock(kdl, Some(lock_text), false);
    for d in &a.diagnostics {
        let file = d.file_or(&a.file);
        for l in std::iter::once(&d.primary).chain(&d.secondary) {
            prop_assert!(l.span.offset() + l.span.len() <= file.text.len(), "{d:?} past the end of {}", file.name);
        }
        let json = meshwork_compiler::diagnostic::JsonDiagnostic::new(&a.file, d);
        prop_assert!(json.line >= 1 && json.column >= 1);
    }
    prop_assert_eq!(a.network.is_some(), !a.has_errors());
    prop_assert!(a.lock.is_some() == a.network.is_some());
    let _ = meshwork_compiler::diagnostic::render_plain(&a.file, &a.diagnostics);
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { failure_persistence: None, ..Default::default() })]

    #[test]
    fn random_locks_never_panic(text in proptest::prelude::any::<String>()) {
        lock_invariants(BASE, &text)?;
    }

    #[test]
    fn mutated_locks_never_panic(
        cut in 0usize..4000,
        len in 0usize..40,
        insert in "[\\[\\]{}=\",.a-z0-9 \n:#-]{0,12}",
    ) {
        let original = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/two-pdc.lock")).unwrap();
        let kdl = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/two-pdc.kdl")).unwrap();
        let mut at = cut.min(original.len());
        while !original.is_char_boundary(at) { at -= 1; }
        let mut end = (at + len).min(original.len());
        while !original.is_char_boundary(end) { end -= 1; }
        let mutated = format!("{}{insert}{}", &original[..at], &original[end..]);
        lock_invariants(&kdl, &mutated)?;
    }
}

#[test]
fn deeply_nested_lock_is_an_error_not_a_crash() {
    for deep in ["a = ".to_string() + &"[".repeat(100_000), "a = ".to_string() + &"{b=".repeat(50_000)] {
        let a = with_lock(BASE, Some(&format!("version = 1\n{deep}")), false);
        assert!(a.has_errors());
    }
}
