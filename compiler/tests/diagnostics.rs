//! One test per validation rule: its code, its exact line:column and the text its label
//! covers. A fluent helper keeps each test to the topology and the expectation.

use meshwork_compiler::analyze;
use meshwork_compiler::diagnostic::Severity;
use meshwork_compiler::source::SourceFile;

/// A valid base every test extends; 3 lines, so the test's own lines start at line 4.
const BASE: &str =
    "topology \"t\"\noverlay \"100.127.255.192/26\"\ncontroller \"east\" id=1 { address \"192.0.2.10\"; }\n";

struct Checked {
    file: SourceFile,
    found: Vec<(String, Severity, usize, usize, String, String)>,
}

fn kdl(extra: &str) -> Checked {
    check_file("t.kdl", &format!("{BASE}{extra}"))
}

fn raw(name: &str, text: &str) -> Checked {
    check_file(name, text)
}

fn check_file(name: &str, text: &str) -> Checked {
    let a = analyze(SourceFile::new(name, text));
    let found = a
        .diagnostics
        .iter()
        .map(|d| {
            let (line, col) = a.file.line_col(d.primary.span.offset());
            let start = d.primary.span.offset();
            let covered = a.file.text.get(start..start + d.primary.span.len()).unwrap_or("<out of range>").to_string();
            (d.code.name().to_string(), d.severity, line, col, covered, d.help.clone().unwrap_or_default())
        })
        .collect();
    Checked { file: a.file, found }
}

impl Checked {
    /// Asserts a diagnostic with `code` at `line:col` whose label covers exactly `text`.
    #[track_caller]
    fn has(&self, code: &str, line: usize, col: usize, text: &str) -> &Self {
        let code = format!("meshwork::{code}");
        let hit = self.found.iter().any(|(c, _, l, k, t, _)| *c == code && *l == line && *k == col && t == text);
        assert!(hit, "expected {code} at {line}:{col} on {text:?}\nin:\n{}\nfound: {:#?}", self.file.text, self.found);
        self
    }

    #[track_caller]
    fn help_contains(&self, code: &str, needle: &str) -> &Self {
        let code = format!("meshwork::{code}");
        let hit = self.found.iter().any(|(c, _, _, _, _, h)| *c == code && h.contains(needle));
        assert!(hit, "expected help of {code} to contain {needle:?}; found: {:#?}", self.found);
        self
    }

    #[track_caller]
    fn warning(&self, code: &str) -> &Self {
        let code = format!("meshwork::{code}");
        assert!(
            self.found.iter().any(|(c, s, ..)| *c == code && *s == Severity::Warning),
            "no warning {code}: {:#?}",
            self.found
        );
        self
    }

    #[track_caller]
    fn count(&self, code: &str) -> usize {
        let code = format!("meshwork::{code}");
        self.found.iter().filter(|(c, ..)| *c == code).count()
    }

    #[track_caller]
    fn clean(&self) {
        assert!(self.found.is_empty(), "expected no diagnostics, found {:#?}", self.found);
    }
}

#[test]
fn base_is_clean() {
    kdl("").clean();
}

// --- syntax -------------------------------------------------------------------------------

#[test]
fn kdl_syntax_error_is_rehomed_to_the_file() {
    let c = raw("net.kdl", "topology \"t\"\noverlay \"100.127.255.192/26\nclient \"a\"\n");
    assert!(c.count("parse::syntax") >= 1, "{:#?}", c.found);
    let rendered = {
        let a = analyze(SourceFile::new("net.kdl", "topology \"t\" {\n"));
        meshwork_compiler::diagnostic::render_plain(&a.file, &a.diagnostics)
    };
    assert!(rendered.contains("net.kdl:"), "syntax errors must name the file: {rendered}");
}

#[test]
fn toml_syntax_error_points_at_the_line() {
    raw("net.toml", "topology = \"t\"\noverlay = = \"x\"\n").has("parse::syntax", 2, 11, "=");
}

#[test]
fn kdl_style_rule_key_in_toml_names_the_tagged_table() {
    raw(
        "t.toml",
        "topology = \"t\"\noverlay = \"100.127.255.192/26\"\n[firewall]\n[[firewall.allow]]\nfrom = \"any\"\n",
    )
    .has("shape::unknown-property", 4, 12, "allow")
    .help_contains("shape::unknown-property", "`[[firewall.rule]]` table with action = \"allow\"");
    raw("t.toml", "topology = \"t\"\n[[node-firewall.deny]]\nfrom = \"any\"\n")
        .help_contains("shape::unknown-property", "`[[node-firewall.rule]]` table with action = \"deny\"");
}

// --- shape ---------------------------------------------------------------------------------

#[test]
fn unknown_node_suggests_the_closest() {
    kdl("controler \"west\" id=2\n")
        .has("shape::unknown-node", 4, 1, "controler")
        .help_contains("shape::unknown-node", "`controller`");
}

#[test]
fn unknown_child_node() {
    kdl("controller \"west\" id=2 { address \"192.0.2.11\"; adress \"x\" }\n").has(
        "shape::unknown-node",
        4,
        48,
        "adress",
    );
}

#[test]
fn unknown_property_suggests_the_closest() {
    kdl("client \"a\" tagz=\"web\"\n")
        .has("shape::unknown-property", 4, 12, "tagz")
        .help_contains("shape::unknown-property", "`tags`");
}

