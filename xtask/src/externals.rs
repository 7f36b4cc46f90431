//! Stage 1c of build-pypy on Windows: PyPy's prebuilt C dependencies.
//!
//! PyPy's Windows build reads libffi, OpenSSL, sqlite, Tcl/Tk, bzip2, zlib,
//! expat and xz from `<source>/externals`, which its `get_externals.py`
//! fills by cloning `github.com/pypy/externals` and checking out the branch
//! for the compiler (`win64_14x`). We do the same with the repository,
//! branch and commit pinned in the target table: the clone is kept in the
//! cache under its commit (it appears by one rename, complete), checked to
//! be at that commit, and copied into the tree the translation reads.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::targets::Externals;

/// Where a checkout of `pin` lives in the cache.
pub fn cache_dir(cache_root: &Path, pin: &Externals) -> PathBuf {
    cache_root.join("externals").join(&pin.commit)
}

/// The folder of the source tree PyPy's build reads them from.
pub fn tree_dir(tree: &Path) -> PathBuf {
    tree.join("externals")
}

/// The git commands that make a checkout of `pin` at `dest`, in order; run
/// by [`ensure`] and printed by `build-pypy --plan`.
pub fn commands(pin: &Externals, dest: &Path) -> Vec<Vec<String>> {
    let dest = dest.display().to_string();
    vec![
        vec![
            "git".into(),
            "clone".into(),
            "--quiet".into(),
            "--branch".into(),
            pin.branch.clone(),
            pin.url.clone(),
            dest.clone(),
        ],
        vec![
            "git".into(),
            "-C".into(),
            dest,
            "checkout".into(),
            "--quiet".into(),
            "--detach".into(),
            pin.commit.clone(),
        ],
    ]
}

/// Makes sure `<tree>/externals` holds `pin`'s commit, cloning it into the
/// cache first if needed. Returns the folder in the tree.
pub fn ensure(sh: &Shell, pin: &Externals, cache_root: &Path, tree: &Path) -> Result<PathBuf> {
    let cached = cache_dir(cache_root, pin);
    if !cached.is_dir() {
        clone_into_cache(sh, pin, &cached)?;
    }
    let head = head_of(sh, &cached)?;
    if head != pin.commit {
        bail!(
            "the cached externals at {} are at {head}, not the pinned {}; delete that \
             folder and run again",
            cached.display(),
            pin.commit
        );
    }
    let dest = tree_dir(tree);
    if dest.is_dir() && head_of(sh, &dest).is_ok_and(|h| h == pin.commit) {
        return Ok(dest);
    }
    if dest.exists() {
        fs_err::remove_dir_all(&dest)
            .with_context(|| format!("replacing the externals in {}", tree.display()))?;
    }
    pypy_archive::fs::copy_tree(&cached, &dest)
        .with_context(|| format!("copying the externals into {}", tree.display()))?;
    Ok(dest)
}

/// Clones into a temporary folder beside `cached`, checks out the commit,
/// and renames it into place.
fn clone_into_cache(sh: &Shell, pin: &Externals, cached: &Path) -> Result<()> {
    let parent = cached
        .parent()
        .context("the externals cache has a parent")?;
    fs_err::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-externals-")
        .tempdir_in(parent)?;
    let checkout = tmp.path().join("checkout");
    eprintln!(
        "externals: cloning {} ({} at {})",
        pin.url, pin.branch, pin.commit
    );
    for argv in commands(pin, &checkout) {
        let (program, args) = argv.split_first().context("a command has a program")?;
        cmd!(sh, "{program} {args...}").run().with_context(|| {
            format!(
                "fetching PyPy's externals for Windows ({} {}); git is needed, and the \
                 network",
                pin.url, pin.branch
            )
        })?;
    }
    // Another run may have put the same commit there first.
    pypy_archive::fs::place_dir(&checkout, cached)
        .context("moving the externals into the cache")?;
    Ok(())
}

fn head_of(sh: &Shell, dir: &Path) -> Result<String> {
    crate::git::head(sh, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real repository with a branch, served to git by path, standing in
    /// for github.com/pypy/externals.
    fn upstream(dir: &Path) -> Externals {
        let sh = Shell::new().unwrap();
        let repo = dir.join("externals-upstream");
        fs_err::create_dir_all(repo.join("bin")).unwrap();
        fs_err::write(repo.join("bin/libffi-8.dll"), "not really a DLL").unwrap();
        let _dir = sh.push_dir(&repo);
        let _home = sh.push_env("GIT_CONFIG_NOSYSTEM", "1");
        cmd!(sh, "git init --quiet -b main").run().unwrap();
        cmd!(sh, "git checkout --quiet -b win64_14x").run().unwrap();
        cmd!(sh, "git add -A").run().unwrap();
        cmd!(
            sh,
            "git -c user.name=t -c user.email=t@t commit --quiet -m deps"
        )
        .run()
        .unwrap();
        let commit = crate::git::head(&sh, &repo).unwrap();
        Externals {
            url: repo.display().to_string(),
            branch: "win64_14x".into(),
            commit,
        }
    }

    #[test]
    fn the_pinned_commit_is_cloned_once_and_copied_into_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let pin = upstream(dir.path());
        let sh = Shell::new().unwrap();
        let cache = dir.path().join("cache");
        let tree = dir.path().join("tree");
        fs_err::create_dir_all(&tree).unwrap();
        let got = ensure(&sh, &pin, &cache, &tree).unwrap();
        assert_eq!(got, tree.join("externals"));
        assert!(got.join("bin/libffi-8.dll").is_file());
        assert!(cache_dir(&cache, &pin).join("bin/libffi-8.dll").is_file());

        // A new commit upstream changes nothing: the pin decides.
        fs_err::write(dir.path().join("externals-upstream/new.txt"), "x").unwrap();
        let other_tree = dir.path().join("tree2");
        fs_err::create_dir_all(&other_tree).unwrap();
        ensure(&sh, &pin, &cache, &other_tree).unwrap();
        assert!(!other_tree.join("externals/new.txt").exists());
    }

    #[test]
    fn a_commit_not_on_the_branch_is_an_error_and_caches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut pin = upstream(dir.path());
        pin.commit = "0123456789012345678901234567890123456789".into();
        let sh = Shell::new().unwrap();
        let cache = dir.path().join("cache");
        let err = ensure(&sh, &pin, &cache, dir.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("fetching PyPy's externals"),
            "{err:#}"
        );
        assert!(!cache_dir(&cache, &pin).exists());
    }

    #[test]
    fn commands_name_the_branch_and_the_commit() {
        let pin = Externals {
            url: "https://github.com/pypy/externals".into(),
            branch: "win64_14x".into(),
            commit: "589c9efc3147cba493576eb2cabbed8e7252e846".into(),
        };
        let lines: Vec<String> = commands(&pin, Path::new("/c/x"))
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            lines,
            [
                "git clone --quiet --branch win64_14x https://github.com/pypy/externals /c/x",
                "git -C /c/x checkout --quiet --detach 589c9efc3147cba493576eb2cabbed8e7252e846",
            ]
        );
    }
}
