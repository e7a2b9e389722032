//! The IPsec fault drill (`lab kill --ipsec NODE --wait`, or `lab kill NODE --wait` for the
//! whole host): while one flow to the node crosses PDCs and one stays within its PDC, the node's
//! charon is stopped (by its pid file) and the lab watches, every [`TICK`], whether each flow is
//! answered by the node's vNIC and whether plaintext VXLAN appears on the internet. Cross-PDC
//! traffic to the node must stop, not one plaintext packet may cross the internet, same-PDC
//! traffic must go on (for an IPsec fault), and the node's agent must bring the tunnel back.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use meshwork_compiler::network::Network;
use meshwork_compiler::vxlan::{OverlayKind, OverlayNet, VnicNet};
use serde::Serialize;

use super::ident::{self, Answer};
use super::noderun::{self, Fault};
use super::probe::{Flow, Proto};
use super::vnics::{self, Place};
use super::{Lab, Record, wire};

/// How often the flows are probed during the drill.
pub const TICK: Duration = Duration::from_millis(250);
/// How long one probe waits for its answer during the drill.
const PROBE_WAIT: Duration = Duration::from_millis(600);
/// A flow that still crosses this long after the kill did not stop.
const STOP_WINDOW: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Serialize)]
pub struct DrillReport {
    pub node: String,
    /// `ipsec` or `node`.
    pub fault: &'static str,
    /// Whether charon was running when it was stopped.
    pub charon_was_running: bool,
    /// The cross-PDC flow watched (`b-web -> b-db icmp`), if the node has a vNIC peer in
    /// another PDC.
    pub cross_pdc: Option<String>,
    /// Seconds after charon was gone when a probe of the cross-PDC flow first went unanswered.
    pub stopped_after: Option<f64>,
    /// Seconds after charon was gone when a probe of it was answered again (the agent brought
    /// the tunnel back).
    pub back_after: Option<f64>,
    /// The same-PDC flow watched, if the node has a vNIC peer in its own PDC.
    pub same_pdc: Option<String>,
    pub same_pdc_sent: u32,
    pub same_pdc_answered: u32,
    /// Plaintext VXLAN on the internet before the kill and at the end of the drill.
    pub plaintext_before: u64,
    pub plaintext_after: u64,
    /// ESP in UDP on the internet during the drill.
    pub esp_in_udp_during: u64,
    /// Whether the drill shows what it must (see the module's documentation).
    pub holds: bool,
    pub problems: Vec<String>,
}

/// A flow to the node's vNIC `to` from `from`, as ICMP from the sender's address.
struct Watched {
    text: String,
    flow: Flow,
    to: String,
}

fn watched(record: &Record, net: &Network, from: &VnicNet, to: &VnicNet) -> Option<Watched> {
    let (src, dst): (Place, Place) = (vnics::place(record, net, &from.name)?, vnics::place(record, net, &to.name)?);
    Some(Watched {
        text: format!("{} -> {} icmp", src.name, dst.name),
        flow: Flow {
            netns: src.netns,
            source: Some(src.address),
            destination: dst.address,
            proto: Proto::Icmp,
            port: None,
        },
        to: dst.name,
    })
}

/// A flow to a vNIC on `node` from a vNIC of the same overlay on another node, in another PDC
/// (`cross`) or the same one; tenant overlays first, then the admin overlay.
fn pick(record: &Record, net: &Network, node: &str, cross: bool) -> Option<Watched> {
    let pdc = |n: &str| net.vxlan.node(n).map(|n| n.pdc.clone());
    let mine = pdc(node)?;
    let mut overlays: Vec<&OverlayNet> = net.vxlan.overlays.iter().collect();
    overlays.sort_by_key(|o| o.kind == OverlayKind::Admin);
    for o in overlays {
        let Some(to) = o.vnics.iter().find(|v| v.node == node) else { continue };
        let from = o.vnics.iter().find(|v| {
            v.node != node && !record.killed_nodes.contains(&v.node) && (pdc(&v.node).as_ref() != Some(&mine)) == cross
        });
        if let Some(w) = from.and_then(|f| watched(record, net, f, to)) {
            return Some(w);
        }
    }
    None
}

