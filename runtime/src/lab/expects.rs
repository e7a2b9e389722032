//! `meshwork lab test`: every `expect` of the topology, three ways. *Expected* is what the file
//! says, *static* what the compiled firewall decides (as `meshwork check` does), *observed*
//! what real packets do in the lab: a responder listens at the destination, a probe is sent
//! from the source's namespace with the source's address, and an answer means `allow`.
//!
//! Where the ends live: a client in its namespace (its overlay address); an address inside a
//! controller's LAN in that LAN's namespace; any other address in the outside namespace, which
//! reaches the overlay over the underlay: for the probe, the underlay routes the destination to
//! the controller that holds it (or whose LAN it is in), as an upstream router would.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use meshwork_compiler::model::{Action, Endpoint, Expect, Proto as FileProto};
use meshwork_compiler::network::Network;
use meshwork_compiler::rules::expects;
use serde::Serialize;

use super::layout::LabHost;
use super::probe::{self, Flow, Outcome, Proto};
use super::{Lab, Record, locations};
use crate::netlink::{Netlink, RouteInfo};

/// How long a probe waits for an answer: a `drop` costs this much.
pub const WAIT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    /// `web-1 -> db-1 tcp/5432`.
    pub flow: String,
    pub expected: Option<&'static str>,
    #[serde(rename = "static")]
    pub static_verdict: Option<&'static str>,
    /// `allow`, `drop`, or None when the flow could not be sent (see `note`).
    pub observed: Option<&'static str>,
    /// Why the flow was not sent, or what went wrong sending it.
    pub note: Option<String>,
    /// Not sent because an end sits behind a controller `lab kill` took down: the lab cannot
    /// test it now, which is not a failure of the expectation.
    pub skipped: bool,
}

impl Row {
    /// Expected, static and observed all agree (a skipped flow counts as a failure: the lab
    /// could not prove the expectation).
    pub fn holds(&self) -> bool {
        if self.skipped {
            return true;
        }
        let expected = self.expected.or(self.static_verdict);
        self.observed.is_some() && self.static_verdict == expected && self.observed == expected
    }
}

/// One end of a flow, placed in the lab.
struct Place {
    netns: String,
    address: Ipv4Addr,
    /// The controller through which the outside reaches this place (for destinations).
    controller: Option<String>,
    outside: bool,
}

fn endpoint_name(e: &Endpoint) -> String {
    match e {
        Endpoint::Named(name) => name.clone(),
        Endpoint::Ip(ip) => ip.to_string(),
    }
}

/// Runs every expect, one after another.
pub fn run(lab: &Lab, record: &Record, net: &Network, list: &[Expect]) -> Vec<Row> {
    let located = locations(lab, record);
    // Every VM and node says who it is while the expects run (tenants may share addresses).
    let _who = super::vnics::who_is_there(record, net);
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            if super::vnics::concerns(net, e) {
                super::vnics::expect_row(record, net, i, e)
            } else {
                run_one(record, net, &located, i, e)
            }
        })
        .collect()
}

type Located = std::collections::BTreeMap<String, (String, String)>;

fn run_one(record: &Record, net: &Network, located: &Located, index: usize, e: &Expect) -> Row {
    let proto = match (e.proto.as_ref().map(|p| p.value), e.port.is_some()) {
        (Some(FileProto::Tcp), _) | (None, true) => Proto::Tcp,
        (Some(FileProto::Udp), _) => Proto::Udp,
        (Some(FileProto::Icmp), _) | (None, false) => Proto::Icmp,
    };
    let port = e.port.as_ref().map(|p| p.value);
    let service = match (proto, port) {
        (Proto::Icmp, _) | (_, None) => proto.to_string(),
        (_, Some(p)) => format!("{proto}/{p}"),
    };
    let mut row = Row {
        name: e.name.clone().unwrap_or_else(|| format!("expect {}", index + 1)),
        flow: format!("{} -> {} {service}", endpoint_name(&e.from.value), endpoint_name(&e.to.value)),
        expected: e.verdict.as_ref().map(|v| v.value.verb()),
        static_verdict: expects::decide(net, e).map(|d| d.action.verb()),
        observed: None,
        note: None,
        skipped: false,
    };
    let (from, to) = match (place(record, net, located, &e.from.value), place(record, net, located, &e.to.value)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(why), _) | (_, Err(why)) => {
            row.skipped = why.down;
            row.note = Some(why.text);
            return row;
        }
    };
    if to.outside {
        row.note = Some(format!("{} is outside the overlay and every LAN: nothing routes there", to.address));
        return row;
    }
    match send(record, &from, &to, proto, port) {
        Ok(Outcome::Reached) => row.observed = Some(Action::Accept.verb()),
        Ok(Outcome::Dropped) => row.observed = Some(Action::Drop.verb()),
        Err(e) => row.note = Some(e),
    }
    row
}

