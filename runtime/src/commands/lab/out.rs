//! What the lab verbs write: results on stdout (text, or one JSON object with `--format
//! json`), progress and notes on stderr. A lab verb keeps working when its reader goes away
//! (`meshwork lab down 2>&1 | head -1` must not leave half a lab behind), so SIGPIPE stays
//! ignored for it and a write that fails is dropped instead of ending the process.

use std::io::Write;

use serde::Serialize;

/// A line on stderr.
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes()).and_then(|()| err.write_all(b"\n"));
}

/// Text on stdout, as it is.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// One JSON document on stdout.
pub fn json(value: &impl Serialize) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    print(&format!("{text}\n"));
}

/// Progress lines for the library's steps.
pub fn progress() -> impl FnMut(&str) {
    say
}
