//! OpenVPN processes meshwork runs and their management interfaces.

pub mod management;
pub mod process;
