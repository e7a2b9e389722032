//! Builds a [`LabLayout`] in the kernel (namespaces, veths, addresses, routes and the
//! `/etc/netns/<ns>/hosts` files that stand in for DNS) and tears it down again.
//!
//! Everything goes through [`crate::netns`] and [`crate::netlink`]; no `ip` commands. The lab
//! owns namespaces named `mwl-*` only: the runtime's own `mw-*` namespaces inside a controller
//! are the runtime's to remove.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

use super::layout::{LabHost, LabLayout, LanSite, Outside};
use crate::netlink::{Netlink, RouteInfo};
use crate::netns;

/// Route protocol of the lab's routes: RTPROT_STATIC, like `ip route add` by an administrator,
/// so the runtime (which reads only its own protocol numbers) never takes them for its own.
pub const LAB_ROUTE_PROTO: u8 = 4;
/// The main routing table.
const MAIN_TABLE: u32 = 254;
/// Where iproute2 keeps per-namespace configuration files (`ip netns exec` bind-mounts them
/// over `/etc`).
pub const ETC_NETNS: &str = "/etc/netns";
/// First line of every hosts file the lab writes: how teardown knows the file is its own.
const HOSTS_MARKER: &str = "# written by `meshwork lab`; removed by `meshwork lab down`";

/// Replies may come back another way than requests went (the underlay's veths; a client
/// answering an outside address), so strict reverse-path filtering, inherited from the host,
/// would drop them: off in every lab namespace.
const NO_RP_FILTER: &[&str] = &["net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"];

/// A lab namespace, with reverse-path filtering off.
pub(super) fn new_namespace(ns: &str) -> io::Result<()> {
    netns::create(ns)?;
    for key in NO_RP_FILTER {
        netns::sysctl_write(Some(ns), key, "0")?;
    }
    Ok(())
}

/// Builds the whole lab. Refuses (AlreadyExists) without touching anything when one of its
/// namespaces exists; on any later failure it removes what it made before returning the error.
pub async fn build(layout: &LabLayout, progress: &mut dyn FnMut(&str)) -> io::Result<()> {
    refuse_existing(layout)?;
    let Err(err) = build_all(layout, progress).await else { return Ok(()) };
    progress("removing the partly built lab");
    let failures = teardown(layout).await;
    if failures.is_empty() {
        Err(err)
    } else {
        Err(io::Error::new(err.kind(), format!("{err} (and then, removing the lab: {})", failures.join("; "))))
    }
}

/// Removes every namespace and hosts file of the lab, keeping on after a failure; returns every
/// failure. What is already gone is not a failure.
pub async fn teardown(layout: &LabLayout) -> Vec<String> {
    let mut failures = Vec::new();
    // Deleting a namespace deletes its veths (and so their peers in the other namespace).
    for ns in layout.namespaces() {
        failures.extend(delete_netns(ns));
    }
    if !layout.names.is_empty() {
        for host in layout.hosts() {
            failures.extend(remove_hosts_file(&host.netns));
        }
    }
    failures
}

pub fn refuse_existing(layout: &LabLayout) -> io::Result<()> {
    let existing: Vec<&str> = layout.namespaces().into_iter().filter(|ns| netns::exists(ns)).collect();
    if existing.is_empty() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "network namespace {} already exists: a lab is up already (run `meshwork lab down` first)",
            existing.join(", ")
        ),
    ))
}

async fn build_all(layout: &LabLayout, progress: &mut dyn FnMut(&str)) -> io::Result<()> {
    progress(&format!("underlay {} (gateway {})", layout.underlay_ns, layout.gateway));
    let underlay = build_underlay(&layout.underlay_ns).await?;
    for c in &layout.controllers {
        progress(&format!("controller {} in {}: {} on {}", c.name, c.netns, c.address, c.interface));
        build_host(&underlay, layout.gateway, c).await.map_err(|e| context(e, &format!("controller {}", c.name)))?;
        netns::sysctl_write(Some(&c.netns), "net.ipv4.ip_forward", "1")?;
    }
    for c in &layout.clients {
        progress(&format!("client {} in {}: {}", c.name, c.netns, c.address));
        build_host(&underlay, layout.gateway, c).await.map_err(|e| context(e, &format!("client {}", c.name)))?;
    }
    for site in &layout.lans {
        progress(&format!("LANs of {} in {}", site.controller, site.netns));
        build_lan_site(layout, site).await.map_err(|e| context(e, &format!("LANs of {}", site.controller)))?;
    }
    if let Some(outside) = &layout.outside {
        progress(&format!("outside addresses in {}", outside.netns));
        build_outside(&underlay, layout.gateway, outside).await.map_err(|e| context(e, "outside"))?;
    }
    if !layout.names.is_empty() {
        progress(&format!("hosts files for {}", layout.names.keys().cloned().collect::<Vec<_>>().join(", ")));
        for host in layout.hosts() {
            write_hosts_file(&host.netns, layout)?;
        }
    }
    Ok(())
}

