//! Kernel test of `meshwork::lab::probe`: responders and probes between two namespaces joined by
//! a veth, with the test's own nftables table deciding what gets through.
//!
//!   client (10.250.0.1, 10.250.0.3)  ── veth ──  server (10.250.0.2, 10.250.0.4)

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use meshwork::lab::probe::{Flow, Outcome, Proto, Responder, probe, respond};
use support::{Lab, kernel_tests_possible, run, wait_until};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 2);
/// The client's second address: the server's firewall drops some flows from it only.
const CLIENT_2: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 3);
/// The server's second address: ICMP to it is dropped; the UDP echo answers from it.
const SERVER_2: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 4);

const TCP_OPEN: u16 = 7001;
const TCP_DROPPED: u16 = 7002;
const TCP_CLOSED: u16 = 7003;
const UDP_ECHO: u16 = 7101;
const UDP_DROPPED: u16 = 7102;
const UDP_CLOSED: u16 = 7103;
const UDP_REJECTED: u16 = 7104;

const WAIT: Duration = Duration::from_secs(1);

/// The server's firewall: a table of the test's own, in the server's namespace.
const RULES: &str = "
table inet mwt_probe {
    chain input {
        type filter hook input priority filter; policy accept;
        tcp dport 7002 drop
        udp dport 7102 drop
        ip saddr 10.250.0.3 tcp dport 7001 drop
        ip saddr 10.250.0.3 udp dport 7101 drop
        ip saddr 10.250.0.3 icmp type echo-request drop
        ip daddr 10.250.0.4 icmp type echo-request drop
        udp dport 7104 reject with icmp type admin-prohibited
    }
}
";

