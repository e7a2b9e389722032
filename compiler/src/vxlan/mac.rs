//! Derived vNIC MACs: locally administered unicast (`02:` prefix), from a SHA-256 of the
//! topology's name, the overlay's name and the vNIC's name, so the same file always gives the
//! same MAC and renaming anything else never moves it. A collision is reported, never shifted.

use sha2::{Digest, Sha256};

use crate::model::vxlan::Mac;

pub fn derive(topology: &str, overlay: &str, vnic: &str) -> Mac {
    let mut h = Sha256::new();
    // Lengths first, so ("ab", "c") and ("a", "bc") hash apart.
    for part in [topology, overlay, vnic] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let d = h.finalize();
    Mac([0x02, d[0], d[1], d[2], d[3], d[4]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_macs_are_local_unicast_stable_and_distinct() {
        let a = derive("acme", "tenant-a", "vm-1");
        assert_eq!(a, derive("acme", "tenant-a", "vm-1"));
        assert_eq!(a.0[0], 0x02);
        assert!(!a.is_multicast());
        assert_ne!(a, derive("acme", "tenant-a", "vm-2"));
        assert_ne!(a, derive("acme", "tenant-b", "vm-1"));
        assert_ne!(derive("a", "bc", "d"), derive("ab", "c", "d"));
    }
}
