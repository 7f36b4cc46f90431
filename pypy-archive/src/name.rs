//! Archive file names (`pypy<py>-v<pypy>-<triple>.tar.gz`) and picking the
//! newest one for a target in a folder (embed-runtime's build script and
//! its discovery both ask).

use std::path::{Path, PathBuf};

/// The parts of an archive's file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveName {
    /// The Python version, e.g. `[3, 11]`.
    pub python: Vec<u32>,
    /// The PyPy version, e.g. `[7, 3, 20]`.
    pub pypy: Vec<u32>,
    pub triple: String,
}

/// Parses `pypy3.11-v7.3.20-x86_64-unknown-linux-gnu.tar.gz`; `None` for any other name.
pub fn parse(file_name: &str) -> Option<ArchiveName> {
    let stem = file_name.strip_suffix(".tar.gz")?.strip_prefix("pypy")?;
    let (python, rest) = stem.split_once("-v")?;
    let (pypy, triple) = rest.split_once('-')?;
    if triple.is_empty() {
        return None;
    }
    Some(ArchiveName {
        python: crate::version::parse(python)?,
        pypy: crate::version::parse(pypy)?,
        triple: triple.to_string(),
    })
}

/// The archive in `dir` for `triple` with the highest PyPy version (then
/// Python version); archives for other targets are ignored.
pub fn newest_for(dir: &Path, triple: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .flatten()
        .filter_map(|e| {
            let name = parse(e.file_name().to_str()?)?;
            (name.triple == triple && e.path().is_file()).then(|| (name, e.path()))
        })
        .max_by(|(a, _), (b, _)| (&a.pypy, &a.python).cmp(&(&b.pypy, &b.python)))
        .map(|(_, path)| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_our_names_only() {
        let n = parse("pypy3.11-v7.3.20-x86_64-unknown-linux-gnu.tar.gz").unwrap();
        assert_eq!(n.python, [3, 11]);
        assert_eq!(n.pypy, [7, 3, 20]);
        assert_eq!(n.triple, "x86_64-unknown-linux-gnu");
        assert_eq!(parse("pypy3.11-v7.3.20-linux64.tar.bz2"), None);
        assert_eq!(parse("pypy3.11-v7.3.x-linux.tar.gz"), None);
        assert_eq!(parse("python3.11-v7.3.20-x.tar.gz"), None);
        assert_eq!(parse("pypy3.11-v7.3.20-.tar.gz"), None);
    }

    #[test]
    fn newest_for_compares_versions_numerically_and_skips_other_targets() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "pypy3.9-v7.3.9-x86_64-unknown-linux-gnu.tar.gz",
            "pypy3.9-v7.3.11-x86_64-unknown-linux-gnu.tar.gz",
            "pypy3.11-v7.3.20-aarch64-unknown-linux-gnu.tar.gz",
            "pypy3.9-v7.3.11-x86_64-unknown-linux-gnu.tar.gz.sha256",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let found = newest_for(dir.path(), "x86_64-unknown-linux-gnu").unwrap();
        assert_eq!(
            found.file_name().unwrap(),
            "pypy3.9-v7.3.11-x86_64-unknown-linux-gnu.tar.gz"
        );
        assert_eq!(newest_for(dir.path(), "riscv64gc-unknown-linux-gnu"), None);
    }
}
