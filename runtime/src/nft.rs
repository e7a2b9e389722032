//! meshwork's own nftables table, `inet meshwork`: applied in one transaction, read back,
//! deleted, and watched for changes made by hand. Nothing here touches any other table.
//!
//! Every call runs the `nft` binary as a child of the calling thread, so it acts in that
//! thread's network namespace (the CLI's `--netns` has already moved the whole process). nft's
//! own error text is captured and returned: it is what the user needs to see when the kernel
//! refuses a ruleset.
//!
//! The compiler emits `nftables.json` as ONE document, `{"nftables": [` followed by one command
//! per line and `]}`. [`apply`] passes such a document through unchanged. Input made of several
//! documents (one per line) is merged into one first: nft itself would refuse it, or worse, read
//! from standard input, accept it and do nothing (nft 1.0.6, verified), and the point of one
//! document is one transaction.

use std::io::{self, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

pub const FAMILY: &str = "inet";
pub const TABLE: &str = "meshwork";

/// The nft binary, found on `PATH`.
const NFT: &str = "nft";
/// What nft (through strerror) says when the table does not exist.
const ENOENT: &str = "No such file or directory";
/// How long [`monitor`] waits for `nft monitor` to subscribe before returning anyway.
const MONITOR_READY_TIMEOUT: Duration = Duration::from_secs(2);
/// Queue of monitor events not yet received.
const MONITOR_QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft is not installed (no `nft` on PATH); install the nftables package")]
    Missing,
    #[error("the kernel rejected the ruleset:\n{stderr}")]
    Rejected { stderr: String },
    #[error("`{command}` failed:\n{stderr}")]
    Failed { command: String, stderr: String },
    #[error("not an nft JSON ruleset: {0}")]
    Malformed(String),
    #[error("running nft: {0}")]
    Io(#[from] io::Error),
}

// ---------------------------------------------------------------------------------------------
// Apply.

/// Applies `ruleset_json` (nft's JSON: one `{"nftables": [...]}` document, or several that are
/// merged into one) with `nft -j -f -`, as one transaction: all of it or none of it.
pub fn apply(ruleset_json: &str) -> Result<(), NftError> {
    let document = one_document(ruleset_json)?;
    let mut child = nft_command(&["-j", "-f", "-"]).stdin(Stdio::piped()).spawn().map_err(spawn_error)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Written from a second thread, so a chatty nft can never block us both.
    let (written, output) = std::thread::scope(|s| {
        let writer = s.spawn(move || stdin.write_all(document.as_bytes()));
        let output = child.wait_with_output();
        (writer.join().expect("stdin writer"), output)
    });
    applied(written, output?)
}

/// [`apply`] for async callers (tokio).
pub async fn apply_async(ruleset_json: &str) -> Result<(), NftError> {
    let document = one_document(ruleset_json)?;
    let mut child = tokio::process::Command::from(nft_command(&["-j", "-f", "-"]))
        .stdin(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let write = async move {
        let written = stdin.write_all(document.as_bytes()).await;
        drop(stdin);
        written
    };
    let (written, output) = tokio::join!(write, child.wait_with_output());
    applied(written, output?)
}

/// The outcome of `nft -j -f -`. A failed write to nft's stdin is reported only if nft itself
/// succeeded (nft exiting early on an error closes its stdin; its stderr says why).
fn applied(written: io::Result<()>, output: Output) -> Result<(), NftError> {
    if !output.status.success() {
        return Err(NftError::Rejected { stderr: stderr_text(&output) });
    }
    written?;
    Ok(())
}

/// The input as one `{"nftables": [...]}` document. A single document passes through as it is;
/// several (each a document, or a bare command object) are merged in order.
fn one_document(text: &str) -> Result<std::borrow::Cow<'_, str>, NftError> {
    let docs: Vec<Value> = serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .map_err(|e| NftError::Malformed(e.to_string()))?;
    match docs.as_slice() {
        [] => Err(NftError::Malformed("no JSON document".into())),
        [doc] if doc.get("nftables").is_some_and(Value::is_array) => Ok(text.into()),
        _ => {
            let mut commands = Vec::new();
            for doc in docs {
                match doc {
                    Value::Object(mut o) if o.contains_key("nftables") => match o.remove("nftables") {
                        Some(Value::Array(cmds)) => commands.extend(cmds),
                        _ => return Err(NftError::Malformed("\"nftables\" is not an array".into())),
                    },
                    Value::Object(o) if o.len() == 1 => commands.push(Value::Object(o)),
                    other => {
                        let head: String = other.to_string().chars().take(80).collect();
                        return Err(NftError::Malformed(format!("neither a document nor a command: {head}")));
                    }
                }
            }
            Ok(serde_json::json!({ "nftables": commands }).to_string().into())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Read back and delete.

/// Our table as nft lists it, stateless (`-s`: no counter values, so two listings of the same
/// ruleset are the same text). None when the table does not exist.
pub fn list_table() -> Result<Option<String>, NftError> {
    let out = run(&["-s", "list", "table", FAMILY, TABLE])?;
    match table_missing(&out)? {
        true => Ok(None),
        false => Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned())),
    }
}

/// Our table as nft's JSON (with handles and counter values). None when it does not exist.
pub fn list_table_json() -> Result<Option<Value>, NftError> {
    let out = run(&["-j", "list", "table", FAMILY, TABLE])?;
    if table_missing(&out)? {
        return Ok(None);
    }
    serde_json::from_slice(&out.stdout).map(Some).map_err(|e| NftError::Malformed(format!("nft's own listing: {e}")))
}

/// Any table `family name` as nft's JSON (with counter values), for tables meshwork's tools own
/// besides the runtime's (the lab's counters). None when it does not exist.
pub fn list_json(family: &str, name: &str) -> Result<Option<Value>, NftError> {
    let out = run(&["-j", "list", "table", family, name])?;
    if table_missing(&out)? {
        return Ok(None);
    }
    serde_json::from_slice(&out.stdout).map(Some).map_err(|e| NftError::Malformed(format!("nft's own listing: {e}")))
}

/// The packet counters of meshwork's table, by the comment of the rule that holds them.
pub fn counters_by_comment() -> Result<std::collections::BTreeMap<String, u64>, NftError> {
    let mut out = std::collections::BTreeMap::new();
    let Some(listing) = list_table_json()? else { return Ok(out) };
    for item in listing["nftables"].as_array().into_iter().flatten() {
        let rule = &item["rule"];
        let Some(comment) = rule["comment"].as_str() else { continue };
        let packets = rule["expr"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|e| e.get("counter").and_then(|c| c["packets"].as_u64()));
        if let Some(packets) = packets {
            *out.entry(comment.to_string()).or_default() += packets;
        }
    }
    Ok(out)
}

/// Deletes our table (and only it). False when it was not there.
pub fn delete_table() -> Result<bool, NftError> {
    let out = run(&["delete", "table", FAMILY, TABLE])?;
    Ok(!table_missing(&out)?)
}

/// A listing with what varies between two listings of the same ruleset taken out: `# handle N`
/// comments (`nft -a`), counter values (a listing without `-s`), trailing blanks.
pub fn normalise_listing(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = match line.find(" # handle ") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push_str(strip_counter_values(line).trim_end());
        out.push('\n');
    }
    let kept = out.trim_end_matches('\n').len();
    out.truncate(kept);
    out.push('\n');
    out
}

/// `counter packets 12 bytes 3400` -> `counter`.
fn strip_counter_values(line: &str) -> std::borrow::Cow<'_, str> {
    let Some(at) = line.find("counter packets ") else { return line.into() };
    let words: Vec<&str> = line[at..].split(' ').collect();
    match words.as_slice() {
        ["counter", "packets", p, "bytes", b, rest @ ..]
            if p.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit()) =>
        {
            let mut s = format!("{}counter", &line[..at]);
            for w in rest {
                s.push(' ');
                s.push_str(w);
            }
            s.into()
        }
        _ => line.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Monitor.

/// `nft -j monitor`, filtered to events about our table. Dropping it kills nft.
pub struct Monitor {
    events: mpsc::Receiver<String>,
    /// Killed when dropped (kill_on_drop), which is the point of holding it here.
    child: tokio::process::Child,
    reader: tokio::task::JoinHandle<()>,
}

impl Monitor {
    /// The next event about table `inet meshwork`: one line of nft's JSON, such as
    /// `{"delete": {"rule": {"family": "inet", "table": "meshwork", "chain": "firewall",
    /// "handle": 31, ...}}}`. A transaction gives one event per object it touches. None when
    /// nft has exited.
    pub async fn recv(&mut self) -> Option<String> {
        self.events.recv().await
    }

    /// The PID of the `nft monitor` process.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.reader.abort();
        // `child` is dropped after this and killed (kill_on_drop); tokio reaps it.
    }
}