pub(super) fn context(err: io::Error, what: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

async fn build_underlay(ns: &str) -> io::Result<Netlink> {
    new_namespace(ns)?;
    netns::sysctl_write(Some(ns), "net.ipv4.ip_forward", "1")?;
    Netlink::connect_in(ns).await
}

/// A controller's or client's namespace, joined to the underlay by a veth.
async fn build_host(underlay: &Netlink, gateway: Ipv4Addr, host: &LabHost) -> io::Result<()> {
    new_namespace(&host.netns)?;
    underlay.add_veth(&host.underlay_link, &host.interface, Some(&host.netns)).await?;
    let inside = Netlink::connect_in(&host.netns).await?;
    let end = Attachment { link: &host.underlay_link, inside: &inside, interface: &host.interface };
    attach(underlay, gateway, &end, &[host.address]).await
}

/// The outside namespace: every address that belongs to no lab host, on one veth.
async fn build_outside(underlay: &Netlink, gateway: Ipv4Addr, outside: &Outside) -> io::Result<()> {
    new_namespace(&outside.netns)?;
    let interface = super::layout::HOST_INTERFACE;
    underlay.add_veth(&outside.underlay_link, interface, Some(&outside.netns)).await?;
    let inside = Netlink::connect_in(&outside.netns).await?;
    let end = Attachment { link: &outside.underlay_link, inside: &inside, interface };
    attach(underlay, gateway, &end, &outside.addresses).await
}

/// A veth between the underlay (`link`) and a namespace (`interface`, reached over `inside`).
struct Attachment<'a> {
    link: &'a str,
    inside: &'a Netlink,
    interface: &'a str,
}

/// Addresses and routes of an underlay veth: the namespace holds `addresses` as /32s and sends
/// everything to the gateway; the underlay holds the gateway and a /32 route per address. No
/// shared subnet, so every veth can carry the same gateway address.
async fn attach(underlay: &Netlink, gateway: Ipv4Addr, end: &Attachment<'_>, addresses: &[Ipv4Addr]) -> io::Result<()> {
    underlay.add_address(end.link, Ipv4Net::from(gateway)).await?;
    underlay.set_up(end.link).await?;
    for address in addresses {
        end.inside.add_address(end.interface, Ipv4Net::from(*address)).await?;
    }
    end.inside.set_up(end.interface).await?;
    // Routes need the device up (the kernel refuses a route over a down device).
    for address in addresses {
        underlay.replace_route(&route(Ipv4Net::from(*address), None, end.link)).await?;
    }
    default_route_via(end.inside, gateway, end.interface).await
}

/// `GATEWAY/32 dev DEV` (so the gateway is on-link although no subnet holds it) and
/// `default via GATEWAY dev DEV`.
pub(super) async fn default_route_via(nl: &Netlink, gateway: Ipv4Addr, dev: &str) -> io::Result<()> {
    nl.replace_route(&route(Ipv4Net::from(gateway), None, dev)).await?;
    nl.replace_route(&route(Ipv4Net::default(), Some(gateway), dev)).await
}

pub(super) fn route(dst: Ipv4Net, gateway: Option<Ipv4Addr>, dev: &str) -> RouteInfo {
    RouteInfo { dst, gateway, dev: Some(dev.to_owned()), table: MAIN_TABLE, protocol: LAB_ROUTE_PROTO, source: None }
}

/// A controller's LANs: its namespace holds each LAN's gateway, the LAN namespace the hosts.
async fn build_lan_site(layout: &LabLayout, site: &LanSite) -> io::Result<()> {
    let controller = layout.controller(&site.controller).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("the layout has no controller {}", site.controller))
    })?;
    new_namespace(&site.netns)?;
    let outer = Netlink::connect_in(&controller.netns).await?;
    outer.add_veth(&site.controller_link, &site.lan_link, Some(&site.netns)).await?;
    for gateway in &site.gateways {
        outer.add_address(&site.controller_link, *gateway).await?;
    }
    outer.set_up(&site.controller_link).await?;
    let lan = Netlink::connect_in(&site.netns).await?;
    for host in &site.hosts {
        lan.add_address(&site.lan_link, *host).await?;
    }
    lan.set_up(&site.lan_link).await?;
    // Traffic from the overlay and other LANs comes back through the controller.
    match site.gateways.first() {
        Some(gateway) => default_route_via(&lan, gateway.addr(), &site.lan_link).await,
        None => Ok(()),
    }
}

