//! The peering mesh as Graphviz DOT (`meshwork graph`): one node per controller (name, id,
//! engine count), one edge per tunnel (its cost). Single points of failure, the controllers and
//! links whose loss would split the mesh, are drawn red and bold and say so in their label and
//! tooltip. Compute nodes are drawn in one cluster per PDC with the IPsec mesh between PDCs as
//! dashed edges. The output is deterministic: controllers by id, tunnels by (low id, high id),
//! nodes by PDC then declaration, pairs by name.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::network::Network;

fn count(n: usize, noun: &str) -> String {
    crate::plural::count(n as u64, noun)
}

const SPOF: &str = "single point of failure";
const SPOF_STYLE: &str = "color=red, fontcolor=red, penwidth=2";

/// Escapes `"` and `\` for a DOT quoted string; line breaks become spaces, so a name can never
/// inject attributes or break the output's line structure.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '"' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", escape(s))
}

/// Joins label lines with DOT's `\n` line break, each line escaped.
fn label(lines: &[String]) -> String {
    let inner: Vec<String> = lines.iter().map(|l| escape(l)).collect();
    format!("\"{}\"", inner.join("\\n"))
}

pub fn dot(net: &Network) -> String {
    let cut_vertices: BTreeSet<String> = net.mesh.articulation_points().into_iter().collect();
    let cut_edges: BTreeSet<(String, String)> = net.mesh.bridges().into_iter().collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "// meshwork: peering mesh of topology {} ({}, {})",
        net.name.replace('\n', " "),
        count(net.controllers.len(), "controller"),
        count(net.tunnels.len(), "tunnel")
    );
    let _ = writeln!(s, "// Red and bold: {SPOF} (a controller or tunnel whose loss splits the mesh).");
    let _ = writeln!(s, "graph {} {{", quote(&net.name));
    let _ = writeln!(s, "    graph [label={}, labelloc=t];", quote(&format!("peering mesh of topology {}", net.name)));
    s.push_str("    node [shape=box, style=rounded];\n\n");
    for c in &net.controllers {
        let engines = c.engines.as_ref().map_or(0, |e| e.engines.len());
        let clients = primary_clients(net, &c.name);
        let mut lines = vec![
            c.name.clone(),
            format!("id {}", c.id),
            format!("overlay {}", c.overlay_ip),
            count(engines, "engine"),
            format!("{} (primary)", count(clients, "client")),
        ];
        let spof = cut_vertices.contains(&c.name);
        if spof {
            lines.push(SPOF.to_string());
        }
        let _ = write!(s, "    {} [label={}", quote(&c.name), label(&lines));
        if spof {
            let tip = format!("{SPOF}: losing {} splits the mesh", c.name);
            let _ = write!(s, ", {SPOF_STYLE}, style=\"rounded,bold\", tooltip={}", quote(&tip));
        } else {
            let _ = write!(s, ", tooltip={}", quote(&format!("{} (id {}) at {}", c.name, c.id, c.address)));
        }
        s.push_str("];\n");
        for lan in &c.lans {
            let id = quote(&format!("lan:{}:{lan}", c.name));
            let _ = writeln!(s, "    {id} [label={}, shape=note];", quote(&format!("LAN {lan}")));
            let _ = writeln!(s, "    {} -- {id} [style=dotted];", quote(&c.name));
        }
    }
    if !net.tunnels.is_empty() {
        s.push('\n');
    }
    for t in &net.tunnels {
        let spof = cut_edges.contains(&(t.low.clone(), t.high.clone()));
        let mut lines = vec![format!("cost {}", t.cost)];
        if spof {
            lines.push(SPOF.to_string());
        }
        let _ = write!(s, "    {} -- {} [label={}", quote(&t.low), quote(&t.high), label(&lines));
        if spof {
            let tip = format!("{SPOF}: losing the tunnel {} - {} splits the mesh", t.low, t.high);
            let _ = write!(s, ", {SPOF_STYLE}, style=bold, tooltip={}", quote(&tip));
        }
        s.push_str("];\n");
    }
    nodes(net, &mut s);
    legend(net, &mut s);
    s.push_str("}\n");
    s
}

/// Clients (not revoked) whose pack tries `controller` first.
pub fn primary_clients(net: &Network, controller: &str) -> usize {
    net.clients
        .iter()
        .filter(|c| !c.revoked && crate::failover::primary(net, c).is_some_and(|p| p.name == controller))
        .count()
}

