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
/// An empty variable counts as unset, as XDG's convention has it (an empty
/// `PYPY_EMBED_CACHE` used to put `downloads/` into the current folder).
pub fn cache_root() -> PathBuf {
    cache_root_from(|name| std::env::var_os(name))
}

fn cache_root_from(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(CACHE_ENV) {
        return dir;
    }
    match set("XDG_CACHE_HOME").or_else(|| set("HOME").map(|h| h.join(".cache"))) {
        Some(dir) => dir.join("pypy-embed"),
        None => workspace_root().join("target").join("pypy-embed-cache"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(vars: &[(&str, &str)]) -> PathBuf {
        cache_root_from(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.into()))
    }

    #[test]
    fn empty_variables_count_as_unset() {
        assert_eq!(root_with(&[(CACHE_ENV, "/c")]), Path::new("/c"));
        assert_eq!(
            root_with(&[(CACHE_ENV, ""), ("XDG_CACHE_HOME", ""), ("HOME", "/home/u")]),
            Path::new("/home/u/.cache/pypy-embed")
        );
        assert_eq!(
            root_with(&[("XDG_CACHE_HOME", "/x")]),
            Path::new("/x/pypy-embed")
        );
        assert_eq!(
            root_with(&[(CACHE_ENV, ""), ("HOME", "")]),
            workspace_root().join("target/pypy-embed-cache")
        );
    }
}
