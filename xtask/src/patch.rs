//! Stage 1b of build-pypy: a recipe's patches, applied in order onto a
//! patched copy of the source tree.
//!
//! The pristine tree (the cached release, or the user's `--source-dir`) is
//! never written to. The copy lives in the work folder under a key made of
//! the source's identity and every patch's sha256; it is built in a
//! temporary folder and appears by one rename only once every patch applied,
//! so a later run never takes a half-patched tree. Patches are applied with
//! `git apply`, which works outside a repository and on every OS.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::Shell;

use crate::fetch::{self, FetchOptions};
use crate::manifest::PatchRecord;
use crate::recipe::{PatchFrom, Recipe};
use crate::stage::Command;

/// A patch ready to apply: its bytes are on disk and checked.
#[derive(Debug, Clone)]
pub struct Ready {
    pub path: PathBuf,
    pub record: PatchRecord,
}

/// The tree a translation reads, and what the manifest says of it.
#[derive(Debug, Clone)]
pub struct Patched {
    /// The patched copy, or the pristine tree when there is nothing to apply.
    pub root: PathBuf,
    /// The identity for the build cache: the source's, with every patch's sha256.
    pub source_id: String,
    pub patches: Vec<PatchRecord>,
    /// The recipe lists patches and `--no-patches` left them out.
    pub skipped: bool,
}

/// Applies `recipe`'s patches to `tree` (whose identity is `source_id`),
/// unless `opts.no_patches`.
pub fn apply_recipe_patches(
    sh: &Shell,
    recipe: &Recipe,
    tree: &Path,
    source_id: &str,
    opts: &FetchOptions,
) -> Result<Patched> {
    if recipe.patches.is_empty() || opts.no_patches {
        if !recipe.patches.is_empty() {
            eprintln!(
                "patch: --no-patches: building the release as published, without {}",
                names(recipe)
            );
        }
        return Ok(Patched {
            root: tree.to_path_buf(),
            source_id: source_id.to_string(),
            patches: Vec::new(),
            skipped: !recipe.patches.is_empty(),
        });
    }
    let ready = fetch_patches(recipe, opts)?;
    let identity = identity(source_id, &ready);
    let dest = patched_dir(recipe, opts, &identity);
    if dest.is_dir() && pristine_marker(&dest).is_file() {
        eprintln!("patch: reusing {}", dest.display());
    } else if dest.is_dir() {
        // Versions before the fixed build folder translated in this copy
        // and left their products in it (built modules, RPython's _cache):
        // a build from it would not be a build of the source.
        eprintln!(
            "patch: {} is not known to be as patched (an older version may have built in it); \
             patching a fresh copy",
            dest.display()
        );
        apply_into(sh, tree, &ready, &dest)?;
    } else {
        eprintln!(
            "patch: applying {} to a copy of {}",
            names(recipe),
            tree.display()
        );
        apply_into(sh, tree, &ready, &dest)?;
    }
    Ok(Patched {
        root: fs_err::canonicalize(&dest)?,
        source_id: format!("patched:{identity}"),
        patches: ready.into_iter().map(|r| r.record).collect(),
        skipped: false,
    })
}

/// Where the copy patched into `identity` lives: `<work>/patched/<recipe>-<id>`.
pub fn patched_dir(recipe: &Recipe, opts: &FetchOptions, identity: &str) -> PathBuf {
    opts.work_dir.join("patched").join(format!(
        "{}-{}",
        recipe.name,
        &identity[..16.min(identity.len())]
    ))
}

/// The argv that applies `patch` in the current folder.
pub fn apply_command(patch: &Path) -> Vec<String> {
    vec![
        "git".into(),
        "apply".into(),
        "--whitespace=nowarn".into(),
        "-p1".into(),
        patch.display().to_string(),
    ]
}

