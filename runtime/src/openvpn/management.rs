//! Which clients an OpenVPN server has, from its management interface (`management
//! run/server.sock unix` in the configs meshwork writes): `status 3`, parsed by the column
//! names its `HEADER` lines give, not by position.
//!
//! OpenVPN serves one management client at a time; another connection waits until the first
//! closes. Every exchange is therefore short (connect, `status 3`, `quit`) and bounded by a
//! timeout, so neither a hung OpenVPN nor a client that holds the interface stalls the caller.
//! A running agent holds its units' interfaces open ([`super::owner`]) and asks over those; this
//! short exchange is for tools that run without one.

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The longest a whole exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// One connected client, from a `CLIENT_LIST` line.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConnectedClient {
    /// The certificate's CN: the client's name in the topology.
    pub common_name: String,
    /// Where its packets come from, `ADDRESS:PORT` (`[ADDRESS]:PORT` for IPv6 underlays).
    pub real_address: String,
    /// Its overlay address; None until one is assigned (or if it is not IPv4).
    pub virtual_address: Option<Ipv4Addr>,
    /// Unix time of the connection.
    pub connected_since: u64,
}

/// The clients connected to the OpenVPN server whose management socket is `socket`.
pub async fn status(socket: &Path) -> io::Result<Vec<ConnectedClient>> {
    match tokio::time::timeout(TIMEOUT, exchange(socket)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the OpenVPN management interface {} did not answer within {TIMEOUT:?}", socket.display()),
        )),
    }
}

async fn exchange(socket: &Path) -> io::Result<Vec<ConnectedClient>> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("OpenVPN management interface {}: {e}", socket.display())))?;
    let (read, mut write) = stream.into_split();
    write.write_all(b"status 3\n").await?;
    let mut lines = BufReader::new(read).lines();
    let mut reply = String::new();
    loop {
        let Some(line) = lines.next_line().await? else {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "OpenVPN closed the management connection"));
        };
        let line = line.trim_end_matches('\r');
        match line {
            "END" => break,
            // The `>INFO:` banner, and real-time notifications (`>LOG:`, `>CLIENT:`...) that
            // may come in between.
            l if l.starts_with('>') => {}
            l if l.starts_with("ERROR:") => {
                return Err(io::Error::other(format!("OpenVPN management interface: {l}")));
            }
            l => {
                reply.push_str(l);
                reply.push('\n');
            }
        }
    }
    let _ = write.write_all(b"quit\n").await;
    parse_status(&reply)
}

