//! The one error type of the crate: every way finding, extracting, starting
//! or calling PyPy can fail, each saying what went wrong and what to do.

use std::fmt;
use std::path::PathBuf;

use crate::manifest::ManifestError;

/// A Python exception, as the bootstrap code caught it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonError {
    /// The exception's class, qualified by its module unless it is a builtin
    /// (`ZeroDivisionError`, `json.decoder.JSONDecodeError`).
    pub type_name: String,
    /// `str(exception)`.
    pub message: String,
    /// The whole traceback as `traceback.format_exception` writes it, ending
    /// with the `Type: message` line; chained exceptions included.
    pub traceback: String,
}

impl fmt::Display for PythonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The traceback already ends with `Type: message`; an empty one
        // (an exception never raised) falls back to that line alone.
        if self.traceback.trim().is_empty() {
            write!(f, "{}: {}", self.type_name, self.message)
        } else {
            write!(f, "{}", self.traceback.trim_end())
        }
    }
}

/// One place discovery looked at, and why it was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Searched {
    /// Which discovery step (`PYPY_EMBED_HOME`, `next to the executable`, …).
    pub source: String,
    /// The path or variable looked at.
    pub place: String,
    /// Why it was not used (`not set`, `does not exist`, …).
    pub outcome: String,
}

/// Everything that can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no PyPy found; searched, in order:\n{}\n\
             Put an archive made by `cargo xtask repackage` or `cargo xtask build-pypy` in the \
             workspace's `dist/` and rebuild, set PYPY_EMBED_ARCHIVE to an archive or \
             PYPY_EMBED_HOME to an extracted `pypy/` tree, or pass a path to `Builder::home`",
             format_searched(.searched))]
    NotFound { searched: Vec<Searched> },

    #[error("{source_name} names {path}, which cannot be used: {reason}")]
    BadHome {
        /// The discovery step that named the path.
        source_name: String,
        path: PathBuf,
        reason: String,
    },

    #[error("archive {archive} is not usable: {reason}")]
    Archive { archive: String, reason: String },

    #[error("{path}: {reason}")]
    Manifest {
        path: PathBuf,
        #[source]
        reason: ManifestError,
    },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot load libpypy from {path}: {reason}")]
    Load { path: PathBuf, reason: String },

    #[error(
        "pypy_setup_home found no standard library from {home} (returned {code}); \
         the tree should hold lib/pypy<ver>/site.py"
    )]
    StdlibNotFound { home: PathBuf, code: i32 },

    #[error(
        "the GC setting {setting} is {value:?}, which PyPy cannot use; expected {expected}. \
         Nothing was started"
    )]
    GcSetting {
        /// The builder method and its variable (`max_heap (PYPY_GC_MAX)`), or
        /// the variable alone when the value came from the environment.
        setting: String,
        value: String,
        /// The accepted form.
        expected: String,
    },

    #[error("cannot convert {what}: {source}")]
    Convert {
        /// What was being converted (`the result of __main__.score to i64`).
        what: String,
        #[source]
        source: crate::marshal::ConvertError,
    },

    #[error("PyPy failed to start: {0}")]
    Startup(String),

    #[error(
        "PyPy already runs in this process from {running}; it cannot start again from \
         {requested} (one PyPy per process: it cannot be shut down and restarted)"
    )]
    OtherHome {
        running: PathBuf,
        requested: PathBuf,
    },

    #[error(
        "an earlier attempt to start PyPy in this process failed after libpypy was \
         initialised, so it cannot be started again: {0}"
    )]
    Poisoned(String),

    #[error("Python raised an exception:\n{0}")]
    Python(PythonError),

    #[error("pypy_execute_source returned {0}; PyPy printed the exception's type and value to stderr (this raw call gives no traceback; use `Runtime::run`)")]
    ExecuteSource(i32),

    #[error("the Python function returned bytes that are not UTF-8: {0}")]
    NotUtf8(#[from] std::string::FromUtf8Error),

    #[error("the bridge between Rust and PyPy failed: {0}")]
    Bridge(String),
}

impl Error {
    /// The Python exception, when this error is one.
    pub fn python(&self) -> Option<&PythonError> {
        match self {
            Error::Python(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn archive(archive: impl fmt::Display, reason: impl Into<String>) -> Self {
        Error::Archive {
            archive: archive.to_string(),
            reason: reason.into(),
        }
    }
}

fn format_searched(searched: &[Searched]) -> String {
    searched
        .iter()
        .enumerate()
        .map(|(i, s)| format!("  {}. {}: {} ({})", i + 1, s.source, s.place, s.outcome))
        .collect::<Vec<_>>()
        .join("\n")
}