#[test]
fn missing_required_values() {
    raw("t.kdl", "overlay \"100.127.255.192/26\"\n").has("shape::missing-value", 1, 1, "");
    kdl("controller \"west\" { address \"192.0.2.11\"; }\n").has("shape::missing-value", 4, 1, "controller");
    kdl("controller \"west\" id=2\n").has("shape::missing-value", 4, 1, "controller");
    kdl("clients \"batch\"\n").has("shape::missing-value", 4, 1, "clients");
}

#[test]
fn wrong_type() {
    kdl("controller \"west\" id=\"2\" { address \"192.0.2.11\"; }\n").has("shape::wrong-type", 4, 22, "\"2\"");
    kdl("client \"a\" revoked=\"yes\"\n").has("shape::wrong-type", 4, 20, "\"yes\"");
}

#[test]
fn duplicate_once_only_node_and_property() {
    kdl("overlay \"10.0.0.0/24\"\n").has("shape::duplicate", 4, 1, "overlay");
    kdl("client \"a\" tags=\"x\" tags=\"y\"\n").has("shape::duplicate", 4, 21, "tags");
}

#[test]
fn too_many_arguments() {
    kdl("client \"a\" \"b\"\n").has("shape::too-many-arguments", 4, 12, "\"b\"");
}

// --- values --------------------------------------------------------------------------------

#[test]
fn invalid_ip() {
    kdl("client \"a\" ip=\"100.127.255.300\"\n").has("value::invalid-ip", 4, 15, "\"100.127.255.300\"");
}

#[test]
fn invalid_cidr_and_host_bits() {
    raw("t.kdl", "topology \"t\"\noverlay \"100.127.255.193/26\"\n")
        .has("value::invalid-cidr", 2, 9, "\"100.127.255.193/26\"")
        .help_contains("value::invalid-cidr", "100.127.255.192/26");
    kdl("controller \"west\" id=2 { address \"192.0.2.11\"; lan \"10.20.0.0/33\"; }\n").has(
        "value::invalid-cidr",
        4,
        52,
        "\"10.20.0.0/33\"",
    );
}

#[test]
fn ports_out_of_range_or_backwards() {
    kdl("client \"a\"\nfirewall { allow from=\"a\" to=\"any\" proto=\"tcp\" port=70000; }\n").has(
        "value::invalid-port",
        5,
        53,
        "70000",
    );
    kdl("client \"a\"\nfirewall { allow from=\"a\" to=\"any\" proto=\"tcp\" port=\"90-80\"; }\n")
        .has("value::invalid-port", 5, 53, "\"90-80\"")
        .help_contains("value::invalid-port", "80-90");
    kdl("fwset \"p\" type=\"port\" { port 0; }\n").has("value::invalid-port", 4, 30, "0");
}

#[test]
fn numbers_out_of_range() {
    kdl("controller \"west\" id=0 { address \"192.0.2.11\"; }\n").has("value::out-of-range", 4, 22, "0");
    kdl("controller \"west\" id=2 { address \"192.0.2.11\"; engines 0 subnet=\"198.51.100.0/28\"; }\n").has(
        "value::out-of-range",
        4,
        56,
        "0",
    );
}

#[test]
fn names_must_be_safe_file_names() {
    kdl("client \"../etc/passwd\"\n").has("value::invalid-name", 4, 8, "\"../etc/passwd\"");
}

#[test]
fn invalid_choice() {
    kdl("firewall policy=\"dropp\"\n")
        .has("value::invalid", 4, 17, "\"dropp\"")
        .help_contains("value::invalid", "\"drop\"");
}

// --- names and ids -------------------------------------------------------------------------

#[test]
fn duplicate_client_names() {
    kdl("client \"a\"\nclient \"a\"\n").has("name::duplicate", 5, 8, "\"a\"");
}

#[test]
fn client_named_like_a_controller_or_engine() {
    kdl("client \"east\"\n").has("name::duplicate", 4, 8, "\"east\"");
    kdl("controller \"west\" id=2 { address \"192.0.2.11\"; cores 4; engines 2 subnet=\"198.51.100.0/28\"; }\nclient \"west-e2\"\n")
        .has("name::duplicate", 5, 8, "\"west-e2\"");
}

#[test]
fn client_named_like_a_peering_identity_or_a_key_file() {
    kdl("client \"peer-east\"\n").has("name::duplicate", 4, 8, "\"peer-east\"");
    kdl("client \"ca\"\n").has("value::invalid-name", 4, 8, "\"ca\"");
}

#[test]
fn duplicate_fwset_and_controller_names() {
    kdl("fwset \"s\" type=\"net\"\nfwset \"s\" type=\"port\"\n").has("name::duplicate", 5, 7, "\"s\"");
    kdl("controller \"east\" id=2 { address \"192.0.2.11\"; }\n").has("name::duplicate", 4, 12, "\"east\"");
}

#[test]
fn duplicate_controller_ids() {
    kdl("controller \"west\" id=1 { address \"192.0.2.11\"; }\n").has("controller::duplicate-id", 4, 22, "1");
}

#[test]
fn a_root_is_required() {
    raw("t.kdl", "topology \"t\"\noverlay \"10.0.0.0/24\"\ncontroller \"a\" id=2 { address \"192.0.2.1\"; }\n").has(
        "controller::no-root",
        3,
        19,
        "2",
    );
}

