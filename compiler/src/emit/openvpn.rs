//! OpenVPN configuration for one controller: its own server (`server.conf`), one server per
//! engine (`engine-<k>.conf`), the client-config-dir (`ccd/<client>`, one file per client;
//! unknown clients are refused) and one point-to-point tunnel per mesh neighbour
//! (`peer-<name>.conf`).
//!
//! Key material is referenced by relative path only: the runtime starts every OpenVPN process of
//! a controller with `--cd <controller>/openvpn`, where it has placed `keys/` (from its state
//! directory) and created `run/` for the management sockets. No artifact contains a secret.
//!
//! Certificates (CN -> file `keys/<cn>.crt` + `keys/<cn>.key`), for the key issuer:
//! - `<controller>`: the controller's own server, EKU serverAuth.
//! - `<controller>-e<k>`: engine k's server, EKU serverAuth.
//! - `peer-<controller>`: the controller's peering identity. On a tunnel the lower id listens
//!   and presents it as a server (checked by the dialer's `remote-cert-tls server`), the higher
//!   id dials and presents it as a client (`remote-cert-tls client` on the listener). A
//!   controller in the middle of the id range does both with the same certificate, so it must
//!   carry both EKUs, serverAuth and clientAuth.

use std::fmt::Write;

use crate::network::{CLIENT_PORT, ClientNet, ControllerNet, EngineNet, Network, TUN_DEVICE};
use crate::peering::{PEER_PORT_BASE, tunnel_addresses, tunnel_device};

/// The topology CA, relative to the OpenVPN directory.
pub const CA_PATH: &str = "keys/ca.crt";
/// The topology CRL (revoked and removed identities), refreshed by `meshwork keys sync`.
pub const CRL_PATH: &str = "keys/crl.pem";
/// The topology's tls-crypt static key (not X.509), shared by every endpoint.
pub const TLS_CRYPT_PATH: &str = "keys/tls-crypt.key";
/// Client-config-dir, shared by the controller's server and its engines.
pub const CCD_DIR: &str = "ccd";
/// Directory of the management sockets.
pub const RUN_DIR: &str = "run";
pub const DATA_CIPHERS: &str = "AES-256-GCM:CHACHA20-POLY1305";
pub const TLS_VERSION_MIN: &str = "1.2";
/// Client keepalive (ping interval, restart timeout), pushed to clients and written into every
/// clientpack (which keeps its own over the push, so both must say the same).
///
/// A client restarts (and so fails over) when nothing came from its controller for the timeout.
/// What comes, besides traffic: the controller's agent sends every client it holds a heartbeat
/// every [`CLIENT_HEARTBEAT_MS`] through the tunnel, and OpenVPN counts any packet it decrypts.
/// (The server's own pings stop while heartbeats flow: it pings only after a second of sending
/// nothing.) OpenVPN's timers count whole seconds, so a restart takes a silence of just over 2 s
/// to 3 s, by how the seconds fall: 8 to 12 heartbeats lost in a row. At 20% random loss that is
/// about once a day in the worst phase (0.2^8 per beat, 4 beats a second); at 5%, never in
/// practice. A dead controller is noticed 2 to 3 s after it died (measured: 2.9 to 3.3 s).
///
/// With that controller's agent down only the pings remain: 2 or 3 lost in a row (by how the
/// ends' whole seconds fall) restart the client, every 7 to 13 minutes at 5% loss (0.05^2 a
/// second). The timeout is not lower for that reason: at 2, one lost ping would do. The server
/// drops a silent client after twice the timeout (OpenVPN's `keepalive` rule).
pub const CLIENT_KEEPALIVE: (u32, u32) = (1, 3);
/// How often a controller's agent sends each client it holds a heartbeat (milliseconds): an
/// ICMP echo reply through the tunnel, which the client's OpenVPN counts as a sign of life and
/// its kernel drops without an answer. See [`CLIENT_KEEPALIVE`].
pub const CLIENT_HEARTBEAT_MS: u64 = 250;
/// Peer keepalive: a peer notices a lost tunnel within ~5 s.
pub const PEER_KEEPALIVE: (u32, u32) = (2, 6);

