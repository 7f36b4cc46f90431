//! Where things live: the workspace, `recipes/`, `dist/`, and the caches.

use std::path::{Path, PathBuf};

/// Environment variable that moves every cache of ours (downloads, translations, fixtures).
pub use pypy_archive::cache::CACHE_ENV;

/// The workspace root, found from this crate's manifest at compile time.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

pub fn recipes_dir() -> PathBuf {
    workspace_root().join("recipes")
}

pub fn dist_dir() -> PathBuf {
    workspace_root().join("dist")
}

/// Root of our caches: `pypy_archive::cache::cache_root` (the one rule
/// embed-runtime follows too), else `target/pypy-embed-cache`.
pub fn cache_root() -> PathBuf {
    pypy_archive::cache::cache_root()
        .unwrap_or_else(|| workspace_root().join("target").join("pypy-embed-cache"))
}
