//! One owner per OpenVPN management socket: a task that holds the connection open, so that
//! OpenVPN's real-time notifications (a client arrived: [`notify`]) reach the agent the moment
//! they are written, and that asks `status 3` over the same connection when the agent wants the
//! client list. OpenVPN serves one management client at a time (a second connection waits until
//! the first closes), so nothing else may talk to a socket that has an owner.
//!
//! The owner reconnects when its unit restarts (the connection ends with the process, and the
//! new process makes a new socket), and says so ([`Event::Attached`]): what happened while it
//! was away is only known by asking. While it is not connected, a request fails at once, and
//! the caller does without that unit, as it did when one of its short exchanges failed.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::management::{self, ConnectedClient, TIMEOUT};
use super::notify::{self, Arrival};

/// First wait before connecting again; doubles up to [`MAX_PAUSE`] while the socket refuses.
/// Short, so a restarted unit's first clients are heard as they arrive.
const MIN_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_millis(500);
/// A longer line, or a longer `status 3` reply, means this is not the OpenVPN we know: the
/// connection is dropped (and made again) rather than buffering without end. A reply lists
/// every client, about 150 bytes each: this holds a few hundred thousand.
const MAX_LINE: usize = 64 * 1024;
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// What an owner tells its listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Connected (again) to the interface: ask, since arrivals while away were not heard.
    Attached,
    /// A client completed its connection.
    Established(Arrival),
}

type Reply = oneshot::Sender<io::Result<Vec<ConnectedClient>>>;

/// The handle of one socket's owner task; dropping it ends the task (and the connection).
pub struct Owner {
    socket: PathBuf,
    requests: mpsc::Sender<Reply>,
    task: JoinHandle<()>,
}

impl Owner {
    /// Starts owning `socket` (which need not exist yet); `on_event` is called from the task, so
    /// it must not block (a channel's `try_send` is what it is for).
    pub fn spawn(socket: PathBuf, on_event: impl Fn(Event) + Send + Sync + 'static) -> Owner {
        let (requests, rx) = mpsc::channel(4);
        let task = tokio::spawn(own(socket.clone(), rx, on_event));
        Owner { socket, requests, task }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The clients the server lists now (`status 3`), within [`TIMEOUT`].
    pub async fn status(&self) -> io::Result<Vec<ConnectedClient>> {
        let ask = async {
            let (tx, rx) = oneshot::channel();
            self.requests.send(tx).await.map_err(|_| gone(&self.socket))?;
            rx.await.map_err(|_| gone(&self.socket))?
        };
        tokio::time::timeout(TIMEOUT, ask).await.unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the OpenVPN management interface {} did not answer within {TIMEOUT:?}", self.socket.display()),
            ))
        })
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn gone(socket: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        format!("OpenVPN management interface {}: not connected", socket.display()),
    )
}

/// Why [`serve`] returned.
enum Served {
    /// The connection ended or misbehaved: connect again.
    Lost,
    /// The [`Owner`] was dropped: stop.
    Unowned,
}