fn lan_site_of(record: &Record, ip: Ipv4Addr) -> Option<&super::layout::LanSite> {
    record.layout.lans.iter().find(|site| site.gateways.iter().any(|g| g.trunc().contains(&ip)))
}

/// Why an end could not be placed; `down` when a killed controller is the reason.
struct Unplaced {
    text: String,
    down: bool,
}

impl From<String> for Unplaced {
    fn from(text: String) -> Self {
        Unplaced { text, down: false }
    }
}

impl From<&str> for Unplaced {
    fn from(text: &str) -> Self {
        Unplaced { text: text.into(), down: false }
    }
}

fn place(record: &Record, net: &Network, located: &Located, e: &Endpoint) -> Result<Place, Unplaced> {
    let client_place = |c: &LabHost, ip: Ipv4Addr| -> Result<Place, Unplaced> {
        let Some((controller, _)) = located.get(&c.name) else {
            return Err(format!("client {} is not connected", c.name).into());
        };
        Ok(Place { netns: c.netns.clone(), address: ip, controller: Some(controller.clone()), outside: false })
    };
    let ip = match e {
        Endpoint::Named(name) => {
            let c = record.layout.client(name).ok_or_else(|| format!("the lab has no client {name}"))?;
            let ip = net.clients.iter().find(|n| &n.name == name).map(|n| n.ip).ok_or("unknown client")?;
            return client_place(c, ip);
        }
        Endpoint::Ip(ip) => *ip,
    };
    if let Some(client) = net.clients.iter().find(|c| c.ip == ip)
        && let Some(c) = record.layout.client(&client.name)
    {
        return client_place(c, ip);
    }
    if let Some(site) = lan_site_of(record, ip) {
        if record.killed.contains(&site.controller) {
            let text = format!("skipped: {ip} is behind controller {}, which lab kill took down", site.controller);
            return Err(Unplaced { text, down: true });
        }
        return Ok(Place {
            netns: site.netns.clone(),
            address: ip,
            controller: Some(site.controller.clone()),
            outside: false,
        });
    }
    match &record.layout.outside {
        Some(o) if o.addresses.contains(&ip) => {
            Ok(Place { netns: o.netns.clone(), address: ip, controller: None, outside: true })
        }
        _ => Err(format!("the lab has no host for {ip}").into()),
    }
}

/// Sends one probe from `from` to `to`, with a responder at `to` for TCP and UDP.
fn send(record: &Record, from: &Place, to: &Place, proto: Proto, port: Option<u16>) -> Result<Outcome, String> {
    let _responder = match (proto, port) {
        (Proto::Tcp | Proto::Udp, Some(p)) => {
            Some(probe::respond(&to.netns, proto, p).map_err(|e| format!("cannot listen at {}: {e}", to.address))?)
        }
        _ => None,
    };
    // From the outside, the underlay must know which controller leads to the destination.
    let _detour = if from.outside { Some(Detour::add(record, to)?) } else { None };
    let flow = Flow { netns: from.netns.clone(), source: Some(from.address), destination: to.address, proto, port };
    probe::probe(&flow, WAIT).map_err(|e| format!("cannot send {flow}: {e}"))
}

/// A route in the underlay namespace sending one destination to the controller that leads
/// there; removed on drop.
struct Detour {
    underlay: String,
    route: RouteInfo,
}

impl Detour {
    fn add(record: &Record, to: &Place) -> Result<Detour, String> {
        let controller = to.controller.as_deref().ok_or("no controller leads to the destination")?;
        let host = record.layout.controller(controller).ok_or("unknown controller")?;
        let route = RouteInfo {
            dst: Ipv4Net::from(to.address),
            gateway: Some(host.address),
            dev: Some(host.underlay_link.clone()),
            table: crate::host::desired::MAIN_TABLE,
            protocol: super::world::LAB_ROUTE_PROTO,
            source: None,
        };
        let underlay = record.layout.underlay_ns.clone();
        in_underlay(&underlay, &route, true)?;
        Ok(Detour { underlay, route })
    }
}

impl Drop for Detour {
    fn drop(&mut self) {
        let _ = in_underlay(&self.underlay, &self.route, false);
    }
}

fn in_underlay(underlay: &str, route: &RouteInfo, add: bool) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let nl = Netlink::connect_in(underlay).await?;
        if add { nl.replace_route(route).await } else { nl.delete_route(route).await }
    })
    .map_err(|e| format!("underlay route {route}: {e}"))
}
