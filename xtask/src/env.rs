//! Every environment variable the xtask reads goes through here, read one
//! way: an empty value counts as unset (XDG's convention), and a value that
//! is not UTF-8 where text is needed is an error naming the variable. The
//! README's table lists them all (a tidy test keeps it complete).

use std::ffi::OsString;

use anyhow::{bail, Result};

/// The value of `name`, `None` when unset or empty.
pub fn var_os(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The value of `name` as text, `None` when unset or empty.
pub fn var(name: &str) -> Result<Option<String>> {
    match var_os(name) {
        None => Ok(None),
        Some(value) => match value.into_string() {
            Ok(text) => Ok(Some(text)),
            Err(raw) => bail!(
                "${name} is not valid UTF-8 ({}); set it to a plain path or value",
                raw.to_string_lossy()
            ),
        },
    }
}

/// Names the Python 3 that runs pip and venv (CI sets it: on Windows
/// `python3` is not a command, and `python` is the PyPy 2.7 host).
pub const PYTHON3_ENV: &str = "PYPY_EMBED_PYTHON3";

/// The Python 3 for pip and venv: `$PYPY_EMBED_PYTHON3`, else `python3` on PATH.
pub fn python3() -> std::path::PathBuf {
    var_os(PYTHON3_ENV)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("python3"))
}

/// [`var_os`] as a function, for code that takes the environment as an
/// argument so that its tests can give their own.
pub fn lookup(name: &str) -> Option<OsString> {
    var_os(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_empty_are_the_same() {
        // PATH is set on every machine that runs the tests; this name is not.
        assert!(var_os("PATH").is_some());
        assert_eq!(var_os("XTASK_TIDY_SURELY_UNSET_VARIABLE"), None);
        assert_eq!(var("XTASK_TIDY_SURELY_UNSET_VARIABLE").unwrap(), None);
    }
}
