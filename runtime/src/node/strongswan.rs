//! strongSwan on a node: `charon-systemd` as a supervised [`daemon`](crate::daemon) in the
//! node's directory (its `strongswan.conf`, vici socket, the `swanctl.conf` and the pre-shared
//! keys it includes all live there), configuration loaded with `swanctl`, the person debugging a
//! node would run too, and the state of its SAs read back the same way.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use meshwork_compiler::emit::node::SWANCTL_CONF;
use meshwork_compiler::vxlan::names::{VICI_FILE, VICI_SOCKET};

use crate::daemon::{Program, Unit};
use crate::netns;

/// How long [`load`] waits for charon's vici socket to answer.
const VICI_WAIT: Duration = Duration::from_secs(20);

/// charon for a node whose configuration is in `dir`, running `config` (the data path's
/// `strongswan.conf`), in namespace `netns` (None: the caller's).
pub fn unit(dir: &Path, config: &str, netns: Option<&str>) -> Unit {
    Unit {
        program: Program::Charon,
        name: "charon".into(),
        dir: dir.to_path_buf(),
        config: config.into(),
        netns: netns.map(str::to_owned),
        pidfile: dir.join("run/charon.pid"),
        log: dir.join("charon.log"),
    }
}

fn swanctl(dir: &Path, netns: Option<&str>, args: &[&str]) -> io::Result<String> {
    let mut cmd = Command::new("swanctl");
    cmd.args(args).args(["--uri", VICI_SOCKET]).current_dir(dir);
    if let Some(ns) = netns {
        netns::prepare_command(&mut cmd, ns)?;
    }
    let out = cmd.output().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => io::Error::new(e.kind(), "swanctl is not installed (Debian: strongswan-swanctl)"),
        _ => io::Error::new(e.kind(), format!("run swanctl: {e}")),
    })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        let last: Vec<&str> = text.lines().rev().take(5).collect();
        Err(io::Error::other(format!(
            "swanctl {} in {}: {}; {}",
            args.join(" "),
            dir.display(),
            out.status,
            last.into_iter().rev().collect::<Vec<_>>().join(" / ")
        )))
    }
}

/// Waits for charon's vici socket to answer, then loads `swanctl.conf` (connections and
/// secrets) from `dir`.
pub fn load(dir: &Path, netns: Option<&str>) -> io::Result<()> {
    let deadline = Instant::now() + VICI_WAIT;
    while !(dir.join(VICI_FILE).exists() && swanctl(dir, netns, &["--stats"]).is_ok()) {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("charon's vici socket {} did not answer within {VICI_WAIT:?}", dir.join(VICI_FILE).display()),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    swanctl(dir, netns, &["--load-all", "--file", SWANCTL_CONF]).map(|_| ())
}

/// Loads the secrets again (the pair keys beside `swanctl.conf`, after a rotation); the SAs that
/// run keep running.
pub fn reload_secrets(dir: &Path, netns: Option<&str>) -> io::Result<()> {
    swanctl(dir, netns, &["--load-creds", "--file", SWANCTL_CONF]).map(|_| ())
}

/// Re-authenticates the IKE SA of `connection` (with `make_before_break`, the new SAs are up
/// before the old ones go): what makes a rotated key the one in use.
pub fn reauthenticate(dir: &Path, netns: Option<&str>, connection: &str) -> io::Result<()> {
    swanctl(dir, netns, &["--rekey", "--ike", connection, "--reauth"]).map(|_| ())
}

/// The established IKE SAs: (connection, unique id).
pub fn established_ike_sas(dir: &Path, netns: Option<&str>) -> io::Result<Vec<(String, u32)>> {
    Ok(ike_sas(dir, netns)?.into_iter().filter(|sa| sa.established).map(|sa| (sa.name, sa.id)).collect())
}

/// An IKE SA in any state (connecting, established, rekeying, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeSa {
    pub name: String,
    pub id: u32,
    pub established: bool,
}

/// Every IKE SA charon in `dir` holds.
pub fn ike_sas(dir: &Path, netns: Option<&str>) -> io::Result<Vec<IkeSa>> {
    Ok(parse_ike_sas(&swanctl(dir, netns, &["--list-sas"])?))
}

/// Top-level lines of `swanctl --list-sas`: `NAME: #ID, STATE, IKEv2, …`.
fn parse_ike_sas(text: &str) -> Vec<IkeSa> {
    text.lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| {
            let (name, rest) = l.split_once(": #")?;
            let (id, rest) = rest.split_once(", ")?;
            Some(IkeSa { name: name.to_string(), id: id.parse().ok()?, established: rest.starts_with("ESTABLISHED") })
        })
        .collect()
}