/// Two namespaces joined by a veth, addressed as in the module comment, the firewall loaded.
/// `test` names them apart from those of the other tests (which run at the same time).
fn network(lab: &mut Lab, test: &str) -> (String, String) {
    let client = lab.netns(&format!("{test}-client"));
    let server = lab.netns(&format!("{test}-server"));
    // Created inside the client's namespace: nothing of the test ever touches the host's.
    run("ip", &["-n", &client, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", &server]);
    for (ns, dev, addrs) in [(&client, "veth0", [CLIENT, CLIENT_2]), (&server, "veth1", [SERVER, SERVER_2])] {
        for addr in addrs {
            run("ip", &["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
        }
        run("ip", &["-n", ns, "link", "set", dev, "up"]);
    }
    let rules = lab.path("rules.nft");
    std::fs::write(&rules, RULES).expect("write the rules");
    run("ip", &["netns", "exec", &server, "nft", "-f", rules.to_str().expect("utf-8 path")]);
    (client, server)
}

fn flow(netns: &str, source: Option<Ipv4Addr>, destination: Ipv4Addr, proto: Proto, port: Option<u16>) -> Flow {
    Flow { netns: netns.to_string(), source, destination, proto, port }
}

/// Responders for every TCP and UDP port the firewall mentions, so that a drop is the
/// firewall's doing, not a missing listener.
fn responders(server: &str) -> Vec<Responder> {
    let mut all = Vec::new();
    for (proto, port) in [
        (Proto::Tcp, TCP_OPEN),
        (Proto::Tcp, TCP_DROPPED),
        (Proto::Udp, UDP_ECHO),
        (Proto::Udp, UDP_DROPPED),
        (Proto::Udp, UDP_REJECTED),
    ] {
        all.push(respond(server, proto, port).unwrap_or_else(|e| panic!("{proto} responder on {port}: {e}")));
    }
    all.push(respond(server, Proto::Icmp, 0).expect("the ICMP responder (none needed)"));
    all
}

#[test]
fn probes_tell_reached_from_dropped() {
    if !kernel_tests_possible() {
        return;
    }
    let mut lab = Lab::new("probe");
    let (client, server) = network(&mut lab, "probe");
    let responders = responders(&server);
    assert_eq!(responders[0].port(), TCP_OPEN);

    let c = client.as_str();
    let cases = [
        ("tcp to a listener", flow(c, None, SERVER, Proto::Tcp, Some(TCP_OPEN)), Outcome::Reached),
        ("tcp dropped by nft", flow(c, None, SERVER, Proto::Tcp, Some(TCP_DROPPED)), Outcome::Dropped),
        ("tcp refused (RST)", flow(c, None, SERVER, Proto::Tcp, Some(TCP_CLOSED)), Outcome::Reached),
        ("tcp from the allowed source", flow(c, Some(CLIENT), SERVER, Proto::Tcp, Some(TCP_OPEN)), Outcome::Reached),
        ("tcp from the dropped source", flow(c, Some(CLIENT_2), SERVER, Proto::Tcp, Some(TCP_OPEN)), Outcome::Dropped),
        ("udp echo", flow(c, None, SERVER, Proto::Udp, Some(UDP_ECHO)), Outcome::Reached),
        ("tcp to the secondary address", flow(c, None, SERVER_2, Proto::Tcp, Some(TCP_OPEN)), Outcome::Reached),
        ("udp echo from the secondary address", flow(c, None, SERVER_2, Proto::Udp, Some(UDP_ECHO)), Outcome::Reached),
        ("udp dropped by nft", flow(c, None, SERVER, Proto::Udp, Some(UDP_DROPPED)), Outcome::Dropped),
        ("udp port unreachable", flow(c, None, SERVER, Proto::Udp, Some(UDP_CLOSED)), Outcome::Dropped),
        ("udp admin-prohibited", flow(c, None, SERVER, Proto::Udp, Some(UDP_REJECTED)), Outcome::Dropped),
        ("udp from the allowed source", flow(c, Some(CLIENT), SERVER, Proto::Udp, Some(UDP_ECHO)), Outcome::Reached),
        ("udp from the dropped source", flow(c, Some(CLIENT_2), SERVER, Proto::Udp, Some(UDP_ECHO)), Outcome::Dropped),
        ("icmp echo", flow(c, None, SERVER, Proto::Icmp, None), Outcome::Reached),
        ("icmp dropped by nft", flow(c, None, SERVER_2, Proto::Icmp, None), Outcome::Dropped),
        ("icmp from the allowed source", flow(c, Some(CLIENT), SERVER, Proto::Icmp, None), Outcome::Reached),
        ("icmp from the dropped source", flow(c, Some(CLIENT_2), SERVER, Proto::Icmp, None), Outcome::Dropped),
        ("icmp to a local address", flow(c, None, CLIENT_2, Proto::Icmp, None), Outcome::Reached),
    ];

    // All at once, from one namespace: concurrent ICMP probes must not take each other's replies
    // (and the whole table then takes about one `WAIT`).
    let started = Instant::now();
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let probes: Vec<_> = cases.iter().map(|(_, flow, _)| scope.spawn(move || probe(flow, WAIT))).collect();
        probes.into_iter().map(|p| p.join().expect("probe thread")).collect()
    });
    let elapsed = started.elapsed();

    let mut wrong = Vec::new();
    for ((name, flow, expected), outcome) in cases.iter().zip(outcomes) {
        match outcome {
            Ok(outcome) if outcome == *expected => {}
            other => wrong.push(format!("{name} ({flow}): expected {expected}, got {other:?}")),
        }
    }
    assert!(wrong.is_empty(), "wrong outcomes:\n{}", wrong.join("\n"));
    assert!(elapsed < WAIT * 3, "the probes took {elapsed:?}");
}

#[test]
fn answers_stop_with_the_responder() {
    if !kernel_tests_possible() {
        return;
    }
    let mut lab = Lab::new("probe-stop");
    let (client, server) = network(&mut lab, "probe-stop");
    let udp = flow(&client, None, SERVER, Proto::Udp, Some(UDP_ECHO));

    let responder = respond(&server, Proto::Udp, UDP_ECHO).expect("udp responder");
    assert_eq!(probe(&udp, WAIT).expect("probe"), Outcome::Reached);
    let started = Instant::now();
    drop(responder);
    assert!(started.elapsed() < Duration::from_millis(500), "dropping the responder took {:?}", started.elapsed());
    assert_eq!(probe(&udp, WAIT).expect("probe"), Outcome::Dropped, "the socket is closed");

    // A port nobody listens on answers with port unreachable, which ends the probe at once.
    let started = Instant::now();
    let closed = flow(&client, None, SERVER, Proto::Udp, Some(UDP_CLOSED));
    assert_eq!(probe(&closed, WAIT).expect("probe"), Outcome::Dropped);
    assert!(started.elapsed() < WAIT / 2, "an ICMP error ends a probe at once ({:?})", started.elapsed());

    // The ports are free again. Retried briefly: the other tests of this process fork `ip` all
    // the time, and a child holds a copy of every descriptor until it execs.
    let tcp = respond(&server, Proto::Tcp, TCP_OPEN).expect("tcp responder");
    drop(tcp);
    let again_tcp =
        wait_until("the tcp port to be free", Duration::from_secs(2), || respond(&server, Proto::Tcp, TCP_OPEN).ok());
    let _again_udp =
        wait_until("the udp port to be free", Duration::from_secs(2), || respond(&server, Proto::Udp, UDP_ECHO).ok());
    assert_eq!(probe(&udp, WAIT).expect("probe"), Outcome::Reached);
    assert_eq!(probe(&flow(&client, None, SERVER, Proto::Tcp, Some(TCP_OPEN)), WAIT).expect("probe"), Outcome::Reached);
    drop(again_tcp);
}

#[test]
fn local_failures_are_errors() {
    if !kernel_tests_possible() {
        return;
    }
    let mut lab = Lab::new("probe-errors");
    let (client, server) = network(&mut lab, "probe-errors");

    let missing = format!("mwt-probe-missing-{}", std::process::id());
    let err = probe(&flow(&missing, None, SERVER, Proto::Icmp, None), WAIT).expect_err("no such namespace");
    assert!(err.to_string().contains(&missing), "{err}");
    for proto in [Proto::Tcp, Proto::Udp, Proto::Icmp] {
        assert!(respond(&missing, proto, UDP_ECHO).is_err(), "{proto} responder in no namespace");
    }

    let foreign = Ipv4Addr::new(10, 250, 0, 9);
    for proto in [Proto::Tcp, Proto::Udp, Proto::Icmp] {
        let err = probe(&flow(&client, Some(foreign), SERVER, proto, Some(TCP_OPEN)), WAIT)
            .expect_err("a source that is not local");
        assert!(err.to_string().contains("10.250.0.9"), "{err}");
    }

    let err = probe(&flow(&client, None, SERVER, Proto::Tcp, None), WAIT).expect_err("tcp needs a port");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);

    let _first = respond(&server, Proto::Udp, UDP_ECHO).expect("udp responder");
    let err = respond(&server, Proto::Udp, UDP_ECHO).expect_err("the port is taken");
    assert!(err.to_string().contains(&server), "{err}");

    // No route is the network's answer, not a local failure.
    let unrouted = Ipv4Addr::new(192, 0, 2, 1);
    for proto in [Proto::Tcp, Proto::Udp, Proto::Icmp] {
        let outcome = probe(&flow(&client, None, unrouted, proto, Some(TCP_OPEN)), WAIT);
        assert_eq!(outcome.expect("no route"), Outcome::Dropped, "{proto} without a route");
    }
}
