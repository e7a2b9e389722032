//! strongSwan for a node with peers in other PDCs (DESIGN §9). `swanctl.conf`: IKEv2, one
//! connection per peer between the two external addresses, ESP always UDP-encapsulated
//! (`encap = yes`: one wire format for both data paths, and NAT-friendly), one tunnel-mode child
//! whose selectors are the two VTEP addresses (libipsec cannot route selectors equal to the IKE
//! peers), pre-shared keys included from the keyset by path. `strongswan.conf`: the data path's
//! plugin, the vici socket, and for libipsec a TUN MTU that carries the largest VXLAN packet.

use std::fmt::Write;

use crate::model::vxlan::Datapath;
use crate::vxlan::names::{self, VICI_SOCKET};
use crate::vxlan::{NodeNet, VxlanNet};

pub fn swanctl_conf(vx: &VxlanNet, node: &NodeNet) -> String {
    let mut s = format!(
        "# meshwork: IPsec of node {} (PDC {}) with its peers in other PDCs; generated, do not edit.\n\
         # Pre-shared keys are included from the keyset (keys/psk/), never written here.\n\nconnections {{\n",
        node.name, node.pdc
    );
    let peers: Vec<_> = vx.ipsec_peers(node).collect();
    for (pair, peer) in &peers {
        // One side starts the SA and restarts it when it dies; the other only answers, so the
        // pair never holds two SAs racing each other.
        let initiator = pair.low == node.name;
        let (start, dpd, close) = if initiator { ("start", "restart", "start") } else { ("none", "clear", "none") };
        let (Some(local), Some(remote), Some(local_vtep), Some(remote_vtep)) =
            (node.external, peer.external, node.vtep, peer.vtep)
        else {
            continue;
        };
        let conn = names::ike_connection(&peer.name);
        let _ = write!(
            s,
            "    {conn} {{\n\
             \x20       # {peer} in PDC {pdc}\n\
             \x20       version = 2\n\
             \x20       local_addrs = {local}\n\
             \x20       remote_addrs = {remote}\n\
             \x20       encap = yes\n\
             \x20       proposals = {ike}\n\
             \x20       dpd_delay = 10s\n\
             \x20       # Until it succeeds: the peer may come up (or load its configuration) later.\n\
             \x20       keyingtries = 0\n\
             \x20       local {{\n\
             \x20           auth = psk\n\
             \x20           id = {local_id}\n\
             \x20       }}\n\
             \x20       remote {{\n\
             \x20           auth = psk\n\
             \x20           id = {remote_id}\n\
             \x20       }}\n\
             \x20       children {{\n\
             \x20           {conn} {{\n\
             \x20               mode = tunnel\n\
             \x20               local_ts = {local_vtep}/32\n\
             \x20               remote_ts = {remote_vtep}/32\n\
             \x20               esp_proposals = {esp}\n\
             \x20               start_action = {start}\n\
             \x20               dpd_action = {dpd}\n\
             \x20               close_action = {close}\n\
             \x20           }}\n\
             \x20       }}\n\
             \x20   }}\n",
            peer = peer.name,
            pdc = peer.pdc,
            local = local.ip,
            remote = remote.ip,
            ike = vx.ipsec.proposals,
            esp = vx.ipsec.esp,
            local_id = names::ike_id(&node.name),
            remote_id = names::ike_id(&peer.name),
        );
    }
    s.push_str("}\n\nsecrets {\n");
    for (pair, peer) in &peers {
        let _ = write!(
            s,
            "    ike-{conn} {{\n\
             \x20       id-1 = {a}\n\
             \x20       id-2 = {b}\n\
             \x20       include {path}\n\
             \x20   }}\n",
            conn = names::ike_connection(&peer.name),
            a = names::ike_id(&pair.low),
            b = names::ike_id(&pair.high),
            path = pair.psk_path(),
        );
    }
    s.push_str("}\n");
    s
}

fn conf(node: &NodeNet, datapath: Datapath) -> String {
    let mut s = format!(
        "# meshwork: strongSwan (charon-systemd) for node {}, data path {}; generated, do not edit.\n\
         # Run with STRONGSWAN_CONF pointing here and the node's state directory as working directory.\n\
         charon-systemd {{\n\
         \x20   load_modular = yes\n\
         \x20   install_routes = yes\n\
         \x20   # A re-authentication (after a pre-shared key rotation) builds the new SAs before it\n\
         \x20   # deletes the old ones, so traffic does not stop.\n\
         \x20   make_before_break = yes\n\
         \x20   plugins {{\n\
         \x20       include /etc/strongswan.d/charon/*.conf\n\
         \x20       vici {{\n\
         \x20           socket = {VICI_SOCKET}\n\
         \x20       }}\n",
        node.name,
        datapath.name(),
    );
    match datapath {
        Datapath::Userspace => {
            let _ = write!(
                s,
                "        # ESP in userspace through the TUN device {tun} ({mtu} bytes at most: the vNIC MTUs\n\
                 \x20       # of rules that cross PDCs are computed to fit it).\n\
                 \x20       kernel-libipsec {{\n\
                 \x20           load = yes\n\
                 \x20       }}\n",
                tun = names::LIBIPSEC_TUN,
                mtu = crate::vxlan::mtu::LIBIPSEC_TUN_MTU,
            );
        }
        Datapath::Kernel | Datapath::Auto => s.push_str(
            "        # ESP in the kernel (XFRM) through kernel-netlink.\n\
             \x20       kernel-libipsec {\n\
             \x20           load = no\n\
             \x20       }\n",
        ),
    }
    s.push_str("    }\n    journal {\n        default = -1\n    }\n}\n");
    s
}

/// `(file name, content)`: `strongswan.conf` for the chosen data path; with `auto`, the kernel
/// form there and the userspace form beside it, for the runtime's probe to choose.
pub fn strongswan_confs(vx: &VxlanNet, node: &NodeNet) -> Vec<(&'static str, String)> {
    use super::{STRONGSWAN_CONF, STRONGSWAN_USERSPACE_CONF};
    match vx.ipsec.datapath {
        Datapath::Auto => vec![
            (STRONGSWAN_CONF, conf(node, Datapath::Kernel)),
            (STRONGSWAN_USERSPACE_CONF, conf(node, Datapath::Userspace)),
        ],
        d => vec![(STRONGSWAN_CONF, conf(node, d))],
    }
}