fn answered(w: &Watched) -> bool {
    matches!(ident::probe(&w.flow, PROBE_WAIT), Ok(Answer::Named(name)) if name == w.to)
}

fn wire_now(record: &Record) -> (u64, u64) {
    match wire::read(&record.nodes) {
        Ok(Some(w)) => (w.plaintext_vxlan, w.esp_in_udp),
        _ => (0, 0),
    }
}

/// Runs the drill on `node`; waits up to `timeout` for the tunnel to come back (IPsec fault).
pub fn run(lab: &Lab, net: &Network, node: &str, fault: Fault, timeout: Duration) -> Result<DrillReport, String> {
    let record = lab.load()?;
    if record.nodes.node(node).is_none() {
        return Err(format!("the lab has no node {node:?}"));
    }
    let cross = pick(&record, net, node, true);
    let same = pick(&record, net, node, false);
    let _who = vnics::who_is_there(&record, net);
    for w in cross.iter().chain(&same) {
        if !answered(w) {
            return Err(format!("before the drill, {} is not answered: run `meshwork lab test` first", w.text));
        }
    }
    let (plaintext_before, esp_before) = wire_now(&record);
    let charon_was_running = noderun::kill(lab, node, fault)?;
    // Times count from the moment charon is gone (the kill waits for it to exit).
    let killed = Instant::now();
    let mut report = DrillReport {
        node: node.to_owned(),
        fault: match fault {
            Fault::Ipsec => "ipsec",
            Fault::Node => "node",
        },
        charon_was_running,
        cross_pdc: cross.as_ref().map(|w| w.text.clone()),
        stopped_after: None,
        back_after: None,
        same_pdc: same.as_ref().map(|w| w.text.clone()),
        same_pdc_sent: 0,
        same_pdc_answered: 0,
        plaintext_before,
        plaintext_after: plaintext_before,
        esp_in_udp_during: 0,
        holds: false,
        problems: Vec::new(),
    };
    let deadline = killed + timeout;
    loop {
        let tick = Instant::now();
        // A flow's state is when its probe was sent.
        let at = tick.duration_since(killed).as_secs_f64();
        // Both flows at once: a lost probe costs its whole wait.
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|s| {
            if let Some(w) = &same {
                let tx = tx.clone();
                s.spawn(move || tx.send(("same", answered(w))));
            }
            if let Some(w) = &cross {
                let tx = tx.clone();
                s.spawn(move || tx.send(("cross", answered(w))));
            }
        });
        drop(tx);
        for (which, ok) in rx {
            match which {
                "same" => {
                    report.same_pdc_sent += 1;
                    report.same_pdc_answered += u32::from(ok);
                }
                _ if !ok && report.stopped_after.is_none() => report.stopped_after = Some(at),
                _ if ok && report.stopped_after.is_some() && report.back_after.is_none() => {
                    report.back_after = Some(at)
                }
                _ => {}
            }
        }
        report.plaintext_after = wire_now(&record).0;
        let done = match (&cross, fault) {
            (None, _) => killed.elapsed() > STOP_WINDOW,
            (Some(_), Fault::Ipsec) => report.back_after.is_some(),
            (Some(_), Fault::Node) => report.stopped_after.is_some() && killed.elapsed() > Duration::from_secs(3),
        };
        let never_stopped = report.stopped_after.is_none() && killed.elapsed() > STOP_WINDOW;
        if done || never_stopped || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(TICK.saturating_sub(tick.elapsed()));
    }
    report.esp_in_udp_during = wire_now(&record).1.saturating_sub(esp_before);
    judge(&mut report, fault);
    Ok(report)
}