pub const SERVER_CONF: &str = "server.conf";
pub const SERVER_SOCKET: &str = "run/server.sock";

pub fn cert_path(cn: &str) -> String {
    format!("keys/{cn}.crt")
}

pub fn key_path(cn: &str) -> String {
    format!("keys/{cn}.key")
}

/// CN of a controller's peering identity.
pub fn peer_cn(controller: &str) -> String {
    format!("peer-{controller}")
}

pub fn engine_conf(k: u32) -> String {
    format!("engine-{k}.conf")
}

pub fn engine_socket(k: u32) -> String {
    format!("{RUN_DIR}/engine-{k}.sock")
}

/// The network namespace engine `engine` (its name, `<controller>-e<k>`) runs in.
pub fn engine_netns(engine: &str) -> String {
    format!("mw-{engine}")
}

/// What the namespaces of `controller`'s engines start with: [`engine_netns`] of
/// [`engine_name`](crate::network::engine_name) without the index, so a namespace left by an
/// engine that is gone is still recognised as the controller's.
pub fn engine_netns_prefix(controller: &str) -> String {
    engine_netns(&crate::network::engine_name(controller, 0)).trim_end_matches('0').to_string()
}

pub fn peer_conf(remote: &str) -> String {
    format!("peer-{remote}.conf")
}

pub fn peer_socket(remote: &str) -> String {
    format!("{RUN_DIR}/peer-{remote}.sock")
}

/// The UDP port of the tunnel between controllers with ids `a` and `b`: the lower id listens
/// on 1194 + the higher id.
pub fn peer_port(a: u32, b: u32) -> u16 {
    PEER_PORT_BASE + a.max(b) as u16
}

pub fn configs(net: &Network, c: &ControllerNet) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(16);
    let pushes = pushed_routes(net);
    out.push((SERVER_CONF.to_string(), server_conf(net, c, &pushes)));
    if let Some(set) = &c.engines {
        for e in &set.engines {
            out.push((engine_conf(e.index), engine_conf_text(net, c, e, &pushes)));
        }
    }
    for remote in net.mesh.neighbours(&c.name) {
        if let Some(r) = net.controller(&remote) {
            out.push((peer_conf(&r.name), peer(net, c, r)));
        }
    }
    out
}

/// Every client's ccd file, as (client name, content). They are the same on every controller,
/// so the build writes them once (`ccd/<client>`) and each controller's `openvpn/ccd` links there.
pub fn ccd_files(net: &Network) -> Vec<(&str, String)> {
    let Some(overlay) = net.overlay else { return Vec::new() };
    let mask = overlay.netmask().to_string();
    net.clients.iter().map(|client| (client.name.as_str(), ccd(net, client, &mask))).collect()
}

/// `push "route ..."` lines for every controller's LANs: clients reach every LAN of the
/// topology through the overlay, whichever controller they are connected to.
fn pushed_routes(net: &Network) -> String {
    let mut s = String::new();
    for c in net.controllers.iter().filter(|c| !c.lans.is_empty()) {
        let _ = writeln!(s, "# LANs of controller {}", c.name);
        for lan in &c.lans {
            let _ = writeln!(s, "push \"route {} {}\"", lan.network(), lan.netmask());
        }
    }
    s
}

/// Which side of a TLS session this endpoint is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

/// The TLS block: topology CA, this endpoint's certificate, peer certificate checks, tls-crypt
/// on every packet, modern ciphers only.
fn tls(s: &mut String, cn: &str, role: Role, verify_name: Option<&str>) {
    let (me, them) = match role {
        Role::Server => ("tls-server", "client"),
        Role::Client => ("tls-client", "server"),
    };
    s.push_str("\n# TLS: topology CA, this endpoint's certificate, tls-crypt on every packet.\n");
    let _ = writeln!(s, "{me}");
    let _ = writeln!(s, "ca {CA_PATH}");
    let _ = writeln!(s, "cert {}", cert_path(cn));
    let _ = writeln!(s, "key {}", key_path(cn));
    let _ = writeln!(s, "remote-cert-tls {them}");
    if let Some(name) = verify_name {
        let _ = writeln!(s, "verify-x509-name {name} name");
    }
    // Every endpoint that verifies a peer certificate checks it against the topology's CRL, so
    // a revoked client (or a removed peer) is refused everywhere.
    let _ = writeln!(s, "crl-verify {CRL_PATH}");
    if role == Role::Server {
        s.push_str("dh none\n");
    }
    let _ = writeln!(s, "tls-crypt {TLS_CRYPT_PATH}");
    let _ = writeln!(s, "tls-version-min {TLS_VERSION_MIN}");
    let _ = writeln!(s, "data-ciphers {DATA_CIPHERS}");
}

