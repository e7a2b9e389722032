//! Real-time notifications on an OpenVPN server's management interface that say a client has
//! arrived: `>CLIENT:ESTABLISHED,{CID}`, then the client's environment as `>CLIENT:ENV,NAME=VALUE`
//! lines, ended by `>CLIENT:ENV,END` (OpenVPN 2.6 `manage.c`, `management_connection_established`).
//!
//! OpenVPN writes these to whoever holds the interface, without `management-client-auth`.
//! meshwork does not use that option: it would make every client wait for the agent's approval,
//! so no client could connect while the agent is down. Its counterpart `>CLIENT:DISCONNECT` is
//! only written with that option, so departures are seen by the next `status 3` instead (the
//! newest connection wins anyway, so a late departure misroutes nothing).

use std::net::Ipv4Addr;

const ESTABLISHED: &str = ">CLIENT:ESTABLISHED,";
const ENV: &str = ">CLIENT:ENV,";
const END: &str = "END";

/// A client that completed its connection, with what its environment said (each part may be
/// missing: the event matters, the details are for the log).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Arrival {
    /// OpenVPN's id of the connection.
    pub cid: Option<u64>,
    /// `common_name`: the client's name in the topology.
    pub common_name: Option<String>,
    /// `ifconfig_pool_remote_ip`: the overlay address it got.
    pub virtual_address: Option<Ipv4Addr>,
    /// `time_unix`: when it connected.
    pub since: Option<u64>,
}

/// Follows the notification lines of one connection, in order.
#[derive(Debug, Default)]
pub struct Reader {
    open: Option<Arrival>,
}

impl Reader {
    /// Feeds one line that starts with `>` (without its line end). Returns the arrival whose
    /// block this line ends.
    pub fn line(&mut self, line: &str) -> Option<Arrival> {
        if let Some(cid) = line.strip_prefix(ESTABLISHED) {
            // A block left open (a connection that lost its end) counts as an arrival too.
            let unfinished = self.open.take();
            self.open = Some(Arrival { cid: cid.trim().parse().ok(), ..Arrival::default() });
            return unfinished;
        }
        let env = line.strip_prefix(ENV)?;
        // Other `>CLIENT:` notifications (with `management-client-auth`) have ENV blocks too;
        // only an ESTABLISHED block is followed.
        let open = self.open.as_mut()?;
        if env == END {
            return self.open.take();
        }
        let (name, value) = env.split_once('=')?;
        match name {
            "common_name" => open.common_name = Some(value.to_string()),
            "ifconfig_pool_remote_ip" => open.virtual_address = value.parse().ok(),
            "time_unix" => open.since = value.parse().ok(),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What OpenVPN 2.6.14 wrote when `good` connected to a server compiled by meshwork (no
    /// `management-client-auth`), captured on the management socket; abridged: the certificate
    /// fields (`tls_*`, `X509_*`) and most of the server's own environment left out.
    const ESTABLISHED_BLOCK: &[&str] = &[
        ">CLIENT:ESTABLISHED,0",
        ">CLIENT:ENV,n_clients=1",
        ">CLIENT:ENV,time_unix=1796286828",
        ">CLIENT:ENV,time_ascii=2026-12-03 08:33:48",
        ">CLIENT:ENV,ifconfig_pool_netmask=255.255.255.192",
        ">CLIENT:ENV,ifconfig_pool_remote_ip=100.127.255.193",
        ">CLIENT:ENV,trusted_port=52081",
        ">CLIENT:ENV,trusted_ip=192.0.2.100",
        ">CLIENT:ENV,common_name=good",
        ">CLIENT:ENV,IV_VER=2.6.14",
        ">CLIENT:ENV,tls_id_0=CN=good, O=pair",
        ">CLIENT:ENV,daemon_pid=25231",
        ">CLIENT:ENV,ifconfig_local=100.127.255.253",
        ">CLIENT:ENV,dev=tun0",
        ">CLIENT:ENV,redirect_gateway=0",
        ">CLIENT:ENV,END",
    ];

    fn feed(lines: &[&str]) -> Vec<Arrival> {
        let mut r = Reader::default();
        lines.iter().filter_map(|l| r.line(l)).collect()
    }

    #[test]
    fn an_established_block_is_one_arrival() {
        assert_eq!(
            feed(ESTABLISHED_BLOCK),
            [Arrival {
                cid: Some(0),
                common_name: Some("good".into()),
                virtual_address: Some(Ipv4Addr::new(100, 127, 255, 193)),
                since: Some(1_796_286_828),
            }]
        );
    }

    #[test]
    fn other_notifications_and_their_environments_are_not_arrivals() {
        let lines = [
            ">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info",
            ">CLIENT:CONNECT,3,0",
            ">CLIENT:ENV,common_name=other",
            ">CLIENT:ENV,END",
            ">LOG:1795240580,I,something happened",
            ">CLIENT:ENV,END",
        ];
        assert_eq!(feed(&lines), []);
    }

    #[test]
    fn odd_blocks_still_arrive_and_never_panic() {
        // No environment, a bad id, a value without `=`, a bad address, and a block cut short
        // by the next one.
        let lines = [
            ">CLIENT:ESTABLISHED,x",
            ">CLIENT:ENV,common_name",
            ">CLIENT:ENV,ifconfig_pool_remote_ip=300.1.1.1",
            ">CLIENT:ESTABLISHED,7",
            ">CLIENT:ENV,common_name=a=b",
            ">CLIENT:ENV,END",
            ">CLIENT:ESTABLISHED,",
            ">CLIENT:ENV,END",
        ];
        let got = feed(&lines);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], Arrival::default());
        assert_eq!(got[1].cid, Some(7));
        assert_eq!(got[1].common_name.as_deref(), Some("a=b"));
        assert_eq!(got[2], Arrival::default());
    }
}
