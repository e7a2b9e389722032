//! The network a valid topology describes, with every address decided: what the emitters read.
//! Built only when validation found no errors, so nothing here is optional by accident.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::alloc::Allocation;
use crate::firewall::CompiledFirewall;
use crate::model::{Host, Topology};
use crate::peering::{self, Mesh};
use crate::vxlan::VxlanNet;
use crate::vxlan::alloc::VxAllocation;

/// The UDP port clients connect to, on every controller and engine.
pub const CLIENT_PORT: u16 = 1194;
/// The TCP port of the agents' mesh API, on each controller's overlay address: peers tell each
/// other there which clients they hold and which LANs they serve.
pub const MESH_API_PORT: u16 = 1194;
/// The tun device of the controller's own server (and of each engine, inside its namespace).
pub const TUN_DEVICE: &str = "tun0";
/// The bridge that connects the controller to its engines.
pub const PLUGIN_BRIDGE: &str = "plugin0";

#[derive(Clone, Debug)]
pub struct Network {
    pub name: String,
    /// The controllers' overlay; None in a topology of compute nodes alone.
    pub overlay: Option<Ipv4Net>,
    pub shared_address: Option<Ipv4Addr>,
    /// By id.
    pub controllers: Vec<ControllerNet>,
    /// In declaration order.
    pub clients: Vec<ClientNet>,
    pub tunnels: Vec<peering::Tunnel>,
    pub mesh: Mesh,
    pub firewall: CompiledFirewall,
    /// Compute nodes and their VXLAN overlays; empty when the topology has no nodes.
    pub vxlan: VxlanNet,
}

#[derive(Clone, Debug)]
pub struct ControllerNet {
    pub name: String,
    pub id: u32,
    pub address: Host,
    pub interface: String,
    pub cores: Option<u32>,
    /// The overlay this controller serves (the topology's).
    pub overlay: Ipv4Net,
    pub overlay_ip: Ipv4Addr,
    pub lans: Vec<Ipv4Net>,
    pub engines: Option<EngineSet>,
}

#[derive(Clone, Debug)]
pub struct EngineSet {
    pub subnet: Ipv4Net,
    /// The controller's address on plugin0: the subnet's first host.
    pub bridge_ip: Ipv4Addr,
    pub seed: u32,
    /// Mark of the controller's own server; engine k gets offset + k.
    pub offset: u32,
    pub engines: Vec<EngineNet>,
}

impl EngineSet {
    /// jhash modulus: the controller's own server plus every engine.
    pub fn modulus(&self) -> u32 {
        self.engines.len() as u32 + 1
    }
}

#[derive(Clone, Debug)]
pub struct EngineNet {
    /// 1-based.
    pub index: u32,
    /// Certificate CN and namespace stem: CONTROLLER-eK.
    pub name: String,
    pub overlay_ip: Ipv4Addr,
    /// Its address on the plugin subnet: host 1+k.
    pub plugin_ip: Ipv4Addr,
    pub mark: u32,
}

#[derive(Clone, Debug)]
pub struct ClientNet {
    pub name: String,
    pub ip: Ipv4Addr,
    pub tags: Vec<String>,
    pub revoked: bool,
    pub redirect_gateway: bool,
}

/// The name of engine `k` of `controller`.
pub fn engine_name(controller: &str, k: u32) -> String {
    format!("{controller}-e{k}")
}

impl Network {
    pub fn controller(&self, name: &str) -> Option<&ControllerNet> {
        self.controllers.iter().find(|c| c.name == name)
    }

    /// The `route-gateway` every client-facing server and engine pushes: one address for the
    /// whole topology, the overlay address of the controller with the lowest id.
    ///
    /// Why not each unit's own address: OpenVPN 2.6 compares what it pulls on a reconnect with
    /// what it pulled before, and when they differ it closes the tun device (deleting its
    /// routes), sleeps a whole second and opens it again (`do_up` in init.c). A client failing
    /// over to another controller would lose a second, and for that second its overlay and LAN
    /// traffic would follow the underlay's default route. On a tun device the gateway is only a
    /// next-hop label (every packet goes to the one server the client is connected to), so any
    /// on-link address serves; the same one everywhere makes a failover change nothing the
    /// client pulls but its peer-id.
    pub fn client_gateway(&self) -> Option<Ipv4Addr> {
        self.controllers.first().map(|c| c.overlay_ip)
    }

    /// Resolves a topology that validated without errors. Returns None only if it did not.
    pub fn resolve(t: &Topology, a: &Allocation, vx: &VxAllocation, mesh: Mesh) -> Option<Network> {
        let overlay = t.overlay.as_ref().map(|o| o.value);
        let any_engines = t.controllers.iter().any(|c| c.engines.is_some());
        let mut controllers = Vec::new();
        for c in &t.controllers {
            let engines = match &c.engines {
                None => None,
                Some(e) => {
                    let subnet = e.subnet.as_ref()?.value;
                    let first = u32::from(subnet.network()) + 1;
                    let ips = a.engines.get(&c.name.value)?;
                    Some(EngineSet {
                        subnet,
                        bridge_ip: Ipv4Addr::from(first),
                        seed: e.seed,
                        offset: e.offset,
                        engines: ips
                            .iter()
                            .zip(1u32..)
                            .map(|(ip, k)| EngineNet {
                                index: k,
                                name: engine_name(&c.name.value, k),
                                overlay_ip: *ip,
                                plugin_ip: Ipv4Addr::from(first + k),
                                mark: e.offset.wrapping_add(k),
                            })
                            .collect(),
                    })
                }
            };
            controllers.push(ControllerNet {
                name: c.name.value.clone(),
                id: c.id.as_ref()?.value,
                address: c.address.as_ref()?.value.clone(),
                interface: c.interface.value.clone(),
                cores: c.cores.as_ref().map(|x| x.value),
                overlay: overlay?,
                overlay_ip: *a.controllers.get(&c.name.value)?,
                lans: c.lans.iter().map(|l| l.value).collect(),
                engines,
            });
        }
        controllers.sort_by_key(|c| c.id);
        let clients = t
            .clients
            .iter()
            .zip(&a.clients)
            .map(|(c, ip)| {
                Some(ClientNet {
                    name: c.name.value.clone(),
                    ip: (*ip)?,
                    tags: c.tags.iter().map(|t| t.value.clone()).collect(),
                    revoked: c.revoked,
                    redirect_gateway: c.redirect_gateway.unwrap_or(any_engines),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Network {
            name: t.name.as_ref()?.value.clone(),
            overlay,
            shared_address: a.shared,
            controllers,
            clients,
            tunnels: mesh.tunnels(),
            firewall: CompiledFirewall::compile(t, a),
            vxlan: VxlanNet::resolve(t, vx)?,
            mesh,
        })
    }
}
