//! STUB — encrypted keyset bundles (being written).
