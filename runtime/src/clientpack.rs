//! STUB — clientpacks (being written).
