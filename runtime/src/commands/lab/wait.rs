//! The waits of `lab kill --wait` and `lab restore --wait`, each saying on stderr how far it
//! got: at once, whenever that changes, and every [`HEARTBEAT`] while it does not.

use std::time::{Duration, Instant};

use meshwork::lab::probe::{self, Flow, Outcome, Proto};
use meshwork::lab::{self, Lab, Record, noderun, report};
use meshwork_compiler::model::Proto as FileProto;
use meshwork_compiler::network::Network;

use super::out;

/// How long `lab kill --wait` waits for the killed controller's clients to be back.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `lab restore --wait` waits for the lab to be whole again.
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);
/// A line at least this often while nothing changes.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Prints `what` when it differs from the last line, or the heartbeat is due.
struct Ticker {
    since: Instant,
    last: Option<(String, Instant)>,
}

impl Ticker {
    fn new(since: Instant) -> Ticker {
        Ticker { since, last: None }
    }
    fn show(&mut self, what: &str) {
        let due = self.last.as_ref().is_none_or(|(l, at)| l != what || at.elapsed() >= HEARTBEAT);
        if due {
            out::say(&format!("[{:>5.1}s] {what}", self.since.elapsed().as_secs_f64()));
            self.last = Some((what.to_string(), Instant::now()));
        }
    }
}

/// Waits until every client in `held` sits on a live controller, every live controller routes
/// to it, and every live controller's namespace gets an ICMP echo answer from it (where the
/// firewall allows that echo). Returns where each one landed.
pub fn failover(lab: &Lab, net: &Network, held: &[String], since: Instant) -> Result<Vec<(String, String)>, String> {
    let mut ticker = Ticker::new(since);
    loop {
        let record = lab.load()?;
        let located = lab::locations(lab, &record);
        let mut back = Vec::new();
        let mut waiting = Vec::new();
        for client in held {
            match located.get(client) {
                None => waiting.push(format!("{client} (not connected)")),
                Some(_) if !lab::routed_everywhere(lab, &record, client) => {
                    waiting.push(format!("{client} (not routed by every controller)"))
                }
                Some(_) if !answers_everywhere(&record, net, client) => {
                    waiting.push(format!("{client} (no echo answer yet)"))
                }
                Some((on, unit)) => back.push((client.clone(), format!("{on}/{unit}"))),
            }
        }
        if waiting.is_empty() {
            ticker.show(&format!("{}/{} of its clients back", back.len(), held.len()));
            return Ok(back);
        }
        ticker.show(&format!("{}/{} of its clients back; waiting for {}", back.len(), held.len(), waiting.join(", ")));
        if since.elapsed() > FAILOVER_TIMEOUT {
            return Err(format!(
                "after {} s, not every client is back: {} (logs: {})",
                FAILOVER_TIMEOUT.as_secs(),
                waiting.join(", "),
                lab.logs().display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// ICMP from every live controller's namespace (its overlay address) reaches `client`, unless
/// the firewall would drop that echo anyway.
fn answers_everywhere(record: &Record, net: &Network, client: &str) -> bool {
    let Some(ip) = net.clients.iter().find(|c| c.name == client).map(|c| c.ip) else { return false };
    net.controllers.iter().filter(|c| !record.killed.contains(&c.name)).all(|c| {
        let allowed = net.firewall.evaluate(c.overlay_ip, ip, Some(FileProto::Icmp), None).action
            == meshwork_compiler::model::Action::Accept;
        let Some(host) = record.layout.controller(&c.name) else { return false };
        let flow = Flow {
            netns: host.netns.clone(),
            source: Some(c.overlay_ip),
            destination: ip,
            proto: Proto::Icmp,
            port: None,
        };
        !allowed || probe::probe(&flow, Duration::from_millis(500)).is_ok_and(|o| o == Outcome::Reached)
    })
}

/// Waits until a restored controller's lab is whole again: every live controller up and
/// hearing its live peers, every client connected and routed by every live controller.
pub fn restored_controller(lab: &Lab, net: &Network, since: Instant) -> Result<(), String> {
    let mut ticker = Ticker::new(since);
    loop {
        let record = lab.load()?;
        let missing = report::not_whole(&report::status(lab, &record, net));
        if missing.is_empty() {
            ticker.show("every controller hears its peers; every client is connected and routed");
            return Ok(());
        }
        ticker.show(&format!("waiting for {}", missing.join(", ")));
        if since.elapsed() > RESTORE_TIMEOUT {
            return Err(format!(
                "after {} s the lab is not whole again: {} (logs: {})",
                RESTORE_TIMEOUT.as_secs(),
                missing.join(", "),
                lab.logs().display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits up to `timeout` until every IPsec peer of a restored node has its child SA. Returns
/// the peers still without one when it gave up (empty: all up).
pub fn restored_node(lab: &Lab, net: &Network, node: &str, since: Instant, timeout: Duration) -> Vec<String> {
    let mut ticker = Ticker::new(since);
    loop {
        let Ok(record) = lab.load() else { return vec!["(the lab's record is gone)".into()] };
        let Some(n) = record.nodes.node(node) else { return Vec::new() };
        let (up, down) = noderun::sa_state(lab, net, n);
        if down.is_empty() {
            ticker.show(&format!("{}/{} child SA(s) of node {node} up", up.len(), up.len()));
            return down;
        }
        ticker.show(&format!(
            "{}/{} child SA(s) of node {node} up; waiting for {}",
            up.len(),
            up.len() + down.len(),
            down.join(", ")
        ));
        if since.elapsed() > timeout {
            return down;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
