//! The large benchmark topology of issue 2: 64 controllers in a full mesh with 15 engines each,
//! 50,000 clients (1,000 single clients and 100 groups of 490), 200 fwsets, 1,050 firewall rules
//! and 100 expects. Shared by the `meshwork-bench` and `meshwork-keys-bench` binaries.

use std::fmt::Write as _;

pub const CONTROLLERS: u32 = 64;
pub const ENGINES: u32 = 15;
pub const CLIENTS: u32 = 50_000;
pub const SINGLE_CLIENTS: u32 = 1_000;
pub const GROUP_SIZE: u32 = 490;
pub const TAGS: u32 = 50;
pub const NET_FWSETS: u32 = 150;
pub const PORT_FWSETS: u32 = 50;
pub const RULES: u32 = 1_000;
pub const EXPECTS: u32 = 100;

fn tag(i: u32) -> String {
    format!("t{}", i % TAGS)
}

/// The client that carries tag `t` first: single clients cycle through the tags.
fn client_with_tag(t: u32, nth: u32) -> String {
    format!("c{}", t % TAGS + TAGS * nth)
}

/// The benchmark topology as KDL text.
pub fn topology() -> String {
    topology_with_clients(CLIENTS)
}

/// Fewest clients [`topology_with_clients`] accepts: the rules and expects name clients up to
/// `c199`.
pub const MIN_CLIENTS: u32 = 4 * TAGS;

/// The benchmark topology with `clients` clients instead of 50,000: the first 1,000 (or all)
/// single, the rest in groups of 490 and one smaller group for what remains. With [`CLIENTS`]
/// it is exactly [`topology`].
///
/// # Panics
/// Below [`MIN_CLIENTS`].
pub fn topology_with_clients(clients: u32) -> String {
    assert!(clients >= MIN_CLIENTS, "the benchmark topology needs at least {MIN_CLIENTS} clients");
    let singles = clients.min(SINGLE_CLIENTS);
    let mut s = String::with_capacity(4 << 20);
    let w = &mut s;
    let _ = writeln!(w, "topology \"bench\"\noverlay \"100.64.0.0/16\"");
    let _ = writeln!(w, "license controllers={CONTROLLERS} clients={clients}");
    for k in 1..=CONTROLLERS {
        let _ = writeln!(
            w,
            "controller \"ctl-{k}\" id={k} {{\n    address \"192.0.2.{k}\"\n    cores 16\n    engines {ENGINES} subnet=\"172.16.{k}.0/27\"\n    lan \"10.{k}.0.0/16\"\n}}"
        );
    }
    let _ = writeln!(w, "peering \"full\"");
    for j in 0..singles {
        let _ = writeln!(w, "client \"c{j}\" tags=\"{}\"", tag(j));
    }
    let rest = clients - singles;
    for g in 0..rest.div_ceil(GROUP_SIZE) {
        let count = GROUP_SIZE.min(rest - g * GROUP_SIZE);
        let _ = writeln!(w, "clients \"g{g}\" count={count} tags=\"{}\"", tag(g));
    }
    for f in 0..NET_FWSETS {
        let _ = writeln!(w, "fwset \"nets-{f}\" type=\"net\" {{");
        for n in 0..4 {
            let _ = writeln!(w, "    net \"198.18.{}.{}/30\"", f, n * 4);
        }
        let _ = writeln!(w, "}}");
    }
    for f in 0..PORT_FWSETS {
        let base = 20_000 + f * 10;
        let _ = writeln!(w, "fwset \"ports-{f}\" type=\"port\" {{ port {base}; port \"{}-{}\"; }}", base + 1, base + 5);
    }
    // Every rule has a port of its own (10000+i), so rule i alone decides flows to that port
    // and the expectations below know their verdicts.
    let _ = writeln!(w, "firewall policy=\"drop\" {{");
    for i in 0..RULES {
        let action = if i % 7 == 3 { "deny" } else { "allow" };
        let port = 10_000 + i;
        let line = match i % 4 {
            0 | 1 => format!("{action} from=\"tag:{}\" to=\"tag:{}\" proto=\"tcp\" port={port}", tag(i), tag(i + 1)),
            2 => format!(
                "{action} from=\"{}\" to=\"tag:{}\" proto=\"udp\" port={port}",
                client_with_tag(i, 1),
                tag(i + 1)
            ),
            _ => format!(
                "{action} from=\"fwset:nets-{}\" to=\"tag:{}\" proto=\"tcp\" port={port}",
                i % NET_FWSETS,
                tag(i + 1)
            ),
        };
        let _ = writeln!(w, "    {line}");
    }
    for f in 0..PORT_FWSETS {
        let _ = writeln!(
            w,
            "    allow from=\"overlay\" to=\"controller:ctl-{}\" proto=\"tcp\" port=\"fwset:ports-{f}\"",
            f + 1
        );
    }
    let _ = writeln!(w, "}}");
    for e in 0..EXPECTS {
        let i = e * (RULES / EXPECTS);
        let (action, proto) = (if i % 7 == 3 { "drop" } else { "allow" }, if i % 4 == 2 { "udp" } else { "tcp" });
        let from = match i % 4 {
            3 => format!("198.18.{}.1", i % NET_FWSETS),
            2 => client_with_tag(i, 1),
            _ => client_with_tag(i, 2),
        };
        let to = client_with_tag(i + 1, 3);
        let _ = writeln!(
            w,
            "expect \"e{e}\" from=\"{from}\" to=\"{to}\" proto=\"{proto}\" port={} verdict=\"{action}\"",
            10_000 + i
        );
    }
    s
}

