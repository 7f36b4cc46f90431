//! Where things live: the workspace, `recipes/`, `dist/`, and the caches.

use std::path::{Path, PathBuf};

/// Environment variable that moves every cache of ours (downloads, translations, fixtures).
pub const CACHE_ENV: &str = "PYPY_EMBED_CACHE";

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

/// Root of our caches: `$PYPY_EMBED_CACHE`, else the user's cache folder, else `target/`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
    {
        Some(dir) => dir.join("pypy-embed"),
        None => workspace_root().join("target").join("pypy-embed-cache"),
    }
}