/// A client-facing server: the controller's own (engine None) or one of its engines.
fn client_server(net: &Network, c: &ControllerNet, engine: Option<&EngineNet>, pushes: &str) -> String {
    let mut s = String::with_capacity(2048);
    let (overlay_ip, cn, socket) = match engine {
        None => (c.overlay_ip, c.name.clone(), SERVER_SOCKET.to_string()),
        Some(e) => (e.overlay_ip, e.name.clone(), engine_socket(e.index)),
    };
    match engine {
        None => {
            let _ = writeln!(s, "# meshwork: OpenVPN server for controller {} of topology {}", c.name, net.name);
        }
        Some(e) => {
            let _ = writeln!(
                s,
                "# meshwork: OpenVPN engine {} ({}) of controller {} of topology {}",
                e.index, e.name, c.name, net.name
            );
            let _ = writeln!(
                s,
                "# Runs in network namespace {} behind {}, reached by DNAT of mark {:#x};",
                engine_netns(&e.name),
                crate::network::PLUGIN_BRIDGE,
                e.mark
            );
            s.push_str("# shares ccd/ with the controller's server.\n");
        }
    }
    s.push_str("# Generated; do not edit. Started by the runtime with --cd <this directory>.\n\n");
    s.push_str("mode server\n");
    if let Some(e) = engine {
        let _ = writeln!(s, "local {}", e.plugin_ip);
    }
    s.push_str("proto udp\n");
    let _ = writeln!(s, "port {CLIENT_PORT}");
    let _ = writeln!(s, "dev {TUN_DEVICE}");
    s.push_str("dev-type tun\n");
    s.push_str("topology subnet\n");
    let _ = writeln!(s, "ifconfig {overlay_ip} {}", c.overlay.netmask());
    s.push_str("push \"topology subnet\"\n");
    // The topology's one gateway, not this unit's address: see `Network::client_gateway`.
    let gateway = net.client_gateway().unwrap_or(overlay_ip);
    s.push_str("# One gateway for the whole topology: a client that fails over pulls the same options.\n");
    let _ = writeln!(s, "push \"route-gateway {gateway}\"");
    s.push_str(pushes);
    s.push_str(
        "\n# Only clients with a file in ccd/ are admitted; each file pins the client's overlay address.\n\
         # Clients are never switched inside OpenVPN: all their traffic passes the controller's forward chain.\n",
    );
    let _ = writeln!(s, "client-config-dir {CCD_DIR}");
    s.push_str("ccd-exclusive\n");
    // The overlay's size, not the number of clients: a cap that stays put, so adding a client
    // changes no server config and restarts no server.
    let hosts = (1u64 << (32 - u32::from(c.overlay.prefix_len()))).saturating_sub(2).max(1);
    let _ = writeln!(s, "max-clients {hosts}");
    tls(&mut s, &cn, Role::Server, None);
    s.push('\n');
    let _ = writeln!(s, "keepalive {} {}", CLIENT_KEEPALIVE.0, CLIENT_KEEPALIVE.1);
    s.push_str("explicit-exit-notify 1\n");
    s.push_str("persist-key\n");
    s.push_str("persist-tun\n");
    let _ = writeln!(s, "management {socket} unix");
    s.push_str("verb 3\n");
    s
}

fn server_conf(net: &Network, c: &ControllerNet, pushes: &str) -> String {
    client_server(net, c, None, pushes)
}

fn engine_conf_text(net: &Network, c: &ControllerNet, e: &EngineNet, pushes: &str) -> String {
    client_server(net, c, Some(e), pushes)
}