/// The VXLAN part of the issue-10 benchmark: 128 nodes in 8 PDCs, 16 overlay rules, 256
/// overlays (each on 8 nodes in two PDCs, so every rule crosses PDCs), 20,000 vNICs, the admin
/// overlay and a node firewall. Appended to [`topology`] it makes one file with both halves.
pub const NODES: u32 = 128;
pub const PDCS: u32 = 8;
pub const OVERLAY_RULES: u32 = 16;
pub const OVERLAYS: u32 = 256;
pub const VNICS: u32 = 20_000;

pub fn vxlan_part() -> String {
    let per_pdc = NODES / PDCS;
    let mut s = String::with_capacity(2 << 20);
    let w = &mut s;
    for n in 0..NODES {
        let (p, i) = (n / per_pdc, n % per_pdc);
        let _ = writeln!(
            w,
            "node \"cn-{n}\" pdc=\"dc{p}\" admin=\"10.200.{p}.{}/24\" external=\"172.20.{p}.{}/24\"",
            11 + i,
            11 + i
        );
    }
    // Rule names must end in a letter (SmartOS appends the VNI).
    let rule = |r: u32| format!("tenants_{}", char::from(b'a' + r as u8));
    for r in 0..OVERLAY_RULES {
        let _ = writeln!(w, "overlay-rule \"{}\"", rule(r));
    }
    let _ = writeln!(w, "admin-overlay subnet=\"10.250.0.0/24\"");
    let _ = writeln!(w, "node-firewall policy=\"drop\" {{\n    allow from=\"fwset:nets-0\" proto=\"tcp\" port=22\n}}");
    let mut vnic = 0;
    for o in 0..OVERLAYS {
        let (pa, pb) = (o % PDCS, (o + 3) % PDCS);
        let nodes: Vec<u32> = (0..4)
            .map(|k| pa * per_pdc + (o + k) % per_pdc)
            .chain((0..4).map(|k| pb * per_pdc + (o + 2 * k) % per_pdc))
            .collect();
        let _ = writeln!(
            w,
            "vxlan \"ov-{o}\" rule=\"{}\" vni={} subnet=\"10.{}.{}.0/24\" {{",
            rule(o % OVERLAY_RULES),
            1000 + o / OVERLAY_RULES,
            128 + o / 256,
            o % 256
        );
        let count = VNICS / OVERLAYS + u32::from(o < VNICS % OVERLAYS);
        for j in 0..count {
            let _ = writeln!(w, "    vnic \"vm-{vnic}\" node=\"cn-{}\"", nodes[(j as usize) % nodes.len()]);
            vnic += 1;
        }
        let _ = writeln!(w, "}}");
    }
    s
}
