//! Clientpacks: everything one client needs to join the overlay, as one OpenVPN config with its
//! CA, certificate, key and tls-crypt key inline (`.ovpn`), or as an archive of separate files
//! (`.tar.gz`) whose config names them by relative path.
//!
//! A pack lists every controller (any controller admits any client: the ccd files are
//! topology-wide), the client's *primary* first. The primary is picked by a stable hash of the
//! client's name, so clients spread over the controllers and adding a client never changes
//! another client's pack. The other controllers follow in id order, starting after the primary.
//!
//! Rendering is pure: the same network, client, material and options give byte-identical output
//! (no timestamps; archives have mtime 0, fixed owners and modes, sorted entries).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use meshwork_compiler::emit::openvpn::{CLIENT_KEEPALIVE, DATA_CIPHERS, TLS_VERSION_MIN};
use meshwork_compiler::network::{CLIENT_PORT, ClientNet, Network};

use crate::keys::{KeyError, Keyset};

/// The keyset's CA certificate, relative to the keyset directory.
pub const KEYSET_CA: &str = "ca.crt";
/// The keyset's tls-crypt static key, relative to the keyset directory.
pub const KEYSET_TLS_CRYPT: &str = "tls-crypt.key";
/// Issued certificates: `issued/<cn>.crt`.
pub const KEYSET_ISSUED: &str = "issued";
/// Private keys: `private/<cn>.key`.
pub const KEYSET_PRIVATE: &str = "private";

/// Client ping interval and restart timeout: the controller's pushed keepalive, so the pack and
/// the push agree (see [`CLIENT_KEEPALIVE`] for why these values).
pub const CLIENT_PING: u32 = CLIENT_KEEPALIVE.0;
pub const CLIENT_PING_RESTART: u32 = CLIENT_KEEPALIVE.1;
/// Give up on an unanswering controller and try the next after this long (seconds).
///
/// After a restart, OpenVPN 2.6 tries the controller that last worked once more before it moves
/// on (`no_advance`, set when a connection completes and consumed by `next_connection_entry`
/// in init.c): after a controller dies, its clients spend one whole poll timeout on it. One
/// second (OpenVPN's timers count whole seconds, so between a fraction of a second and 1 s) is
/// all a live controller needs to send its first packet over any link with a round trip well
/// under a second; a client whose first answer comes later moves on to the next controller,
/// which admits it just the same.
pub const SERVER_POLL_TIMEOUT: u32 = 1;
/// `connect-retry` base and maximum delay between attempts (seconds). No pause after a ping
/// timeout: the client dials again at once. (A poll timeout never pauses, whatever this says; a
/// controller that answers and then fails the handshake gets OpenVPN's backoff, doubling after
/// every controller failed 5 times in a row, up to the maximum.) With every controller down, a
/// client sends one handshake packet a second.
pub const CONNECT_RETRY: (u32, u32) = (0, 5);

/// Names of the files inside a `.tar.gz` pack (besides `<client>.crt`, `<client>.key` and
/// `<client>.ovpn`).
pub const PACK_CA: &str = "ca.crt";
pub const PACK_TLS_CRYPT: &str = "tls-crypt.key";

