//! `meshwork graph FILE`: the peering mesh as Graphviz DOT on stdout, or (`--format json`) as
//! data: controllers (overlay address, LANs, engines, primary clients), tunnels, and which of
//! them are single points of failure.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use meshwork_compiler::network::Network;
use serde::Serialize;

use crate::OutputFormat;
use crate::input::{self, CliError};

pub fn run(file: &Path, format: OutputFormat) -> Result<ExitCode, CliError> {
    let (_analysis, net) = input::network(file)?;
    match format {
        OutputFormat::Text => print!("{}", meshwork_compiler::graph::dot(&net)),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&JsonGraph::new(&net)).map_err(|e| CliError::Message(e.to_string()))?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct JsonGraph {
    topology: String,
    /// By id.
    controllers: Vec<JsonController>,
    /// By (low, high) controller name as the tunnels are numbered.
    tunnels: Vec<JsonTunnel>,
}

#[derive(Serialize)]
struct JsonController {
    name: String,
    id: u32,
    address: String,
    overlay_ip: std::net::Ipv4Addr,
    lans: Vec<ipnet::Ipv4Net>,
    engines: usize,
    /// Clients (not revoked) whose pack tries this controller first.
    primary_clients: usize,
    /// Losing it splits the mesh.
    single_point_of_failure: bool,
}

#[derive(Serialize)]
struct JsonTunnel {
    a: String,
    b: String,
    cost: u32,
    /// Losing it splits the mesh.
    single_point_of_failure: bool,
}

impl JsonGraph {
    fn new(net: &Network) -> Self {
        let cut_vertices: BTreeSet<String> = net.mesh.articulation_points().into_iter().collect();
        let cut_edges: BTreeSet<(String, String)> = net.mesh.bridges().into_iter().collect();
        Self {
            topology: net.name.clone(),
            controllers: net
                .controllers
                .iter()
                .map(|c| JsonController {
                    name: c.name.clone(),
                    id: c.id,
                    address: c.address.to_string(),
                    overlay_ip: c.overlay_ip,
                    lans: c.lans.clone(),
                    engines: c.engines.as_ref().map_or(0, |e| e.engines.len()),
                    primary_clients: meshwork_compiler::graph::primary_clients(net, &c.name),
                    single_point_of_failure: cut_vertices.contains(&c.name),
                })
                .collect(),
            tunnels: net
                .tunnels
                .iter()
                .map(|t| JsonTunnel {
                    a: t.low.clone(),
                    b: t.high.clone(),
                    cost: t.cost,
                    single_point_of_failure: cut_edges.contains(&(t.low.clone(), t.high.clone())),
                })
                .collect(),
        }
    }
}
