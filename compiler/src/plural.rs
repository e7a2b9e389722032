//! Counts in messages as people write them: "1 error", "2 errors", "0 warnings".

/// `n` and `noun`, plural unless `n` is 1 (nouns meshwork uses take an `s`).
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular() {
        assert_eq!(super::count(1u32, "error"), "1 error");
        assert_eq!(super::count(0u32, "warning"), "0 warnings");
        assert_eq!(super::count(3u64, "controller"), "3 controllers");
    }
}
