//! `meshwork clientpack FILE NAME -o OUT` and `meshwork clientpack FILE --all -o DIR`: write
//! clientpacks from the topology and the keyset in the state directory. Files are written 0600
//! (they hold a private key), each atomically; nothing of a pack is ever printed.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use meshwork::clientpack::{self, PackError, PackOptions};
use meshwork::keys::Keyset;
use meshwork_compiler::network::{ClientNet, Network};

use crate::input::CliError;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PackFormat {
    #[default]
    Ovpn,
    #[value(name = "tar.gz")]
    TarGz,
}

impl PackFormat {
    fn extension(self) -> &'static str {
        match self {
            PackFormat::Ovpn => "ovpn",
            PackFormat::TarGz => "tar.gz",
        }
    }
}

pub fn run(
    file: &Path,
    name: Option<&str>,
    all: bool,
    out: &Path,
    remote_random: bool,
    format: PackFormat,
    state: &Path,
) -> Result<ExitCode, CliError> {
    let (_, net) = crate::input::network(file)?;
    let opts = PackOptions { remote_random };
    let fail = |e: PackError| CliError::Message(e.message_for(file));
    // The keyset's own checks (modes, owner, no links, key matches certificate), as every
    // other verb that reads it makes them.
    let keyset = clientpack::open_keyset(state).map_err(fail)?;

    if all {
        if net.controllers.is_empty() {
            return Err(fail(PackError::NoController));
        }
        // Render every pack before writing any: a missing key leaves DIR untouched.
        let mut packs = Vec::with_capacity(net.clients.len());
        for client in net.clients.iter().filter(|c| !c.revoked) {
            let bytes = render(&net, client, &keyset, &opts, format).map_err(fail)?;
            packs.push((format!("{}.{}", client.name, format.extension()), bytes));
        }
        create_private_dir(out)?;
        for (name, bytes) in &packs {
            write_private(&out.join(name), bytes)?;
        }
        let revoked = net.clients.iter().filter(|c| c.revoked).count();
        println!("Wrote {} clientpacks to {}", packs.len(), out.display());
        if revoked > 0 {
            println!("Skipped {revoked} revoked client(s)");
        }
        return Ok(ExitCode::SUCCESS);
    }

    let Some(name) = name else {
        return Err(CliError::Message("name a client, or pass --all".into()));
    };
    let client = clientpack::client(&net, name).map_err(|e| match e {
        PackError::UnknownClient(_) => CliError::Message(format!("{e}; {}", known_clients(&net))),
        other => fail(other),
    })?;
    let bytes = render(&net, client, &keyset, &opts, format).map_err(fail)?;
    // An existing directory gets `<client>.<ext>` inside it.
    let target: PathBuf =
        if out.is_dir() { out.join(format!("{}.{}", client.name, format.extension())) } else { out.to_path_buf() };
    write_private(&target, &bytes)?;
    println!("Wrote clientpack for {} to {}", client.name, target.display());
    Ok(ExitCode::SUCCESS)
}

fn render(
    net: &Network,
    client: &ClientNet,
    keyset: &Keyset,
    opts: &PackOptions,
    format: PackFormat,
) -> Result<Vec<u8>, PackError> {
    let material = clientpack::load_material(keyset, &client.name)?;
    match format {
        PackFormat::Ovpn => Ok(clientpack::ovpn(net, client, &material, opts).into_bytes()),
        PackFormat::TarGz => clientpack::tar_gz(net, client, &material, opts),
    }
}

fn known_clients(net: &Network) -> String {
    const SHOWN: usize = 8;
    if net.clients.is_empty() {
        return "the topology has no clients".into();
    }
    let names: Vec<&str> = net.clients.iter().take(SHOWN).map(|c| c.name.as_str()).collect();
    let more = net.clients.len().saturating_sub(SHOWN);
    if more > 0 {
        format!("clients are: {}, and {more} more", names.join(", "))
    } else {
        format!("clients are: {}", names.join(", "))
    }
}

/// Creates `dir` (and its parents) with mode 0700; an existing directory is kept as it is.
fn create_private_dir(dir: &Path) -> Result<(), CliError> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CliError::Message(format!("cannot create {}: {e}", dir.display())))
}

/// Writes a clientpack 0600, atomically (it holds a private key).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    meshwork::private_file::replace(path, bytes)
        .map_err(|e| CliError::Message(format!("cannot write {}: {e}", path.display())))
}