/// Starts `nft -j monitor` in the current network namespace and returns once it listens (or
/// after a short timeout), so a change made right after this returns is seen. Must be called
/// within a tokio runtime.
pub async fn monitor() -> Result<Monitor, NftError> {
    let mut child = tokio::process::Command::from(nft_command(&["-j", "monitor"]))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    let pid = child.id().expect("a running child has a pid");
    let deadline = Instant::now() + MONITOR_READY_TIMEOUT;
    while !subscribed(pid) && Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = e.read_to_string(&mut stderr).await;
            }
            return Err(NftError::Failed {
                command: "nft -j monitor".into(),
                stderr: if stderr.trim().is_empty() { format!("exited: {status}") } else { stderr.trim().into() },
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, events) = mpsc::channel(MONITOR_QUEUE);
    let reader = tokio::spawn(async move {
        let forward = async {
            let mut lines = BufReader::new(stdout).lines();
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    line = lines.next_line() => match line {
                        Ok(Some(line)) if concerns_our_table(&line) => {
                            if tx.send(line).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => return,
                    },
                }
            }
        };
        // nft has nothing to say on stderr once it listens; drained so it can never block.
        let mut sink = tokio::io::sink();
        let drain = tokio::io::copy(&mut stderr, &mut sink);
        let _ = tokio::join!(forward, drain);
    });
    Ok(Monitor { events, child, reader })
}