/// The command that applies `patch` in `copy` (run there): without a
/// ceiling, a copy inside some repository would make git resolve the
/// patch's paths against that repository's top.
pub fn apply(patch: &Path, copy: &Path) -> Command {
    Command::new(apply_command(patch)).env(
        "GIT_CEILING_DIRECTORIES",
        copy.parent().unwrap_or(copy).as_os_str(),
    )
}

fn names(recipe: &Recipe) -> String {
    recipe
        .patches
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every patch on disk and checked: ours read from `recipes/patches/`,
/// upstream's downloaded (or taken from the cache or mirror) and verified.
pub fn fetch_patches(recipe: &Recipe, opts: &FetchOptions) -> Result<Vec<Ready>> {
    ready_patches(recipe, opts, true)
}

/// The patches as the plan shows them: upstream's where the download
/// would keep them, not fetched.
pub fn planned_patches(recipe: &Recipe, opts: &FetchOptions) -> Result<Vec<Ready>> {
    ready_patches(recipe, opts, false)
}

fn ready_patches(recipe: &Recipe, opts: &FetchOptions, download: bool) -> Result<Vec<Ready>> {
    recipe
        .patches
        .iter()
        .map(|patch| {
            let (path, sha256, url) = match &patch.from {
                PatchFrom::File(path) => {
                    let sha256 = crate::hash::sha256_file(path)
                        .with_context(|| format!("reading the patch {}", path.display()))?;
                    (path.clone(), sha256, None)
                }
                // Verified against the recipe's sha256 as it is downloaded.
                PatchFrom::Url { url, sha256 } => {
                    let path = if download {
                        fetch::download_verified(url, sha256, opts)
                            .with_context(|| format!("fetching the patch {}", patch.name))?
                    } else {
                        fetch::cached_path(url, sha256, opts)?
                    };
                    (path, sha256.clone(), Some(url.clone()))
                }
            };
            Ok(Ready {
                path,
                record: PatchRecord {
                    name: patch.name.clone(),
                    sha256,
                    url,
                },
            })
        })
        .collect()
}

/// The source's identity and every patch's name and sha256, in order.
pub fn identity(source_id: &str, patches: &[Ready]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source_id.as_bytes());
    for patch in patches {
        hasher.update(b"\0");
        hasher.update(patch.record.name.as_bytes());
        hasher.update(b"\0");
        hasher.update(patch.record.sha256.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Copies `tree` and applies `patches` in a temporary folder beside `dest`,
/// then renames it to `dest`. On failure nothing is left at `dest`.
pub fn apply_into(sh: &Shell, tree: &Path, patches: &[Ready], dest: &Path) -> Result<()> {
    let parent = dest.parent().context("the patched tree has a parent")?;
    fs_err::create_dir_all(parent).context("creating the folder for patched trees")?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-patched-")
        .tempdir_in(parent)
        .context("creating a temporary folder for the patched tree")?;
    copy_tree(tree, tmp.path())
        .with_context(|| format!("copying {} to patch it", tree.display()))?;
    for patch in patches {
        apply_one(sh, tmp.path(), patch)?;
    }
    let marker = pristine_marker(dest);
    if dest.is_dir() && marker.is_file() {
        // Another run finished the same tree first; its copy is as good.
        fs_err::remove_dir_all(tmp.path())?;
        return Ok(());
    }
    pypy_archive::fs::replace_dir(&tmp.keep(), dest)
        .context("moving the patched tree into place")?;
    pypy_archive::fs::write_atomic(&marker, b"")
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok(())
}

/// Beside a patched tree (not inside it, where it would be part of the
/// source): written once the tree is complete, and only by this version,
/// whose builds never write into the tree.
fn pristine_marker(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".pristine");
    dest.with_file_name(name)
}

/// `git apply` of one patch in `root`, or an error naming the patch, the file and the hunk.
fn apply_one(sh: &Shell, root: &Path, patch: &Ready) -> Result<()> {
    let _dir = sh.push_dir(root);
    let path = &patch.path;
    let output = apply(path, root)
        .cmd(sh)?
        .quiet()
        .ignore_status()
        .output()
        .context("running `git apply` (git is needed to apply a recipe's patches)")?;
    if output.status.success() {
        eprintln!("patch: applied {}", patch.record.name);
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = fs_err::read_to_string(path).unwrap_or_default();
    bail!(
        "the patch {} does not apply to this source: {}\n(git apply said: {})\n\
         The patch may be meant for another release; fix the recipe's patch list, or \
         build the release as published with --no-patches",
        patch.record.name,
        failing_hunk(&stderr, &text),
        stderr.trim()
    )
}

/// "hunk `@@ -63,14 +63,25 @@` of pypy/x.py" from git's `patch failed: FILE:LINE`.
fn failing_hunk(stderr: &str, patch: &str) -> String {
    let failed = stderr
        .lines()
        .find_map(|l| l.split("patch failed: ").nth(1))
        .and_then(|rest| rest.trim().rsplit_once(':'))
        .map(|(file, line)| (file.to_string(), line.parse::<u64>().unwrap_or(0)));
    let Some((file, line)) = failed else {
        // Not a context mismatch: a missing file, say; git's own words say which.
        return match stderr.lines().find_map(|l| l.strip_prefix("error: ")) {
            Some(reason) => reason.to_string(),
            None => "git gave no reason".to_string(),
        };
    };
    let mut in_file = false;
    for l in patch.lines() {
        if let Some(name) = l.strip_prefix("+++ ") {
            in_file = name.trim().trim_start_matches("b/") == file;
        } else if in_file && l.starts_with("@@ ") {
            let start = l
                .trim_start_matches("@@ -")
                .split([',', ' '])
                .next()
                .and_then(|n| n.parse::<u64>().ok());
            if start == Some(line) {
                let header = l.split(" @@").next().unwrap_or(l);
                return format!("hunk `{header} @@` of {file} (at line {line}) does not match");
            }
        }
    }
    format!("{file} does not match at line {line}")
}

/// Copies a source tree, leaving out a checkout's `.git` (links as
/// `pypy_archive::fs::copy_tree` says).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    pypy_archive::fs::copy_tree_except(from, to, |rel| rel.starts_with(".git"))
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "\
--- a/pkg/mod.py
+++ b/pkg/mod.py
@@ -1,3 +1,3 @@
 a = 1
-b = 2
+b = 3
 c = 4
@@ -10,3 +10,3 @@
 x = 1
-y = 2
+y = 3
 z = 4
";

    #[test]
    fn the_failing_hunk_is_named() {
        let said = "error: patch failed: pkg/mod.py:10\nerror: pkg/mod.py: patch does not apply";
        assert_eq!(
            failing_hunk(said, PATCH),
            "hunk `@@ -10,3 +10,3 @@` of pkg/mod.py (at line 10) does not match"
        );
        assert_eq!(
            failing_hunk("error: other.py: No such file or directory", PATCH),
            "other.py: No such file or directory"
        );
    }

    #[test]
    fn identity_covers_every_patch_in_order() {
        let ready = |name: &str, sha: &str| Ready {
            path: PathBuf::new(),
            record: PatchRecord {
                name: name.into(),
                sha256: sha.into(),
                url: None,
            },
        };
        let one = identity("sha256:x", &[ready("a", "1"), ready("b", "2")]);
        assert_ne!(
            one,
            identity("sha256:x", &[ready("b", "2"), ready("a", "1")])
        );
        assert_ne!(
            one,
            identity("sha256:x", &[ready("a", "1"), ready("b", "3")])
        );
        assert_ne!(
            one,
            identity("sha256:y", &[ready("a", "1"), ready("b", "2")])
        );
        assert_eq!(
            one,
            identity("sha256:x", &[ready("a", "1"), ready("b", "2")])
        );
    }
}
