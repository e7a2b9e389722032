//! Every diagnostic code meshwork can emit, with its one-line summary and its explanation.
//!
//! Codes are stable: tools and CI configurations match on them. Add new codes at the end of
//! their group; never rename one.

use serde::Serialize;

macro_rules! codes {
    ($( $variant:ident = $name:literal, $summary:literal, $explanation:literal; )*) => {
        /// A stable diagnostic code, printed as `meshwork::area::name`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $( $variant, )* }

        impl Code {
            pub const ALL: &'static [Code] = &[ $( Code::$variant, )* ];

            /// The printed code, e.g. `meshwork::peering::disconnected`.
            pub fn name(self) -> &'static str {
                match self { $( Code::$variant => concat!("meshwork::", $name), )* }
            }

            /// One line saying what the code means.
            pub fn summary(self) -> &'static str {
                match self { $( Code::$variant => $summary, )* }
            }

            /// What the rule checks, why, and how to fix it (`meshwork explain-code`).
            pub fn explanation(self) -> &'static str {
                match self { $( Code::$variant => $explanation, )* }
            }

            /// Looks a code up by its printed name, with or without the `meshwork::` prefix.
            pub fn from_name(name: &str) -> Option<Code> {
                let name = name.strip_prefix("meshwork::").unwrap_or(name);
                Code::ALL.iter().copied().find(|c| &c.name()["meshwork::".len()..] == name)
            }
        }
    };
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

