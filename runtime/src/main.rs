//! The `meshwork` command line. Each verb lives in its own module under `commands/`.

mod commands;
mod input;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// meshwork: compile, check and (later) apply an encrypted overlay network from one topology file.
#[derive(Parser)]
#[command(name = "meshwork", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Validate topology files: every problem, with its code and place. Exit 0 when clean or
    /// only warnings, 1 on errors.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Compile a topology into every host's configuration.
    Build {
        file: PathBuf,
        /// Output directory (replaced as a whole; never half-written).
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
    },
    /// The firewall's verdict for one flow, and the rule that decides it.
    Explain {
        file: PathBuf,
        /// Client name or overlay address.
        from: String,
        /// Client name or address.
        to: String,
        /// tcp, udp, icmp or any.
        proto: String,
        port: Option<u16>,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// What changes on each controller between two versions of a topology.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
        /// Exit 2 when there are changes (0 none, 1 error), like `terraform plan`.
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// The peering mesh as Graphviz DOT.
    Graph { file: PathBuf },
    /// List diagnostic codes, or explain one.
    Codes { code: Option<String> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { files, format, deny_warnings } => commands::check::run(&files, format, deny_warnings),
        Command::Build { file, out } => commands::build::run(&file, &out),
        Command::Explain { file, from, to, proto, port, format } => {
            commands::explain::run(&file, &from, &to, &proto, port, format)
        }
        Command::Diff { old, new, format, detailed_exitcode } => {
            commands::diff::run(&old, &new, format, detailed_exitcode)
        }
        Command::Graph { file } => commands::graph::run(&file),
        Command::Codes { code } => commands::codes::run(code.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