#[test]
fn license_caps() {
    kdl("license controllers=1\ncontroller \"west\" id=2 { address \"192.0.2.11\"; }\n").has(
        "license::exceeded",
        5,
        12,
        "\"west\"",
    );
    kdl("license clients=1\nclient \"a\"\nclient \"b\"\n").has("license::exceeded", 6, 8, "\"b\"");
}

// --- allocation ----------------------------------------------------------------------------

#[test]
fn client_ip_outside_the_overlay() {
    kdl("client \"a\" ip=\"10.0.0.1\"\n").has("alloc::outside-overlay", 4, 15, "\"10.0.0.1\"");
    kdl("client \"a\" ip=\"100.127.255.255\"\n").has("alloc::outside-overlay", 4, 15, "\"100.127.255.255\"");
}

#[test]
fn client_ip_collisions() {
    kdl("client \"a\" ip=\"100.127.255.200\"\nclient \"b\" ip=\"100.127.255.200\"\n").has(
        "alloc::collision",
        5,
        15,
        "\"100.127.255.200\"",
    );
    // .253 is controller id 1's address, .254 the shared address.
    kdl("client \"a\" ip=\"100.127.255.253\"\n").has("alloc::collision", 4, 15, "\"100.127.255.253\"");
    kdl("client \"a\" ip=\"100.127.255.254\"\n").has("alloc::collision", 4, 15, "\"100.127.255.254\"");
}

#[test]
fn client_ip_colliding_with_an_engine() {
    // One controller (block of 1: .253), so engine 1 takes .252.
    let t = "controller \"east\" id=1 { address \"192.0.2.10\"; cores 4; engines 1 subnet=\"198.51.100.0/28\"; }\n";
    raw("t.kdl", &format!("topology \"t\"\noverlay \"100.127.255.192/26\"\n{t}client \"a\" ip=\"100.127.255.252\"\n"))
        .has("alloc::collision", 4, 15, "\"100.127.255.252\"");
}

#[test]
fn overlay_too_small() {
    raw("t.kdl", "topology \"t\"\noverlay \"10.0.0.0/29\"\ncontroller \"a\" id=1 { address \"192.0.2.1\"; }\nclients \"c\" count=5\n")
        .has("alloc::overlay-too-small", 2, 9, "\"10.0.0.0/29\"")
        .help_contains("alloc::overlay-too-small", "a /28 would do");
}

// --- networks ------------------------------------------------------------------------------

#[test]
fn plugin_subnets_overlapping_each_other() {
    let t = "controller \"west\" id=2 { address \"192.0.2.11\"; engines 1 subnet=\"198.51.100.0/28\"; }\n\
             controller \"north\" id=3 { address \"192.0.2.12\"; engines 1 subnet=\"198.51.100.8/29\"; }\n";
    kdl(t).has("network::overlap", 5, 66, "\"198.51.100.8/29\"");
}

#[test]
fn plugin_subnet_overlapping_overlay_lan_or_underlay() {
    kdl("controller \"west\" id=2 { address \"192.0.2.11\"; engines 1 subnet=\"100.127.255.0/24\"; }\n").has(
        "network::overlap",
        4,
        65,
        "\"100.127.255.0/24\"",
    );
    kdl("controller \"west\" id=2 { address \"192.0.2.11\"; lan \"10.0.0.0/8\"; engines 1 subnet=\"10.1.0.0/28\"; }\n")
        .has("network::overlap", 4, 83, "\"10.1.0.0/28\"");
    kdl("controller \"west\" id=2 { address \"192.0.2.11\"; engines 1 subnet=\"192.0.2.0/28\"; }\n").has(
        "network::overlap",
        4,
        65,
        "\"192.0.2.0/28\"",
    );
}

#[test]
fn overlapping_lans() {
    kdl("controller \"west\" id=2 { address \"192.0.2.11\"; lan \"10.0.0.0/16\"; }\ncontroller \"north\" id=3 { address \"192.0.2.12\"; lan \"10.0.128.0/17\"; }\n")
        .has("network::overlap", 5, 53, "\"10.0.128.0/17\"");
}

#[test]
fn plugin_subnet_too_small() {
    kdl("controller \"west\" id=2 { address \"192.0.2.11\"; engines 3 subnet=\"198.51.100.0/30\"; }\n")
        .has("engines::subnet-too-small", 4, 65, "\"198.51.100.0/30\"")
        .help_contains("engines::subnet-too-small", "/29");
}

#[test]
fn engines_at_or_beyond_cores_warn_with_the_hint() {
    let c =
        kdl("controller \"west\" id=2 { address \"192.0.2.11\"; cores 2; engines 2 subnet=\"198.51.100.0/28\"; }\n");
    c.has("engines::exceed-cores", 4, 65, "2")
        .warning("engines::exceed-cores")
        .help_contains("engines::exceed-cores", "use 1 engine");
}

// --- peering -------------------------------------------------------------------------------

const MESH: &str =
    "controller \"west\" id=2 { address \"192.0.2.11\"; }\ncontroller \"north\" id=3 { address \"192.0.2.12\"; }\n";

#[test]
fn link_to_unknown_controller() {
    kdl(&format!("{MESH}peering {{ link \"east\" \"wset\"; link \"west\" \"north\"; link \"east\" \"north\"; }}\n"))
        .has("peering::unknown-controller", 6, 23, "\"wset\"")
        .help_contains("peering::unknown-controller", "`west`");
}

