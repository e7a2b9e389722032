//! In which order a client tries the controllers: its *primary* first, then the others in id
//! order starting after the primary. The primary is spread over the controllers by a hash of
//! the client's name, so clients share the load and a pack never changes unless the number of
//! controllers does. Clientpacks list their remotes in this order, and `meshwork graph` counts
//! each controller's primary clients.

use sha2::{Digest, Sha256};

use crate::network::{ClientNet, ControllerNet, Network};

/// The controllers by id, the client's primary first, then the others in id order starting
/// after the primary.
pub fn order<'a>(net: &'a Network, client: &ClientNet) -> Vec<&'a ControllerNet> {
    let mut by_id: Vec<&ControllerNet> = net.controllers.iter().collect();
    by_id.sort_by_key(|c| c.id);
    if by_id.is_empty() {
        return by_id;
    }
    let primary = primary_index(&client.name, by_id.len());
    by_id.rotate_left(primary);
    by_id
}

/// The controller the client tries first, if there is any.
pub fn primary<'a>(net: &'a Network, client: &ClientNet) -> Option<&'a ControllerNet> {
    order(net, client).into_iter().next()
}

/// Index of the primary among `n` controllers: the first 8 bytes of SHA-256(name), big endian,
/// mod n. Depends on nothing but the name and the number of controllers.
fn primary_index(name: &str, n: usize) -> usize {
    let digest = Sha256::digest(name.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(head) % n as u64) as usize
}
