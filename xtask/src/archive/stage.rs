//! Step 2: lay the parts out as PyPy's POSIX/Windows release tree in a
//! work folder, with our C header added.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::locate::{Found, Versions};
use crate::manifest;
use crate::targets::Target;

/// The C header we add to `include/`.
pub const HEADER: &str = include_str!("../../assets/pypy_embed.h");

/// A release tree being assembled in a temporary folder.
pub struct Staged {
    _work: tempfile::TempDir,
    /// The tree's root, i.e. the future top folder `pypy/`.
    pub top: PathBuf,
    pub target: Target,
    pub versions: Versions,
    /// The tree has no C headers, and the caller said that is fine.
    pub no_headers: bool,
}

/// Copies `found` into a fresh folder inside `work_parent` in the release
/// layout of `target`, and adds our C header.
pub fn stage(found: &Found, target: &Target, work_parent: &Path) -> Result<Staged> {
    fs_err::create_dir_all(work_parent)?;
    let work = tempfile::Builder::new()
        .prefix(".pypy-stage-")
        .tempdir_in(work_parent)
        .with_context(|| format!("creating a staging folder in {}", work_parent.display()))?;
    let top = work.path().join(manifest::TOP_DIR);
    let py = &found.versions.python;
    let put = |rel: &str, from: &Path| -> Result<()> {
        let dest = top.join(rel);
        fs_err::create_dir_all(dest.parent().unwrap())?;
        fs_err::copy(from, &dest)
            .with_context(|| format!("copying {} into the release tree", from.display()))?;
        Ok(())
    };
    put(&target.libpypy_path(py), &found.libpypy)?;
    // The names other tools link with (cffi's embedding mode: `-lpypy3-c`).
    for alias in target.link_alias_paths(py) {
        symlink(&target.libpypy_name(py), &top.join(alias))?;
    }
    if let Some(launcher) = &found.launcher {
        put(&target.launcher_path(py), launcher)?;
        for alias in target.launcher_alias_paths(py) {
            symlink(&target.launcher_name(py), &top.join(alias))?;
        }
    }
    copy_tree(&found.stdlib, &top.join(target.stdlib_dir(py)))?;
    let include = top.join(target.include_dir(py));
    if let Some(inc) = &found.include {
        copy_tree(inc, &include)?;
    }
    fs_err::create_dir_all(&include)?;
    fs_err::write(include.join(manifest::HEADER_NAME), HEADER)?;
    let pc = top.join(target.pkgconfig_path(py));
    fs_err::create_dir_all(pc.parent().context("the pkg-config file has a folder")?)?;
    fs_err::write(&pc, target.pkgconfig_text(py, &found.versions.pypy))?;
    if let Some(license) = &found.license {
        put("LICENSE", license)?;
    }
    if let Some(readme) = &found.readme {
        put("README.rst", readme)?;
    }
    Ok(Staged {
        _work: work,
        top,
        target: target.clone(),
        versions: found.versions.clone(),
        no_headers: false,
    })
}

/// Windows trees have no links (the table lists no aliases for them), so
/// this runs where links can be made; elsewhere it says so.
fn symlink(target: &str, link: &Path) -> Result<()> {
    pypy_archive::fs::symlink(target, link)
        .with_context(|| format!("creating the link {}", link.display()))
}

/// Files a distribution adds to the stdlib that do not belong in our archive.
/// `EXTERNALLY-MANAGED` (PEP 668) would make pip refuse to install into the
/// relocated PyPy, which no distribution manages.
const DROPPED: [&str; 1] = ["EXTERNALLY-MANAGED"];

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    // Bytecode caches are left out: archiving fixes every mtime, which makes
    // mtime-checked `.pyc` files stale (PyPy would rewrite them at the first
    // start of each copy), and running the interpreter in the tree while
    // packaging may rewrite them, which would break reproducibility. PyPy
    // writes fresh ones wherever the extracted tree is writable. A link
    // leaving the tree (e.g. to a distribution's shared copy) would dangle
    // after relocation: the copy rule puts what it names in its place.
    let skip = |rel: &Path| {
        rel.file_name().is_some_and(|n| n == "__pycache__")
            || (rel.components().count() == 1 && DROPPED.iter().any(|d| rel == Path::new(d)))
    };
    pypy_archive::fs::copy_tree_except(from, to, skip)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}
