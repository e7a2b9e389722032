//! The agent's owner of a management socket ([`meshwork::openvpn::owner`]) against a real
//! OpenVPN 2.6 server compiled by meshwork, with a real client connecting over a veth pair:
//!
//! - the owner connects and says so; `status 3` over its connection lists nobody;
//! - while it holds the interface, a second management connection gets no answer (OpenVPN
//!   serves one at a time: why the agent must ask through its owner);
//! - when the client connects, OpenVPN's `>CLIENT:ESTABLISHED` reaches the owner unasked, with
//!   the client's name and the address its ccd file pins, and `status 3` lists it;
//! - when the server restarts, the owner connects to the new one by itself, and hears the
//!   client arrive again.
//!
//! Kernel test: needs root, `ip` and `openvpn`. Namespaces `mwf-own-*-<pid>` are deleted at the
//! end, processes killed by pid.

use std::sync::mpsc;
use std::time::Duration;

mod support;

use meshwork::openvpn::management;
use meshwork::openvpn::notify::Arrival;
use meshwork::openvpn::owner::{Event, Owner};
use support::pair::{CLIENT_OVERLAY, Pair, START_TIMEOUT};
use support::{Lab, kernel_tests_possible};

const CONTROLLER: &str = "owned-ctl";
const CLIENT: &str = "owned-client";

/// The next event, or a failure after `START_TIMEOUT`.
fn next(events: &mpsc::Receiver<Event>, what: &str) -> Event {
    events.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| panic!("no event within {START_TIMEOUT:?}: {what}"))
}

/// The next arrival, skipping re-attachments.
fn next_arrival(events: &mpsc::Receiver<Event>, what: &str) -> Arrival {
    loop {
        if let Event::Established(a) = next(events, what) {
            return a;
        }
    }
}

#[test]
fn an_owner_hears_arrivals_and_asks_over_its_own_connection() {
    if !kernel_tests_possible() {
        return;
    }
    let mut lab = Lab::new("mwf-own");
    let pair = Pair::new(&mut lab, "mwf-own", CONTROLLER, CLIENT);
    let (server, _) = pair.start_server(&mut lab, "server-1");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
    let (tx, events) = mpsc::channel();
    let owner = rt.block_on(async { Owner::spawn(pair.socket.clone(), move |e| drop(tx.send(e))) });
    assert_eq!(next(&events, "attached"), Event::Attached);
    assert_eq!(rt.block_on(owner.status()).expect("status over the owner's connection"), []);

    let err = rt.block_on(management::status(&pair.socket)).expect_err("a second connection is answered");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");

    pair.start_client(&mut lab);
    let arrival = next_arrival(&events, "the client's arrival");
    assert_eq!(arrival.common_name.as_deref(), Some(CLIENT), "{arrival:?}");
    assert_eq!(arrival.virtual_address, Some(CLIENT_OVERLAY), "{arrival:?}");
    let listed = rt.block_on(owner.status()).expect("status after the arrival");
    assert_eq!(listed.iter().map(|c| c.common_name.as_str()).collect::<Vec<_>>(), [CLIENT]);
    assert_eq!(Some(listed[0].connected_since), arrival.since, "{listed:?} {arrival:?}");

    // The server restarts (a new process, a new socket): the owner finds it by itself.
    let old = lab.child(server);
    old.kill().expect("kill the server");
    old.wait().expect("reap the server");
    pair.start_server(&mut lab, "server-2");
    let again = loop {
        match next(&events, "attached to the restarted server") {
            Event::Attached => break rt.block_on(owner.status()),
            Event::Established(_) => {}
        }
    };
    assert!(again.is_ok(), "status from the restarted server: {again:?}");
    let back = next_arrival(&events, "the client back on the restarted server");
    assert_eq!(back.common_name.as_deref(), Some(CLIENT), "{back:?}");
    drop(owner);
    rt.shutdown_timeout(Duration::from_secs(1));
}
