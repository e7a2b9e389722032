//! One controller's OpenVPN server and one OpenVPN client, as meshwork makes them (`keys init`,
//! `build`, `clientpack` through the CLI; real OpenVPN), in two namespaces of the test's own
//! joined by a veth pair: the smallest network a client connects over.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Lab, assemble_controller, meshwork_ok, run, wait_until};

/// The controller's underlay address (`address` in [`topology`]) on the server's veth.
pub const SERVER_UNDERLAY: &str = "192.0.2.10/24";
/// The client's underlay address on its veth.
pub const CLIENT_UNDERLAY: &str = "192.0.2.100/24";
/// The server's end of the veth pair, and the client's.
pub const SERVER_DEV: &str = "veth0";
pub const CLIENT_DEV: &str = "veth1";
/// The controller (id 1) takes the overlay's last usable address minus 1.
pub const CONTROLLER_OVERLAY: Ipv4Addr = Ipv4Addr::new(100, 127, 255, 253);
/// The client is the first: the bottom of the overlay.
pub const CLIENT_OVERLAY: Ipv4Addr = Ipv4Addr::new(100, 127, 255, 193);

pub const START_TIMEOUT: Duration = Duration::from_secs(30);
pub const READY: &str = "Initialization Sequence Completed";

/// A topology of one controller and one client, named by the test (names no other test uses).
pub fn topology(controller: &str, client: &str) -> String {
    format!(
        "topology \"pair\"\noverlay \"100.127.255.192/26\"\n\
         controller \"{controller}\" id=1 {{ address \"192.0.2.10\"; }}\nclient \"{client}\"\n"
    )
}

pub struct Pair {
    pub controller: String,
    pub client: String,
    /// The server's namespace, and the client's (`<prefix>-srv-<pid>`, `<prefix>-cli-<pid>`).
    pub srv: String,
    pub cli: String,
    /// The controller's directory: server.conf, keys, ccd, run/.
    pub dir: PathBuf,
    /// The server's management socket.
    pub socket: PathBuf,
    /// The client's pack.
    pub pack: PathBuf,
}

impl Pair {
    /// Keys, build, the client's pack, and the two namespaces; nothing runs yet. `prefix` names
    /// the namespaces (the test's own prefix).
    pub fn new(lab: &mut Lab, prefix: &str, controller: &str, client: &str) -> Pair {
        let file = lab.path("pair.kdl");
        let state = lab.path("state");
        fs::write(&file, topology(controller, client)).expect("write the topology");
        let cli_args = |verb: &[&str], extra: &[&str]| {
            let mut args = verb.to_vec();
            args.extend([file.to_str().unwrap(), "--state-dir", state.to_str().unwrap()]);
            args.extend_from_slice(extra);
            meshwork_ok(&args, 0);
        };
        cli_args(&["keys", "init"], &[]);
        let out = lab.path("out");
        cli_args(&["build"], &["-o", out.to_str().unwrap()]);
        let pack = lab.path(&format!("{client}.ovpn"));
        cli_args(&["clientpack"], &[client, "-o", pack.to_str().unwrap()]);
        let dir = lab.path(controller);
        let socket = assemble_controller(&out, &state.join("keyset"), controller, &dir).socket;

        let srv = lab.named_netns(&format!("{prefix}-srv-{}", std::process::id()));
        let cli = lab.named_netns(&format!("{prefix}-cli-{}", std::process::id()));
        run("ip", &["-n", &srv, "link", "add", SERVER_DEV, "type", "veth", "peer", "name", CLIENT_DEV, "netns", &cli]);
        run("ip", &["-n", &srv, "addr", "add", SERVER_UNDERLAY, "dev", SERVER_DEV]);
        run("ip", &["-n", &cli, "addr", "add", CLIENT_UNDERLAY, "dev", CLIENT_DEV]);
        run("ip", &["-n", &srv, "link", "set", SERVER_DEV, "up"]);
        run("ip", &["-n", &cli, "link", "set", CLIENT_DEV, "up"]);
        Pair { controller: controller.into(), client: client.into(), srv, cli, dir, socket, pack }
    }

    /// Starts the server (log `<name>.log` in the lab) and waits until it is ready; returns
    /// its index in the lab and its log.
    pub fn start_server(&self, lab: &mut Lab, name: &str) -> (usize, PathBuf) {
        let (i, log) = lab.openvpn_in(name, &self.srv, &self.dir, &self.dir.join("server.conf"));
        wait_until(&format!("{name} to start"), START_TIMEOUT, || log_has(&log, READY).then_some(()));
        (i, log)
    }

    /// Starts the server (named `name`) and the client, and waits until the client is connected;
    /// returns the client's log.
    pub fn start_connected(&self, lab: &mut Lab, name: &str) -> PathBuf {
        self.start_server(lab, name);
        let (_, client_log) = self.start_client(lab);
        wait_until("the client to connect", START_TIMEOUT, || log_has(&client_log, READY).then_some(()));
        client_log
    }

    /// Starts the client with its pack; does not wait.
    pub fn start_client(&self, lab: &mut Lab) -> (usize, PathBuf) {
        let dir = lab.dir.clone();
        lab.openvpn_in(&self.client, &self.cli, &dir, &self.pack)
    }
}

pub fn log_has(log: &Path, needle: &str) -> bool {
    fs::read_to_string(log).is_ok_and(|t| t.contains(needle))
}
