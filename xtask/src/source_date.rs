//! The `SOURCE_DATE_EPOCH` a translation runs with: the caller's, else the source's own date.
//!
//! PyPy writes its build date into `sys.version`. With the reproducible-builds
//! patch it takes that date from `SOURCE_DATE_EPOCH` (reproducible-builds.org)
//! instead of the clock, so the date must come from the source for two builds
//! of one source to agree: a git checkout's commit date, or the newest file
//! in a release tree (the release tarball keeps its files' dates).

use std::path::Path;
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use xshell::Shell;

/// The variable, as reproducible-builds.org names it.
pub const VAR: &str = "SOURCE_DATE_EPOCH";

/// Where a build's date came from, recorded in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Given on the command line (`--source-date-epoch`).
    Flag,
    /// The caller set `SOURCE_DATE_EPOCH`.
    Environment,
    /// The commit date of a git checkout.
    GitCommit,
    /// The newest modification time among the tree's files.
    NewestFile,
}

impl Origin {
    pub fn describe(self) -> &'static str {
        match self {
            Origin::Flag => "the --source-date-epoch option",
            Origin::Environment => "the SOURCE_DATE_EPOCH environment variable",
            Origin::GitCommit => "the source checkout's commit date",
            Origin::NewestFile => "the newest file in the source release",
        }
    }
}

/// `SOURCE_DATE_EPOCH` when the caller set it; a value that is not a number is an error.
pub fn from_env() -> Result<Option<u64>> {
    crate::env::var(VAR)?
        .map(|v| {
            v.trim().parse().with_context(|| {
                format!("{VAR}={v:?} is not a number of seconds since 1970; unset it or give one")
            })
        })
        .transpose()
}

/// The date for a build of the (pristine, unpatched) tree at `root`.
pub fn for_tree(sh: &Shell, root: &Path) -> Result<(u64, Origin)> {
    if let Some(epoch) = from_env()? {
        return Ok((epoch, Origin::Environment));
    }
    if root.join(".git").exists() {
        return Ok((crate::git::commit_date(sh, root)?, Origin::GitCommit));
    }
    Ok((newest_file(root)?, Origin::NewestFile))
}

/// The newest modification time (whole seconds) among the source files under
/// `root`. Build products (bytecode, RPython's `_cache`, objects) are left
/// out: translating in the tree writes them, and must not change its date.
pub fn newest_file(root: &Path) -> Result<u64> {
    let mut newest = None;
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.with_context(|| format!("walking {}", root.display()))?;
        if !entry.file_type().is_file() || crate::build_cache::is_build_product(entry.path()) {
            continue;
        }
        let modified = entry
            .metadata()
            .map_err(std::io::Error::from)
            .and_then(|m| m.modified())
            .with_context(|| format!("reading the date of {}", entry.path().display()))?;
        // A file dated before 1970 counts as 1970.
        let secs = modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        newest = newest.max(Some(secs));
    }
    newest.with_context(|| format!("{} holds no files to take a date from", root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn set_mtime(path: &Path, secs: u64) {
        let file = fs_err::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn the_newest_file_dates_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("pypy/module")).unwrap();
        for (name, secs) in [("a.py", 1_700_000_000), ("pypy/module/b.py", 1_779_734_355)] {
            fs_err::write(dir.path().join(name), "x").unwrap();
            set_mtime(&dir.path().join(name), secs);
        }
        assert_eq!(newest_file(dir.path()).unwrap(), 1_779_734_355);
    }

    #[test]
    fn build_products_do_not_date_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("rpython/_cache")).unwrap();
        fs_err::write(dir.path().join("a.py"), "x").unwrap();
        set_mtime(&dir.path().join("a.py"), 1_700_000_000);
        for product in ["rpython/_cache/x.c", "a.pyc"] {
            fs_err::write(dir.path().join(product), "x").unwrap();
            set_mtime(&dir.path().join(product), 1_800_000_000);
        }
        assert_eq!(newest_file(dir.path()).unwrap(), 1_700_000_000);
    }

    #[test]
    fn an_empty_tree_has_no_date() {
        let dir = tempfile::tempdir().unwrap();
        let err = newest_file(dir.path()).unwrap_err().to_string();
        assert!(err.contains("holds no files"), "{err}");
    }
}