async fn own(socket: PathBuf, mut requests: mpsc::Receiver<Reply>, on_event: impl Fn(Event)) {
    let mut pause = MIN_PAUSE;
    loop {
        if let Ok(stream) = UnixStream::connect(&socket).await {
            pause = MIN_PAUSE;
            on_event(Event::Attached);
            if let Served::Unowned = serve(stream, &socket, &mut requests, &on_event).await {
                return;
            }
        }
        // Not connected: every request fails at once until the next try.
        let retry = tokio::time::sleep(pause);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                _ = &mut retry => break,
                asked = requests.recv() => match asked {
                    Some(reply) => {
                        let _ = reply.send(Err(gone(&socket)));
                    }
                    None => return,
                },
            }
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// A `status 3` asked and not yet answered.
struct Pending {
    reply: Reply,
    body: String,
    deadline: Instant,
}

/// Reads the connection line by line: `>` lines are notifications, the rest belongs to the
/// reply of the request in flight (one at a time; OpenVPN answers in order).
async fn serve(
    stream: UnixStream,
    socket: &Path,
    requests: &mut mpsc::Receiver<Reply>,
    on_event: &impl Fn(Event),
) -> Served {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    // Kept across loop turns: `read_until` cancelled by another branch leaves what it read here.
    let mut line = Vec::new();
    let mut notes = notify::Reader::default();
    let mut pending: Option<Pending> = None;
    let lost = |pending: Option<Pending>, why: String| {
        if let Some(p) = pending {
            let _ = p
                .reply
                .send(Err(io::Error::other(format!("OpenVPN management interface {}: {why}", socket.display()))));
        }
        Served::Lost
    };
    loop {
        // A request without its answer by then: OpenVPN hangs; connect again.
        let deadline = pending.as_ref().map_or_else(|| Instant::now() + Duration::from_secs(3600), |p| p.deadline);
        tokio::select! {
            got = read.read_until(b'\n', &mut line) => {
                match got {
                    Ok(0) => return lost(pending, "closed".into()),
                    Err(e) => return lost(pending, e.to_string()),
                    Ok(_) if line.len() > MAX_LINE => return lost(pending, "a line too long".into()),
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string();
                line.clear();
                if text.starts_with('>') {
                    if let Some(arrival) = notes.line(&text) {
                        on_event(Event::Established(arrival));
                    }
                    continue;
                }
                // Anything outside a reply (there is nothing else OpenVPN says unasked) is skipped.
                let Some(mut p) = pending.take() else { continue };
                if text == "END" {
                    let _ = p.reply.send(management::parse_status(&p.body));
                } else if text.starts_with("ERROR:") {
                    let _ = p.reply.send(Err(io::Error::other(format!("OpenVPN management interface: {text}"))));
                } else if p.body.len() + text.len() > MAX_REPLY {
                    return lost(Some(p), "a reply too long".into());
                } else {
                    p.body.push_str(&text);
                    p.body.push('\n');
                    pending = Some(p);
                }
            }
            asked = requests.recv(), if pending.is_none() => {
                let Some(reply) = asked else { return Served::Unowned };
                if let Err(e) = ask(&mut write).await {
                    let _ = reply.send(Err(e));
                    return Served::Lost;
                }
                pending = Some(Pending { reply, body: String::new(), deadline: Instant::now() + TIMEOUT });
            }
            _ = tokio::time::sleep_until(deadline) => return lost(pending, format!("no answer within {TIMEOUT:?}")),
        }
    }
}

async fn ask(write: &mut OwnedWriteHalf) -> io::Result<()> {
    write.write_all(b"status 3\n").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::net::UnixListener;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mw-owner-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const STATUS: &str = "TITLE\tOpenVPN 2.6.14\r\n\
HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tConnected Since (time_t)\r\n\
CLIENT_LIST\tgood\t192.0.2.100:50476\t100.127.255.193\t1795240573\r\n\
END\r\n";

    /// A scripted OpenVPN: one connection, an arrival, then a `status 3` whose reply has a
    /// notification in its middle; then a second connection (the unit restarted).
    #[tokio::test]
    async fn events_and_answers_share_one_connection_and_survive_a_restart() {
        let dir = scratch("script");
        let socket = dir.join("server.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let log = events.clone();
        let owner = Owner::spawn(socket.clone(), move |e| {
            log.lock().unwrap().push(e);
            let _ = seen_tx.send(());
        });

        let (conn, _) = listener.accept().await.unwrap();
        seen.recv().await.unwrap();
        let (read, mut write) = conn.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b">INFO:OpenVPN Management Interface Version 5\r\n").await.unwrap();
        write.write_all(b">CLIENT:ESTABLISHED,4\r\n>CLIENT:ENV,common_name=good\r\n>CLIENT:ENV,END\r\n").await.unwrap();
        seen.recv().await.unwrap();
        let server = tokio::spawn(async move {
            assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("status 3"));
            let (head, tail) = STATUS.split_at(STATUS.find("CLIENT_LIST\tgood").unwrap());
            write.write_all(head.as_bytes()).await.unwrap();
            write.write_all(b">CLIENT:ESTABLISHED,5\r\n>CLIENT:ENV,END\r\n").await.unwrap();
            write.write_all(tail.as_bytes()).await.unwrap();
            (lines, write)
        });
        let clients = owner.status().await.unwrap();
        assert_eq!(clients.len(), 1);
        assert_eq!(clients[0].common_name, "good");
        seen.recv().await.unwrap();
        let (lines, write) = server.await.unwrap();

        // The unit restarts: the connection ends, a request in between fails at once, and the
        // owner connects to the new socket.
        drop((lines, write));
        drop(listener);
        std::fs::remove_file(&socket).unwrap();
        let err = loop {
            match owner.status().await {
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break e,
                _ => tokio::task::yield_now().await,
            }
        };
        assert!(err.to_string().contains("server.sock"), "{err}");
        let listener = UnixListener::bind(&socket).unwrap();
        let (_conn, _) = listener.accept().await.unwrap();
        seen.recv().await.unwrap();

        let got = events.lock().unwrap().clone();
        let arrival = |cid: u64, name: Option<&str>| {
            Event::Established(Arrival { cid: Some(cid), common_name: name.map(str::to_string), ..Arrival::default() })
        };
        assert_eq!(got, [Event::Attached, arrival(4, Some("good")), arrival(5, None), Event::Attached]);
        drop(owner);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_silent_server_is_left_and_a_missing_one_refused_at_once() {
        let dir = scratch("silent");
        let socket = dir.join("silent.sock");
        let owner = Owner::spawn(socket.clone(), |_| {});
        assert_eq!(owner.status().await.unwrap_err().kind(), io::ErrorKind::NotConnected, "no socket yet");

        let listener = UnixListener::bind(&socket).unwrap();
        let (conn, _) = listener.accept().await.unwrap();
        // Accepts and says nothing: the request times out, and the owner drops the connection.
        let err = owner.status().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        let mut conn = BufReader::new(conn);
        let mut asked = String::new();
        conn.read_line(&mut asked).await.unwrap();
        assert_eq!(asked, "status 3\n");
        let mut rest = Vec::new();
        assert_eq!(tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut rest).await.unwrap(), 0, "closed by the owner");
        drop(owner);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
