//! The parts hosts are made of (see [`super::part`]). Controllers: forwarding, OpenVPN,
//! engines; nodes: the VXLAN data plane and IPsec; both: the firewall, managed files and the
//! daemons' pid files.

pub mod engines;
pub mod files;
pub mod firewall;
pub mod forwarding;
pub mod ipsec;
pub mod openvpn;
pub mod processes;
pub mod vxlan;

use super::identity::HostKind;
use super::part::Part;

/// The parts of each kind of host, in the order they are asked.
pub fn of(kind: HostKind) -> Vec<Box<dyn Part>> {
    match kind {
        HostKind::Controller => vec![
            Box::new(forwarding::Forwarding),
            Box::new(openvpn::Openvpn),
            Box::new(engines::Engines),
            Box::new(firewall::Firewall),
            Box::new(files::Files),
            Box::new(processes::Processes),
        ],
        HostKind::Node => vec![
            Box::new(vxlan::Vxlan),
            Box::new(ipsec::Ipsec),
            Box::new(firewall::Firewall),
            Box::new(files::Files),
            Box::new(processes::Processes),
        ],
    }
}