/// Whether one line of `nft -j monitor` is about table `inet meshwork`: an object
/// `{"<verb>": {"<kind>": {"family": "inet", "table": "meshwork", ...}}}`, or for the table
/// itself `{"<verb>": {"table": {"family": "inet", "name": "meshwork", ...}}}`.
pub fn concerns_our_table(line: &str) -> bool {
    let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line) else { return false };
    event.values().filter_map(Value::as_object).flat_map(|o| o.iter()).any(|(kind, obj)| {
        let table = if kind == "table" { obj.get("name") } else { obj.get("table") };
        obj.get("family").and_then(Value::as_str) == Some(FAMILY) && table.and_then(Value::as_str) == Some(TABLE)
    })
}

/// Whether process `pid` has a NETLINK_NETFILTER socket subscribed to the nftables multicast
/// group (NFNLGRP_NFTABLES = 7), read from `/proc/<pid>/net/netlink`, which shows the sockets
/// of that process's own network namespace.
fn subscribed(pid: u32) -> bool {
    const NETLINK_NETFILTER: &str = "12";
    const NFNLGRP_NFTABLES_BIT: u64 = 1 << (7 - 1);
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    let inodes: Vec<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/netlink")) else { return false };
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
        f.len() >= 10
            && f[1] == NETLINK_NETFILTER
            && inodes.iter().any(|i| i == f[9])
            && u64::from_str_radix(f[3], 16).is_ok_and(|g| g & NFNLGRP_NFTABLES_BIT != 0)
    })
}

// ---------------------------------------------------------------------------------------------
// Running nft.

/// `nft ARGS` with stdout and stderr piped, in the C locale (so strerror texts such as
/// [`ENOENT`] are English).
fn nft_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(NFT);
    cmd.args(args).env("LC_ALL", "C").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn run(args: &[&str]) -> Result<Output, NftError> {
    nft_command(args).output().map_err(spawn_error)
}

fn spawn_error(e: io::Error) -> NftError {
    match e.kind() {
        io::ErrorKind::NotFound => NftError::Missing,
        _ => NftError::Io(e),
    }
}

