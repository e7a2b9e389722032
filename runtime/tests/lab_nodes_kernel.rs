//! Issue 11, items 3 and 4 (the lab's part): `meshwork lab` on the two-PDC example. `lab up`
//! builds the PDCs' admin segments, the internet between the external addresses, a namespace per
//! node (made a node by the real `meshwork apply --node`, kept by the real `meshwork agent
//! --node`, real charon-systemd with userspace ESP) and a VM per vNIC; `lab test` holds every
//! expect with probes that prove whom they reached, carries a DF packet of exactly the vNIC MTU
//! over every path (one byte more refused) and finds ESP in UDP only on the internet; the IPsec
//! fault drill (`lab kill --ipsec cn-3 --wait`) stops cross-PDC traffic to cn-3 without one
//! plaintext packet while same-PDC traffic goes on, and cn-3's agent brings the tunnel back;
//! `lab down` leaves no namespace, process or link.
//!
//! The node part's namespaces carry a tag derived from the lab's directory (`mwl-<tag>-*`), so
//! this test does not collide with another lab on the machine.

mod support;

use std::path::Path;
use std::time::Instant;

use serde_json::Value;
use support::lab::{LabDown, lab, status};
use support::node_hosts::charon_installed;
use support::{Lab, kernel_tests_possible, output};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/two-pdc.kdl");

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
}

