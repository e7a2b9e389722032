//! The topology language, declared once. The shape checker, the TOML front end, the JSON
//! Schema and the README's reference are all driven by these tables, so they cannot disagree.

/// The type of one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// Any string.
    String,
    /// A name usable as a file name, certificate CN and nft set name.
    Name,
    /// Comma-separated names, e.g. "web,critical".
    Tags,
    Integer {
        min: i128,
        max: i128,
    },
    Bool,
    /// An IPv4 address.
    Ip,
    /// An IPv4 network with a prefix, host bits zero.
    Cidr,
    /// An IPv4 network, or a bare address meaning /32.
    Net,
    /// An IPv4 address or a DNS name.
    Host,
    /// A network interface name.
    Interface,
    /// A port, a range "8000-8080", or "fwset:NAME".
    Port,
    /// An address selector: any, overlay, a client, tag:T, fwset:S, controller:C, a CIDR.
    Selector,
    /// One of a fixed list.
    Choice(&'static [&'static str]),
    /// An Ethernet address, six hex octets: "02:00:00:00:00:01".
    Mac,
    /// An address on an interface: "10.100.0.11" or "10.100.0.11/24".
    IfAddr,
    /// An overlay rule's name: SmartOS appends the VNI, so it must end in a letter or '_'.
    RuleName,
    /// A VXLAN network identifier, 1..16 777 215.
    Vni,
}

#[derive(Debug)]
pub struct Value {
    /// Property key, or the TOML key of a positional argument.
    pub key: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub doc: &'static str,
}

#[derive(Debug)]
pub struct NodeSpec {
    /// The KDL node name.
    pub name: &'static str,
    pub doc: &'static str,
    pub args: &'static [Value],
    pub props: &'static [Value],
    pub children: &'static [&'static NodeSpec],
    /// May appear more than once at its place.
    pub many: bool,
    /// Must appear at its place.
    pub required: bool,
    /// TOML spelling when it differs: (array key, tag key holding the KDL node name). Firewall
    /// rules are `allow`/`deny` nodes in KDL and `[[firewall.rule]] action = "allow"` in TOML,
    /// because TOML cannot interleave two arrays and rule order matters.
    pub toml_tagged: Option<(&'static str, &'static str)>,
}

impl NodeSpec {
    pub fn toml_key(&self) -> &'static str {
        self.toml_tagged.map_or(self.name, |(key, _)| key)
    }
    pub fn value(&self, key: &str) -> Option<&'static Value> {
        self.props.iter().find(|p| p.key == key)
    }
}

const fn v(key: &'static str, ty: Ty, required: bool, doc: &'static str) -> Value {
    Value { key, ty, required, doc }
}

const fn node(name: &'static str, doc: &'static str) -> NodeSpec {
    NodeSpec { name, doc, args: &[], props: &[], children: &[], many: false, required: false, toml_tagged: None }
}

const U32: i128 = u32::MAX as i128;
pub const PROTOCOLS: &[&str] = &["tcp", "udp", "icmp", "any"];
pub const VERDICTS: &[&str] = &["allow", "drop"];
pub const POLICIES: &[&str] = &["accept", "drop"];

pub static TOPOLOGY: NodeSpec = NodeSpec {
    args: &[v("name", Ty::String, true, "the topology's name")],
    required: true,
    ..node("topology", "The topology's name. Required, once.")
};

pub static OVERLAY: NodeSpec = NodeSpec {
    args: &[v("subnet", Ty::Cidr, true, "IPv4 network for controllers, engines and clients")],
    ..node(
        "overlay",
        "The overlay subnet that controllers, engines and clients take addresses from. Required once the file has \
         controllers or clients.",
    )
};

pub static LICENSE: NodeSpec = NodeSpec {
    props: &[
        v("controllers", Ty::Integer { min: 1, max: 255 }, false, "most controllers allowed"),
        v("clients", Ty::Integer { min: 0, max: U32 }, false, "most clients allowed"),
    ],
    ..node("license", "Caps on the number of controllers and clients; exceeding one is an error.")
};

static ADDRESS: NodeSpec = NodeSpec {
    args: &[v("address", Ty::Host, true, "IPv4 address or DNS name")],
    required: true,
    ..node("address", "Underlay address (IP or DNS name) that clients and peers dial. Required.")
};