#[test]
fn link_to_itself_or_twice() {
    kdl(&format!("{MESH}peering {{ link \"east\" \"east\"; }}\n")).has("peering::invalid-link", 6, 23, "\"east\"");
    kdl(&format!("{MESH}peering {{ link \"east\" \"west\"; link \"west\" \"east\"; link \"west\" \"north\"; link \"north\" \"east\"; }}\n"))
        .has("peering::invalid-link", 6, 31, "link \"west\" \"east\"");
}

#[test]
fn disconnected_mesh() {
    kdl(&format!("{MESH}peering {{ link \"east\" \"west\"; }}\n")).has("peering::disconnected", 5, 12, "\"north\"");
}

#[test]
fn single_points_of_failure_warn() {
    let c = kdl(&format!("{MESH}peering {{ link \"east\" \"west\" cost=1; link \"west\" \"north\" cost=1; }}\n"));
    c.has("peering::single-point-of-failure", 4, 12, "\"west\"").warning("peering::single-point-of-failure");
    c.has("peering::single-point-of-failure", 6, 11, "link \"east\" \"west\" cost=1");
    // A ring has none.
    kdl(&format!("{MESH}peering {{ link \"east\" \"west\"; link \"west\" \"north\"; link \"north\" \"east\"; }}\n"))
        .clean();
}

// --- references ----------------------------------------------------------------------------

#[test]
fn rule_naming_unknown_things() {
    let c = kdl("client \"web-1\" tags=\"web\"\nfwset \"office\" type=\"net\" { net \"203.0.113.0/24\"; }\n\
         firewall {\n  allow from=\"tag:wb\" to=\"web-2\"\n  allow from=\"fwset:ofice\" to=\"controller:west\"\n}\n");
    c.has("reference::unknown", 7, 14, "\"tag:wb\"").help_contains("reference::unknown", "`web`");
    c.has("reference::unknown", 7, 26, "\"web-2\"");
    c.has("reference::unknown", 8, 14, "\"fwset:ofice\"").help_contains("reference::unknown", "`office`");
    c.has("reference::unknown", 8, 31, "\"controller:west\"");
}

#[test]
fn expect_naming_unknown_client() {
    kdl("client \"a\"\nexpect from=\"a\" to=\"b\" verdict=\"allow\"\n").has("reference::unknown", 5, 20, "\"b\"");
}

#[test]
fn fwset_of_the_wrong_type() {
    let sets = "client \"a\"\nfwset \"ports\" type=\"port\" { port 80; }\nfwset \"nets\" type=\"net\" { net \"10.9.0.0/16\"; }\n";
    kdl(&format!("{sets}firewall {{ allow from=\"fwset:ports\" to=\"a\"; }}\n")).has(
        "reference::fwset-type",
        7,
        23,
        "\"fwset:ports\"",
    );
    kdl(&format!("{sets}firewall {{ allow from=\"a\" to=\"a\" proto=\"tcp\" port=\"fwset:nets\"; }}\n")).has(
        "reference::fwset-type",
        7,
        51,
        "\"fwset:nets\"",
    );
    kdl("fwset \"p\" type=\"port\" { net \"10.0.0.0/8\"; }\n").has("reference::fwset-type", 4, 29, "\"10.0.0.0/8\"");
}

#[test]
fn port_needs_tcp_or_udp() {
    kdl("client \"a\"\nfirewall { allow from=\"a\" to=\"any\" proto=\"icmp\" port=22; }\n").has(
        "firewall::port-needs-protocol",
        5,
        54,
        "22",
    );
    kdl("client \"a\"\nfirewall { allow from=\"a\" to=\"any\" port=22; }\n").has(
        "firewall::port-needs-protocol",
        5,
        41,
        "22",
    );
}

// --- expect --------------------------------------------------------------------------------

#[test]
fn broken_expectation_shows_the_deciding_rule() {
    let c =
        kdl("client \"a\"\nclient \"b\"\nfirewall policy=\"accept\" {\n  deny from=\"a\" to=\"b\" proto=\"tcp\"\n}\n\
         expect \"a to b\" from=\"a\" to=\"b\" proto=\"tcp\" port=80 verdict=\"allow\"\n");
    c.has("expect::failed", 9, 61, "\"allow\"").help_contains("expect::failed", "rule 1");
    let a = analyze(SourceFile::new(
        "t.kdl",
        format!(
            "{BASE}client \"a\"\nclient \"b\"\nfirewall policy=\"accept\" {{\n  deny from=\"a\" to=\"b\" proto=\"tcp\"\n}}\nexpect from=\"a\" to=\"b\" proto=\"tcp\" port=80 verdict=\"allow\"\n"
        ),
    ));
    let d = a.diagnostics.iter().find(|d| d.code.name() == "meshwork::expect::failed").expect("expect::failed");
    let (line, col) = a.file.line_col(d.secondary[0].span.offset());
    assert_eq!((line, col), (7, 3), "the deciding rule is labelled where it is written");
}

#[test]
fn broken_expectation_decided_by_the_policy() {
    kdl("client \"a\"\nclient \"b\"\nfirewall policy=\"drop\"\nexpect from=\"a\" to=\"b\" proto=\"icmp\" verdict=\"allow\"\n")
        .has("expect::failed", 7, 45, "\"allow\"")
        .help_contains("expect::failed", "policy decides: drop");
}

// --- TOML gets the same diagnostics at TOML places -----------------------------------------

