//! STUB — the topology keyset (being written).
