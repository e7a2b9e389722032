//! STUB — to be written: routes.json.
use crate::network::{ControllerNet, Network};
pub fn to_json(_net: &Network, _c: &ControllerNet) -> String {
    String::new()
}