/// For commands on our table: Ok(false) on success, Ok(true) when nft says the table does not
/// exist, an error otherwise.
fn table_missing(out: &Output) -> Result<bool, NftError> {
    if out.status.success() {
        return Ok(false);
    }
    let stderr = stderr_text(out);
    if stderr.contains(ENOENT) {
        return Ok(true);
    }
    Err(NftError::Failed { command: format!("nft ... table {FAMILY} {TABLE}"), stderr })
}

fn stderr_text(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    if text.is_empty() { format!("nft {} with no message", out.status) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_document_passes_through_unchanged() {
        let doc = "{\"nftables\": [\n{\"add\":{\"table\":{\"family\":\"inet\",\"name\":\"meshwork\"}}}\n]}\n";
        assert!(matches!(one_document(doc).unwrap(), std::borrow::Cow::Borrowed(d) if d == doc));
    }

    #[test]
    fn several_documents_and_bare_commands_are_merged_in_order() {
        let text = concat!(
            "{\"nftables\":[{\"add\":{\"table\":{\"family\":\"inet\",\"name\":\"meshwork\"}}}]}\n",
            "{\"delete\":{\"table\":{\"family\":\"inet\",\"name\":\"meshwork\"}}}\n",
            "{\"nftables\":[{\"add\":{\"table\":{\"family\":\"inet\",\"name\":\"meshwork\"}}},",
            "{\"add\":{\"chain\":{\"family\":\"inet\",\"table\":\"meshwork\",\"name\":\"c\"}}}]}\n",
        );
        let merged: Value = serde_json::from_str(&one_document(text).unwrap()).unwrap();
        let verbs: Vec<String> = merged["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_object().unwrap().keys().next().unwrap().clone())
            .collect();
        assert_eq!(verbs, ["add", "delete", "add", "add"]);
        assert_eq!(merged["nftables"][3]["add"]["chain"]["name"], "c");
    }

    #[test]
    fn malformed_input_is_refused_before_nft_runs() {
        for bad in [
            "",
            "   \n",
            "{\"nftables\": [",
            "[1, 2]",
            "{\"nftables\": 3}\n{\"nftables\": []}",
            "{\"a\":1,\"b\":2}\n{}",
        ] {
            assert!(matches!(one_document(bad), Err(NftError::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn monitor_lines_about_other_tables_are_not_ours() {
        let ours = [
            r#"{"delete": {"rule": {"family": "inet", "table": "meshwork", "chain": "firewall", "handle": 31}}}"#,
            r#"{"add": {"table": {"family": "inet", "name": "meshwork", "handle": 4}}}"#,
            r#"{"add": {"element": {"family": "inet", "table": "meshwork", "name": "tag_db", "elem": {"set": ["1.2.3.4"]}}}}"#,
        ];
        let theirs = [
            r#"{"add": {"table": {"family": "inet", "name": "other", "handle": 3}}}"#,
            r#"{"add": {"rule": {"family": "inet", "table": "other", "chain": "c", "handle": 2}}}"#,
            r#"{"add": {"table": {"family": "ip", "name": "meshwork", "handle": 5}}}"#,
            r#"{"add": {"chain": {"family": "ip", "table": "meshwork", "name": "c"}}}"#,
            "# new generation 8 by process 18088 (nft)",
            "add rule inet meshwork firewall accept",
            "",
        ];
        for l in ours {
            assert!(concerns_our_table(l), "{l}");
        }
        for l in theirs {
            assert!(!concerns_our_table(l), "{l}");
        }
    }

    #[test]
    fn normalising_drops_handles_and_counter_values() {
        let a = "table inet meshwork { # handle 2\n\tchain firewall { # handle 11\n\t\tip saddr @tag_web counter packets 3 bytes 180 accept comment \"rule 1\" # handle 25\n\t}\n}\n\n";
        let b = "table inet meshwork {\n\tchain firewall {\n\t\tip saddr @tag_web counter accept comment \"rule 1\"\n\t}\n}\n";
        assert_eq!(normalise_listing(a), normalise_listing(b));
        assert_eq!(normalise_listing(b), b);
    }
}