#[test]
fn toml_unknown_key_and_bad_value() {
    let text = "topology = \"t\"\noverlay = \"100.127.255.192/26\"\n\n[[controller]]\nname = \"east\"\nid = 1\naddress = \"192.0.2.10\"\nengins = 2\n\n[[client]]\nname = \"a\"\nip = \"1.2.3\"\n";
    raw("t.toml", text)
        .has("shape::unknown-property", 8, 1, "engins")
        .help_contains("shape::unknown-property", "`engines`")
        .has("value::invalid-ip", 12, 6, "\"1.2.3\"");
}

#[test]
fn toml_rule_without_action() {
    let text = "topology = \"t\"\noverlay = \"100.127.255.192/26\"\n[[controller]]\nname = \"east\"\nid = 1\naddress = \"192.0.2.10\"\n[[firewall.rule]]\nfrom = \"any\"\nto = \"any\"\n";
    let c = raw("t.toml", text);
    assert_eq!(c.count("shape::missing-value"), 1, "{:#?}", c.found);
}

// --- all at once ---------------------------------------------------------------------------

#[test]
fn every_problem_in_one_run() {
    let c = kdl("client \"a\" ip=\"10.0.0.1\"\nclient \"a\"\ncontroller \"west\" id=1 { address \"192.0.2.11\"; }\n\
         firewall policy=\"nope\" { allow from=\"tag:x\" to=\"any\"; }\nexpect from=\"zz\" to=\"a\" verdict=\"drop\"\n");
    for code in [
        "alloc::outside-overlay",
        "name::duplicate",
        "controller::duplicate-id",
        "value::invalid",
        "reference::unknown",
    ] {
        assert!(c.count(code) >= 1, "missing {code} in {:#?}", c.found);
    }
}

// --- VXLAN ---------------------------------------------------------------------------------

/// Three nodes in two PDCs and one rule, after BASE: the tests' own lines start at line 8.
const NODES: &str = "node \"cn-1\" pdc=\"prague\" admin=\"10.100.0.11/24\" external=\"198.18.0.11/24\"\n\
node \"cn-2\" pdc=\"prague\" admin=\"10.100.0.12/24\" external=\"198.18.0.12/24\"\n\
node \"cn-3\" pdc=\"brno\" admin=\"10.100.1.13/24\" external=\"198.18.1.13/24\"\n\
overlay-rule \"tenants\" port=4790\n";

fn vx(extra: &str) -> Checked {
    kdl(&format!("{NODES}{extra}"))
}

#[test]
fn vxlan_base_is_clean_and_tenants_may_reuse_addresses() {
    vx("vxlan \"a\" rule=\"tenants\" vni=10 subnet=\"10.44.0.0/24\" { vnic \"a1\" node=\"cn-1\" ip=\"10.44.0.5\"; vnic \"a2\" node=\"cn-3\"; }\n\
        vxlan \"b\" rule=\"tenants\" vni=11 subnet=\"10.44.0.0/24\" { vnic \"b1\" node=\"cn-2\" ip=\"10.44.0.5\"; vnic \"b2\" node=\"cn-3\"; }\n")
        .clean();
}

#[test]
fn a_file_of_nodes_alone_needs_no_overlay() {
    raw("t.kdl", &format!("topology \"t\"\n{NODES}")).clean();
}

#[test]
fn malformed_mac() {
    vx("vxlan \"a\" rule=\"tenants\" vni=10 subnet=\"10.44.0.0/24\" { vnic \"a1\" node=\"cn-1\" mac=\"02:00:zz:00:00:01\"; }\n")
        .has("value::invalid-mac", 8, 83, "\"02:00:zz:00:00:01\"");
}

#[test]
fn multicast_mac() {
    vx("vxlan \"a\" rule=\"tenants\" vni=10 subnet=\"10.44.0.0/24\" { vnic \"a1\" node=\"cn-1\" mac=\"01:00:5e:00:00:01\"; }\n")
        .has("vxlan::multicast-mac", 8, 83, "\"01:00:5e:00:00:01\"");
}

#[test]
fn mac_used_twice_anywhere() {
    vx("vxlan \"a\" rule=\"tenants\" vni=10 subnet=\"10.44.0.0/24\" {\n vnic \"a1\" node=\"cn-1\" mac=\"02:00:00:00:00:01\"\n}\n\
        vxlan \"b\" rule=\"tenants\" vni=11 subnet=\"10.45.0.0/24\" {\n vnic \"b1\" node=\"cn-2\" mac=\"02:00:00:00:00:01\"\n}\n")
        .has("vxlan::duplicate-mac", 12, 28, "\"02:00:00:00:00:01\"")
        .help_contains("vxlan::duplicate-mac", "never shifted");
}

#[test]
fn rule_name_smartos_cannot_take() {
    vx("overlay-rule \"tenants2\"\n").has("vxlan::rule-name", 8, 14, "\"tenants2\"");
}

#[test]
fn vni_out_of_range() {
    vx("vxlan \"a\" rule=\"tenants\" vni=16777216 subnet=\"10.44.0.0/24\"\n").has(
        "vxlan::vni-range",
        8,
        30,
        "16777216",
    );
    vx("vxlan \"a\" rule=\"tenants\" vni=0 subnet=\"10.44.0.0/24\"\n").has("vxlan::vni-range", 8, 30, "0");
}

