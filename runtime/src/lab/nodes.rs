//! The lab's plan for compute nodes (DESIGN §9 "Lab"): pure and deterministic like
//! [`super::layout`], saved in the lab's record before anything is made.
//!
//! ```text
//!  per PDC:   mwl-<tag>-pdc-<pdc>    bridge `seg`, one port n<i> per node of the PDC (admin network)
//!  internet:  mwl-<tag>-inet         one routed veth n<i> per node with an external address
//!  per node:  mwl-<tag>-node-<name>  <admin interface> ─ seg, <external interface> ─ internet,
//!                                    mw-vm<k> in the overlay's bridge ─ eth0 of a VM
//!  per vNIC:  mwl-<tag>-vm-<vnic>    eth0 with the vNIC's MAC, address and MTU
//! ```
//!
//! The internet routes one /32 per external address and answers ARP for the others (proxy ARP),
//! so every packet between two nodes' external addresses is routed there, where nft counters
//! tell plaintext VXLAN from ESP in UDP. `<tag>` comes from the lab's directory, so two labs
//! (or a lab and a test) on one machine never share a namespace name.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use meshwork_compiler::emit::node::network as node_network;
use meshwork_compiler::model::vxlan::{IfAddr, Mac};
use meshwork_compiler::network::Network;
use serde::{Deserialize, Serialize};

use super::layout::NETNS_PREFIX;

/// The bridge of a PDC's admin segment, in the segment's namespace.
pub const SEGMENT_BRIDGE: &str = "seg";
/// A VM's interface, in its namespace.
pub const VM_INTERFACE: &str = "eth0";
/// Hex digits of the lab tag.
const TAG_LEN: usize = 6;

/// The node part of a lab; empty for a topology without nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLayout {
    /// In every namespace name of the node part: `mwl-<tag>-...`.
    pub tag: String,
    /// Present when a node has an external address.
    pub internet: Option<Internet>,
    /// One admin segment per PDC, in the order PDCs first appear.
    pub segments: Vec<Segment>,
    /// In declaration order.
    pub nodes: Vec<LabNode>,
    /// One per vNIC of a tenant overlay (the admin overlay's vNICs are the nodes themselves).
    pub vms: Vec<Vm>,
}

/// The namespace that routes between every external address and counts what crosses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Internet {
    pub netns: String,
    /// The overlay rules' UDP ports: VXLAN to one of them on the internet is plaintext.
    pub vxlan_ports: Vec<u16>,
}

/// A PDC's admin network: one bridge every node of the PDC hangs off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub pdc: String,
    pub netns: String,
    pub bridge: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabNode {
    pub name: String,
    pub pdc: String,
    pub netns: String,
    /// The node's underlay MTU, on both its interfaces and their far ends.
    pub mtu: u32,
    pub admin: Attachment,
    pub external: Option<External>,
}

/// One underlay interface of a node: `interface` with `address` in the node's namespace, and
/// the veth's other end `far_link` in the segment's or the internet's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub interface: String,
    /// With the network's prefix, as the file gives it.
    pub address: Ipv4Net,
    pub far_link: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct External {
    #[serde(flatten)]
    pub link: Attachment,
    /// The internet's address on `far_link`: the node's default gateway (a free host of the
    /// external network, or of the lab's choosing when the network has none).
    pub gateway: Ipv4Addr,
}

/// A vNIC as a namespace of its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    pub vnic: String,
    pub overlay: String,
    pub node: String,
    pub netns: String,
    /// The veth's end in the node's namespace, a port of `bridge`.
    pub port: String,
    /// The overlay's bridge on the node (network.json `overlays[].bridge.name`).
    pub bridge: String,
    pub mac: Mac,
    pub address: Ipv4Net,
    pub mtu: u32,
    /// The overlay's inner 802.1Q tag. The kernels the lab runs on have no 802.1Q, so the VM
    /// sends untagged frames and `lab test` says so.
    pub vlan: Option<u16>,
}