static INTERFACE: NodeSpec = NodeSpec {
    args: &[v("name", Ty::Interface, true, "interface name")],
    ..node("interface", "Underlay interface; default \"eth0\".")
};

static CORES: NodeSpec = NodeSpec {
    args: &[v("count", Ty::Integer { min: 1, max: 4096 }, true, "CPU cores")],
    ..node("cores", "CPU cores of the host; engines >= cores is a warning (cores-1 is ideal).")
};

pub static ENGINES: NodeSpec = NodeSpec {
    args: &[v("count", Ty::Integer { min: 1, max: 254 }, true, "number of engines")],
    props: &[
        v("subnet", Ty::Cidr, true, "plugin subnet: plugin0 takes its first host, engine k host 1+k"),
        v("seed", Ty::Integer { min: 0, max: U32 }, false, "jhash seed; default 0xf1e2d3c4"),
        v("offset", Ty::Integer { min: 0, max: U32 }, false, "first packet mark; default 0x1000"),
    ],
    ..node("engines", "Extra OpenVPN server processes, each in its own network namespace behind plugin0.")
};

static LAN: NodeSpec = NodeSpec {
    args: &[v("network", Ty::Cidr, true, "IPv4 network")],
    many: true,
    ..node("lan", "A network behind this controller; repeatable.")
};

pub static CONTROLLER: NodeSpec = NodeSpec {
    args: &[v("name", Ty::Name, true, "controller name")],
    props: &[v(
        "id",
        Ty::Integer { min: 1, max: 255 },
        true,
        "1 is the root; decides overlay address and peering ports",
    )],
    children: &[&ADDRESS, &INTERFACE, &CORES, &ENGINES, &LAN],
    many: true,
    ..node("controller", "A Linux host running the OpenVPN server, its engines and its firewall.")
};

pub static LINK: NodeSpec = NodeSpec {
    args: &[v("from", Ty::Name, true, "one controller"), v("to", Ty::Name, true, "the other controller")],
    props: &[v("cost", Ty::Integer { min: 1, max: 65535 }, false, "routing cost; default 1")],
    many: true,
    ..node("link", "A peering tunnel between two controllers (undirected).")
};

pub static PEERING: NodeSpec = NodeSpec {
    args: &[v("mode", Ty::Choice(&["full", "partial"]), false, "\"full\" (default) or \"partial\"")],
    children: &[&LINK],
    ..node("peering", "\"full\" (default): every controller peers with every other; or a partial mesh of links.")
};

pub static CLIENT: NodeSpec = NodeSpec {
    args: &[v("name", Ty::Name, true, "client name; the certificate's CN")],
    props: &[
        v("ip", Ty::Ip, false, "static overlay address; allocated when absent"),
        v("tags", Ty::Tags, false, "comma-separated tags for firewall rules"),
        v("revoked", Ty::Bool, false, "the client's certificate is revoked"),
        v("redirect-gateway", Ty::Bool, false, "route all the client's traffic over the overlay"),
    ],
    many: true,
    ..node("client", "One client with its own identity and overlay address.")
};

pub static CLIENTS: NodeSpec = NodeSpec {
    args: &[v("name", Ty::Name, true, "prefix: NAME-1 .. NAME-count")],
    props: &[
        v("count", Ty::Integer { min: 1, max: 1_000_000 }, true, "how many clients"),
        v("tags", Ty::Tags, false, "comma-separated tags for firewall rules"),
        v("redirect-gateway", Ty::Bool, false, "route all the clients' traffic over the overlay"),
    ],
    many: true,
    ..node("clients", "A group of clients NAME-1 .. NAME-count, allocated in order.")
};

static FWSET_NET: NodeSpec = NodeSpec {
    args: &[v("network", Ty::Net, true, "IPv4 network or address")],
    many: true,
    ..node("net", "A network of a fwset of type \"net\".")
};

static FWSET_PORT: NodeSpec = NodeSpec {
    args: &[v("port", Ty::Port, true, "port or range")],
    many: true,
    ..node("port", "A port or range of a fwset of type \"port\".")
};

pub static FWSET: NodeSpec = NodeSpec {
    args: &[v("name", Ty::Name, true, "fwset name")],
    props: &[v("type", Ty::Choice(&["net", "port"]), true, "\"net\" or \"port\"")],
    children: &[&FWSET_NET, &FWSET_PORT],
    many: true,
    ..node("fwset", "A named set of networks or ports for firewall rules.")
};

