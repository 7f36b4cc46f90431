//! Stage 1e of build-pypy: the folder the source is translated in, the same
//! on every machine.
//!
//! PyPy keeps the path of its source tree in a few strings of libpypy (the
//! fallback `lib_pypy` and `lib-python` folders, among others), so two builds
//! of the same source give the same bytes only if they translate it in a
//! folder of the same name. The patched tree lives in the cache, whose path
//! depends on the user and on `--cache-dir`; the translation therefore runs
//! in a fresh copy at a fixed path from the target table (`build_dir`,
//! `/tmp/pypy-embed-build` on Linux and macOS), named after the recipe and
//! the source's identity. A lock beside the copy lets one build at a time use
//! it, and the copy is made anew every time, so nothing left there by another
//! run, a temp cleaner or another user is ever translated.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::targets::Target;

/// The copy a build translates and packages; the lock is held until it is dropped.
#[derive(Debug)]
pub struct BuildTree {
    pub root: PathBuf,
    _lock: Option<pypy_archive::lock::FileLock>,
}

/// Where a build of `recipe` from the source `source_id` is translated by
/// default: `<build_dir>/<recipe>-<16 hex digits of the source's identity>`.
pub fn default_path(host: &Target, recipe: &str, source_id: &str) -> PathBuf {
    let id = hex::encode(Sha256::digest(source_id.as_bytes()));
    Path::new(&host.build_dir).join(format!("{recipe}-{}", &id[..16]))
}

/// Makes `dest` a fresh copy of `tree` and holds its lock. When `dest` is
/// `tree` itself (a rebuild of an archive that was translated in the cache),
/// the tree is used where it is.
pub fn prepare(tree: &Path, dest: &Path) -> Result<BuildTree> {
    if same_folder(tree, dest) {
        return Ok(BuildTree {
            root: tree.to_path_buf(),
            _lock: None,
        });
    }
    let parent = dest
        .parent()
        .with_context(|| format!("the build folder {} has no parent", dest.display()))?;
    fs_err::create_dir_all(parent).map_err(|e| refused(dest, e))?;
    let lock_path = pypy_archive::lock::lock_path_for(dest);
    let since = std::time::Instant::now();
    let lock = pypy_archive::lock::FileLock::acquire(&lock_path, |holder| {
        eprintln!(
            "build-dir: waiting for another build that translates in {} ({}; lock {})",
            dest.display(),
            holder.describe(),
            lock_path.display()
        )
    })
    .map_err(|e| refused(dest, e))?;
    if since.elapsed().as_secs() >= 1 {
        eprintln!(
            "build-dir: waited {:.0} s for {}",
            since.elapsed().as_secs_f64(),
            dest.display()
        );
    }
    if std::fs::symlink_metadata(dest).is_ok() {
        remove(dest).map_err(|e| refused(dest, e))?;
    }
    eprintln!(
        "build-dir: copying {} to {}",
        tree.display(),
        dest.display()
    );
    // Copied beside the final name and renamed, so a crash never leaves a
    // half copy under the name a later build would take as complete.
    let staging = tempfile::Builder::new()
        .prefix(".copy-")
        .tempdir_in(parent)
        .map_err(|e| refused(dest, e))?;
    pypy_archive::fs::copy_tree(tree, staging.path())
        .with_context(|| format!("copying {} to {}", tree.display(), staging.path().display()))?;
    fs_err::rename(staging.keep(), dest).context("placing the build folder")?;
    Ok(BuildTree {
        root: dest.to_path_buf(),
        _lock: Some(lock),
    })
}

impl BuildTree {
    /// Removes the copy once the build has what it needs from it (its
    /// translation is in the cache, its archive in `dist/`).
    pub fn finish(self) -> Result<()> {
        if self._lock.is_some() {
            remove(&self.root)
                .with_context(|| format!("removing the build folder {}", self.root.display()))?;
        }
        Ok(())
    }
}

fn remove(path: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn refused(dest: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot use {} as the build folder ({e}); if another user owns it, pass \
         `--build-dir <folder of yours>` (the archive then records that folder, so its \
         bytes differ from builds made in the default one)",
        dest.display()
    )
}

/// Refuses a `--build-dir` that would put the copy over the source it copies.
pub fn check_not_inside(tree: &Path, dest: &Path) -> Result<()> {
    let (Ok(tree), Some(parent)) = (std::fs::canonicalize(tree), dest.parent()) else {
        return Ok(());
    };
    let parent = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
    if parent.starts_with(&tree) {
        bail!(
            "the build folder {} is inside the source tree {}; pass a folder outside it",
            dest.display(),
            tree.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path) -> PathBuf {
        let tree = dir.join("patched/pypy-x");
        fs_err::create_dir_all(tree.join("pypy/goal")).unwrap();
        fs_err::write(tree.join("pypy/goal/targetpypystandalone.py"), "x").unwrap();
        tree
    }

    #[test]
    fn the_copy_is_fresh_and_removed_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let tree = tree(dir.path());
        let dest = dir.path().join("build/pypy3.11-0123");
        // Left over by an earlier run: a stale output that must not survive.
        fs_err::create_dir_all(dest.join("pypy/goal")).unwrap();
        fs_err::write(dest.join("pypy/goal/libpypy3.11-c.so"), "stale").unwrap();
        let built = prepare(&tree, &dest).unwrap();
        assert_eq!(built.root, dest);
        assert!(dest.join("pypy/goal/targetpypystandalone.py").is_file());
        assert!(
            !dest.join("pypy/goal/libpypy3.11-c.so").exists(),
            "a stale file of an earlier build survived the copy"
        );
        built.finish().unwrap();
        assert!(!dest.exists(), "the build folder was not removed");
        assert!(tree.join("pypy/goal/targetpypystandalone.py").is_file());
    }

    #[test]
    fn the_tree_itself_is_used_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let tree = tree(dir.path());
        let built = prepare(&tree, &tree).unwrap();
        assert_eq!(built.root, tree);
        built.finish().unwrap();
        assert!(
            tree.join("pypy/goal/targetpypystandalone.py").is_file(),
            "finishing an in-place build removed the source tree"
        );
    }

    #[test]
    fn a_folder_that_cannot_be_made_is_refused_with_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let tree = tree(dir.path());
        let file = dir.path().join("a-file");
        fs_err::write(&file, "").unwrap();
        let err = prepare(&tree, &file.join("sub/pypy")).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("--build-dir"), "{text}");
    }

    #[test]
    fn a_build_folder_inside_the_source_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tree = tree(dir.path());
        let err = check_not_inside(&tree, &tree.join("pypy/copy")).unwrap_err();
        assert!(format!("{err}").contains("inside the source tree"), "{err}");
        check_not_inside(&tree, &dir.path().join("elsewhere/copy")).unwrap();
    }

    #[test]
    fn the_default_path_is_the_same_for_every_cache() {
        let host = crate::targets::get("x86_64-unknown-linux-gnu").unwrap();
        let a = default_path(&host, "pypy3.11-v7.3.23", "patched:abc");
        assert_eq!(a, default_path(&host, "pypy3.11-v7.3.23", "patched:abc"));
        assert!(a.starts_with("/tmp/pypy-embed-build"), "{}", a.display());
        assert_ne!(a, default_path(&host, "pypy3.11-v7.3.23", "patched:abd"));
    }
}
