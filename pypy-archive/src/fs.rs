//! Putting files and folders in place so that readers see the old contents
//! or the new, never half of either: everything is made beside its final
//! place (same file system) and appears there by one rename.
//!
//! - [`write_atomic`]: a file's bytes.
//! - [`place_dir`]: a finished folder that any run may make, the first to
//!   finish wins (an unpacked release, a patched tree).
//! - [`replace_dir`]: a finished folder that takes the place of an older
//!   one (a cache entry made again).
//!
//! And [`copy_tree`], the plain copy of a folder into another, and [`symlink`].

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A symbolic link at `link` pointing to `target`; an error where the
/// system has none to make (Windows without privileges).
pub fn symlink(target: impl AsRef<Path>, link: &Path) -> io::Result<()> {
    #[cfg(unix)]
    return std::os::unix::fs::symlink(target, link);
    #[cfg(not(unix))]
    {
        let _ = (target, link);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "symbolic links are made on Unix only",
        ))
    }
}

/// Replaces (or creates) the file at `path` with `bytes` in one rename.
/// The folder must exist. On failure the old file is untouched and no
/// temporary file is left behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Copies the file `from` to `to` in one rename: a copy interrupted half-way
/// leaves only a temporary file beside `to` (removed when the process can),
/// never a partial `to`. Permissions are copied with the bytes.
pub fn copy_atomic(from: &Path, to: &Path) -> io::Result<()> {
    let dir = match to.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::copy(from, tmp.path())?;
    tmp.persist(to).map_err(|e| e.error)?;
    Ok(())
}

