//! Known upstream translation failures: a small table in
//! `recipes/known-failures.toml`, matched against a failed translation's log
//! so that the error names the upstream issue and the fix.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::paths;

/// The table's file, beside the recipes.
pub const FILE: &str = "known-failures.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownFailure {
    /// Text that appears in the log when this failure happens.
    pub pattern: String,
    /// The upstream issue.
    pub issue: String,
    /// What goes wrong, in a sentence.
    pub summary: String,
    /// The patch or option that fixes it.
    pub fix: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    failure: Vec<KnownFailure>,
}

/// Reads the table at `path`.
pub fn load(path: &Path) -> Result<Vec<KnownFailure>> {
    let text = fs_err::read_to_string(path)?;
    let table: Table =
        toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    Ok(table.failure)
}

/// The workspace's table.
pub fn shipped() -> Result<Vec<KnownFailure>> {
    load(&paths::recipes_dir().join(FILE))
}

/// The entries whose pattern occurs in `log`.
pub fn matching<'a>(table: &'a [KnownFailure], log: &str) -> Vec<&'a KnownFailure> {
    table.iter().filter(|f| log.contains(&f.pattern)).collect()
}

/// What to print below a failed translation's excerpt: one paragraph per
/// known failure that matches, or nothing.
pub fn advice(log: &str) -> String {
    let table = match shipped() {
        Ok(table) => table,
        // The failure itself matters more than the table; say why it was not read.
        Err(e) => return format!("\n(the table of known failures could not be read: {e:#})"),
    };
    matching(&table, log)
        .iter()
        .map(|f| {
            format!(
                "\nThis is a known upstream failure: {}\n  {}\n  Fix: {}",
                f.issue, f.summary, f.fix
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_names_the_prebuilt_lock_failure() {
        let table = shipped().unwrap();
        let log =
            "[translation:ERROR] Exception: seeing a prebuilt rpython.rlib.rthread.Lock instance\n\
                   Processing block: ... in (pypy.objspace.std.mapdict:924)";
        let found = matching(&table, log);
        assert_eq!(found.len(), 1);
        assert!(found[0].issue.ends_with("/5527"));
        let said = advice(log);
        assert!(
            said.contains("issues/5527") && said.contains("lazy-thread-locks.patch"),
            "{said}"
        );
        assert_eq!(advice("[translation:ERROR] something else"), "");
    }

    #[test]
    fn every_entry_has_text_in_every_field() {
        for f in shipped().unwrap() {
            for (field, value) in [
                ("pattern", &f.pattern),
                ("issue", &f.issue),
                ("summary", &f.summary),
                ("fix", &f.fix),
            ] {
                assert!(!value.trim().is_empty(), "{field} of {f:?} is empty");
            }
            assert!(f.issue.starts_with("https://"), "{f:?}");
        }
    }
}
