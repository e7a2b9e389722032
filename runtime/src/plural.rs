//! Counts in messages as people write them: "1 error", "2 errors" (the compiler's helper, for
//! the counts the runtime has as `usize`).

/// `n` and `noun`, plural unless `n` is 1.
pub fn count(n: usize, noun: &str) -> String {
    meshwork_compiler::plural::count(n as u64, noun)
}
