//! The `meshwork` command line. Each verb lives in its own module under `commands/`.

mod commands;
mod input;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// meshwork: check, compile, plan, apply and keep an encrypted overlay network from one topology file.
#[derive(Parser)]
#[command(name = "meshwork", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Colour diagnostics: `auto` (a terminal, unless NO_COLOR is set or TERM=dumb), `always`, `never`.
    #[arg(long, global = true, value_enum, default_value_t, value_name = "WHEN")]
    color: meshwork::term::ColorChoice,
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
        /// Topology files (KDL or TOML); each is checked with its lock file NAME.lock.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output: `text` for people, `json`, `github` (workflow annotations) or `sarif` (SARIF 2.1.0).
        #[arg(long, value_enum, default_value_t)]
        format: commands::check::CheckFormat,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
        /// Fail when a file's lock file (NAME.lock) is missing or would change (for CI).
        #[arg(long)]
        locked: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Compile a topology into every host's configuration.
    Build {
        /// The topology file (KDL or TOML), with its lock file NAME.lock beside it.
        file: PathBuf,
        /// Output directory (replaced as a whole; never half-written).
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// Output: `text` for people, `json` for programs.
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
        /// Refuse to build when the lock file (NAME.lock) is missing or would change, instead
        /// of writing it.
        #[arg(long)]
        locked: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Write the topology's lock file (NAME.lock beside it): the address of every object, so
    /// that none moves when another is added, removed or reordered. Commit it with the file.
    Lock {
        /// The topology file (KDL or TOML); NAME.lock is written beside it.
        file: PathBuf,
    },
    /// The firewall's verdict for one flow, and the rule that decides it.
    Explain {
        /// The topology file (KDL or TOML), with its lock file NAME.lock beside it.
        file: PathBuf,
        /// Client name or overlay address.
        from: String,
        /// Client name or address.
        to: String,
        /// tcp, udp, icmp or any.
        proto: String,
        /// Destination port (required for tcp and udp).
        port: Option<u16>,
        /// Output: `text` for people, `json` for programs.
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// What changes on each controller between two versions of a topology.
    Diff {
        /// The topology as it was (e.g. from `git show main:FILE`).
        old: PathBuf,
        /// The topology as it will be.
        new: PathBuf,
        /// Output: `text`, `json`, `github` (workflow annotations), `sarif` or `markdown` (a pull-request comment).
        #[arg(long, value_enum, default_value_t)]
        format: commands::diff::DiffFormat,
        /// Exit 2 when there are changes (0 none, 1 error), like `terraform plan`.
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// The peering mesh as Graphviz DOT (or JSON: controllers, tunnels, single points of failure).
    Graph {
        /// The topology file (KDL or TOML), with its lock file NAME.lock beside it.
        file: PathBuf,
        /// Output: `text` for people, `json` for programs.
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// List diagnostic codes, or explain one.
    Codes {
        /// A code such as MW001; without one, every code with its title.
        code: Option<String>,
    },
    /// The topology's keyset: a CA and every identity's certificate.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// What `apply` would change on this controller host: drift first, then `+`/`~`/`-` per
    /// object. Exit 0, or with --detailed-exitcode 0 no changes, 1 error, 2 changes.
    Plan {
        /// The topology file (KDL or TOML), with its lock file NAME.lock beside it.
        file: PathBuf,
        #[command(flatten)]
        host: commands::host::HostArgs,
        /// Save the plan; `meshwork apply PLANFILE` then performs exactly it.
        #[arg(long = "out", short = 'o', visible_alias = "out-file")]
        out: Option<PathBuf>,
        /// Exit 2 when there are changes (0 none, 1 error), like `terraform plan`.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Output: `text` for people, `json` for programs.
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Make this host the controller the topology (or a saved plan) describes.
    Apply {
        /// A topology file or a plan saved by `plan -out`. Not needed with --confirm.
        #[arg(required_unless_present = "confirm")]
        target: Option<PathBuf>,
        #[command(flatten)]
        host: commands::host::HostArgs,
        /// Don't ask (required when stdin is not a terminal).
        #[arg(long)]
        auto_approve: bool,
        /// Roll back unless confirmed within SECONDS (Enter, or `apply --confirm`).
        #[arg(long = "try", value_name = "SECONDS")]
        try_seconds: Option<u64>,
        /// Keep what a running `apply --try` applied.
        #[arg(long)]
        confirm: bool,
        /// `json`: the plan, each action done and the outcome as one JSON object on stdout
        /// (needs --auto-approve or a saved plan: JSON output cannot ask).
        #[arg(long, value_enum, default_value_t, conflicts_with = "try_seconds")]
        format: OutputFormat,
    },
    /// Remove everything meshwork owns on this host (its nft table, plugin0, mw-* links and
    /// namespaces, its routes, OpenVPN processes and files); nothing else.
    Destroy {
        #[command(flatten)]
        host: commands::host::HostArgs,
        /// Don't ask (required when stdin is not a terminal).
        #[arg(long)]
        auto_approve: bool,
        /// `json`: what was removed and the outcome as one JSON object on stdout (needs
        /// --auto-approve).
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Keep this controller what the topology says: repair drift, follow clients to their
    /// engines, converge when the file changes (or on SIGHUP); serve the HTTPS API.
    Agent {
        /// The topology file (KDL or TOML), with its lock file NAME.lock beside it.
        file: PathBuf,
        #[command(flatten)]
        host: commands::host::HostArgs,
        /// Serve the HTTPS API here (e.g. 0.0.0.0:7443): mTLS with topology certificates.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Token file granting read-only access (/status, /metrics) as a bearer token.
        #[arg(long)]
        read_token_file: Option<PathBuf>,
        /// Token file that lets other controllers fetch the keyset (`keys fetch`).
        #[arg(long)]
        join_token_file: Option<PathBuf>,
        /// Full resync every SECONDS, as a backstop to change events.
        #[arg(long, default_value_t = 30)]
        resync: u64,
        /// How peers are heard: `stream` (one long-lived stream per peer) or `poll` (the
        /// former once-a-second poll, kept for comparison).
        #[arg(long, hide = true, default_value = "stream")]
        mesh_exchange: meshwork::agent::mesh::exchange::Exchange,
    },
    /// The whole topology on this machine in network namespaces, with real OpenVPN clients
    /// (root): `lab up FILE`, then `status`, `test`, `kill C` / `restore C`, `down`.
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
    /// Write a client's clientpack (an OpenVPN config with its certificate and key inline).
    Clientpack {
        /// The topology file (KDL or TOML), with its lock file NAME.lock beside it.
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
    /// A shell completion script on stdout, e.g. `meshwork completions bash > /etc/bash_completion.d/meshwork`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The man page meshwork(1) on stdout, or with --dir one page per verb written there.
    Man {
        /// Write meshwork.1 and one page per verb (meshwork-VERB.1) into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
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
    /// The state directory named by --state-dir or $MESHWORK_STATE_DIR, if any.
    pub fn explicit(&self) -> Option<PathBuf> {
        self.state_dir
            .clone()
            .or_else(|| std::env::var_os(meshwork::state::STATE_DIR_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
    }
}

#[derive(Subcommand)]
enum LabAction {
    /// Build every namespace, apply every controller, start agents and clients; wait until
    /// every client is connected and routed by every controller; on an error, nothing is left
    /// behind.
    Up {
        /// The topology file (KDL or TOML), with its lock file NAME.lock beside it.
        file: PathBuf,
        /// Output: `text` for people (progress on stderr), `json`: one object on stdout.
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
        #[command(flatten)]
        state: StateArg,
    },
    /// The mesh, the clients and where each one sits.
    Status {
        #[command(flatten)]
        lab: LabArgs,
    },
    /// Every `expect` with real packets: expected, static and observed verdicts; exit 1 when
    /// any differ.
    Test {
        #[command(flatten)]
        lab: LabArgs,
    },
    /// Kill a controller as a host dies (processes killed, underlay link down), or a compute
    /// node (agent and charon killed, links cut), or with --ipsec only a node's charon.
    Kill {
        /// A controller or a node.
        controller: String,
        /// Only the node's IPsec: its charon is stopped by its pid file (the agent brings it back).
        #[arg(long)]
        ipsec: bool,
        /// Controller: wait until its clients are reachable again through other controllers
        /// (refused up front where no other controller is up). Node: run the fault drill
        /// (cross-PDC traffic stops, no plaintext, same-PDC goes on, and with --ipsec the agent
        /// brings the tunnel back); print the times.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        lab: LabArgs,
    },
    /// Follow an edited file: start clients it added, remove those it dropped (the agents
    /// follow the file themselves); wait until every controller routes to every client.
    Sync {
        #[command(flatten)]
        lab: LabArgs,
    },
    /// Bring a killed controller or node back: links up, applied again, agent started.
    Restore {
        /// A controller or a node.
        controller: String,
        /// Wait until the lab is whole again (controller: every controller hears its peers,
        /// every client connected and routed; node: its child SAs up), showing progress.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        lab: LabArgs,
    },
    /// Remove everything the lab made (clients and controllers side by side). Safe to run
    /// twice: with no lab up it says so.
    Down {
        #[command(flatten)]
        lab: LabArgs,
    },
}

/// Which lab a verb acts on and how it answers; shared by every lab verb but `up`.
#[derive(clap::Args, Clone, Debug)]
pub struct LabArgs {
    /// The topology file the lab was brought up with (refused when the lab's is another);
    /// picks the lab when several are up. Default: the lab of --state-dir, of ./mw-state, or
    /// the only one up on this machine.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// Output: `text` for people (progress on stderr), `json`: one object on stdout.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
    #[command(flatten)]
    state: StateArg,
}

impl LabArgs {
    fn target(&self) -> commands::lab::Target {
        commands::lab::Target { state_dir: self.state.explicit(), file: self.file.clone() }
    }
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create the topology's keyset (once; refuses to overwrite).
    Init {
        /// The topology file (KDL or TOML), with its lock file NAME.lock beside it.
        file: PathBuf,
        #[command(flatten)]
        state: StateArg,
    },
    /// Issue what the file added, revoke what it removed or marks revoked; idempotent.
    Sync {
        /// The topology file (KDL or TOML), with its lock file NAME.lock beside it.
        file: PathBuf,
        #[command(flatten)]
        state: StateArg,
    },
    /// Re-issue certificates that expire within --within days (default 30).
    Renew {
        /// The topology file (KDL or TOML), with its lock file NAME.lock beside it.
        file: PathBuf,
        /// Days: renew what expires within this many.
        #[arg(long, default_value_t = 30)]
        within: u32,
        #[command(flatten)]
        state: StateArg,
    },
    /// Replace the pre-shared key of the node pair A B (either order), or of every pair.
    RotatePsk {
        /// The topology file (KDL or TOML), with its lock file NAME.lock beside it.
        file: PathBuf,
        /// One node of the pair (give both, or neither for every pair).
        #[arg(requires = "b")]
        a: Option<String>,
        /// The other node of the pair.
        b: Option<String>,
        #[command(flatten)]
        state: StateArg,
    },
    /// Write the keyset as an encrypted, authenticated bundle (for the other controllers).
    Export {
        /// File holding the shared token.
        #[arg(long)]
        token_file: PathBuf,
        /// The bundle to write.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        #[command(flatten)]
        state: StateArg,
    },
    /// Fetch the keyset from a running agent (the root controller's) with the join token.
    Fetch {
        /// The agent's API, e.g. https://192.0.2.10:7443
        #[arg(long)]
        from: String,
        /// File holding the shared token (not the token itself, so it stays out of shell history).
        #[arg(long)]
        token_file: PathBuf,
        #[command(flatten)]
        state: StateArg,
    },
    /// Restore a keyset from a bundle; a wrong token or a tampered bundle writes nothing.
    Import {
        /// The bundle written by `keys export`.
        bundle: PathBuf,
        /// File holding the shared token (not the token itself, so it stays out of shell history).
        #[arg(long)]
        token_file: PathBuf,
        #[command(flatten)]
        state: StateArg,
    },
}

fn main() -> ExitCode {
    let cli = match commands::meta::parse::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    meshwork::term::init(cli.color);
    // The agent and the lab verbs keep SIGPIPE ignored: a lab verb must not stop half-way
    // because its reader went away (it writes through `commands::lab::out`, which drops
    // failed writes).
    if !matches!(cli.command, Command::Agent { .. } | Command::Lab { .. }) {
        restore_default_sigpipe();
    }
    let result = match cli.command {
        Command::Check { files, format, deny_warnings, locked, state } => {
            commands::check::run(&files, format, deny_warnings, locked, &state.dir())
        }
        Command::Build { file, out, locked, format, state } => {
            commands::build::run(&file, &out, locked, &state.dir(), format)
        }
        Command::Lock { file } => commands::lock::run(&file),
        Command::Explain { file, from, to, proto, port, format } => {
            commands::explain::run(&file, &from, &to, &proto, port, format)
        }
        Command::Diff { old, new, format, detailed_exitcode } => {
            commands::diff::run(&old, &new, format, detailed_exitcode)
        }
        Command::Graph { file, format } => commands::graph::run(&file, format),
        Command::Codes { code } => commands::codes::run(code.as_deref()),
        Command::Keys { action } => match action {
            KeysAction::Init { file, state } => commands::keys::init(&file, &state.dir()),
            KeysAction::Sync { file, state } => commands::keys::sync(&file, &state.dir()),
            KeysAction::Renew { file, within, state } => commands::keys::renew(&file, &state.dir(), within),
            KeysAction::RotatePsk { file, a, b, state } => {
                let pair = a.as_deref().zip(b.as_deref());
                commands::keys::rotate_psk(&file, pair, &state.dir())
            }
            KeysAction::Export { token_file, out, state } => {
                commands::keys_transfer::export(&state.dir(), &token_file, &out)
            }
            KeysAction::Fetch { from, token_file, state } => {
                commands::keys_transfer::fetch(&from, &token_file, &state.dir())
            }
            KeysAction::Import { bundle, token_file, state } => {
                commands::keys_transfer::import(&bundle, &token_file, &state.dir())
            }
        },
        Command::Plan { file, host, out, detailed_exitcode, format } => {
            commands::plan::run(&file, &host, out.as_deref(), detailed_exitcode, format)
        }
        Command::Apply { target, host, auto_approve, try_seconds, confirm, format } => match (confirm, target) {
            (true, _) => commands::apply::confirm(&host),
            (false, Some(target)) => {
                commands::apply::apply(&target, &host, &commands::apply::Options { auto_approve, try_seconds, format })
            }
            (false, None) => Err(input::CliError::Message("apply needs a topology file or a saved plan".into())),
        },
        Command::Destroy { host, auto_approve, format } => commands::apply::destroy(&host, auto_approve, format),
        Command::Agent { file, host, listen, read_token_file, join_token_file, resync, mesh_exchange } => {
            commands::agent::run(
                &file,
                &host,
                &commands::agent::Options { listen, read_token_file, join_token_file, resync, mesh_exchange },
            )
        }
        Command::Lab { action } => match action {
            LabAction::Up { file, format, state } => commands::lab::up(&file, &state.dir(), format),
            LabAction::Status { lab } => commands::lab::status(&lab.target(), lab.format),
            LabAction::Test { lab } => commands::lab::test(&lab.target(), lab.format),
            LabAction::Kill { controller, ipsec, wait, lab } => {
                let victim = commands::lab::Victim { name: &controller, ipsec, wait };
                commands::lab::kill(&lab.target(), &victim, lab.format)
            }
            LabAction::Sync { lab } => commands::lab::sync(&lab.target(), lab.format),
            LabAction::Restore { controller, wait, lab } => {
                let victim = commands::lab::Victim { name: &controller, ipsec: false, wait };
                commands::lab::restore(&lab.target(), &victim, lab.format)
            }
            LabAction::Down { lab } => commands::lab::down(&lab.target(), lab.format),
        },
        Command::Completions { shell } => commands::meta::completions(shell, commands::meta::command::<Cli>()),
        Command::Man { dir } => commands::meta::man(commands::meta::command::<Cli>(), dir.as_deref()),
        Command::Clientpack { file, name, all, out, remote_random, pack_format, state } => {
            commands::clientpack::run(&file, name.as_deref(), all, &out, remote_random, pack_format, &state.dir())
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            use std::io::Write;
            // Not eprintln!: with SIGPIPE ignored (agent, lab) a closed stderr must not panic.
            let _ = writeln!(std::io::stderr().lock(), "error: {e}");
            ExitCode::from(1)
        }
    }
}

/// A CLI whose reader went away (`meshwork codes | head -1`) ends quietly, as `ls` and `grep` do,
/// instead of panicking on the next print: the default SIGPIPE action, which Rust's runtime
/// replaces with "ignore". Not for the agent, a long-lived server whose sockets must never kill it.
fn restore_default_sigpipe() {
    // SAFETY: signal(2) with a valid signal number and the default action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Issue 13, item 7: `--help` explains every positional and flag of every verb.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "meshwork", &mut missing);
        assert!(missing.is_empty(), "arguments without help text:\n{}", missing.join("\n"));
    }
}