fn hosts_dir(ns: &str) -> PathBuf {
    Path::new(ETC_NETNS).join(ns)
}

/// The hosts file of a namespace: localhost and every DNS name of the topology.
pub fn hosts_file_text(layout: &LabLayout) -> String {
    let mut text = format!("{HOSTS_MARKER}\n127.0.0.1 localhost\n");
    for (name, ip) in &layout.names {
        text += &format!("{ip} {name}\n");
    }
    text
}

fn write_hosts_file(ns: &str, layout: &LabLayout) -> io::Result<()> {
    let dir = hosts_dir(ns);
    std::fs::create_dir_all(&dir).map_err(|e| context(e, &format!("cannot create {}", dir.display())))?;
    let path = dir.join("hosts");
    std::fs::write(&path, hosts_file_text(layout)).map_err(|e| context(e, &format!("cannot write {}", path.display())))
}

/// Removes the hosts file the lab wrote for `ns` and its directory; a file the lab did not write
/// (no marker) stays, and so does a directory that holds anything else.
fn remove_hosts_file(ns: &str) -> Vec<String> {
    let dir = hosts_dir(ns);
    let path = dir.join("hosts");
    let mut failures = Vec::new();
    match std::fs::read_to_string(&path) {
        Ok(text) if text.starts_with(HOSTS_MARKER) => {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                failures.push(format!("cannot remove {}: {e}", path.display()));
            }
        }
        Ok(_) => failures.push(format!("left {} in place: meshwork lab did not write it", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => failures.push(format!("cannot read {}: {e}", path.display())),
    }
    match std::fs::remove_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
            failures.push(format!("left {} in place: it holds files meshwork lab did not write", dir.display()));
        }
        Err(e) => failures.push(format!("cannot remove {}: {e}", dir.display())),
    }
    failures
}

/// Cuts a host off the underlay (its underlay-side link down), or connects it again. Taking a
/// link down flushes the routes through it, so coming back re-adds the host's /32.
pub async fn set_host_link(layout: &LabLayout, host: &LabHost, up: bool) -> io::Result<()> {
    let underlay = Netlink::connect_in(&layout.underlay_ns).await?;
    if !up {
        return underlay.set_down(&host.underlay_link).await;
    }
    underlay.set_up(&host.underlay_link).await?;
    underlay.replace_route(&route(Ipv4Net::from(host.address), None, &host.underlay_link)).await
}

/// Adds one client to a built lab (after `lab up`, when the file gained a client).
pub async fn add_client(layout: &LabLayout, host: &LabHost) -> io::Result<()> {
    let underlay = Netlink::connect_in(&layout.underlay_ns).await?;
    build_host(&underlay, layout.gateway, host).await.map_err(|e| context(e, &format!("client {}", host.name)))?;
    if !layout.names.is_empty() {
        write_hosts_file(&host.netns, layout)?;
    }
    Ok(())
}

/// Removes one client's namespace (and hosts file) from a built lab.
pub fn remove_client(layout: &LabLayout, host: &LabHost) -> Vec<String> {
    let mut failures: Vec<String> = delete_netns(&host.netns).into_iter().collect();
    if !layout.names.is_empty() {
        failures.extend(remove_hosts_file(&host.netns));
    }
    failures
}

/// Deletes namespace `ns`; one already gone is not a failure.
pub fn delete_netns(ns: &str) -> Option<String> {
    match netns::delete(ns) {
        Ok(()) => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => Some(format!("cannot delete network namespace {ns}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn hosts_file_maps_every_name() {
        let layout = LabLayout {
            topology: "t".into(),
            underlay_ns: "mwl-underlay".into(),
            pool: "172.31.0.0/16".parse().expect("cidr"),
            gateway: Ipv4Addr::new(172, 31, 255, 254),
            controllers: vec![],
            clients: vec![],
            lans: vec![],
            outside: None,
            names: BTreeMap::from([
                ("b.example.net".to_owned(), Ipv4Addr::new(172, 31, 0, 2)),
                ("a.example.net".to_owned(), Ipv4Addr::new(172, 31, 0, 1)),
            ]),
        };
        let text = hosts_file_text(&layout);
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(lines, ["127.0.0.1 localhost", "172.31.0.1 a.example.net", "172.31.0.2 b.example.net"]);
        assert!(text.starts_with(HOSTS_MARKER));
    }
}
