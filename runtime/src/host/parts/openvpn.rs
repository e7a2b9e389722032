//! A controller's OpenVPN: every configuration file (server, engines, peering tunnels, ccd),
//! the keys they load, the server process and one process per peering tunnel. The engines'
//! processes belong to [`super::engines`], which runs them in their namespaces.

use meshwork_compiler::emit::openvpn;

use super::super::desired::{Desired, DesiredError, DesiredFile};
use super::super::part::{Part, Topology};
use super::super::resource::{Kind, Resource, Spec};
use super::super::unit::UnitName;
use crate::daemon::Program;

pub struct Openvpn;

/// What an OpenVPN process's configuration amounts to: its config file and every key file it
/// loads at start (the CRL and ccd files are re-read per connection, so they don't restart it).
pub fn process_digest(d: &Desired, config: &str, cn: &str) -> String {
    let (cert, key) = (openvpn::cert_path(cn), openvpn::key_path(cn));
    d.files_digest([config, openvpn::CA_PATH, openvpn::TLS_CRYPT_PATH, cert.as_str(), key.as_str()])
}

/// An OpenVPN process resource (`netns` None: the controller's own namespace).
pub fn process(d: &Desired, unit: UnitName, config: String, cn: &str, netns: Option<String>) -> Resource {
    let unit = unit.to_string();
    let mut r = Resource::new(
        Kind::Process,
        unit.clone(),
        Spec::Process { unit, config: config.clone(), netns: netns.clone(), program: Program::Openvpn },
    )
    .attr("config", process_digest(d, &config, cn))
    .attr("state", "running");
    if let Some(ns) = netns {
        r = r.attr("netns", ns);
    }
    r
}

impl Part for Openvpn {
    /// Its processes are found by [`super::processes`], its files by [`super::files`].
    fn kinds(&self) -> &'static [Kind] {
        &[]
    }

    fn desire(&self, t: &Topology<'_>, out: &mut Desired) -> Result<(), DesiredError> {
        let (net, keyset) = (t.net, t.keyset);
        let c = t.controller()?;
        let keys = |what: &str, r: crate::keys::Result<String>| {
            r.map_err(|e| DesiredError::Keys(what.to_string(), e.to_string()))
        };
        for (name, content) in openvpn::configs(net, c) {
            out.add_file(name, DesiredFile::plain(content));
        }
        for (client, content) in openvpn::ccd_files(net) {
            out.add_file(format!("{}/{client}", openvpn::CCD_DIR), DesiredFile::plain(content));
        }
        out.add_file(openvpn::CA_PATH, DesiredFile::plain(keys("ca.crt", keyset.ca_pem())?));
        out.add_file(openvpn::CRL_PATH, DesiredFile::plain(keys("crl.pem", keyset.crl_pem())?));
        out.add_file(openvpn::TLS_CRYPT_PATH, DesiredFile::secret(keys("tls-crypt.key", keyset.tls_crypt())?));
        let mut identities = vec![c.name.clone()];
        if let Some(set) = &c.engines {
            identities.extend(set.engines.iter().map(|e| e.name.clone()));
        }
        let peers = net.mesh.neighbours(&c.name);
        if !peers.is_empty() {
            identities.push(openvpn::peer_cn(&c.name));
        }
        for cn in identities {
            out.add_file(openvpn::cert_path(&cn), DesiredFile::plain(keys(&cn, keyset.cert_pem(&cn))?));
            out.add_file(openvpn::key_path(&cn), DesiredFile::secret(keys(&cn, keyset.key_pem(&cn))?));
        }
        let server = process(out, UnitName::Server, openvpn::SERVER_CONF.into(), &c.name, None);
        out.resources.push(server);
        // Peering tunnels: one point-to-point OpenVPN per neighbour in the peering graph.
        for remote in peers.into_iter().filter(|r| t.net.controller(r).is_some()) {
            let config = openvpn::peer_conf(&remote);
            let tunnel = process(out, UnitName::Peer(remote), config, &openvpn::peer_cn(&c.name), None);
            out.resources.push(tunnel);
        }
        Ok(())
    }
}