fn judge(r: &mut DrillReport, fault: Fault) {
    let mut problems = Vec::new();
    if r.plaintext_after != r.plaintext_before {
        problems
            .push(format!("{} plaintext VXLAN packet(s) crossed the internet", r.plaintext_after - r.plaintext_before));
    }
    if r.cross_pdc.is_some() {
        if r.stopped_after.is_none() {
            problems.push("cross-PDC traffic to the node never stopped".into());
        } else if fault == Fault::Ipsec && r.back_after.is_none() {
            problems.push("cross-PDC traffic did not come back (is the node's agent running?)".into());
        }
    }
    if fault == Fault::Ipsec && r.same_pdc_answered < r.same_pdc_sent {
        problems
            .push(format!("same-PDC traffic stopped: {} of {} probes answered", r.same_pdc_answered, r.same_pdc_sent));
    }
    if fault == Fault::Node && r.same_pdc_sent > 0 && r.same_pdc_answered == r.same_pdc_sent {
        problems.push("same-PDC traffic to a dead node was still answered".into());
    }
    r.holds = problems.is_empty();
    r.problems = problems;
}

pub fn text(r: &DrillReport) -> String {
    let secs = |s: Option<f64>| s.map_or("-".into(), |s| format!("{s:.1} s"));
    let mut out = format!(
        "fault drill: {} of node {} ({})\n",
        if r.fault == "ipsec" { "IPsec (charon stopped by its pid file)" } else { "the whole node" },
        r.node,
        if r.charon_was_running { "charon was running" } else { "charon was not running" }
    );
    match &r.cross_pdc {
        Some(flow) => {
            out += &format!(
                "  across PDCs  {flow}: stopped after {}, back after {}\n",
                secs(r.stopped_after),
                secs(r.back_after)
            )
        }
        None => out += "  across PDCs  no vNIC of another PDC shares an overlay with the node\n",
    }
    match &r.same_pdc {
        Some(flow) => {
            out += &format!("  within PDC   {flow}: {} of {} probes answered\n", r.same_pdc_answered, r.same_pdc_sent)
        }
        None => out += "  within PDC   no vNIC of the node's PDC shares an overlay with it\n",
    }
    out += &format!(
        "  internet     plaintext VXLAN {} -> {}, ESP in UDP during the drill {}\n",
        r.plaintext_before, r.plaintext_after, r.esp_in_udp_during
    );
    if r.holds {
        out += "the drill holds.\n";
    } else {
        for p in &r.problems {
            out += &format!("  FAIL: {p}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> DrillReport {
        DrillReport {
            node: "cn-3".into(),
            fault: "ipsec",
            charon_was_running: true,
            cross_pdc: Some("b-web -> b-db icmp".into()),
            stopped_after: Some(0.3),
            back_after: Some(4.2),
            same_pdc: Some("a-cache -> a-db icmp".into()),
            same_pdc_sent: 17,
            same_pdc_answered: 17,
            plaintext_before: 0,
            plaintext_after: 0,
            esp_in_udp_during: 30,
            holds: false,
            problems: vec![],
        }
    }

    #[test]
    fn an_ipsec_drill_holds_when_traffic_stops_and_comes_back_without_plaintext() {
        let mut r = report();
        judge(&mut r, Fault::Ipsec);
        assert!(r.holds, "{:?}", r.problems);
        assert!(text(&r).contains("stopped after 0.3 s, back after 4.2 s"));
        let mut r = report();
        r.plaintext_after = 2;
        r.back_after = None;
        r.same_pdc_answered = 16;
        judge(&mut r, Fault::Ipsec);
        assert_eq!(r.problems.len(), 3, "{:?}", r.problems);
        let mut r = report();
        r.stopped_after = None;
        judge(&mut r, Fault::Ipsec);
        assert!(r.problems[0].contains("never stopped"));
    }

    #[test]
    fn a_node_drill_needs_same_pdc_traffic_to_stop_too() {
        let mut r = report();
        r.back_after = None;
        judge(&mut r, Fault::Node);
        assert!(r.problems[0].contains("still answered"));
        r.same_pdc_answered = 0;
        judge(&mut r, Fault::Node);
        assert!(r.holds);
    }
}
