//! STUB — to be written: the same intent in VNS3 firewall syntax.
use crate::network::{ControllerNet, Network};
pub fn firewall(_net: &Network, _c: &ControllerNet) -> String {
    String::new()
}
