//! Every environment variable embed-runtime reads goes through here (the
//! cache folder's through `pypy_archive::cache`, which follows the same
//! rule): an empty value counts as unset.

use std::ffi::OsString;

/// The value of `name`, `None` when unset or empty.
pub(crate) fn var_os(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// [`var_os`] as text. A value that is not UTF-8 keeps its readable part,
/// so that the setting it feeds refuses it by name.
pub(crate) fn var(name: &str) -> Option<String> {
    var_os(name).map(|v| v.to_string_lossy().into_owned())
}
