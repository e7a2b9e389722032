//! Files under the host's working directory: what the parts want written there (configs,
//! keys) and what is there now, except the daemons' run directory.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::super::desired::digest;
use super::super::observe::Observed;
use super::super::part::{Observing, Part, Pending};
use super::super::resource::{Kind, Resource, Spec};

/// Files larger than this are compared by digest only (no line diff in plans).
const MAX_DIFF_FILE: u64 = 64 * 1024;

pub struct Files;

/// Whether a file found on the host holds a key (never shown, never diffed).
fn is_secret(rel: &str) -> bool {
    rel.ends_with(".key") || rel.ends_with(".psk")
}

impl Part for Files {
    fn kinds(&self) -> &'static [Kind] {
        &[Kind::File]
    }

    fn observe<'a>(&'a self, cx: &'a Observing<'a>, out: &'a mut Observed) -> Pending<'a> {
        Box::pin(async move {
            let dir = cx.layout.work();
            let run = cx.layout.run();
            walk(&dir, &mut |path, meta| {
                if path.starts_with(&run) {
                    return;
                }
                let Ok(rel) = path.strip_prefix(&dir) else { return };
                let rel = rel.to_string_lossy().into_owned();
                let Ok(content) = std::fs::read(path) else { return };
                let mode = meta.permissions().mode() & 0o7777;
                let secret = is_secret(&rel);
                let mut r = Resource::new(Kind::File, rel.clone(), Spec::File { path: rel.clone(), mode, secret })
                    .attr("mode", format!("{mode:04o}"))
                    .attr("sha256", digest(&content));
                if secret {
                    r = r.attr("sensitive", "true");
                } else if meta.len() <= MAX_DIFF_FILE
                    && let Ok(text) = String::from_utf8(content)
                {
                    out.file_text.insert(rel, text);
                }
                out.add(r);
            })
        })
    }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            walk(&path, f)?;
        } else if meta.is_file() {
            f(&path, &meta);
        }
    }
    Ok(())
}