/// A client's ccd file. The same on every controller (and engine), so a client that fails over
/// gets the same address everywhere. Kept minimal: 64 controllers x 50,000 clients of these.
fn ccd(net: &Network, client: &ClientNet, mask: &str) -> String {
    let mut s = String::with_capacity(96 + client.name.len() + net.name.len());
    s.push_str("# meshwork: client ");
    s.push_str(&client.name);
    s.push_str(" of topology ");
    s.push_str(&net.name);
    if client.revoked {
        // Refused outright, even before the CRL reaches this controller.
        s.push_str(" (revoked)\ndisable\n");
        return s;
    }
    s.push_str("\nifconfig-push ");
    let _ = write!(s, "{}", client.ip);
    s.push(' ');
    s.push_str(mask);
    s.push('\n');
    if client.redirect_gateway {
        s.push_str("push \"redirect-gateway def1\"\n");
    }
    s
}

/// The point-to-point tunnel from `c` to its neighbour `r`. The lower id listens on UDP
/// 1194 + the higher id and acts as TLS server; the higher id dials it as TLS client.
fn peer(net: &Network, c: &ControllerNet, r: &ControllerNet) -> String {
    let listens = c.id < r.id;
    let port = peer_port(c.id, r.id);
    let (local, remote) = tunnel_addresses(c.id, r.id);
    let mut s = String::with_capacity(1536);
    let _ = writeln!(
        s,
        "# meshwork: peering tunnel {} (id {}) <-> {} (id {}) on controller {} of topology {}",
        c.name, c.id, r.name, r.id, c.name, net.name
    );
    let (lo, hi) = if listens { (c, r) } else { (r, c) };
    let _ = writeln!(s, "# {} listens on UDP {port}, {} dials it.", lo.name, hi.name);
    s.push_str("# Generated; do not edit. Started by the runtime with --cd <this directory>.\n\n");
    s.push_str("proto udp\n");
    if listens {
        let _ = writeln!(s, "port {port}");
        s.push_str("float\n");
    } else {
        let _ = writeln!(s, "remote {} {port}", r.address);
        s.push_str("nobind\n");
        s.push_str("resolv-retry infinite\n");
    }
    let _ = writeln!(s, "dev {}", tunnel_device(r.id));
    s.push_str("dev-type tun\n");
    let _ = writeln!(s, "ifconfig {local} {remote}");
    let role = if listens { Role::Server } else { Role::Client };
    tls(&mut s, &peer_cn(&c.name), role, Some(&peer_cn(&r.name)));
    s.push('\n');
    let _ = writeln!(s, "keepalive {} {}", PEER_KEEPALIVE.0, PEER_KEEPALIVE.1);
    s.push_str("persist-key\n");
    s.push_str("persist-tun\n");
    let _ = writeln!(s, "management {} unix", peer_socket(&r.name));
    s.push_str("verb 3\n");
    s
}

#[cfg(test)]
mod tests {
    use crate::testing::network as net;
    use std::collections::BTreeMap;

    use std::net::Ipv4Addr;

    use super::*;

    const MESH: &str = r#"
topology "t"
overlay "100.127.255.192/26"
controller "a" id=1 {
    address "192.0.2.1"
    lan "10.1.0.0/16"
}
controller "b" id=2 {
    address "b.example.net"
    cores 4
    engines 2 subnet="198.51.100.0/28"
}
controller "c" id=3 {
    address "192.0.2.3"
    lan "10.3.0.0/16"
    lan "10.33.0.0/24"
}
peering {
    link "a" "b" cost=1
    link "b" "c" cost=1
    link "a" "c" cost=5
}
client "web-1" tags="web" redirect-gateway=#false
client "gone" revoked=#true
client "roam" ip="100.127.255.200" redirect-gateway=#true
"#;

    fn files(net: &Network, name: &str) -> BTreeMap<String, String> {
        let c = net.controller(name).unwrap();
        let out = configs(net, c);
        let n = out.len();
        let map: BTreeMap<String, String> = out.into_iter().collect();
        assert_eq!(map.len(), n, "duplicate paths");
        map
    }

    fn lines(s: &str) -> Vec<&str> {
        s.lines().map(|l| l.split('#').next().unwrap().trim()).filter(|l| !l.is_empty()).collect()
    }