const RULE_PROPS: &[Value] = &[
    v("from", Ty::Selector, true, "source selector"),
    v("to", Ty::Selector, true, "destination selector"),
    v("proto", Ty::Choice(PROTOCOLS), false, "tcp, udp, icmp or any (default)"),
    v("port", Ty::Port, false, "destination port, range or fwset:S (tcp/udp only)"),
];

static ALLOW: NodeSpec = NodeSpec {
    props: RULE_PROPS,
    many: true,
    toml_tagged: Some(("rule", "action")),
    ..node("allow", "Accept matching traffic.")
};

static DENY: NodeSpec = NodeSpec {
    props: RULE_PROPS,
    many: true,
    toml_tagged: Some(("rule", "action")),
    ..node("deny", "Drop matching traffic.")
};

pub static FIREWALL: NodeSpec = NodeSpec {
    props: &[v("policy", Ty::Choice(POLICIES), false, "verdict when no rule matches; default \"accept\"")],
    children: &[&ALLOW, &DENY],
    ..node("firewall", "Overlay forwarding rules; first match wins.")
};

pub static EXPECT: NodeSpec = NodeSpec {
    args: &[v("name", Ty::String, false, "what the expectation is about")],
    props: &[
        v("from", Ty::String, true, "client, vNIC or node name, or an overlay address"),
        v("to", Ty::String, true, "client, vNIC or node name, or an address"),
        v("proto", Ty::Choice(PROTOCOLS), false, "tcp, udp, icmp or any (default)"),
        v("port", Ty::Integer { min: 1, max: 65535 }, false, "destination port"),
        v("verdict", Ty::Choice(VERDICTS), true, "\"allow\" or \"drop\""),
    ],
    many: true,
    ..node("expect", "A flow and the verdict the firewall must give it; `check` fails otherwise.")
};

pub static NODE: NodeSpec = NodeSpec {
    args: &[v("name", Ty::Name, true, "node name")],
    props: &[
        v("pdc", Ty::Name, true, "physical datacenter; nodes in one talk in clear over the admin network"),
        v("admin", Ty::IfAddr, true, "admin-network address, optionally with its prefix (\"10.100.0.11/24\")"),
        v("external", Ty::IfAddr, false, "external address: IPsec to nodes in other PDCs; needed once there are two"),
        v("admin-interface", Ty::Interface, false, "interface of the admin network; default \"eth1\""),
        v("external-interface", Ty::Interface, false, "interface of the external address; default \"eth0\""),
        v("mtu", Ty::Integer { min: 576, max: 65535 }, false, "underlay MTU; default 1500"),
    ],
    many: true,
    ..node("node", "A compute node carrying VM NICs (vNICs) on VXLAN overlays (Danube Cloud model).")
};

pub static LISTEN: &[&str] = &["any", "admin"];

pub static OVERLAY_RULE: NodeSpec = NodeSpec {
    args: &[v("name", Ty::RuleName, true, "rule name (SmartOS appends the VNI: must end in a letter or '_')")],
    props: &[
        v(
            "port",
            Ty::Integer { min: 1, max: 65535 },
            false,
            "VXLAN UDP port; default the highest so far + 1, from 4790",
        ),
        v("mtu", Ty::Integer { min: 68, max: 65535 }, false, "vNIC MTU; computed (the largest that fits) when absent"),
        v("listen", Ty::Choice(LISTEN), false, "\"admin\": listen on the admin address, never leave one PDC"),
    ],
    many: true,
    ..node("overlay-rule", "A VXLAN template (UDP port, MTU); an overlay is a rule plus a VNI.")
};

pub static ADMIN_OVERLAY: NodeSpec = NodeSpec {
    props: &[
        v("subnet", Ty::Cidr, true, "the admin overlay's network; nodes take addresses from .11 upward"),
        v("vni", Ty::Vni, false, "VNI; default 2"),
        v("vlan", Ty::Integer { min: 1, max: 4094 }, false, "inner 802.1Q tag; default 2"),
        v("port", Ty::Integer { min: 1, max: 65535 }, false, "VXLAN UDP port; default 4793"),
        v("mtu", Ty::Integer { min: 68, max: 65535 }, false, "MTU; default 1300"),
    ],
    ..node("admin-overlay", "Danube's admin overlay: every node gets one vNIC (`adminoverlay_0`) in one subnet.")
};

