//! What every verb that touches a host shares: which host (a controller or a node), which
//! network namespace, which state directory; the topology's desired state for it; a tokio
//! runtime.

use std::path::{Path, PathBuf};

use meshwork::host::desired::Desired;
use meshwork::host::identity::HostId;
use meshwork::host::layout::Layout;
use meshwork::keys::Keyset;
use meshwork_compiler::source::SourceFile;

use crate::StateArg;
use crate::input::{self, CliError};

#[derive(clap::Args, Clone, Debug)]
#[group(id = "host", required = true, multiple = false)]
pub struct HostArgs {
    /// This host is the controller NAME of the topology.
    #[arg(long, value_name = "NAME", group = "host")]
    pub controller: Option<String>,
    /// This host is the compute node NAME of the topology.
    #[arg(long, value_name = "NAME", group = "host")]
    pub node: Option<String>,
    /// Act inside this named network namespace (/run/netns/NS) instead of the host's.
    #[arg(long)]
    pub netns: Option<String>,
    #[command(flatten)]
    pub state: StateArg,
}

impl HostArgs {
    /// Which host: clap makes sure exactly one of --controller and --node is given.
    pub fn host(&self) -> HostId {
        match (&self.controller, &self.node) {
            (_, Some(node)) => HostId::node(node),
            (Some(controller), None) => HostId::controller(controller),
            (None, None) => unreachable!("clap requires --controller or --node"),
        }
    }
    pub fn state_dir(&self) -> PathBuf {
        self.state.dir()
    }
    pub fn layout(&self) -> Layout {
        Layout::new(&self.state_dir(), &self.host())
    }

    /// Moves this process into `--netns` (before any thread exists, so every thread and child
    /// process is in it) and returns a runtime for the netlink and process work.
    pub fn enter(&self) -> Result<tokio::runtime::Runtime, CliError> {
        if let Some(ns) = &self.netns {
            meshwork::netns::enter(ns)
                .map_err(|e| CliError::Message(format!("cannot enter network namespace {ns}: {e}")))?;
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Message(format!("cannot start the runtime: {e}")))
    }

    pub fn keyset(&self) -> Result<Keyset, CliError> {
        let state = self.state_dir();
        input::keyset(&state)?.ok_or_else(|| {
            CliError::Message(format!(
                "no keyset in {}: run `meshwork keys init FILE` on the root controller, \
                 or `meshwork keys fetch` / `keys import` on the others",
                state.display()
            ))
        })
    }
}

/// The desired state of the host from a topology file (diagnostics printed on failure).
pub fn desired_from_file(file: &Path, host: &HostArgs) -> Result<(SourceFile, Desired), CliError> {
    let (analysis, net) = input::network(file)?;
    let keyset = host.keyset()?;
    let d =
        meshwork::host::compose::desired(&net, &host.host(), &keyset).map_err(|e| CliError::Message(e.to_string()))?;
    Ok((analysis.file, d))
}

/// The same from a source kept in a saved plan or a state record, with the lock file kept
/// beside it (so its addresses are the ones planned).
pub fn desired_from_source(file: SourceFile, lock: Option<SourceFile>, host: &HostArgs) -> Result<Desired, CliError> {
    let lock = meshwork_compiler::LockInput::new(lock, false);
    let mut analysis = meshwork_compiler::analyze_with(file, lock);
    let Some(net) = analysis.network.take() else {
        input::print_diagnostics(&analysis.file, &analysis.diagnostics);
        return Err(CliError::Message(format!("{} no longer compiles", analysis.file.name)));
    };
    let keyset = host.keyset()?;
    meshwork::host::compose::desired(&net, &host.host(), &keyset).map_err(|e| CliError::Message(e.to_string()))
}

pub fn io_error(what: &str) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |e| CliError::Message(format!("{what}: {e}"))
}
