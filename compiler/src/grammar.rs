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
    required: true,
    ..node("overlay", "The overlay subnet that controllers, engines and clients take addresses from. Required, once.")
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
        v("from", Ty::String, true, "client name or overlay address"),
        v("to", Ty::String, true, "client name or address"),
        v("proto", Ty::Choice(PROTOCOLS), false, "tcp, udp, icmp or any (default)"),
        v("port", Ty::Integer { min: 1, max: 65535 }, false, "destination port"),
        v("verdict", Ty::Choice(VERDICTS), true, "\"allow\" or \"drop\""),
    ],
    many: true,
    ..node("expect", "A flow and the verdict the firewall must give it; `check` fails otherwise.")
};

/// The nodes allowed at the top of a file, in reference order.
pub static TOP: &[&NodeSpec] =
    &[&TOPOLOGY, &OVERLAY, &LICENSE, &CONTROLLER, &PEERING, &CLIENT, &CLIENTS, &FWSET, &FIREWALL, &EXPECT];

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