    fn has(s: &str, line: &str) -> bool {
        lines(s).contains(&line)
    }

    #[test]
    fn file_set() {
        let n = net(MESH);
        let paths: Vec<String> = files(&n, "b").into_keys().collect();
        assert_eq!(paths, ["engine-1.conf", "engine-2.conf", "peer-a.conf", "peer-c.conf", "server.conf"]);
        let paths: Vec<String> = files(&n, "a").into_keys().collect();
        assert!(!paths.iter().any(|p| p.starts_with("engine-")));
    }

    #[test]
    fn server_conf_refuses_unknown_clients_and_keeps_traffic_in_the_kernel() {
        let n = net(MESH);
        let f = files(&n, "a");
        let s = &f["server.conf"];
        assert!(s.starts_with("# meshwork: OpenVPN server for controller a of topology t\n"));
        for l in [
            "mode server",
            "tls-server",
            "proto udp",
            "port 1194",
            "dev tun0",
            "dev-type tun",
            "topology subnet",
            "ifconfig 100.127.255.253 255.255.255.192",
            "push \"topology subnet\"",
            "push \"route-gateway 100.127.255.253\"",
            "push \"route 10.1.0.0 255.255.0.0\"",
            "push \"route 10.3.0.0 255.255.0.0\"",
            "push \"route 10.33.0.0 255.255.255.0\"",
            "client-config-dir ccd",
            "ccd-exclusive",
            "remote-cert-tls client",
            "dh none",
            "ca keys/ca.crt",
            "cert keys/a.crt",
            "key keys/a.key",
            "tls-crypt keys/tls-crypt.key",
            "data-ciphers AES-256-GCM:CHACHA20-POLY1305",
            "tls-version-min 1.2",
            "keepalive 1 3",
            "persist-key",
            "persist-tun",
            "management run/server.sock unix",
            "verb 3",
        ] {
            assert!(has(s, l), "missing {l:?} in\n{s}");
        }
        assert!(!s.contains("client-to-client"));
        assert!(!lines(s).iter().any(|l| l.starts_with("local ")));
    }

    #[test]
    fn engines_listen_on_their_plugin_address() {
        let n = net(MESH);
        let f = files(&n, "b");
        let b = n.controller("b").unwrap();
        let set = b.engines.as_ref().unwrap();
        for (k, e) in (1u32..).zip(&set.engines) {
            let s = &f[&format!("engine-{k}.conf")];
            // plugin0 is host 1; engine k is host 1+k.
            assert_eq!(e.plugin_ip, Ipv4Addr::new(198, 51, 100, 1 + k as u8));
            assert!(has(s, &format!("local 198.51.100.{}", 1 + k)), "{s}");
            assert!(has(s, &format!("ifconfig {} 255.255.255.192", e.overlay_ip)));
            // The topology's one gateway (controller a's), not the engine's own address.
            let gateway = n.controller("a").unwrap().overlay_ip;
            assert!(has(s, &format!("push \"route-gateway {gateway}\"")), "{s}");
            assert!(has(s, &format!("cert keys/b-e{k}.crt")));
            assert!(has(s, &format!("key keys/b-e{k}.key")));
            assert!(has(s, &format!("management run/engine-{k}.sock unix")));
            assert!(has(s, "client-config-dir ccd"));
            assert!(has(s, "ccd-exclusive"));
            assert!(has(s, "port 1194"));
            assert!(s.contains(&format!("network namespace mw-b-e{k} ")));
            assert!(!s.contains("client-to-client"));
            assert_ne!(e.overlay_ip, b.overlay_ip);
        }
    }

    #[test]
    fn ccd_files() {
        let n = net(MESH);
        let f: std::collections::BTreeMap<&str, String> = super::ccd_files(&n).into_iter().collect();
        let web = n.clients.iter().find(|c| c.name == "web-1").unwrap();
        assert_eq!(
            f["web-1"],
            format!("# meshwork: client web-1 of topology t\nifconfig-push {} 255.255.255.192\n", web.ip)
        );
        assert_eq!(f["gone"], "# meshwork: client gone of topology t (revoked)\ndisable\n");
        assert_eq!(
            f["roam"],
            "# meshwork: client roam of topology t\nifconfig-push 100.127.255.200 255.255.255.192\n\
             push \"redirect-gateway def1\"\n"
        );
        assert_eq!(f.len(), n.clients.len());
    }