/// What the shapes and lines mean, for what this graph has. Legend ids hold a `:`, which no
/// topology name may, so they never meet a controller or node of the same name.
fn legend(net: &Network, s: &mut String) {
    let mut items: Vec<(&str, &str, &str)> = Vec::new();
    if !net.controllers.is_empty() {
        items.push((
            "controller",
            "shape=box, style=rounded",
            "controller: name, id, overlay address, engines, clients",
        ));
    }
    if net.controllers.iter().any(|c| !c.lans.is_empty()) {
        items.push(("lan", "shape=note", "LAN behind a controller (dotted)"));
    }
    if !net.vxlan.is_empty() {
        items.push(("node", "shape=box3d", "compute node: admin address, VTEP, vNICs"));
    }
    if items.is_empty() {
        return;
    }
    s.push_str("\n    subgraph cluster_legend {\n        label=\"legend\";\n        style=dashed;\n");
    for (id, shape, text) in &items {
        let _ = writeln!(s, "        {} [label={}, {shape}];", quote(&format!("legend:{id}")), quote(text));
    }
    if !net.tunnels.is_empty() {
        s.push_str(
            "        \"legend:a\" [label=\"\", shape=point];\n        \"legend:b\" [label=\"\", shape=point];\n",
        );
        s.push_str("        \"legend:a\" -- \"legend:b\" [label=\"peering tunnel (cost); red and bold: single point of failure\"];\n");
    }
    if !net.vxlan.ipsec.pairs.is_empty() {
        s.push_str(
            "        \"legend:c\" [label=\"\", shape=point];\n        \"legend:d\" [label=\"\", shape=point];\n",
        );
        s.push_str("        \"legend:c\" -- \"legend:d\" [label=\"IPsec between PDCs\", style=dashed];\n");
    }
    s.push_str("    }\n");
}

