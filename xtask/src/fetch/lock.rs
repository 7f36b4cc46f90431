//! The xtask's side of the shared cache lock (`pypy_archive::lock`): it
//! says on stderr why a run waits, and errors carry the lock's path.

use std::path::Path;

use anyhow::{Context, Result};

pub use pypy_archive::lock::{lock_path_for, FileLock};

/// Takes the lock at `path`, waiting (and saying so) while another run holds it.
pub fn acquire(path: &Path) -> Result<FileLock> {
    FileLock::acquire(path, |holder| {
        eprintln!(
            "fetch: waiting for {} ({} is writing the same cache entry)",
            path.display(),
            holder.describe()
        )
    })
    .with_context(|| format!("locking {}", path.display()))
}