    #[test]
    fn lower_id_listens_on_1194_plus_higher_id_and_higher_id_dials() {
        let n = net(MESH);
        let a = files(&n, "a");
        let b = files(&n, "b");
        let c = files(&n, "c");

        // a (1) <-> b (2): a listens on 1196, b dials 192.0.2.1 1196.
        let ab = &a["peer-b.conf"];
        for l in [
            "port 1196",
            "float",
            "tls-server",
            "remote-cert-tls client",
            "dh none",
            "dev mw-p2",
            "ifconfig 169.254.1.2 169.254.2.1",
            "verify-x509-name peer-b name",
            "cert keys/peer-a.crt",
            "key keys/peer-a.key",
            "keepalive 2 6",
            "management run/peer-b.sock unix",
        ] {
            assert!(has(ab, l), "missing {l:?} in\n{ab}");
        }
        assert!(!lines(ab).iter().any(|l| l.starts_with("remote ") || *l == "nobind" || *l == "tls-client"));

        let ba = &b["peer-a.conf"];
        for l in [
            "remote 192.0.2.1 1196",
            "nobind",
            "tls-client",
            "remote-cert-tls server",
            "dev mw-p1",
            "ifconfig 169.254.2.1 169.254.1.2",
            "verify-x509-name peer-a name",
            "cert keys/peer-b.crt",
            "management run/peer-a.sock unix",
        ] {
            assert!(has(ba, l), "missing {l:?} in\n{ba}");
        }
        assert!(!lines(ba).iter().any(|l| l.starts_with("port ") || *l == "tls-server" || *l == "dh none"));

        // b (2) <-> c (3): b listens on 1197, c dials b by DNS name.
        assert!(has(&b["peer-c.conf"], "port 1197"));
        assert!(has(&b["peer-c.conf"], "ifconfig 169.254.2.3 169.254.3.2"));
        assert!(has(&c["peer-b.conf"], "remote b.example.net 1197"));
        assert!(has(&c["peer-b.conf"], "ifconfig 169.254.3.2 169.254.2.3"));
        // a (1) <-> c (3): a listens on 1197 too (a different socket from b's 1197 host).
        assert!(has(&a["peer-c.conf"], "port 1197"));
        assert!(has(&c["peer-a.conf"], "remote 192.0.2.1 1197"));

        // Every listener port on one host is distinct.
        let ports: Vec<&str> = a.values().flat_map(|s| lines(s)).filter(|l| l.starts_with("port ")).collect();
        let mut dedup = ports.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(ports.len(), dedup.len());
    }

    #[test]
    fn only_neighbours_get_peer_configs() {
        let n = net(r#"
topology "chain"
overlay "100.127.255.192/26"
controller "a" id=1 { address "192.0.2.1"; }
controller "b" id=2 { address "192.0.2.2"; }
controller "c" id=3 { address "192.0.2.3"; }
peering {
    link "a" "b"
    link "b" "c"
}
"#);
        let a = files(&n, "a");
        assert!(a.contains_key("peer-b.conf"));
        assert!(!a.contains_key("peer-c.conf"));
        assert_eq!(files(&n, "b").keys().filter(|k| k.starts_with("peer-")).count(), 2);
    }

    #[test]
    fn no_secrets_relative_paths_and_deterministic() {
        let n = net(MESH);
        for c in &n.controllers {
            let one = configs(&n, c);
            assert_eq!(one, configs(&n, c));
            for (path, s) in &one {
                assert!(!s.contains("BEGIN"), "{path}");
                assert!(s.starts_with("# meshwork: "), "{path}");
                assert!(s.ends_with('\n'), "{path}");
                for l in lines(s) {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    if ["ca", "cert", "key", "tls-crypt", "management"].contains(&words[0]) {
                        assert!(!words[1].starts_with('/'), "{path}: {l}");
                    }
                }
            }
        }
    }
}
