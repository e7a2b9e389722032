pub mod build;
pub mod check;
pub mod codes;
pub mod diff;
pub mod explain;
pub mod graph;
