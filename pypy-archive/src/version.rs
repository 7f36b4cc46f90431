//! Dotted version numbers (`7.3.23`, `3.11`), read one way everywhere:
//! archive names, recipes, and the versions an interpreter reports.

/// The numbers of `value`, if it is nothing but dot-separated decimal
/// numbers (`3.11` gives `[3, 11]`; `3.x`, `3.` and `v3` give `None`).
pub fn parse(value: &str) -> Option<Vec<u32>> {
    value
        .split('.')
        .map(|part| {
            let digits = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            digits.then(|| part.parse().ok()).flatten()
        })
        .collect()
}

/// Whether `value` is a version of exactly `parts` numbers.
pub fn has_parts(value: &str, parts: usize) -> bool {
    parse(value).is_some_and(|numbers| numbers.len() == parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_dot_separated_numbers() {
        assert_eq!(parse("7.3.23"), Some(vec![7, 3, 23]));
        assert_eq!(parse("3.11"), Some(vec![3, 11]));
        for bad in ["", "3.", ".3", "3.x", "v3.11", "3..1", "+1", "99999999999"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert!(has_parts("3.11", 2) && !has_parts("3.11", 3));
        // Numeric, not textual, order.
        assert!(parse("3.11") > parse("3.9"));
    }
}
