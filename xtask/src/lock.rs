//! The xtask's side of the shared lock files (`pypy_archive::lock`): a run
//! that waits says on stderr what for and who holds it, and errors carry
//! the lock's path.

use std::path::Path;

use anyhow::{Context, Result};

pub use pypy_archive::lock::{lock_path_for, FileLock};

/// Takes the lock at `path`, waiting (and saying so, with `what` the lock
/// guards) while another run holds it.
pub fn acquire(path: &Path, what: &str) -> Result<FileLock> {
    FileLock::acquire(path, |holder| {
        eprintln!(
            "waiting for {what}: {} holds {}",
            holder.describe(),
            path.display()
        )
    })
    .with_context(|| format!("locking {}", path.display()))
}

/// For a cache entry made once by whichever run comes first: `None` when
/// `is_made()` says it is there (asked before the wait and again after it),
/// else the lock on `entry`, held while the caller makes it.
pub fn to_make(entry: &Path, what: &str, is_made: impl Fn() -> bool) -> Result<Option<FileLock>> {
    if is_made() {
        return Ok(None);
    }
    if let Some(parent) = entry.parent() {
        fs_err::create_dir_all(parent)?;
    }
    let lock = acquire(&lock_path_for(entry), what)?;
    Ok((!is_made()).then_some(lock))
}