/// Renames the finished folder `staged` to `dest`, unless another run put a
/// folder there first: then `staged` is removed and that one is kept.
/// Returns whether `staged` became `dest`.
pub fn place_dir(staged: &Path, dest: &Path) -> io::Result<bool> {
    match std::fs::rename(staged, dest) {
        Ok(()) => Ok(true),
        Err(_) if dest.is_dir() => {
            std::fs::remove_dir_all(staged)?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Makes the finished folder `staged` take the place of `dest`, whether or
/// not `dest` exists. An old `dest` is first renamed aside (processes still
/// using its files keep them open), then removed; call it with the lock
/// that guards `dest` held.
pub fn replace_dir(staged: &Path, dest: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(dest).is_ok() {
        let aside = aside_name(dest)?;
        std::fs::rename(dest, &aside)?;
        std::fs::rename(staged, dest)?;
        // Best effort: a file still open elsewhere (Windows) may refuse; the
        // name says what it is.
        let _ = std::fs::remove_dir_all(&aside);
        return Ok(());
    }
    std::fs::rename(staged, dest)
}

/// Copies the folder `from` into `to` (created if missing; what is there
/// already stays unless a file of `from` has its name), with the one rule
/// for links every copy of the project follows: on Unix, a relative link
/// whose target lies inside `from` is copied as the same link; one that
/// leads outside, or an absolute one, which would dangle once the copy
/// moves, is replaced by a copy of what it names; one that names nothing
/// stays a link. Elsewhere the file a link names is copied.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    copy_tree_except(from, to, |_| false)
}

/// [`copy_tree`], leaving out every entry for which `skip` (given the path
/// relative to `from`) says so, and a skipped folder's whole contents.
pub fn copy_tree_except(from: &Path, to: &Path, skip: impl Fn(&Path) -> bool) -> io::Result<()> {
    let top = std::fs::canonicalize(from)?;
    let walker = walkdir::WalkDir::new(from)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.path()
                .strip_prefix(from)
                .map_or(true, |rel| rel.as_os_str().is_empty() || !skip(rel))
        });
    for entry in walker {
        let entry = entry.map_err(io::Error::other)?;
        let rel = entry.path().strip_prefix(from).map_err(io::Error::other)?;
        let dest = to.join(rel);
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&dest)?;
        } else if kind.is_symlink() && cfg!(unix) {
            let target = std::fs::read_link(entry.path())?;
            match std::fs::canonicalize(entry.path()) {
                // Absolute links break when the tree moves, even inside it.
                Ok(named) if target.is_absolute() || !named.starts_with(&top) => {
                    std::fs::copy(entry.path(), &dest)?;
                }
                _ => {
                    if std::fs::symlink_metadata(&dest).is_ok() {
                        std::fs::remove_file(&dest)?;
                    }
                    #[cfg(unix)]
                    std::os::unix::fs::symlink(&target, &dest)?;
                }
            }
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// A free sibling name for an old folder on its way out.
fn aside_name(dest: &Path) -> io::Result<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} names no folder", dest.display())))?
        .to_string_lossy()
        .into_owned();
    for attempt in 0u32.. {
        let candidate =
            dest.with_file_name(format!(".{name}.old-{}-{attempt}", std::process::id()));
        if std::fs::symlink_metadata(&candidate).is_err() {
            return Ok(candidate);
        }
    }
    unreachable!("some attempt number is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(path: &Path, file: &str) {
        std::fs::create_dir_all(path).unwrap();
        std::fs::write(path.join(file), file).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_link_out_of_the_tree_becomes_a_copy_and_skipped_folders_stay_out() {
        let dir = tempfile::tempdir().unwrap();
        let (a, outside) = (dir.path().join("a"), dir.path().join("outside"));
        folder(&a.join("lib"), "libz.a");
        folder(&a.join("lib/__pycache__"), "x.pyc");
        folder(&outside, "shared.txt");
        std::os::unix::fs::symlink(outside.join("shared.txt"), a.join("lib/shared.txt")).unwrap();
        std::os::unix::fs::symlink("libz.a", a.join("lib/libz.so")).unwrap();
        std::os::unix::fs::symlink("gone", a.join("lib/dangling")).unwrap();
        let to = dir.path().join("to");
        copy_tree_except(&a, &to, |rel| rel.ends_with("__pycache__")).unwrap();
        let shared = to.join("lib/shared.txt");
        assert!(!std::fs::symlink_metadata(&shared).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&shared).unwrap(), "shared.txt");
        assert_eq!(
            std::fs::read_link(to.join("lib/libz.so")).unwrap(),
            Path::new("libz.a")
        );
        assert_eq!(
            std::fs::read_link(to.join("lib/dangling")).unwrap(),
            Path::new("gone")
        );
        assert!(!to.join("lib/__pycache__").exists());
    }

    #[test]
    fn an_atomic_copy_replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        std::fs::write(&from, "new").unwrap();
        std::fs::write(&to, "old").unwrap();
        copy_atomic(&from, &to).unwrap();
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        let err = copy_atomic(&dir.path().join("missing"), &to).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn copy_tree_merges_and_keeps_links() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        folder(&a.join("lib"), "libz.a");
        folder(&b.join("lib"), "libbz2.a");
        #[cfg(unix)]
        std::os::unix::fs::symlink("libz.a", a.join("lib/libz.so")).unwrap();
        let to = dir.path().join("to");
        copy_tree(&a, &to).unwrap();
        copy_tree(&b, &to).unwrap();
        assert!(to.join("lib/libz.a").is_file() && to.join("lib/libbz2.a").is_file());
        #[cfg(unix)]
        assert_eq!(
            std::fs::read_link(to.join("lib/libz.so")).unwrap(),
            Path::new("libz.a")
        );
    }

    #[test]
    fn place_dir_keeps_the_first_finished_folder() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("tree");
        folder(&dir.path().join("a"), "first");
        folder(&dir.path().join("b"), "second");
        assert!(place_dir(&dir.path().join("a"), &dest).unwrap());
        assert!(!place_dir(&dir.path().join("b"), &dest).unwrap());
        assert!(dest.join("first").is_file() && !dest.join("second").exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "the loser is removed: {names:?}");
    }

    #[test]
    fn replace_dir_swaps_in_the_new_folder_and_removes_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("entry");
        folder(&dir.path().join("new1"), "one");
        replace_dir(&dir.path().join("new1"), &dest).unwrap();
        folder(&dir.path().join("new2"), "two");
        replace_dir(&dir.path().join("new2"), &dest).unwrap();
        assert!(dest.join("two").is_file() && !dest.join("one").exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "nothing is left aside: {names:?}");
    }

    #[test]
    fn replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
    }

    #[test]
    fn a_missing_folder_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(&dir.path().join("no/such/f.txt"), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