#[test]
fn vni_used_twice_on_one_rule() {
    vx("vxlan \"a\" rule=\"tenants\" vni=10 subnet=\"10.44.0.0/24\"\nvxlan \"b\" rule=\"tenants\" vni=10 subnet=\"10.45.0.0/24\"\n")
        .has("vxlan::duplicate-vni", 9, 30, "10");
    // The same VNI on another rule is another overlay.
    vx("overlay-rule \"other\"\nvxlan \"a\" rule=\"tenants\" vni=10 subnet=\"10.44.0.0/24\"\nvxlan \"b\" rule=\"other\" vni=10 subnet=\"10.45.0.0/24\"\n")
        .clean();
}

#[test]
fn rule_ports_clash() {
    vx("overlay-rule \"other\" port=1194\n").has("vxlan::port-clash", 8, 27, "1194");
    vx("overlay-rule \"other\" port=1196\n").has("vxlan::port-clash", 8, 27, "1196");
    vx("overlay-rule \"other\" port=4790\n").has("vxlan::port-clash", 8, 27, "4790");
}

#[test]
fn vnic_on_unknown_node_or_rule() {
    vx("vxlan \"a\" rule=\"tenant\" vni=10 subnet=\"10.44.0.0/24\" { vnic \"a1\" node=\"cn-4\"; }\n")
        .has("vxlan::unknown-rule", 8, 16, "\"tenant\"")
        .help_contains("vxlan::unknown-rule", "`tenants`")
        .has("vxlan::unknown-node", 8, 71, "\"cn-4\"")
        .help_contains("vxlan::unknown-node", "did you mean");
}

#[test]
fn vnic_address_outside_subnet_or_taken_twice() {
    vx("vxlan \"a\" rule=\"tenants\" vni=10 subnet=\"10.44.0.0/24\" {\n vnic \"a1\" node=\"cn-1\" ip=\"10.45.0.1\"\n vnic \"a2\" node=\"cn-1\" ip=\"10.44.0.255\"\n}\n")
        .has("vxlan::outside-subnet", 9, 27, "\"10.45.0.1\"")
        .has("vxlan::outside-subnet", 10, 27, "\"10.44.0.255\"")
        .help_contains("vxlan::outside-subnet", "10.44.0.1 to 10.44.0.254");
    vx("vxlan \"a\" rule=\"tenants\" vni=10 subnet=\"10.44.0.0/24\" {\n vnic \"a1\" node=\"cn-1\" ip=\"10.44.0.9\"\n vnic \"a2\" node=\"cn-2\" ip=\"10.44.0.9\"\n}\n")
        .has("vxlan::duplicate-ip", 10, 27, "\"10.44.0.9\"");
}

#[test]
fn overlay_subnet_full() {
    vx("vxlan \"a\" rule=\"tenants\" vni=10 subnet=\"10.44.0.0/30\" {\n vnic \"a1\" node=\"cn-1\"\n vnic \"a2\" node=\"cn-1\"\n vnic \"a3\" node=\"cn-2\"\n}\n")
        .has("vxlan::subnet-full", 11, 7, "\"a3\"");
}

#[test]
fn node_without_external_across_pdcs() {
    vx("node \"cn-4\" pdc=\"brno\" admin=\"10.100.1.14/24\"\n\
        vxlan \"a\" rule=\"tenants\" vni=10 subnet=\"10.44.0.0/24\" { vnic \"a1\" node=\"cn-1\"; vnic \"a2\" node=\"cn-4\"; }\n")
        .has("vxlan::missing-external", 8, 6, "\"cn-4\"");
}

#[test]
fn listen_admin_rule_spanning_pdcs() {
    vx("overlay-rule \"backend\" listen=\"admin\"\n\
        vxlan \"a\" rule=\"backend\" vni=10 subnet=\"10.44.0.0/24\" { vnic \"a1\" node=\"cn-1\"; vnic \"a2\" node=\"cn-3\"; }\n")
        .has("vxlan::admin-rule-spans-pdcs", 8, 31, "\"admin\"");
    // Within one PDC it is what listen="admin" is for.
    vx("overlay-rule \"backend\" listen=\"admin\"\n\
        vxlan \"a\" rule=\"backend\" vni=10 subnet=\"10.44.0.0/24\" { vnic \"a1\" node=\"cn-1\"; vnic \"a2\" node=\"cn-2\"; }\n")
        .clean();
}

#[test]
fn mtu_that_does_not_fit_the_worst_path() {
    let overlay = "vxlan \"a\" rule=\"big\" vni=10 subnet=\"10.44.0.0/24\" vlan=7 { vnic \"a1\" node=\"cn-1\"; vnic \"a2\" node=\"cn-3\"; }\n";
    // The kernel data path: the underlay is the limit.
    vx(&format!("overlay-rule \"big\" mtu=1400\n{overlay}ipsec datapath=\"kernel\"\n"))
        .has("vxlan::mtu", 8, 24, "1400")
        .help_contains(
            "vxlan::mtu",
            "1400 + 50 (VXLAN) + 4 (VLAN tag) + 62 (IPsec: outer IPv4 20, UDP 8, ESP 34) + 0 (ESP padding) = 1516 > 1500",
        )
        .help_contains("vxlan::mtu", "the largest that fits is 1384");
    // The userspace data path (and auto, which may pick it): libipsec's 1400-byte TUN is.
    vx(&format!("overlay-rule \"big\" mtu=1380\n{overlay}ipsec datapath=\"userspace\"\n"))
        .has("vxlan::mtu", 8, 24, "1380")
        .help_contains(
            "vxlan::mtu",
            "1380 + 50 (VXLAN) + 4 (VLAN tag) = 1434 > 1400 (the userspace IPsec data path's TUN device)",
        )
        .help_contains("vxlan::mtu", "the largest that fits is 1346");
    vx(&format!("overlay-rule \"big\" mtu=1346\n{overlay}")).clean();
    // 1400 fits a path in clear.
    vx("overlay-rule \"big\" mtu=1400\n\
        vxlan \"a\" rule=\"big\" vni=10 subnet=\"10.44.0.0/24\" vlan=7 { vnic \"a1\" node=\"cn-1\"; vnic \"a2\" node=\"cn-2\"; }\n")
        .clean();
}

