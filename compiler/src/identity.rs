//! Every X.509 identity a topology needs, derived from the network: what `meshwork keys`
//! issues, and what the OpenVPN configs name by path.

use serde::Serialize;

use crate::emit::openvpn::peer_cn;
use crate::network::Network;

/// What an identity is for; decides its extended key usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A controller's own OpenVPN server: serverAuth.
    Controller,
    /// An engine's OpenVPN server: serverAuth.
    Engine,
    /// A controller's peering identity: it listens to higher ids (server) and dials lower ids
    /// (client), so it needs serverAuth and clientAuth.
    Peer,
    /// A client: clientAuth.
    Client,
}

impl Kind {
    pub fn server_auth(self) -> bool {
        matches!(self, Kind::Controller | Kind::Engine | Kind::Peer)
    }
    pub fn client_auth(self) -> bool {
        matches!(self, Kind::Peer | Kind::Client)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The certificate's common name; also its file stem (`keys/<cn>.crt`).
    pub cn: String,
    pub kind: Kind,
    /// Marked `revoked=#true` in the file: its certificate belongs in the CRL.
    pub revoked: bool,
}

/// Every identity of the topology, in a fixed order: controllers, their engines and peer
/// identities by id, then clients in declaration order.
pub fn identities(net: &Network) -> Vec<Identity> {
    let mut out = Vec::with_capacity(net.controllers.len() * 2 + net.clients.len());
    for c in &net.controllers {
        out.push(Identity { cn: c.name.clone(), kind: Kind::Controller, revoked: false });
        out.push(Identity { cn: peer_cn(&c.name), kind: Kind::Peer, revoked: false });
        for e in c.engines.iter().flat_map(|s| &s.engines) {
            out.push(Identity { cn: e.name.clone(), kind: Kind::Engine, revoked: false });
        }
    }
    for client in &net.clients {
        out.push(Identity { cn: client.name.clone(), kind: Kind::Client, revoked: client.revoked });
    }
    out
}
