//! Checksums of files, for every stage that checks or records one.

use std::path::Path;

use anyhow::{Context, Result};

/// The sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    pypy_archive::hash::sha256_file(path).with_context(|| format!("hashing {}", path.display()))
}