/// The clients in the reply to `status 3`: tab-separated lines, a `HEADER\tCLIENT_LIST\t...`
/// line naming the columns of the `CLIENT_LIST` lines that follow.
pub fn parse_status(text: &str) -> io::Result<Vec<ConnectedClient>> {
    const COMMON_NAME: &str = "Common Name";
    const REAL_ADDRESS: &str = "Real Address";
    const VIRTUAL_ADDRESS: &str = "Virtual Address";
    const SINCE: &str = "Connected Since (time_t)";
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, format!("OpenVPN `status 3`: {why}"));

    let mut header: Option<Vec<&str>> = None;
    let mut clients = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let mut fields = line.split('\t');
        match (fields.next(), fields.clone().next()) {
            (Some("HEADER"), Some("CLIENT_LIST")) => header = Some(fields.skip(1).collect()),
            (Some("CLIENT_LIST"), _) => {
                let columns = header.as_ref().ok_or_else(|| bad("CLIENT_LIST before its HEADER".into()))?;
                let values: Vec<&str> = fields.collect();
                let get = |name: &str| -> io::Result<&str> {
                    let i =
                        columns.iter().position(|c| *c == name).ok_or_else(|| bad(format!("no column {name:?}")))?;
                    values.get(i).copied().ok_or_else(|| bad(format!("a CLIENT_LIST line without {name:?}: {line}")))
                };
                let since = get(SINCE)?;
                clients.push(ConnectedClient {
                    common_name: get(COMMON_NAME)?.to_string(),
                    real_address: get(REAL_ADDRESS)?.to_string(),
                    virtual_address: get(VIRTUAL_ADDRESS)?.parse().ok(),
                    connected_since: since.parse().map_err(|_| bad(format!("{SINCE:?} is not a time: {since:?}")))?,
                });
            }
            _ => {}
        }
    }
    Ok(clients)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `status 3` from OpenVPN 2.6.14 (server.conf as meshwork compiles it), with the client
    /// `good` connected over a veth pair; captured on the management socket, CRLFs and all.
    const ONE_CLIENT: &str = "TITLE\tOpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]\r\n\
TIME\t2026-11-21 05:56:19\t1795240579\r\n\
HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher\r\n\
CLIENT_LIST\tgood\t192.0.2.100:50476\t100.127.255.193\t\t2365\t2278\t2026-11-21 05:56:13\t1795240573\tUNDEF\t0\t0\tAES-256-GCM\r\n\
HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)\r\n\
ROUTING_TABLE\t100.127.255.193\tgood\t192.0.2.100:50476\t2026-11-21 05:56:13\t1795240573\r\n\
GLOBAL_STATS\tMax bcast/mcast queue length\t0\r\n\
GLOBAL_STATS\tdco_enabled\t0\r\n\
END\r\n";

    /// The same server with nobody connected.
    const NO_CLIENT: &str = "TITLE\tOpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]\r\n\
TIME\t2026-11-21 05:56:11\t1795240571\r\n\
HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher\r\n\
HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)\r\n\
GLOBAL_STATS\tMax bcast/mcast queue length\t0\r\n\
GLOBAL_STATS\tdco_enabled\t0\r\n\
END\r\n";

    #[test]
    fn one_client_from_a_real_capture() {
        assert_eq!(
            parse_status(ONE_CLIENT).unwrap(),
            [ConnectedClient {
                common_name: "good".into(),
                real_address: "192.0.2.100:50476".into(),
                virtual_address: Some(Ipv4Addr::new(100, 127, 255, 193)),
                connected_since: 1_795_240_573,
            }]
        );
    }

    #[test]
    fn no_client_from_a_real_capture() {
        assert_eq!(parse_status(NO_CLIENT).unwrap(), []);
    }

    #[test]
    fn columns_are_found_by_name() {
        // Columns in another order, one more, and a client without a virtual address yet.
        let text = "HEADER\tCLIENT_LIST\tConnected Since (time_t)\tExtra\tVirtual Address\tReal Address\tCommon Name\n\
                    CLIENT_LIST\t1700000000\tx\t100.127.255.194\t[2001:db8::1]:1194\tweb-2\n\
                    CLIENT_LIST\t1700000001\tx\t\t192.0.2.7:40000\tweb-1\n";
        let clients = parse_status(text).unwrap();
        assert_eq!(clients.len(), 2);
        assert_eq!(clients[0].common_name, "web-2");
        assert_eq!(clients[0].real_address, "[2001:db8::1]:1194");
        assert_eq!(clients[0].virtual_address, Some(Ipv4Addr::new(100, 127, 255, 194)));
        assert_eq!(clients[0].connected_since, 1_700_000_000);
        assert_eq!(clients[1].virtual_address, None);
    }

    #[test]
    fn malformed_replies_are_errors() {
        for bad in [
            "CLIENT_LIST\tgood\t192.0.2.100:1\t100.127.255.193\n",
            "HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\n\
             CLIENT_LIST\tgood\t192.0.2.100:1\t100.127.255.193\n",
            "HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tConnected Since (time_t)\n\
             CLIENT_LIST\tgood\t192.0.2.100:1\t100.127.255.193\tyesterday\n",
            "HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tConnected Since (time_t)\n\
             CLIENT_LIST\tgood\t192.0.2.100:1\n",
        ] {
            assert_eq!(parse_status(bad).unwrap_err().kind(), io::ErrorKind::InvalidData, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let dir = std::env::temp_dir().join(format!("mw-mgmt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("silent.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        // Accepts and then says nothing.
        let server = tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(conn);
        });
        let started = std::time::Instant::now();
        let err = status(&socket).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < TIMEOUT + Duration::from_secs(1));
        server.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_scripted_server_is_read_to_end_and_told_to_quit() {
        let dir = std::env::temp_dir().join(format!("mw-mgmt-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("server.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            let (read, mut write) = conn.into_split();
            write
                .write_all(b">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info\r\n")
                .await
                .unwrap();
            let mut lines = BufReader::new(read).lines();
            assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("status 3"));
            // A real-time notification in the middle of the reply is skipped.
            let (head, tail) = ONE_CLIENT.split_at(ONE_CLIENT.find("HEADER\tROUTING").unwrap());
            write.write_all(head.as_bytes()).await.unwrap();
            write.write_all(b">LOG:1795240580,I,something happened\r\n").await.unwrap();
            write.write_all(tail.as_bytes()).await.unwrap();
            lines.next_line().await.unwrap()
        });
        let clients = status(&socket).await.unwrap();
        assert_eq!(clients.len(), 1);
        assert_eq!(clients[0].common_name, "good");
        assert_eq!(server.await.unwrap().as_deref(), Some("quit"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