#[test]
fn admin_overlay_requirements() {
    vx("admin-overlay subnet=\"10.99.0.0/29\"\n").has("vxlan::admin-overlay", 8, 22, "\"10.99.0.0/29\"");
    vx("admin-overlay subnet=\"10.99.0.0/24\"\noverlay-rule \"adminoverlay\"\n").has(
        "vxlan::admin-overlay",
        9,
        14,
        "\"adminoverlay\"",
    );
    vx("admin-overlay subnet=\"10.99.0.0/24\"\nvxlan \"x\" rule=\"adminoverlay\" vni=9 subnet=\"10.44.0.0/24\"\n").has(
        "vxlan::admin-overlay",
        9,
        16,
        "\"adminoverlay\"",
    );
    vx("admin-overlay subnet=\"10.99.0.0/24\"\n").clean();
}

#[test]
fn node_address_taken_twice() {
    vx("node \"cn-4\" pdc=\"brno\" admin=\"10.100.1.13/24\" external=\"198.18.1.14/24\"\n").has(
        "vxlan::duplicate-address",
        8,
        30,
        "\"10.100.1.13/24\"",
    );
}

#[test]
fn what_shares_a_routing_table_must_not_overlap() {
    vx("admin-overlay subnet=\"10.100.0.0/16\"\n").has("network::overlap", 8, 22, "\"10.100.0.0/16\"");
    vx("ipsec vtep-pool=\"198.18.0.0/23\"\n").has("network::overlap", 8, 17, "\"198.18.0.0/23\"");
    vx("node \"cn-4\" pdc=\"brno\" admin=\"100.127.255.200\" external=\"198.18.1.14/24\"\n").has(
        "network::overlap",
        8,
        30,
        "\"100.127.255.200\"",
    );
}

#[test]
fn nodes_overlays_and_vnics_share_the_name_space() {
    vx("vxlan \"a\" rule=\"tenants\" vni=10 subnet=\"10.44.0.0/24\" { vnic \"cn-1\" node=\"cn-1\"; }\n").has(
        "name::duplicate",
        8,
        62,
        "\"cn-1\"",
    );
    vx("vxlan \"east\" rule=\"tenants\" vni=10 subnet=\"10.44.0.0/24\"\n").has("name::duplicate", 8, 7, "\"east\"");
}

#[test]
fn vnics_are_expect_endpoints() {
    vx("vxlan \"a\" rule=\"tenants\" vni=10 subnet=\"10.44.0.0/24\" { vnic \"a1\" node=\"cn-1\"; vnic \"a2\" node=\"cn-3\"; }\n\
        expect from=\"a1\" to=\"a2\" proto=\"icmp\" verdict=\"allow\"\nexpect from=\"a1\" to=\"a3\" verdict=\"allow\"\n")
        .has("reference::unknown", 10, 21, "\"a3\"")
        .help_contains("reference::unknown", "`a1`");
}

#[test]
fn vnic_expectations_follow_the_overlays_not_the_addresses() {
    let overlays = "vxlan \"a\" rule=\"tenants\" vni=10 subnet=\"10.44.0.0/24\" { vnic \"a1\" node=\"cn-1\"; vnic \"a2\" node=\"cn-3\"; }\n\
                    vxlan \"b\" rule=\"tenants\" vni=11 subnet=\"10.44.0.0/24\" { vnic \"b1\" node=\"cn-2\"; }\n";
    vx(&format!("{overlays}expect from=\"a1\" to=\"b1\" proto=\"icmp\" verdict=\"allow\"\n"))
        .has("expect::failed", 10, 47, "\"allow\"")
        .help_contains("expect::failed", "isolated though they share a subnet");
    vx(&format!("{overlays}expect from=\"a1\" to=\"a2\" verdict=\"drop\"\n"))
        .has("expect::failed", 10, 34, "\"drop\"")
        .help_contains("expect::failed", "inside the IPsec tunnel");
    vx(&format!(
        "{overlays}expect from=\"a1\" to=\"a2\" verdict=\"allow\"\nexpect from=\"a1\" to=\"b1\" verdict=\"drop\"\n"
    ))
    .clean();
}

#[test]
fn node_firewall_sources() {
    vx("node-firewall policy=\"drop\" { allow from=\"tag:web\"; allow from=\"fwset:nope\"; allow from=\"any\" port=22; }\n")
        .has("reference::unknown", 8, 42, "\"tag:web\"")
        .has("reference::unknown", 8, 64, "\"fwset:nope\"")
        .has("firewall::port-needs-protocol", 8, 100, "22");
}

// --- lock file -----------------------------------------------------------------------------

