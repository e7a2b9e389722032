//! Every name the VXLAN part gives to something on a host or on disk, made here and nowhere
//! else: link names, the admin-overlay interface, IKE connection names and PSK files.
//!
//! Linux link names have at most 15 bytes and the runtime owns only links named `mw-*`, so a
//! VXLAN device is `mw-vx` + the rule's port (4 hex digits) + the VNI (6 hex digits), and its
//! bridge `mw-br` + the same: fixed width, unique per (port, VNI) — which is what identifies an
//! overlay on a node — and stable when other overlays come and go.

/// The node's own interface on the admin overlay, as Danube names it.
pub const ADMIN_OVERLAY_INTERFACE: &str = "adminoverlay_0";
/// The admin-overlay bridge's end of the veth pair whose other end is `adminoverlay_0`.
pub const ADMIN_OVERLAY_PORT: &str = "mw-adminport";
/// Prefixes of the links a node's VXLAN part owns (besides the two above).
pub const VXLAN_DEVICE_PREFIX: &str = "mw-vx";
pub const BRIDGE_PREFIX: &str = "mw-br";
/// Where pre-shared keys live: `keyset/psk/` in the keyset, `keys/psk/` beside the configs.
pub const PSK_DIR: &str = "psk";
/// libipsec's TUN device (userspace data path).
pub const LIBIPSEC_TUN: &str = "ipsec0";

pub fn vxlan_device(port: u16, vni: u32) -> String {
    format!("{VXLAN_DEVICE_PREFIX}{port:04x}{vni:06x}")
}

pub fn bridge(port: u16, vni: u32) -> String {
    format!("{BRIDGE_PREFIX}{port:04x}{vni:06x}")
}

/// The swanctl connection (and its one child) toward `peer`: `peer-` + the name with '.' and '_'
/// escaped ('.' separates strongSwan setting keys), so every node name maps to its own.
pub fn ike_connection(peer: &str) -> String {
    let mut s = String::from("peer-");
    for c in peer.chars() {
        match c {
            '_' => s.push_str("__"),
            '.' => s.push_str("_d"),
            c => s.push(c),
        }
    }
    s
}

/// A node's IKE identity: `@` makes strongSwan take the name as an FQDN-type ID as written,
/// even one that looks like an address.
pub fn ike_id(node: &str) -> String {
    format!("@{node}")
}

/// charon's vici socket file, relative to its working directory (the node's directory).
pub const VICI_FILE: &str = "charon.vici";
/// The same socket as strongSwan's URI (`vici { socket = … }`, `swanctl --uri …`).
pub const VICI_SOCKET: &str = "unix://charon.vici";

/// A pair of nodes in different PDCs, names in order: one PSK, one IKE connection each way.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodePair {
    pub low: String,
    pub high: String,
}

impl NodePair {
    pub fn new(a: &str, b: &str) -> Self {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        Self { low: low.to_string(), high: high.to_string() }
    }

    /// The other node of the pair, seen from `node`.
    pub fn peer_of(&self, node: &str) -> Option<&str> {
        if self.low == node {
            Some(&self.high)
        } else if self.high == node {
            Some(&self.low)
        } else {
            None
        }
    }

    /// `<low>+<high>.psk`: '+' cannot appear in a name, so no two pairs share a file.
    pub fn psk_file(&self) -> String {
        format!("{}+{}.psk", self.low, self.high)
    }

    /// The PSK as the node's swanctl.conf includes it, relative to that file.
    pub fn psk_path(&self) -> String {
        format!("keys/{PSK_DIR}/{}", self.psk_file())
    }
}

impl std::fmt::Display for NodePair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} and {}", self.low, self.high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_fit_linux_and_are_fixed_width() {
        assert_eq!(vxlan_device(4790, 123), "mw-vx12b600007b");
        assert_eq!(vxlan_device(65535, 16_777_215).len(), 15);
        assert_eq!(bridge(1, 1).len(), 15);
    }

    #[test]
    fn connection_names_are_injective_and_dot_free() {
        assert_eq!(ike_connection("cn-1"), "peer-cn-1");
        assert_ne!(ike_connection("a.b"), ike_connection("a_b"));
        assert_ne!(ike_connection("a_d"), ike_connection("a.d"));
        assert!(!ike_connection("x.y.z").contains('.'));
    }

    #[test]
    fn the_vici_uri_names_the_vici_file() {
        assert_eq!(VICI_SOCKET, format!("unix://{VICI_FILE}"));
    }

    #[test]
    fn pairs_are_unordered() {
        assert_eq!(NodePair::new("cn-3", "cn-1"), NodePair::new("cn-1", "cn-3"));
        assert_eq!(NodePair::new("cn-3", "cn-1").psk_path(), "keys/psk/cn-1+cn-3.psk");
        assert_eq!(NodePair::new("a", "b").peer_of("b"), Some("a"));
        assert_eq!(NodePair::new("a", "b").peer_of("c"), None);
    }
}
