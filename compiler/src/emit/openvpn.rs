//! STUB — to be written: OpenVPN server, engine, ccd and peer configs.
use crate::network::{ControllerNet, Network};
pub fn configs(_net: &Network, _c: &ControllerNet) -> Vec<(String, String)> {
    Vec::new()
}
