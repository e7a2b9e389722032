//! OpenVPN management interfaces (the processes are `crate::daemon`s).

pub mod management;
