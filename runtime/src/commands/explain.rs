//! `meshwork explain FILE FROM TO PROTO [PORT]`: the verdict and the deciding rule.

use std::path::Path;
use std::process::ExitCode;

use crate::OutputFormat;
use crate::input::{self, CliError};

pub fn run(
    file: &Path,
    from: &str,
    to: &str,
    proto: &str,
    port: Option<u16>,
    format: OutputFormat,
) -> Result<ExitCode, CliError> {
    let (analysis, net) = input::network(file)?;
    let e =
        meshwork_compiler::explain::explain(&analysis.file, &net, from, to, proto, port).map_err(CliError::Message)?;
    if format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&e).map_err(|e| CliError::Message(e.to_string()))?);
        return Ok(ExitCode::SUCCESS);
    }
    let flow = match (e.proto, e.port) {
        (Some(p), Some(port)) => format!("{p}/{port}"),
        (Some(p), None) => p.to_string(),
        (None, _) => "any protocol".to_string(),
    };
    println!("{from} ({}) -> {to} ({}) {flow}: {}", e.from, e.to, e.verdict.to_uppercase());
    match (&e.rule, &e.why) {
        (_, Some(why)) => println!("  {why}"),
        (Some(r), None) => {
            println!("  decided by rule {} at {}:{}:{}", r.number, analysis.file.name, r.line, r.column);
            println!("    {}", r.text);
        }
        (None, None) => println!("  no rule matches; the firewall policy decides ({})", e.verdict),
    }
    Ok(ExitCode::SUCCESS)
}