codes! {
    Syntax = "parse::syntax", "the file is not valid KDL v2 or TOML",
        "The front end could not read the file. meshwork reads `.toml` files as TOML 1.0 and every \
         other file as KDL v2. Fix the syntax at the marked place; nothing else is checked until the \
         file parses.";
    TooDeep = "parse::too-deep", "blocks or comments nested deeper than meshwork reads",
        "A topology needs a few levels of `{ }` (a controller's engines, the firewall's rules). \
         meshwork refuses files nested deeper than 32 levels of blocks or of `/* */` comments \
         before parsing them, because parsing such a file could exhaust the stack. The mark is on \
         the brace (or comment) that goes one level too deep: a missing `}` or `*/` above it is \
         the usual cause.";
    Encoding = "parse::encoding", "the file is not UTF-8 text",
        "Topology files are read as UTF-8. The mark is on the first byte that is not valid UTF-8; \
         re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or check that it is the \
         topology file at all.";
    UnknownNode = "shape::unknown-node", "a node or table that meshwork does not know",
        "Every node (KDL) or key (TOML) must be one the language defines at that place. Typos get a \
         'did you mean' suggestion. See the language reference in the README.";
    UnknownProperty = "shape::unknown-property", "a property or key that this node does not take",
        "Each node takes a fixed set of properties. Typos get a 'did you mean' suggestion.";
    MissingValue = "shape::missing-value", "a required node, argument or property is missing",
        "Some values have no sensible default: the topology's name, its overlay, a controller's id \
         and address, a client group's count and so on. Add the missing value.";
    WrongType = "shape::wrong-type", "a value of the wrong type",
        "Each value has a type: a string, an integer, a boolean. Quote strings; write integers \
         without quotes (hex such as 0x1000 is fine).";
    Duplicate = "shape::duplicate", "a property or a once-only node given twice",
        "A property may appear once per node, and nodes such as `topology`, `overlay`, `license`, \
         `peering` and `firewall` once per file. Remove the repetition.";
    TooManyArguments = "shape::too-many-arguments", "more positional arguments than the node takes",
        "Extra positional arguments are not ignored silently; remove them or turn them into the \
         properties you meant.";
    InvalidIp = "value::invalid-ip", "not an IPv4 address",
        "meshwork's overlay is IPv4. Write addresses in dotted quad form, e.g. 100.127.255.210.";
    InvalidCidr = "value::invalid-cidr", "not an IPv4 network in CIDR form, or host bits are set",
        "Networks are written as address/prefix with the host bits zero, e.g. 10.10.0.0/16. When \
         host bits are set the help shows the network you probably meant.";
    InvalidPort = "value::invalid-port", "a port outside 1..65535, or a malformed port range",
        "Ports are numbers 1..65535, ranges \"8000-8080\" with the low end first, or `fwset:NAME` \
         naming a port fwset.";
    OutOfRange = "value::out-of-range", "a number outside the range this value allows",
        "Controller ids are 1..255, engine counts 1..254, cores at least 1, link costs at least 1, \
         client group counts at least 1. The label gives the allowed range.";
    InvalidName = "value::invalid-name", "a name that cannot be used as a file name or certificate name",
        "Names of controllers, clients, fwsets and tags become file names, certificate common names \
         and nftables set names. Use letters, digits, '-', '_' and '.', start with a letter or digit, \
         at most 64 characters.";
    InvalidValue = "value::invalid", "a value that is not one of the allowed choices",
        "Some values come from a fixed list (a firewall policy, a protocol, a verdict, a fwset \
         type). The help lists the choices.";
    DuplicateName = "name::duplicate", "two objects share a name",
        "Controllers, engines and clients share one name space because each becomes a certificate \
         common name; fwsets have their own. An engine is named CONTROLLER-eK. Rename one of them.";
    DuplicateId = "controller::duplicate-id", "two controllers share an id",
        "Controller ids decide overlay addresses and peering ports, so each must be unique.";
    NoRoot = "controller::no-root", "no controller has id 1",
        "The controller with id 1 is the root: it generates the keyset once per topology and the \
         others fetch it. Give one controller id 1.";
    LicenseExceeded = "license::exceeded", "more controllers or clients than the license allows",
        "`license controllers=N clients=M` caps the topology. Raise the cap or remove objects.";
    OutsideOverlay = "alloc::outside-overlay", "a client address outside the overlay",
        "A client's `ip=` must be a usable host address of the overlay subnet (not its network or \
         broadcast address).";
    AddressCollision = "alloc::collision", "an address is used twice",
        "Each client needs its own overlay address, and the addresses reserved for controllers \
         (the overlay's last usable address minus the id), engines (below the controllers' block) \
         and the shared address (the last usable one) cannot be given to clients.";
    OverlayTooSmall = "alloc::overlay-too-small", "the overlay cannot hold everything it must",
        "The overlay must hold the shared address, one address per controller, one per engine and \
         one per client. The message counts what is needed; use a shorter prefix.";
    SubnetOverlap = "network::overlap", "two networks overlap",
        "Plugin subnets must not overlap each other, the overlay, any LAN or any underlay address; \
         LANs must not overlap each other or the overlay. Overlapping networks make routing \
         ambiguous.";
    PluginSubnetTooSmall = "engines::subnet-too-small", "a plugin subnet too small for its engines",
        "The plugin subnet holds the controller's plugin0 address (its first host) and one address \
         per engine (hosts 2..N+1). Use a shorter prefix or fewer engines.";
    EnginesExceedCores = "engines::exceed-cores", "as many engines as cores, or more",
        "One OpenVPN process uses one core. Engines beyond the core count bring nothing; cores-1 \
         engines is ideal, leaving one core for the controller's own server.";
    UnknownPeer = "peering::unknown-controller", "a peering link names an unknown controller",
        "`link A B` must name two declared controllers.";
    InvalidLink = "peering::invalid-link", "a link from a controller to itself, or declared twice",
        "A peering link joins two different controllers, once.";
    Disconnected = "peering::disconnected", "the peering mesh is not connected",
        "Every controller must reach every other over the declared links, or clients on one part \
         cannot reach the other. Add links between the parts.";
    SinglePointOfFailure = "peering::single-point-of-failure", "one controller or link whose loss splits the mesh",
        "The mesh stays connected today, but losing the named controller (an articulation point) or \
         link (a bridge) would split it. Add a link around it for high availability.";
    UnknownReference = "reference::unknown", "a rule or expect names something that does not exist",
        "Selectors name clients, `tag:T`, `fwset:S` and `controller:C`; each must exist. Typos get a \
         'did you mean' suggestion.";
    FwsetType = "reference::fwset-type", "a fwset of the wrong type for its place",
        "Address selectors (`from`, `to`) take fwsets of type \"net\"; `port=` takes fwsets of type \
         \"port\". A fwset holds only entries of its own type.";
    PortWithoutProtocol = "firewall::port-needs-protocol", "a port on a rule or expect that is not tcp or udp",
        "Ports belong to tcp and udp. Give proto=\"tcp\" or proto=\"udp\", or drop the port.";
    ExpectFailed = "expect::failed", "an expectation does not hold on the compiled firewall",
        "`expect` states the verdict a flow must get. The compiled firewall (first match wins, the \
         policy when nothing matches) gave another; the label shows the rule that decided it.";
    InvalidMac = "value::invalid-mac", "not a MAC address",
        "MAC addresses are six two-digit hex octets separated by ':' (or '-'), e.g. 02:00:00:00:00:01.";
    MulticastMac = "vxlan::multicast-mac", "a vNIC MAC that is multicast or all zero",
        "A vNIC's own address must be unicast: the lowest bit of the first octet clear, and not \
         00:00:00:00:00:00. Leave `mac=` out to have a locally administered one (02:…) derived.";
    DuplicateMac = "vxlan::duplicate-mac", "two vNICs share a MAC address",
        "MACs must be unique across the whole topology, derived ones included. A derived MAC comes \
         from a hash of the topology, overlay and vNIC name; a collision is reported, never shifted \
         silently: give one of the two an explicit `mac=`.";
    RuleName = "vxlan::rule-name", "an overlay rule name SmartOS cannot take",
        "SmartOS names an overlay device after its rule with the VNI appended, so a rule name is \
         letters, digits and '_' and must end in a letter or '_' (`^[a-zA-Z0-9_]+[a-zA-Z_]$`).";
    VniRange = "vxlan::vni-range", "a VNI outside 1..16 777 215",
        "A VXLAN network identifier has 24 bits; 0 is reserved. Pick a VNI in 1..=16777215.";
    DuplicateVni = "vxlan::duplicate-vni", "a VNI used twice on one overlay rule",
        "An overlay is a rule plus a VNI, so two overlays on one rule need different VNIs (the same \
         VNI on another rule, which listens on another port, is a different overlay).";
    RulePortClash = "vxlan::port-clash", "an overlay rule's port clashes with another port",
        "Every overlay rule (the admin overlay's included) listens on its own UDP port, distinct from \
         OpenVPN's 1194 and the peering ports 1195..1449. A rule without `port=` takes the highest \
         port so far + 1, from 4790, skipping ports already taken.";
    UnknownNodeRef = "vxlan::unknown-node", "a vNIC on a node that is not declared",
        "`vnic … node=N` must name a declared `node`. Typos get a 'did you mean' suggestion.";
    UnknownRule = "vxlan::unknown-rule", "an overlay on a rule that is not declared",
        "`vxlan … rule=R` must name a declared `overlay-rule`. The admin overlay's rule is its own: \
         user overlays cannot use it.";
    VnicOutsideSubnet = "vxlan::outside-subnet", "a vNIC address outside its overlay's subnet",
        "A vNIC's `ip=` must be a usable host address of its overlay's subnet (not the network or \
         broadcast address).";
    DuplicateVnicIp = "vxlan::duplicate-ip", "two vNICs of one overlay share an address",
        "Within one overlay every vNIC needs its own address. Different overlays may reuse subnets \
         and addresses: they are isolated from each other.";
    SubnetFull = "vxlan::subnet-full", "an overlay's (or pool's) subnet cannot hold its vNICs",
        "Addresses are allocated bottom-up in declaration order (the admin overlay from .11, VTEPs \
         from the pool's first host). Use a shorter prefix.";
    MissingExternal = "vxlan::missing-external", "a node without `external` in a topology that spans PDCs",
        "Nodes in different PDCs reach each other only through IPsec between their external \
         addresses, so once the topology has two PDCs every node with a vNIC on a rule that spans \
         them (the admin overlay spans every PDC) needs `external=`.";
    AdminRuleSpansPdcs = "vxlan::admin-rule-spans-pdcs", "a listen=\"admin\" rule with overlays in two PDCs",
        "A rule that listens on the admin address never leaves one PDC (the admin network does not \
         cross datacenters). Keep its overlays' vNICs in one PDC, or drop `listen=\"admin\"`.";
    MtuTooLarge = "vxlan::mtu", "a rule's MTU plus its headers does not fit the underlay",
        "Each path adds headers: VXLAN 50 bytes (IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14), 4 more \
         with an inner VLAN tag, and across PDCs the IPsec tunnel: outer IPv4 20, UDP 8 (ESP is \
         UDP-encapsulated), ESP with AES-GCM 34 + padding to 4 bytes (62-65 in all). The MTU plus \
         the worst path's headers must fit the smallest underlay MTU of the nodes the rule spans. \
         On a 1500-byte underlay: 1450 plain, 1446 with VLAN, 1388 across PDCs, 1384 with VLAN. \
         Leave `mtu=` out to have the largest that fits computed.";
    AdminOverlay = "vxlan::admin-overlay", "the admin overlay's requirements are not met",
        "The admin overlay puts one vNIC on every node, in one subnet, from .11 upward, on a rule of \
         its own (`adminoverlay`): the subnet must hold every node, no user rule may take that name \
         and no user overlay may use it.";
    DuplicateNodeAddress = "vxlan::duplicate-address", "two nodes share an admin or external address",
        "Each node's admin and external addresses are its own; VXLAN and IKE peers are told apart by \
         them.";
    LockSyntax = "lock::syntax", "the lock file is not valid TOML",
        "The lock file beside the topology (`NAME.lock`) is TOML that meshwork writes. Fix the \
         syntax at the marked place (a merge conflict left in it is the usual cause), or delete \
         the file and run `meshwork lock FILE`: without a lock the addresses are allocated in \
         declaration order, which may move some of them.";
    LockInvalid = "lock::invalid", "the lock file holds something a lock cannot",
        "A lock has `version = 1` and the tables `clients`, `engines`, `vteps` (addresses as \
         strings), `rule-ports` (port numbers), `admin-overlay` and `vnics.OVERLAY` (tables \
         `{ ip = \"…\", mac = \"…\" }`), one entry per object. Nothing is compiled with a lock that \
         is not one, since its addresses could not be kept: fix the marked entry.";
    LockRelocated = "lock::relocated", "an object cannot keep its locked address",
        "An object keeps the address (port, MAC) its lock entry records unless that is no longer \
         possible: an explicit `ip=`, `port=` or `mac=` elsewhere takes it, the subnet or pool \
         changed and no longer holds it, or two entries lock one address (as a merge of two \
         branches can leave). Then the object gets a free one and this warning says where it \
         goes. Run `meshwork lock FILE` to record it.";
    LockOutdated = "lock::outdated", "the lock file needs to be updated, and --locked forbids it",
        "With `--locked` (CI), meshwork refuses a topology whose lock file would change: an object \
         without an entry (new), one whose address would move, an entry whose object is gone, or \
         no lock file at all. Run `meshwork lock FILE` and commit the lock file.";
}
