//! The command line about itself: parsing with meshwork's exit codes, every verb's exit codes
//! in its `--help`, shell completions and man pages (clap's generators).

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{Command, FromArgMatches};

use crate::input::CliError;

/// A command line that cannot be parsed (unknown option, missing argument): EX_USAGE from
/// sysexits(3). Not 2, which `--detailed-exitcode` reserves for "changes", so a script can
/// tell a typo from a plan with changes.
pub const EX_USAGE: u8 = 64;

/// Parses the process's arguments into `T`. Help and version print and exit 0; a usage error
/// prints clap's message and exits [`EX_USAGE`]. `--color` is honoured by clap's own output too.
pub fn parse<T: clap::CommandFactory + FromArgMatches>() -> Result<T, ExitCode> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut cmd = command::<T>().color(meshwork::term::choice_in_args(&args));
    let parsed = cmd
        .try_get_matches_from_mut(args)
        .and_then(|mut m| T::from_arg_matches_mut(&mut m))
        .map_err(|e| e.format(&mut cmd));
    parsed.map_err(|e| {
        // A reader that went away (`meshwork --help | head -1`) is no error of ours.
        let _ = e.print();
        if e.exit_code() == 0 { ExitCode::SUCCESS } else { ExitCode::from(EX_USAGE) }
    })
}

/// `T`'s command with every verb's exit codes at the end of its help.
pub fn command<T: clap::CommandFactory>() -> Command {
    with_exit_codes(T::command(), "")
}

/// Adds the exit codes of `path` (the verb's words, e.g. `lab test`) to `cmd`'s help, and so on
/// down its subcommands.
fn with_exit_codes(cmd: Command, path: &str) -> Command {
    let cmd = match exit_codes(path) {
        Some(codes) if !cmd.has_subcommands() || path.is_empty() => cmd.after_help(format!(
            "Exit status:\n{codes}\n  {EX_USAGE}  usage error: unknown option, missing or invalid argument"
        )),
        _ => cmd,
    };
    let prefix = path.to_string();
    cmd.mut_subcommands(move |sub| {
        let path = if prefix.is_empty() { sub.get_name().to_string() } else { format!("{prefix} {}", sub.get_name()) };
        with_exit_codes(sub, &path)
    })
}

/// Every verb's own exit codes (the usage error, 64, is added to each).
fn exit_codes(verb: &str) -> Option<&'static str> {
    const DONE: &str = "  0   done\n  1   error";
    Some(match verb {
        "" => {
            "  0   success\n  1   error (each verb's --help says more)\n  2   changes: `plan` and `diff` with \
             --detailed-exitcode"
        }
        "check" => {
            "  0   every file is valid (warnings alone pass)\n  1   errors, a file that cannot be read, an expired \
             certificate, or warnings with --deny-warnings"
        }
        "build" => "  0   built\n  1   the file has errors, or the output could not be written",
        "explain" => "  0   the verdict is shown\n  1   the file has errors, or FROM/TO/PROTO is not understood",
        "diff" => {
            "  0   compared (with --detailed-exitcode: no changes)\n  1   error: a file cannot be read or has errors\n  \
             2   changes (only with --detailed-exitcode)"
        }
        "plan" => {
            "  0   planned (with --detailed-exitcode: no changes)\n  1   error\n  2   changes (only with \
             --detailed-exitcode)"
        }
        "apply" => "  0   applied (or confirmed)\n  1   error, refused, or an `apply --try` that was rolled back",
        "agent" => "  0   stopped by SIGTERM or SIGINT\n  1   error",
        "lab test" => "  0   every expectation holds\n  1   an expectation differs, or error",
        "lab up" => "  0   the lab is up\n  1   error (then nothing of the lab is left behind)",
        "lab status" | "lab sync" => "  0   done\n  1   no lab is up, FILE is not the lab's, or error",
        "lab kill" => {
            "  0   killed (with --wait: its clients are back, or the node's drill holds)\n  1   error: no such \
             controller or node, --wait refused up front (no other controller is up), the wait timed out, or the \
             drill failed"
        }
        "lab restore" => {
            "  0   restored (with --wait: the lab is whole again)\n  1   error, or with --wait not whole in time"
        }
        "lab down" => {
            "  0   nothing of the lab is left (also when no lab was up)\n  1   something could not be removed (each \
             is named), or FILE is not the lab's"
        }
        "codes" => "  0   listed or explained\n  1   no such code",
        "graph" | "destroy" | "clientpack" | "completions" | "man" => DONE,
        v if v.starts_with("keys ") || v.starts_with("lab ") => DONE,
        _ => return None,
    })
}

/// `meshwork completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell, mut cmd: Command) -> Result<ExitCode, CliError> {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// `meshwork man`: the page meshwork(1) on stdout; with `--dir DIR`, one page per verb
/// (meshwork.1, meshwork-check.1, meshwork-keys-init.1, ...) written into DIR.
pub fn man(cmd: Command, dir: Option<&Path>) -> Result<ExitCode, CliError> {
    let cmd = cmd.disable_help_subcommand(true);
    match dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out).map_err(|e| CliError::Message(e.to_string()))?;
            use std::io::Write;
            std::io::stdout().write_all(&out).map_err(|e| CliError::Message(format!("cannot write the page: {e}")))?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::Message(format!("cannot create {}: {e}", dir.display())))?;
            clap_mangen::generate_to(cmd, dir)
                .map_err(|e| CliError::Message(format!("cannot write pages into {}: {e}", dir.display())))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
