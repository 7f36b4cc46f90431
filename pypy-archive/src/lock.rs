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

/// Who holds a lock, as the holder wrote it into the lock file: its process
/// id and when it took the lock (seconds since 1970). Either may be unknown
/// (a lock file written by an older version, or not yet written).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    pub since: Option<u64>,
}

impl Holder {
    fn read(path: &Path) -> Holder {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut words = text.split_whitespace();
        Holder {
            pid: words.next().and_then(|w| w.parse().ok()),
            since: words.next().and_then(|w| w.parse().ok()),
        }
    }

    /// "process 123, for 95 s", or what of it is known.
    pub fn describe(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match (self.pid, self.since) {
            (Some(pid), Some(since)) => {
                format!("process {pid}, for {} s", now.saturating_sub(since))
            }
            (Some(pid), None) => format!("process {pid}"),
            _ => "another process".to_string(),
        }
    }
}

impl FileLock {
    /// Takes the lock at `path` (created if needed); if another process
    /// holds it, calls `on_wait` once with what the holder wrote of itself,
    /// and waits for it. The new holder writes its own process id and the
    /// time into the file, for the next one who waits.
    pub fn acquire(path: &Path, on_wait: impl FnOnce(&Holder)) -> io::Result<FileLock> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                on_wait(&Holder::read(path));
                file.lock()?;
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Only a courtesy to whoever waits next: a failure to write is no error.
        let _ = file.set_len(0).and_then(|()| {
            use std::io::{Seek, Write};
            file.seek(io::SeekFrom::Start(0))?;
            writeln!(file, "{} {since}", std::process::id())
        });
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
        let first = FileLock::acquire(&path, |_| panic!("nobody holds it yet")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let _second =
                    FileLock::acquire(&path, |holder| tx.send(holder.clone()).unwrap()).unwrap();
            })
        };
        // The second holder reports that it waits, with who holds the lock,
        // and gets the lock once the first is dropped.
        let holder = rx.recv().unwrap();
        assert_eq!(holder.pid, Some(std::process::id()));
        assert!(holder.since.is_some());
        assert!(
            holder
                .describe()
                .starts_with(&format!("process {}, for ", std::process::id())),
            "{}",
            holder.describe()
        );
        drop(first);
        waiter.join().unwrap();
    }
}
