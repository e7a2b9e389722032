//! `meshwork agent FILE --controller NAME|--node NAME`: the reconcile loop and the HTTPS API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use meshwork::agent::{Agent, AgentConfig};

use super::host::HostArgs;
use crate::input::CliError;

pub struct Options {
    pub listen: Option<SocketAddr>,
    pub read_token_file: Option<PathBuf>,
    pub join_token_file: Option<PathBuf>,
    pub resync: u64,
    pub mesh_exchange: meshwork::agent::mesh::exchange::Exchange,
}

pub fn run(file: &Path, host: &HostArgs, options: &Options) -> Result<ExitCode, CliError> {
    if let Some(ns) = &host.netns {
        meshwork::netns::enter(ns)
            .map_err(|e| CliError::Message(format!("cannot enter network namespace {ns}: {e}")))?;
    }
    let token = |path: &Option<PathBuf>| -> Result<Option<Vec<u8>>, CliError> {
        path.as_deref().map(meshwork::bundle::read_token).transpose().map_err(|e| CliError::Message(e.to_string()))
    };
    let cfg = AgentConfig {
        file: file.to_path_buf(),
        host: host.host(),
        state_dir: host.state_dir(),
        resync: Duration::from_secs(options.resync.max(1)),
        listen: options.listen,
        read_token: token(&options.read_token_file)?,
        join_token: token(&options.join_token_file)?,
        mesh_exchange: options.mesh_exchange,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Message(format!("cannot start the runtime: {e}")))?;
    let agent = Agent::new(cfg).map_err(CliError::Message)?;
    rt.block_on(agent.run()).map_err(CliError::Message)?;
    Ok(ExitCode::SUCCESS)
}