impl NodeLayout {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every namespace of the node part, in teardown order: VMs, nodes, segments, internet.
    pub fn namespaces(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.vms.iter().map(|v| v.netns.as_str()).collect();
        all.extend(self.nodes.iter().map(|n| n.netns.as_str()));
        all.extend(self.segments.iter().map(|s| s.netns.as_str()));
        all.extend(self.internet.iter().map(|i| i.netns.as_str()));
        all
    }

    pub fn node(&self, name: &str) -> Option<&LabNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn vm(&self, vnic: &str) -> Option<&Vm> {
        self.vms.iter().find(|v| v.vnic == vnic)
    }

    pub fn segment(&self, pdc: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.pdc == pdc)
    }

    /// The prefix of every namespace name of this lab's node part.
    pub fn netns_prefix(&self) -> String {
        format!("{NETNS_PREFIX}{}-", self.tag)
    }
}

/// The tag of the lab in directory `root`: the first hex digits of the SHA-256 of its absolute
/// path.
pub fn tag_for(root: &Path) -> String {
    let absolute = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let digest = ring::digest::digest(&ring::digest::SHA256, absolute.as_os_str().as_encoded_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>()[..TAG_LEN].to_string()
}

fn address(a: IfAddr) -> Ipv4Net {
    Ipv4Net::new(a.ip, a.prefix).unwrap_or_else(|_| Ipv4Net::from(a.ip))
}

/// Plans the node part of the lab tagged `tag`.
pub fn plan(net: &Network, tag: &str) -> Result<NodeLayout, String> {
    let vx = &net.vxlan;
    if vx.is_empty() {
        return Ok(NodeLayout { tag: tag.to_owned(), ..NodeLayout::default() });
    }
    let ns = |kind: &str, name: &str| format!("{NETNS_PREFIX}{tag}-{kind}-{name}");
    let mut segments: Vec<Segment> = Vec::new();
    for n in &vx.nodes {
        if !segments.iter().any(|s| s.pdc == n.pdc) {
            segments.push(Segment { pdc: n.pdc.clone(), netns: ns("pdc", &n.pdc), bridge: SEGMENT_BRIDGE.into() });
        }
    }
    let gateways = gateways(net)?;
    let mut nodes = Vec::new();
    for (i, n) in vx.nodes.iter().enumerate() {
        check_interfaces(&n.name, &n.admin_interface, n.external.map(|_| n.external_interface.as_str()))?;
        let far_link = format!("n{i}");
        let external = n.external.map(|e| External {
            link: Attachment {
                interface: n.external_interface.clone(),
                address: address(e),
                far_link: far_link.clone(),
            },
            gateway: gateways.get(&e.network()).copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
        });
        nodes.push(LabNode {
            name: n.name.clone(),
            pdc: n.pdc.clone(),
            netns: ns("node", &n.name),
            mtu: n.underlay_mtu,
            admin: Attachment { interface: n.admin_interface.clone(), address: address(n.admin), far_link },
            external,
        });
    }
    let internet = nodes.iter().any(|n| n.external.is_some()).then(|| Internet {
        netns: format!("{NETNS_PREFIX}{tag}-inet"),
        vxlan_ports: vx.rules.iter().map(|r| r.port).collect::<BTreeSet<u16>>().into_iter().collect(),
    });
    let mut vms = Vec::new();
    for n in &vx.nodes {
        let compiled = node_network::build(net, n);
        for o in compiled.overlays.iter().filter(|o| o.kind != "admin") {
            for v in &o.vnics {
                let k = vms.len();
                vms.push(Vm {
                    vnic: v.name.clone(),
                    overlay: o.name.clone(),
                    node: n.name.clone(),
                    netns: ns("vm", &v.name),
                    port: format!("mw-vm{k}"),
                    bridge: o.bridge.name.clone(),
                    mac: v.mac,
                    address: Ipv4Net::new(v.ip, v.prefix).map_err(|e| format!("vNIC {}: {e}", v.name))?,
                    mtu: v.mtu,
                    vlan: o.vlan,
                });
            }
        }
    }
    Ok(NodeLayout { tag: tag.to_owned(), internet, segments, nodes, vms })
}

/// A node's interfaces share its namespace with the runtime's links (`mw-*`, `lo`, the VXLAN
/// devices and bridges) and the lab's VM ports.
fn check_interfaces(node: &str, admin: &str, external: Option<&str>) -> Result<(), String> {
    for name in [Some(admin), external].into_iter().flatten() {
        let reserved = name == "lo"
            || name == meshwork_compiler::vxlan::names::LIBIPSEC_TUN
            || name == meshwork_compiler::vxlan::names::ADMIN_OVERLAY_INTERFACE
            || name.starts_with("mw-");
        if reserved || name.is_empty() || name.len() > 15 {
            return Err(format!("node {node}: the lab cannot use `{name}` as an underlay interface"));
        }
    }
    if external == Some(admin) {
        return Err(format!("node {node}: admin and external interface are both `{admin}`"));
    }
    Ok(())
}

/// The internet's gateway address in every external network: its first host no node holds.
fn gateways(net: &Network) -> Result<BTreeMap<Ipv4Net, Ipv4Addr>, String> {
    let held: BTreeSet<Ipv4Addr> = net.vxlan.nodes.iter().filter_map(|n| n.external.map(|e| e.ip)).collect();
    let mut out = BTreeMap::new();
    for e in net.vxlan.nodes.iter().filter_map(|n| n.external) {
        let network = e.network();
        if out.contains_key(&network) {
            continue;
        }
        let free = network.hosts().find(|h| !held.contains(h)).ok_or_else(|| {
            format!("the lab needs a free address in {network} for the internet's gateway, and every one is a node's")
        })?;
        out.insert(network, free);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use meshwork_compiler::source::SourceFile;

    use super::*;

    fn example(file: &str) -> NodeLayout {
        let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let analysis = meshwork_compiler::analyze(SourceFile::new(file, text));
        let net = analysis.network.as_ref().unwrap_or_else(|| panic!("{file} does not validate"));
        plan(net, "abc123").unwrap_or_else(|e| panic!("plan {file}: {e}"))
    }

    fn cidr(s: &str) -> Ipv4Net {
        s.parse().expect("a CIDR")
    }

    #[test]
    fn two_pdc_nodes_segments_and_internet() {
        let l = example("two-pdc.kdl");
        assert_eq!(l.tag, "abc123");
        let segments: Vec<(&str, &str)> = l.segments.iter().map(|s| (s.pdc.as_str(), s.netns.as_str())).collect();
        assert_eq!(segments, [("prague", "mwl-abc123-pdc-prague"), ("brno", "mwl-abc123-pdc-brno")]);
        let internet = l.internet.as_ref().expect("an internet");
        assert_eq!(internet.netns, "mwl-abc123-inet");
        assert_eq!(internet.vxlan_ports, [4790, 4791, 4793]);
        let cn3 = l.node("cn-3").expect("cn-3");
        assert_eq!(cn3.netns, "mwl-abc123-node-cn-3");
        assert_eq!((cn3.pdc.as_str(), cn3.mtu), ("brno", 1500));
        assert_eq!(
            cn3.admin,
            Attachment { interface: "eth1".into(), address: cidr("10.100.1.13/24"), far_link: "n2".into() }
        );
        let ext = cn3.external.as_ref().expect("external");
        assert_eq!(ext.link.interface, "eth0");
        assert_eq!(ext.link.address, cidr("198.18.1.13/24"));
        // The first free host of 198.18.1.0/24 (no node holds .1).
        assert_eq!(ext.gateway, Ipv4Addr::new(198, 18, 1, 1));
        assert_eq!(
            l.node("cn-1").and_then(|n| n.external.as_ref()).map(|e| e.gateway),
            Some(Ipv4Addr::new(198, 18, 0, 1))
        );
    }

    /// vNIC, node, namespace, port, MTU, VLAN.
    type VmSummary<'a> = (&'a str, &'a str, &'a str, &'a str, u32, Option<u16>);

    #[test]
    fn two_pdc_vms() {
        let l = example("two-pdc.kdl");
        let vms: Vec<VmSummary> = l
            .vms
            .iter()
            .map(|v| (v.vnic.as_str(), v.node.as_str(), v.netns.as_str(), v.port.as_str(), v.mtu, v.vlan))
            .collect();
        assert_eq!(
            vms,
            [
                ("a-web", "cn-1", "mwl-abc123-vm-a-web", "mw-vm0", 1346, Some(10)),
                ("p-app", "cn-1", "mwl-abc123-vm-p-app", "mw-vm1", 1450, None),
                ("b-web", "cn-2", "mwl-abc123-vm-b-web", "mw-vm2", 1346, None),
                ("p-store", "cn-2", "mwl-abc123-vm-p-store", "mw-vm3", 1450, None),
                ("a-db", "cn-3", "mwl-abc123-vm-a-db", "mw-vm4", 1346, Some(10)),
                ("b-db", "cn-3", "mwl-abc123-vm-b-db", "mw-vm5", 1346, None),
                ("a-cache", "cn-4", "mwl-abc123-vm-a-cache", "mw-vm6", 1346, Some(10)),
            ]
        );
        let web = l.vm("a-web").expect("a-web");
        assert_eq!(web.address, cidr("10.44.0.10/24"));
        assert_eq!(web.bridge, "mw-br12b600007b");
        assert_eq!(l.vm("a-cache").map(|v| v.mac.to_string()), Some("02:00:00:00:0a:01".into()));
        // Every link name fits Linux (15 bytes).
        assert!(l.vms.iter().all(|v| v.port.len() <= 15));
        assert_eq!(l.namespaces().len(), 7 + 4 + 2 + 1);
        assert_eq!(l.namespaces().last(), Some(&"mwl-abc123-inet"));
    }

    #[test]
    fn combined_has_no_internet() {
        let l = example("combined.kdl");
        assert_eq!(l.internet, None);
        assert_eq!(l.segments.len(), 1);
        assert_eq!(l.nodes.iter().map(|n| n.mtu).collect::<Vec<_>>(), [1500, 9000]);
        assert_eq!(l.vms.len(), 2);
    }

    #[test]
    fn controllers_only_have_no_node_part() {
        let l = example("quickstart.kdl");
        assert!(l.is_empty());
        assert!(l.namespaces().is_empty());
    }

    #[test]
    fn tag_depends_on_the_directory_only() {
        let a = tag_for(Path::new("/tmp/one/lab"));
        assert_eq!(a.len(), TAG_LEN);
        assert_eq!(a, tag_for(Path::new("/tmp/one/lab")));
        assert_ne!(a, tag_for(Path::new("/tmp/two/lab")));
    }

    #[test]
    fn reserved_interfaces_are_refused() {
        assert!(check_interfaces("n", "eth1", Some("eth0")).is_ok());
        assert!(check_interfaces("n", "lo", None).unwrap_err().contains("`lo`"));
        assert!(check_interfaces("n", "mw-x", None).is_err());
        assert!(check_interfaces("n", "ipsec0", None).is_err());
        assert!(check_interfaces("n", "eth0", Some("eth0")).unwrap_err().contains("both"));
        assert!(check_interfaces("n", "a-very-long-name0", None).is_err());
    }

    #[test]
    fn layout_round_trips_through_json() {
        let l = example("two-pdc.kdl");
        let back: NodeLayout = serde_json::from_str(&serde_json::to_string(&l).expect("json")).expect("back");
        assert_eq!(back, l);
    }
}