/// Compute nodes, one cluster per PDC, and the IPsec mesh between PDCs (dashed).
fn nodes(net: &Network, s: &mut String) {
    let vx = &net.vxlan;
    if vx.is_empty() {
        return;
    }
    let pdcs: BTreeSet<&str> = vx.nodes.iter().map(|n| n.pdc.as_str()).collect();
    for (i, pdc) in pdcs.iter().enumerate() {
        let _ = writeln!(s, "\n    subgraph cluster_pdc_{i} {{");
        let _ = writeln!(s, "        label={};", quote(&format!("PDC {pdc}")));
        for n in vx.nodes.iter().filter(|n| n.pdc == *pdc) {
            let vnics: usize =
                vx.overlays_on(&n.name).map(|o| o.vnics.iter().filter(|v| v.node == n.name).count()).sum();
            let mut lines = vec![n.name.clone(), format!("admin {}", n.admin.ip)];
            if let Some(v) = n.vtep.filter(|_| vx.ipsec_peers(n).next().is_some()) {
                lines.push(format!("VTEP {v}"));
            }
            lines.push(count(vnics, "vNIC"));
            let _ = writeln!(s, "        {} [label={}, shape=box3d];", quote(&n.name), label(&lines));
        }
        s.push_str("    }\n");
    }
    for p in &vx.ipsec.pairs {
        let _ = writeln!(s, "    {} -- {} [label=\"IPsec\", style=dashed];", quote(&p.low), quote(&p.high));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::network as net;

    const HEAD: &str = r#"
topology "g"
overlay "100.127.255.192/26"
controller "a" id=1 { address "192.0.2.1"; }
controller "b" id=2 {
    address "192.0.2.2"
    engines 3 subnet="198.51.100.0/28"
}
controller "c" id=3 { address "192.0.2.3"; }
"#;

    fn line<'a>(dot: &'a str, start: &str) -> &'a str {
        dot.lines().find(|l| l.trim_start().starts_with(start)).unwrap_or_else(|| panic!("no line {start:?} in\n{dot}"))
    }

    /// Edges of the mesh itself, not the legend's.
    fn edges(dot: &str) -> usize {
        dot.lines().filter(|l| l.contains(" -- ") && !l.contains("legend:")).count()
    }

    #[test]
    fn chain_marks_the_middle_controller_and_both_links() {
        let n = net(&format!("{HEAD}peering {{\n    link \"a\" \"b\" cost=3\n    link \"b\" \"c\"\n}}\n"));
        let d = dot(&n);
        assert!(d.starts_with("// meshwork: peering mesh of topology g (3 controllers, 2 tunnels)\n"));
        assert!(d.contains("graph \"g\" {"));
        assert!(d.ends_with("}\n"));
        let b = line(&d, "\"b\" [");
        assert!(
            b.contains("label=\"b\\nid 2\\noverlay 100.127.255.252\\n3 engines\\n0 clients (primary)\\nsingle point of failure\""),
            "{b}"
        );
        assert!(b.contains("color=red") && b.contains("bold"), "{b}");
        assert!(b.contains("tooltip=\"single point of failure: losing b splits the mesh\""), "{b}");
        let a = line(&d, "\"a\" [");
        assert!(
            a.contains("label=\"a\\nid 1\\noverlay 100.127.255.253\\n0 engines\\n0 clients (primary)\"")
                && !a.contains("red"),
            "{a}"
        );
        let ab = line(&d, "\"a\" -- \"b\"");
        assert!(ab.contains("label=\"cost 3\\nsingle point of failure\"") && ab.contains("color=red"), "{ab}");
        let bc = line(&d, "\"b\" -- \"c\"");
        assert!(bc.contains("label=\"cost 1\\n") && bc.contains("style=bold"), "{bc}");
        assert_eq!(edges(&d), 2);
        assert_eq!(d, dot(&n));
    }

    #[test]
    fn triangle_has_no_single_point_of_failure() {
        let n = net(&format!(
            "{HEAD}peering {{\n    link \"a\" \"b\"\n    link \"b\" \"c\"\n    link \"a\" \"c\" cost=5\n}}\n"
        ));
        let d = dot(&n);
        assert!(!d.contains("color=red"), "{d}");
        assert_eq!(d.matches(SPOF).count(), 2, "only the header and the legend mention it:\n{d}");
        assert!(line(&d, "\"a\" -- \"c\"").contains("label=\"cost 5\""));
        assert_eq!(edges(&d), 3);
    }

    #[test]
    fn full_mesh_of_two_is_a_single_link() {
        let n = net(r#"
topology "pair"
overlay "100.127.255.192/26"
controller "x" id=1 { address "192.0.2.1"; }
controller "y" id=2 { address "192.0.2.2"; }
"#);
        let d = dot(&n);
        // Losing the only tunnel splits the pair; neither controller is a cut vertex.
        assert!(line(&d, "\"x\" -- \"y\"").contains("color=red"));
        assert!(!line(&d, "\"x\" [").contains("red"));
    }

    #[test]
    fn lans_client_counts_and_a_legend() {
        let n = net(&format!(
            "{HEAD}controller \"d\" id=4 {{\n    address \"192.0.2.4\"\n    lan \"10.10.0.0/16\"\n    lan \"10.11.0.0/16\"\n}}\n\
             clients \"c\" count=40\nclient \"gone\" revoked=#true\n"
        ));
        let d = dot(&n);
        assert!(d.contains("    \"lan:d:10.10.0.0/16\" [label=\"LAN 10.10.0.0/16\", shape=note];\n"), "{d}");
        assert!(d.contains("    \"d\" -- \"lan:d:10.11.0.0/16\" [style=dotted];\n"), "{d}");
        // Every live client is some controller's primary; the revoked one counts nowhere.
        let counted: usize = ["a", "b", "c", "d"]
            .iter()
            .map(|c| {
                let l = line(&d, &format!("\"{c}\" ["));
                let at = l.find(" clients (primary)").or_else(|| l.find(" client (primary)")).expect("a count");
                l[..at].rsplit("\\n").next().unwrap().parse::<usize>().unwrap()
            })
            .sum();
        assert_eq!(counted, 40, "{d}");
        assert!(d.contains("subgraph cluster_legend {"), "{d}");
        assert!(d.contains("\"legend:lan\" [label=\"LAN behind a controller (dotted)\", shape=note];"), "{d}");
        assert!(!d.contains("legend:node"), "no compute nodes, so no node in the legend:\n{d}");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(label(&["x\"".into(), "y".into()]), r#""x\"\ny""#);
    }

    #[test]
    fn nodes_sit_in_their_pdcs_with_the_ipsec_mesh_between() {
        let dot = dot(&net(r#"
topology "n"
node "cn-1" pdc="a" admin="10.100.0.11/24" external="198.18.0.11/24"
node "cn-2" pdc="b" admin="10.100.1.12/24" external="198.18.1.12/24"
overlay-rule "tenants"
vxlan "x" rule="tenants" vni=5 subnet="10.44.0.0/24" { vnic "v1" node="cn-1"; vnic "v2" node="cn-1"; }
"#));
        assert!(dot.contains("label=\"PDC a\";\n        \"cn-1\" [label=\"cn-1\\nadmin 10.100.0.11\\nVTEP "), "{dot}");
        assert!(dot.contains("2 vNICs"), "{dot}");
        assert!(dot.contains("\"cn-1\" -- \"cn-2\" [label=\"IPsec\", style=dashed];"), "{dot}");
    }
}
