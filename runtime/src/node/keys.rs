//! A node's pre-shared keys beside its `swanctl.conf`: for each IPsec peer, the pair's key
//! from the keyset (read with the keyset's checks), written 0600 under `keys/psk/`, and nothing
//! else: a key of a pair that is gone is removed. The keys are secrets: nothing here prints them.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use meshwork_compiler::vxlan::{NodeNet, VxlanNet};

use super::strongswan::psk_dir;
use crate::keys::Keyset;
use crate::private_file;

/// The file extension of a key file (`<low>+<high>.psk`).
const PSK_EXTENSION: &str = "psk";

/// Makes `dir/keys/psk/` hold exactly `node`'s pair keys. Returns the pairs' file names.
pub fn install(keyset: &Keyset, vx: &VxlanNet, node: &NodeNet, dir: &Path) -> io::Result<Vec<String>> {
    let target = psk_dir(dir);
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&target)?;
    let mut wanted = BTreeSet::new();
    for (pair, _) in vx.ipsec_peers(node) {
        let psk = keyset.psk(pair).map_err(|e| io::Error::other(format!("node {}: {e}", node.name)))?;
        let file = pair.psk_file();
        private_file::replace(&target.join(&file), &psk.to_file())?;
        wanted.insert(file);
    }
    for entry in fs::read_dir(&target)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_key = Path::new(&name).extension().is_some_and(|e| e == PSK_EXTENSION);
        if is_key && !wanted.contains(&name) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(wanted.into_iter().collect())
}
