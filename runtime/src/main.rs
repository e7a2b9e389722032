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
        #[command(flatten)]
        state: StateArg,
    },
    /// Compile a topology into every host's configuration.
    Build {
        file: PathBuf,
        /// Output directory (replaced as a whole; never half-written).
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        #[command(flatten)]
        state: StateArg,
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
    /// The topology's keyset: a CA and every identity's certificate.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Write a client's clientpack (an OpenVPN config with its certificate and key inline).
    Clientpack {
        file: PathBuf,
        /// The client; or --all.
        #[arg(required_unless_present = "all")]
        name: Option<String>,
        /// Every client, into the directory given by -o.
        #[arg(long, conflicts_with = "name")]
        all: bool,
        /// Output file (one client) or directory (--all). Written 0600: it holds a private key.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// Let the client pick a controller at random instead of its primary first.
        #[arg(long)]
        remote_random: bool,
        /// `ovpn`: one file with everything inline; `tar.gz`: separate files in an archive.
        #[arg(long, value_enum, default_value_t)]
        pack_format: commands::clientpack::PackFormat,
        #[command(flatten)]
        state: StateArg,
    },
}

/// `--state-dir`, shared by every verb that reads or writes state.
#[derive(clap::Args, Clone, Debug)]
pub struct StateArg {
    /// State directory (keys, plans, locks); default $MESHWORK_STATE_DIR or ./mw-state.
    #[arg(long = "state-dir", global = true)]
    pub state_dir: Option<PathBuf>,
}

impl StateArg {
    pub fn dir(&self) -> PathBuf {
        meshwork::state::resolve(self.state_dir.as_deref())
    }
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create the topology's keyset (once; refuses to overwrite).
    Init {
        file: PathBuf,
        #[command(flatten)]
        state: StateArg,
    },
    /// Issue what the file added, revoke what it removed or marks revoked; idempotent.
    Sync {
        file: PathBuf,
        #[command(flatten)]
        state: StateArg,
    },
    /// Re-issue certificates that expire within --within days (default 30).
    Renew {
        file: PathBuf,
        #[arg(long, default_value_t = 30)]
        within: u32,
        #[command(flatten)]
        state: StateArg,
    },
    /// Write the keyset as an encrypted, authenticated bundle (for the other controllers).
    Export {
        /// File holding the shared token.
        #[arg(long)]
        token_file: PathBuf,
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        #[command(flatten)]
        state: StateArg,
    },
    /// Restore a keyset from a bundle; a wrong token or a tampered bundle writes nothing.
    Import {
        bundle: PathBuf,
        #[arg(long)]
        token_file: PathBuf,
        #[command(flatten)]
        state: StateArg,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { files, format, deny_warnings, state } => {
            commands::check::run(&files, format, deny_warnings, &state.dir())
        }
        Command::Build { file, out, state } => commands::build::run(&file, &out, &state.dir()),
        Command::Explain { file, from, to, proto, port, format } => {
            commands::explain::run(&file, &from, &to, &proto, port, format)
        }
        Command::Diff { old, new, format, detailed_exitcode } => {
            commands::diff::run(&old, &new, format, detailed_exitcode)
        }
        Command::Graph { file } => commands::graph::run(&file),
        Command::Codes { code } => commands::codes::run(code.as_deref()),
        Command::Keys { action } => match action {
            KeysAction::Init { file, state } => commands::keys::init(&file, &state.dir()),
            KeysAction::Sync { file, state } => commands::keys::sync(&file, &state.dir()),
            KeysAction::Renew { file, within, state } => commands::keys::renew(&file, &state.dir(), within),
            KeysAction::Export { token_file, out, state } => {
                commands::keys_transfer::export(&state.dir(), &token_file, &out)
            }
            KeysAction::Import { bundle, token_file, state } => {
                commands::keys_transfer::import(&bundle, &token_file, &state.dir())
            }
        },
        Command::Clientpack { file, name, all, out, remote_random, pack_format, state } => {
            commands::clientpack::run(&file, name.as_deref(), all, &out, remote_random, pack_format, &state.dir())
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