/// Code, severity, file, line and column of each diagnostic of `BASE + extra` with `lock`.
fn with_lock(extra: &str, lock: &str, locked: bool) -> Vec<(String, Severity, String, usize, usize)> {
    let lock = meshwork_compiler::LockInput::new(Some(SourceFile::new("t.lock", lock)), locked);
    let a = meshwork_compiler::analyze_with(SourceFile::new("t.kdl", format!("{BASE}{extra}")), lock);
    a.diagnostics
        .iter()
        .map(|d| {
            let file = d.file_or(&a.file);
            let (line, col) = file.line_col(d.primary.span.offset());
            (d.code.name()["meshwork::".len()..].to_string(), d.severity, file.name.clone(), line, col)
        })
        .collect()
}

#[track_caller]
fn lock_has(
    found: &[(String, Severity, String, usize, usize)],
    code: &str,
    severity: Severity,
    file: &str,
    at: (usize, usize),
) {
    let hit = found.iter().any(|(c, s, f, l, k)| c == code && *s == severity && f == file && (*l, *k) == at);
    assert!(hit, "expected {code} at {file}:{}:{}, found {found:#?}", at.0, at.1);
}

#[test]
fn lock_file_syntax_and_content() {
    lock_has(&with_lock("", "version = 1\n[clients\n", false), "lock::syntax", Severity::Error, "t.lock", (2, 9));
    let bad = "version = 1\n[clients]\na = \"100.127.255.999\"\n";
    lock_has(&with_lock("client \"a\"\n", bad, false), "lock::invalid", Severity::Error, "t.lock", (3, 5));
}

#[test]
fn lock_entries_that_cannot_be_kept_or_would_change() {
    // a is locked to .200, which b now takes with ip=: a moves (a warning on a), and with
    // --locked that move is an error.
    let lock = "version = 1\n[clients]\na = \"100.127.255.200\"\n";
    let extra = "client \"a\"\nclient \"b\" ip=\"100.127.255.200\"\n";
    let found = with_lock(extra, lock, false);
    lock_has(&found, "lock::relocated", Severity::Warning, "t.kdl", (4, 8));
    let found = with_lock(extra, lock, true);
    lock_has(&found, "lock::outdated", Severity::Error, "t.kdl", (4, 8));
    lock_has(&found, "lock::outdated", Severity::Error, "t.kdl", (5, 8));
}

/// Every code meshwork can emit is exercised by a test in this file.
#[test]
fn every_code_has_a_test_here() {
    let src = include_str!("diagnostics.rs");
    for code in meshwork_compiler::codes::Code::ALL {
        let short = &code.name()["meshwork::".len()..];
        assert!(src.contains(&format!("\"{short}\"")), "no test names {}", code.name());
        assert!(!code.explanation().is_empty() && !code.summary().is_empty());
    }
}

/// Regression (issue 12): 1,250 levels of `a{` overflowed the stack inside the KDL parser.
/// The depth is checked before parsing; the mark is on the brace one level too deep.
#[test]
fn nesting_too_deep_is_refused_before_parsing() {
    let deep = |n: usize| format!("{BASE}{}{}\n", "a{".repeat(n), "}".repeat(n));
    raw("t.kdl", &deep(1250)).has("parse::too-deep", 4, 66, "{");
    raw("t.kdl", &format!("{BASE}{}{}\n", "/*".repeat(40), "*/".repeat(40))).has("parse::too-deep", 4, 65, "/*");
    // At the limit the file parses (and gets the usual complaints about unknown nodes).
    let at_limit = raw("t.kdl", &deep(meshwork_compiler::syntax::depth::MAX_DEPTH));
    assert_eq!(at_limit.count("parse::too-deep"), 0);
}

/// Regression (issue 12): a file that is not UTF-8 was an I/O error without line or column.
#[test]
fn invalid_utf8_is_a_located_diagnostic() {
    let mut bytes = BASE.as_bytes().to_vec();
    bytes.extend_from_slice(b"client \"caf\xe9\"\n");
    let a = meshwork_compiler::analyze_bytes("t.kdl", bytes);
    assert_eq!(a.diagnostics.len(), 1);
    let json = meshwork_compiler::diagnostic::JsonDiagnostic::new(&a.file, &a.diagnostics[0]);
    assert_eq!((&json.code.name()["meshwork::".len()..], json.line, json.column), ("parse::encoding", 4, 12));
    assert!(json.message.contains("0xe9"), "{}", json.message);
    let text = meshwork_compiler::diagnostic::render_plain(&a.file, &a.diagnostics);
    assert!(text.contains("t.kdl:4:12"), "{text}");
}

/// The vendored kdl reads `//` comments as one run up to the first newline character (a 10 MB
/// comment took 9 s); every KDL newline still ends one, and what follows is read.
#[test]
fn line_comments_end_at_every_kdl_newline() {
    for nl in ["\n", "\r\n", "\r", "\u{85}", "\u{b}", "\u{c}", "\u{2028}", "\u{2029}"] {
        let c = raw("t.kdl", &format!("{BASE}// a comment {{ \"{nl}bogus 1\n// {}\n", "x".repeat(100_000)));
        assert_eq!(c.count("parse::syntax"), 0, "{nl:?}: {:#?}", c.found);
        assert_eq!(c.count("shape::unknown-node"), 1, "{nl:?}: {:#?}", c.found);
    }
}