/// Drops the IKE SAs of `connection` at once (no delete exchange with a peer that does not
/// answer).
pub fn terminate_ike(dir: &Path, netns: Option<&str>, connection: &str) -> io::Result<()> {
    swanctl(dir, netns, &["--terminate", "--ike", connection, "--force"]).map(|_| ())
}

/// Starts the IKE SA (and its child) of `connection` without waiting for it: charon goes on
/// trying by itself; `swanctl` is left to finish in the background.
pub fn initiate_detached(dir: &Path, netns: Option<&str>, connection: &str) -> io::Result<()> {
    let mut cmd = Command::new("swanctl");
    cmd.args(["--initiate", "--child", connection, "--timeout", "1", "--uri", VICI_SOCKET])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(ns) = netns {
        netns::prepare_command(&mut cmd, ns)?;
    }
    let mut child = cmd.spawn()?;
    // Reaped in the background, so no zombie is left.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// A child SA that is installed, as `swanctl --list-sas` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledChild {
    /// The connection (and child) name: `peer-<node>`.
    pub name: String,
    pub local_ts: String,
    pub remote_ts: String,
}

/// The installed child SAs of charon in `dir`.
pub fn installed_children(dir: &Path, netns: Option<&str>) -> io::Result<Vec<InstalledChild>> {
    Ok(parse_children(&swanctl(dir, netns, &["--list-sas"])?))
}

/// Reads `swanctl --list-sas`: a child's line is indented, `NAME: #N, reqid R, STATE, …`, and its
/// selectors follow on `local  A` and `remote B` lines.
fn parse_children(text: &str) -> Vec<InstalledChild> {
    let mut out = Vec::new();
    let mut current: Option<InstalledChild> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent == 2 && trimmed.contains(", reqid ") {
            out.extend(current.take());
            let (name, rest) = trimmed.split_once(':').unwrap_or((trimmed, ""));
            if rest.split(", ").any(|f| f == "INSTALLED") {
                current =
                    Some(InstalledChild { name: name.to_string(), local_ts: String::new(), remote_ts: String::new() });
            }
        } else if let Some(child) = current.as_mut().filter(|_| indent == 4) {
            if let Some(ts) = trimmed.strip_prefix("local ") {
                child.local_ts = ts.trim().to_string();
            } else if let Some(ts) = trimmed.strip_prefix("remote ") {
                child.remote_ts = ts.trim().to_string();
            }
        } else if indent < 2 {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

/// Where a node's charon finds the pair keys its `swanctl.conf` includes.
pub fn psk_dir(dir: &Path) -> PathBuf {
    dir.join("keys").join(meshwork_compiler::vxlan::names::PSK_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As strongSwan 5.9.8's swanctl printed it in the node kernel test.
    const LIST_SAS: &str = "peer-cn-3: #1, ESTABLISHED, IKEv2, 40e430ca26ae0a77_i* 5d3026ab6a26fde6_r
  local  'cn-1' @ 198.18.0.11[4500]
  remote 'cn-3' @ 198.18.1.13[4500]
  AES_GCM_16-256/PRF_HMAC_SHA2_256/ECP_256
  established 30s ago, rekeying in 13791s
  peer-cn-3: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256
    installed 30s ago, rekeying in 3371s, expires in 3930s
    in  61b52056,      0 bytes,     0 packets
    out 2b1c6428,      0 bytes,     0 packets
    local  198.19.254.1/32
    remote 198.19.254.3/32
peer-cn-4: #2, CONNECTING, IKEv2, 0a77_i* 0000_r
  peer-cn-4: #2, reqid 2, CREATED, TUNNEL-in-UDP
    local  198.19.254.1/32
    remote 198.19.254.4/32
";

    #[test]
    fn installed_children_are_read_with_their_selectors() {
        assert_eq!(
            parse_children(LIST_SAS),
            vec![InstalledChild {
                name: "peer-cn-3".into(),
                local_ts: "198.19.254.1/32".into(),
                remote_ts: "198.19.254.3/32".into()
            }]
        );
        assert!(parse_children("").is_empty());
    }

    #[test]
    fn ike_sas_are_read_with_their_ids_and_state() {
        assert_eq!(
            parse_ike_sas(LIST_SAS),
            vec![
                IkeSa { name: "peer-cn-3".into(), id: 1, established: true },
                IkeSa { name: "peer-cn-4".into(), id: 2, established: false },
            ]
        );
    }
}