/// Every node up with all its SAs; returns (namespaces, pids of charon and agents).
fn nodes_up(st: &Value) -> (Vec<String>, Vec<u32>) {
    let (mut namespaces, mut pids) = (Vec::new(), Vec::new());
    let nodes = st["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 4, "{st}");
    for n in nodes {
        assert_eq!(n["state"], "up", "{n}");
        assert!(strings(&n["sas_down"]).is_empty(), "{n}");
        assert_eq!(strings(&n["sas_up"]).len(), 2, "every node has two peers in the other PDC: {n}");
        assert!(n["fdb_entries"].as_u64().is_some_and(|f| f > 0), "{n}");
        assert_eq!(n["plaintext_dropped"], 0, "{n}");
        namespaces.push(n["netns"].as_str().unwrap().to_string());
        pids.push(n["charon_pid"].as_u64().expect("charon runs") as u32);
        pids.push(n["agent_pid"].as_u64().expect("the agent runs") as u32);
    }
    let vnics = st["vnics"].as_array().expect("vnics");
    assert_eq!(vnics.len(), 7);
    for v in vnics {
        namespaces.push(v["netns"].as_str().unwrap().to_string());
        // tenant-a has an inner VLAN: the lab says it carries it untagged.
        assert_eq!(v["untagged"], v["overlay"] == "tenant-a", "{v}");
    }
    (namespaces, pids)
}

/// `lab test`: every expect holds (the isolation one because a-db, not b-db, answered), every
/// path carries exactly its MTU, and the internet saw ESP in UDP only.
fn lab_test_holds(state: &Path) {
    let out: Value = serde_json::from_str(&lab(state, &["test", "--format", "json"])).expect("test JSON");
    let rows = out["expects"].as_array().expect("expects");
    assert_eq!(rows.len(), 5);
    for row in rows {
        assert_eq!(row["skipped"], false, "{row}");
        assert_eq!(row["observed"], row["expected"], "{row}");
        assert_eq!(row["static"], row["expected"], "{row}");
    }
    let isolated = rows.iter().find(|r| r["flow"] == "a-web -> b-db icmp").expect("the isolation expect");
    assert!(isolated["note"].as_str().unwrap_or_default().contains("answered by a-db"), "{isolated}");
    let nodes = &out["nodes"];
    let mtu = nodes["mtu"].as_array().expect("MTU rows");
    assert_eq!(mtu.len(), 11, "6 admin-overlay pairs and 5 tenant paths");
    for r in mtu {
        assert_eq!(r["at_mtu"], "crossed", "{r}");
        assert_eq!(r["over_mtu"], "refused", "{r}");
    }
    for via in ["ipsec", "clear"] {
        assert!(mtu.iter().any(|r| r["path"] == via), "no {via} path probed");
    }
    let wire = &nodes["wire"];
    assert_eq!(wire["plaintext_vxlan"], 0, "{wire}");
    assert_eq!(wire["esp"], 0, "{wire}");
    assert_eq!(wire["fragments"], 0, "{wire}");
    assert!(wire["esp_in_udp"].as_u64().unwrap() > 0, "{wire}");
    assert!(wire["clear_on_admin"]["prague"].as_u64().unwrap() > 0, "same-PDC VXLAN goes in clear: {wire}");
    assert!(strings(&nodes["wire_problems"]).is_empty(), "{nodes}");
    assert_eq!(strings(&nodes["untagged"]).len(), 2, "{nodes}");
}

#[test]
fn two_pdc_lab_up_test_drill_and_down() {
    if !kernel_tests_possible() || !charon_installed() {
        return;
    }
    let scratch = Lab::new("labnodes");
    let state = scratch.path("state");
    let _down = LabDown(state.clone());

    let started = Instant::now();
    let up = lab(&state, &["up", EXAMPLE]);
    eprintln!("lab up of two-pdc: {:.1} s", started.elapsed().as_secs_f64());
    assert!(up.contains("nodes:") && up.contains("vNICs:"), "{up}");
    let (namespaces, pids) = nodes_up(&status(&state));
    let tag = namespaces[0].split("-node-").next().unwrap().to_string();
    assert!(tag.starts_with("mwl-"), "{tag}");

    lab_test_holds(&state);

    // The IPsec fault drill on cn-3 (brno): b-web/a-web in prague lose it, a-cache next to it
    // does not, no plaintext crosses the internet, and cn-3's agent brings charon back.
    let drill: Value =
        serde_json::from_str(&lab(&state, &["kill", "--ipsec", "cn-3", "--wait", "--format", "json"])).unwrap();
    eprintln!("fault drill: {drill}");
    assert_eq!(drill["holds"], true, "{drill}");
    assert!(drill["stopped_after"].is_number(), "{drill}");
    let back = drill["back_after"].as_f64().expect("traffic came back");
    assert!(back < 30.0, "{drill}");
    assert!(drill["same_pdc_sent"].as_u64().unwrap() > 0, "{drill}");
    assert_eq!(drill["same_pdc_answered"], drill["same_pdc_sent"], "{drill}");
    assert_eq!(drill["plaintext_after"], 0, "{drill}");
    eprintln!("fault drill: cross-PDC traffic to cn-3 back {back:.1} s after its charon was gone");
    let st = status(&state);
    let cn3 = st["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "cn-3").unwrap();
    assert_eq!(strings(&cn3["sas_up"]).len(), 2, "{cn3}");
    lab_test_holds(&state);

    assert_eq!(charons_in(&state).len(), 4, "one charon per node, none left over from the drill");

    lab(&state, &["down"]);
    let left = output("ip", &["netns", "list"]);
    for ns in &namespaces {
        assert!(!left.lines().any(|l| l.split_whitespace().next() == Some(ns)), "namespace {ns} left");
    }
    assert!(!left.contains(&format!("{tag}-")), "a namespace of the lab left: {left}");
    for pid in pids {
        assert!(!support::alive(pid), "process {pid} left");
    }
    let links = output("ip", &["-o", "link"]);
    assert!(!links.contains("mw-vm"), "a VM port left in the host's namespace: {links}");
    assert!(!state.join("lab").exists(), "the lab's directory is left");
    assert_eq!(charons_in(&state), Vec::<u32>::new(), "charon left running");
}

/// Pids of the charon processes working in a directory under `state` (pid file or not).
fn charons_in(state: &Path) -> Vec<u32> {
    let state = std::path::absolute(state).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            comm.trim() == "charon-systemd" && cwd.starts_with(&state)
        })
        .collect()
}
