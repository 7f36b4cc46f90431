//! Where the caches live: one rule for the xtask (downloads, translations)
//! and embed-runtime (extracted archives), so that both find the same
//! folder for the same environment.

use std::ffi::OsString;
use std::path::PathBuf;

/// Moves every cache: `$PYPY_EMBED_CACHE/<what>`.
pub const CACHE_ENV: &str = "PYPY_EMBED_CACHE";

/// The folder our caches share: `$PYPY_EMBED_CACHE`, else `pypy-embed` in
/// the user's cache folder of this OS (`$XDG_CACHE_HOME` or `~/.cache` on
/// Linux, `~/Library/Caches` on macOS, `%LOCALAPPDATA%` on Windows); `None`
/// when the environment names none. An empty variable counts as unset, as
/// XDG's convention has it.
pub fn cache_root() -> Option<PathBuf> {
    cache_root_for(std::env::consts::OS, |name| std::env::var_os(name))
}

/// [`cache_root`] for the OS `os` (`std::env::consts::OS`) with the
/// environment `env`.
pub fn cache_root_for(os: &str, env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(CACHE_ENV) {
        return Some(dir);
    }
    let user_cache = match os {
        "macos" => set("HOME").map(|home| home.join("Library").join("Caches")),
        "windows" => set("LOCALAPPDATA"),
        _ => set("XDG_CACHE_HOME")
            .filter(|dir| dir.is_absolute())
            .or_else(|| set("HOME").map(|home| home.join(".cache"))),
    };
    user_cache.map(|dir| dir.join("pypy-embed"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn root(os: &str, vars: &[(&str, &str)]) -> Option<PathBuf> {
        cache_root_for(os, |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn the_variable_wins_on_every_os() {
        for os in ["linux", "macos", "windows"] {
            assert_eq!(
                root(os, &[(CACHE_ENV, "/c"), ("HOME", "/h")]).as_deref(),
                Some(Path::new("/c"))
            );
        }
    }

    #[test]
    fn each_os_has_its_user_cache_folder() {
        let vars = [
            ("HOME", "/home/u"),
            ("XDG_CACHE_HOME", "/x"),
            ("LOCALAPPDATA", "C:/Users/u/AppData/Local"),
        ];
        assert_eq!(root("linux", &vars), Some(PathBuf::from("/x/pypy-embed")));
        assert_eq!(
            root("macos", &vars),
            Some(PathBuf::from("/home/u/Library/Caches/pypy-embed"))
        );
        assert_eq!(
            root("windows", &vars),
            Some(PathBuf::from("C:/Users/u/AppData/Local/pypy-embed"))
        );
    }

    #[test]
    fn empty_variables_count_as_unset() {
        assert_eq!(
            root(
                "linux",
                &[(CACHE_ENV, ""), ("XDG_CACHE_HOME", ""), ("HOME", "/home/u")]
            ),
            Some(PathBuf::from("/home/u/.cache/pypy-embed"))
        );
        assert_eq!(root("linux", &[(CACHE_ENV, ""), ("HOME", "")]), None);
        // XDG wants an absolute path; a relative one is ignored.
        assert_eq!(
            root("linux", &[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")]),
            Some(PathBuf::from("/h/.cache/pypy-embed"))
        );
    }
}
