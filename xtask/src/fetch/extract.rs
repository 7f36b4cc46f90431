//! Unpacking source releases into place: under a lock, into a temporary
//! folder beside the destination, renamed into place when whole.
//!
//! The reading and the safety checks are `pypy_archive::extract`'s (the one
//! safe reader): every entry must stay inside the destination, and absolute
//! paths, `..`, links that resolve outside, hard links and device or FIFO
//! entries are refused with an error naming the entry.

use std::path::Path;

use anyhow::{bail, Context, Result};
use pypy_archive::extract::{self, Format};

use crate::lock::{self, lock_path_for, FileLock};

/// Unpacks `archive` into `dest`, which must not exist yet. The archive type
/// comes from its name (`.tar.bz2`/`.tbz2`, `.tar.gz`/`.tgz`, `.zip`).
pub fn extract_archive(archive: &Path, dest: &Path) -> Result<()> {
    let _lock = lock_for(dest)?;
    if dest.exists() {
        bail!(
            "cannot extract {} into {}: it already exists; remove it or choose another folder",
            archive.display(),
            dest.display()
        );
    }
    unpack_into_place(archive, dest)
}

/// Like [`extract_archive`], for destinations named after the archive's
/// hash: an existing `dest` is a finished extraction (it only appears by
/// rename) and is kept. Returns whether this call unpacked it.
pub fn extract_once(archive: &Path, dest: &Path) -> Result<bool> {
    if dest.is_dir() {
        return Ok(false);
    }
    let _lock = lock_for(dest)?;
    // Another run may have finished while we waited for the lock.
    if dest.is_dir() {
        return Ok(false);
    }
    unpack_into_place(archive, dest)?;
    Ok(true)
}

fn lock_for(dest: &Path) -> Result<FileLock> {
    let parent = parent_of(dest)?;
    fs_err::create_dir_all(parent).context("creating the extraction folder")?;
    lock::acquire(&lock_path_for(dest), "the same unpacked tree")
}

fn parent_of(dest: &Path) -> Result<&Path> {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p),
        _ => Ok(Path::new(".")),
    }
}

fn unpack_into_place(archive: &Path, dest: &Path) -> Result<()> {
    // Before anything is created: an unknown kind of archive is the caller's mistake.
    Format::of(archive)?;
    let name = dest
        .file_name()
        .with_context(|| format!("{} names no folder", dest.display()))?;
    let prefix = format!(".{}.tmp", name.to_string_lossy());
    remove_stale_temporaries(parent_of(dest)?, &prefix)?;
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .rand_bytes(TEMP_SUFFIX_LEN)
        .tempdir_in(parent_of(dest)?)
        .context("creating a temporary extraction folder")?;
    eprintln!(
        "fetch: extracting {} into {}",
        archive.display(),
        dest.display()
    );
    let root = tmp.path();
    extract::unpack(archive, root)
        .with_context(|| format!("unsafe or broken archive {}", archive.display()))?;
    // tempfile makes the folder private (0700); the tree should read like any other.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))
            .context("opening up the extracted folder's permissions")?;
    }
    pypy_archive::fs::place_dir(&tmp.keep(), dest)
        .context("moving the extracted tree into place")?;
    Ok(())
}

const TEMP_SUFFIX_LEN: usize = 6;

/// Temporary folders of runs that died mid-extraction (a source tree is
/// hundreds of MB). Called with the destination's lock held, so no live run
/// owns one of them.
fn remove_stale_temporaries(parent: &Path, prefix: &str) -> Result<()> {
    for entry in fs_err::read_dir(parent)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // tempfile's names: the prefix and six random letters or digits.
        let ours = name.strip_prefix(prefix).is_some_and(|rest| {
            rest.len() == TEMP_SUFFIX_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if ours {
            eprintln!(
                "fetch: removing {} left by an interrupted run",
                entry.path().display()
            );
            fs_err::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}
