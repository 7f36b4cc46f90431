//! Exclusive lock files, so that concurrent runs on one cache take turns
//! instead of racing. The OS releases a lock when its file is closed or its
//! process dies, so a crashed run never leaves the cache locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// Held while a cache entry is written; dropping it releases the lock.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// Takes the lock at `path` (created if needed); if another process
    /// holds it, calls `on_wait` once and waits for it.
    pub fn acquire(path: &Path, on_wait: impl FnOnce()) -> io::Result<FileLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                on_wait();
                file.lock()?;
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        Ok(FileLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lock file guarding `target`: `<target>.lock` beside it.
pub fn lock_path_for(target: &Path) -> PathBuf {
    let mut name = target
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    target.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_path_sits_beside_the_target() {
        assert_eq!(
            lock_path_for(Path::new("/c/sources/pypy-v1")),
            Path::new("/c/sources/pypy-v1.lock")
        );
    }

    #[test]
    fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry.lock");
        let first = FileLock::acquire(&path, || panic!("nobody holds it yet")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let _second = FileLock::acquire(&path, || tx.send(()).unwrap()).unwrap();
            })
        };
        // The second holder reports that it waits, and gets the lock once
        // the first is dropped.
        rx.recv().unwrap();
        drop(first);
        waiter.join().unwrap();
    }
}