/// A client's key material, as read from the keyset. Its `Debug` never shows the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub tls_crypt: String,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("ca_pem", &format_args!("<{} bytes>", self.ca_pem.len()))
            .field("cert_pem", &format_args!("<{} bytes>", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .field("tls_crypt", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackOptions {
    /// Add `remote-random`: the client picks a controller at random instead of its primary first.
    pub remote_random: bool,
}

/// What the keyset lacks, and the command that provides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fix {
    /// No keyset at all: `meshwork keys init FILE` (or import one from the root controller).
    Init,
    /// The keyset predates this client: `meshwork keys sync FILE`.
    Sync,
}

impl Fix {
    /// The advice, naming the topology file when known (else `FILE`).
    pub fn advice(self, file: Option<&Path>) -> String {
        let file = file.map_or_else(|| "FILE".to_string(), |f| f.display().to_string());
        match self {
            Fix::Init => format!(
                "create the keyset with `meshwork keys init {file}` (or `meshwork keys import` a bundle from the root controller)"
            ),
            Fix::Sync => format!("issue the missing identities with `meshwork keys sync {file}`"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{} is missing; {}", path.display(), fix.advice(None))]
    Missing { path: PathBuf, fix: Fix },
    #[error("{0}")]
    Keyset(KeyError),
    #[error("no client named `{0}` in the topology")]
    UnknownClient(String),
    #[error("client {0} is revoked")]
    Revoked(String),
    #[error("the topology has no controller for clients to connect to")]
    NoController,
    #[error("`{0}` cannot name a file in a clientpack")]
    BadName(String),
    #[error("cannot build the archive: {0}")]
    Archive(std::io::Error),
}

impl PackError {
    /// The message, with advice that names the topology file.
    pub fn message_for(&self, file: &Path) -> String {
        match self {
            PackError::Missing { path, fix } => format!("{} is missing; {}", path.display(), fix.advice(Some(file))),
            other => other.to_string(),
        }
    }
}

/// The client `name` of `net`, if a pack may be made for it: it exists, is not revoked, and
/// there is a controller to connect to.
pub fn client<'a>(net: &'a Network, name: &str) -> Result<&'a ClientNet, PackError> {
    let c = net.clients.iter().find(|c| c.name == name).ok_or_else(|| PackError::UnknownClient(name.to_string()))?;
    if c.revoked {
        return Err(PackError::Revoked(c.name.clone()));
    }
    if net.controllers.is_empty() {
        return Err(PackError::NoController);
    }
    Ok(c)
}

/// `(address, port)` of every controller the client may connect to, in the order it tries them.
pub fn remotes(net: &Network, client: &ClientNet) -> Vec<(String, u16)> {
    meshwork_compiler::failover::order(net, client).into_iter().map(|c| (c.address.to_string(), CLIENT_PORT)).collect()
}

/// How the config reaches the key material.
enum Keys<'a> {
    Inline(&'a Material),
    Files { cert: String, key: String },
}

/// The single-file clientpack: config with CA, certificate, key and tls-crypt key inline.
pub fn ovpn(net: &Network, client: &ClientNet, material: &Material, opts: &PackOptions) -> String {
    config(net, client, Keys::Inline(material), opts)
}

/// The config of the `.tar.gz` pack: like [`ovpn`], naming the key files by relative path.
pub fn ovpn_with_files(net: &Network, client: &ClientNet, opts: &PackOptions) -> String {
    let keys = Keys::Files { cert: format!("{}.crt", client.name), key: format!("{}.key", client.name) };
    config(net, client, keys, opts)
}

fn config(net: &Network, client: &ClientNet, keys: Keys<'_>, opts: &PackOptions) -> String {
    let order = meshwork_compiler::failover::order(net, client);
    let mut s = String::with_capacity(8192);
    let _ = writeln!(s, "# meshwork clientpack for {} ({}) of topology {}", client.name, client.ip, net.name);
    match order.first() {
        Some(p) => {
            let _ = writeln!(s, "# primary controller: {} (id {}, {})", p.name, p.id, p.address);
        }
        None => s.push_str("# no controller in the topology: this pack cannot connect\n"),
    }
    match keys {
        Keys::Inline(_) => s.push_str("# Holds this client's private key: keep it secret (mode 0600).\n"),
        Keys::Files { .. } => {
            let _ = writeln!(
                s,
                "# Key files are named relative to this directory: openvpn --cd <this directory> --config {}.ovpn",
                client.name
            );
        }
    }
    s.push_str("# Generated; do not edit.\n\n");

    s.push_str("client\n");
    s.push_str("dev tun\n");
    s.push_str("proto udp\n");
    s.push_str("nobind\n");
    s.push_str("persist-key\n");
    s.push_str("persist-tun\n");

    s.push_str("\n# Every controller admits this client; without remote-random they are tried in order.\n");
    if opts.remote_random {
        s.push_str("remote-random\n");
    }
    for c in &order {
        let _ = writeln!(s, "remote {} {CLIENT_PORT} udp", c.address);
    }
    s.push_str("resolv-retry infinite\n");
    let _ = writeln!(s, "server-poll-timeout {SERVER_POLL_TIMEOUT}");
    let _ = writeln!(s, "connect-retry {} {}", CONNECT_RETRY.0, CONNECT_RETRY.1);

    s.push_str("\n# Quick failover: keep these timers over the ones the controller pushes.\n");
    s.push_str("pull-filter ignore \"ping\"\n");
    let _ = writeln!(s, "ping {CLIENT_PING}");
    let _ = writeln!(s, "ping-restart {CLIENT_PING_RESTART}");
    s.push_str("explicit-exit-notify 1\n");

    if client.redirect_gateway {
        s.push_str("\n# The overlay is this client's default route.\n");
        s.push_str("redirect-gateway def1\n");
        // persist-tun keeps the tunnel's default route over a restart, so without these the
        // next controller would be dialled through the dead tunnel and failover would stall.
        s.push_str("# Every controller stays reachable outside the tunnel, for failover.\n");
        for c in &order {
            let _ = writeln!(s, "route {} 255.255.255.255 net_gateway", c.address);
        }
    }

    s.push_str("\n# TLS: any controller's certificate signed by the topology CA, tls-crypt on every packet.\n");
    s.push_str("remote-cert-tls server\n");
    let _ = writeln!(s, "tls-version-min {TLS_VERSION_MIN}");
    let _ = writeln!(s, "data-ciphers {DATA_CIPHERS}");
    s.push_str("verb 3\n");

    match keys {
        Keys::Inline(m) => {
            s.push('\n');
            inline(&mut s, "ca", &m.ca_pem);
            inline(&mut s, "cert", &m.cert_pem);
            inline(&mut s, "key", &m.key_pem);
            inline(&mut s, "tls-crypt", &m.tls_crypt);
        }
        Keys::Files { cert, key } => {
            let _ = writeln!(s, "ca {PACK_CA}");
            let _ = writeln!(s, "cert {cert}");
            let _ = writeln!(s, "key {key}");
            let _ = writeln!(s, "tls-crypt {PACK_TLS_CRYPT}");
        }
    }
    s
}

fn inline(s: &mut String, tag: &str, body: &str) {
    let _ = writeln!(s, "<{tag}>");
    s.push_str(body.trim_end_matches(['\n', '\r']));
    let _ = writeln!(s, "\n</{tag}>");
}

/// The archive form: `<client>/<client>.ovpn`, `<client>/ca.crt`, `<client>/<client>.crt`,
/// `<client>/<client>.key` and `<client>/tls-crypt.key`, sorted; keys 0600, the rest 0644;
/// owner 0:0, mtime 0 (also in the gzip header), so the same inputs give the same bytes.
pub fn tar_gz(
    net: &Network,
    client: &ClientNet,
    material: &Material,
    opts: &PackOptions,
) -> Result<Vec<u8>, PackError> {
    let name = &client.name;
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
        return Err(PackError::BadName(name.clone()));
    }
    let config = ovpn_with_files(net, client, opts);
    let mut files: Vec<(String, &[u8], u32)> = vec![
        (format!("{name}/{name}.ovpn"), config.as_bytes(), 0o644),
        (format!("{name}/{PACK_CA}"), material.ca_pem.as_bytes(), 0o644),
        (format!("{name}/{name}.crt"), material.cert_pem.as_bytes(), 0o644),
        (format!("{name}/{name}.key"), material.key_pem.as_bytes(), 0o600),
        (format!("{name}/{PACK_TLS_CRYPT}"), material.tls_crypt.as_bytes(), 0o600),
    ];
    files.sort_by(|a, b| a.0.cmp(&b.0));

    let gz = GzBuilder::new().mtime(0).write(Vec::with_capacity(16 * 1024), Compression::best());
    let mut tar = tar::Builder::new(gz);
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        tar.append_data(&mut h, &path, data).map_err(PackError::Archive)?;
    }
    let mut gz = tar.into_inner().map_err(PackError::Archive)?;
    gz.flush().map_err(PackError::Archive)?;
    gz.finish().map_err(PackError::Archive)
}

/// The keyset in `state`, opened with every check the other verbs make (modes 0600/0700,
/// owner, no symbolic links, `ca.crt` is the indexed CA). No keyset at all is
/// [`PackError::Missing`] with the command that creates one.
pub fn open_keyset(state: &Path) -> Result<Keyset, PackError> {
    Keyset::open(state).map_err(|e| match e {
        KeyError::NotFound { dir } => PackError::Missing { path: dir.join(KEYSET_CA), fix: Fix::Init },
        other => PackError::Keyset(other),
    })
}

/// Reads `cn`'s material from an open keyset: `ca.crt`, `issued/<cn>.crt`, `private/<cn>.key`
/// (refused unless it is the certificate's key), `tls-crypt.key`. Every file is read through the
/// keyset's checks; an identity the keyset lacks is named, with the command that issues it.
pub fn load_material(keyset: &Keyset, cn: &str) -> Result<Material, PackError> {
    let missing = |e: KeyError| match e {
        KeyError::UnknownIdentity { .. } => {
            PackError::Missing { path: keyset.dir().join(KEYSET_ISSUED).join(format!("{cn}.crt")), fix: Fix::Sync }
        }
        other => PackError::Keyset(other),
    };
    Ok(Material {
        ca_pem: keyset.ca_pem().map_err(PackError::Keyset)?,
        tls_crypt: keyset.tls_crypt().map_err(PackError::Keyset)?,
        cert_pem: keyset.cert_pem(cn).map_err(missing)?,
        key_pem: keyset.key_pem(cn).map_err(missing)?,
    })
}