static VNIC: NodeSpec = NodeSpec {
    args: &[v("name", Ty::Name, true, "vNIC name")],
    props: &[
        v("node", Ty::Name, true, "the node carrying it"),
        v("ip", Ty::Ip, false, "address in the overlay's subnet; allocated bottom-up when absent"),
        v("mac", Ty::Mac, false, "unicast MAC; derived (02:…) from topology, overlay and vNIC name when absent"),
    ],
    many: true,
    ..node("vnic", "A VM's NIC on this overlay.")
};

pub static VXLAN: NodeSpec = NodeSpec {
    args: &[v("name", Ty::Name, true, "overlay name")],
    props: &[
        v("rule", Ty::RuleName, true, "the overlay rule it uses"),
        v("vni", Ty::Vni, true, "VXLAN network identifier, unique per rule"),
        v("subnet", Ty::Cidr, true, "the overlay's IPv4 network (tenants may reuse one)"),
        v("vlan", Ty::Integer { min: 1, max: 4094 }, false, "inner 802.1Q tag"),
    ],
    children: &[&VNIC],
    many: true,
    ..node("vxlan", "A VXLAN overlay: a rule plus a VNI, with its vNICs.")
};

pub static DATAPATHS: &[&str] = &["auto", "kernel", "userspace"];

pub static IPSEC: NodeSpec = NodeSpec {
    props: &[
        v("proposals", Ty::String, false, "IKE proposals; default \"aes256gcm16-prfsha256-ecp256\""),
        v("esp", Ty::String, false, "ESP proposals; default \"aes256gcm16\""),
        v("vtep-pool", Ty::Cidr, false, "VTEP addresses, one per node; default \"198.19.254.0/24\""),
        v(
            "datapath",
            Ty::Choice(DATAPATHS),
            false,
            "\"kernel\" (XFRM), \"userspace\" (libipsec) or \"auto\" (default)",
        ),
    ],
    ..node("ipsec", "The IPsec mesh between nodes in different PDCs (IKEv2, UDP-encapsulated ESP, tunnel mode).")
};

const NODE_RULE_PROPS: &[Value] = &[
    v("from", Ty::Selector, true, "source: any, a CIDR or fwset:S"),
    v("proto", Ty::Choice(PROTOCOLS), false, "tcp, udp, icmp or any (default)"),
    v("port", Ty::Port, false, "destination port, range or fwset:S (tcp/udp only)"),
];

static NODE_ALLOW: NodeSpec = NodeSpec {
    props: NODE_RULE_PROPS,
    many: true,
    toml_tagged: Some(("rule", "action")),
    ..node("allow", "Accept matching traffic.")
};

static NODE_DENY: NodeSpec = NodeSpec {
    props: NODE_RULE_PROPS,
    many: true,
    toml_tagged: Some(("rule", "action")),
    ..node("deny", "Drop matching traffic.")
};

pub static NODE_FIREWALL: NodeSpec = NodeSpec {
    props: &[v("policy", Ty::Choice(POLICIES), false, "verdict when no rule matches; default \"accept\"")],
    children: &[&NODE_ALLOW, &NODE_DENY],
    ..node(
        "node-firewall",
        "Input policy of every node's external interface; nodes' external addresses, IKE and ESP are always allowed.",
    )
};

/// The nodes allowed at the top of a file, in reference order.
pub static TOP: &[&NodeSpec] = &[
    &TOPOLOGY,
    &OVERLAY,
    &LICENSE,
    &CONTROLLER,
    &PEERING,
    &CLIENT,
    &CLIENTS,
    &FWSET,
    &FIREWALL,
    &NODE,
    &OVERLAY_RULE,
    &ADMIN_OVERLAY,
    &VXLAN,
    &IPSEC,
    &NODE_FIREWALL,
    &EXPECT,
];

/// The closest candidate to a misspelt word, if any is close enough to be a likely typo: at
/// most a third of its letters edited (at least one), or a high Jaro-Winkler similarity.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let budget = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::damerau_levenshtein(word, c), strsim::jaro_winkler(word, c), c))
        .filter(|(edits, similarity, _)| *edits <= budget || *similarity > 0.9)
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(b.2)))
        .map(|(_, _, c)| c)
}
