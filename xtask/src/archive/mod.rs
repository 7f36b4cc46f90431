//! Our release archive: the pipeline shared by `package` and `repackage`
//! that turns any PyPy tree into a relocatable archive, one file per step,
//! each using only the steps before it: [`locate`] the parts, [`stage`]
//! them as a release tree, [`relocate`] the binaries, describe the tree in
//! [`manifest`], pack it with the reproducible [`writer`], and [`publish`]
//! it into `dist/`, verified first. [`pack_tree`] strings the steps
//! together; `package` and `repackage` only choose the tree and its origin.
//!
//! The format itself is described in `docs/archive-format.md`; the manifest
//! types are [`crate::manifest`].

pub mod locate;
pub mod manifest;
pub mod publish;
pub mod relocate;
pub mod stage;
pub mod writer;

pub use locate::{locate, Found, Versions};
pub use manifest::build_manifest;
pub use publish::{publish, PublishOptions, Published};

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::manifest::Origin;
use crate::targets;

pub use relocate::relocate;
pub use stage::{stage, Staged};
pub use writer::{write_tar_gz, write_tar_gz_file, WriteOptions, WriteStats};

/// The pipeline every archive goes through (`package` too):
/// locate → stage → relocate → manifest → archive → verify → publish.
pub fn pack_tree(
    tree: &Path,
    target: &targets::Target,
    out_dir: &Path,
    origin: Origin,
    opts: &PublishOptions,
) -> Result<Published> {
    let found = locate(tree, target)?;
    let has_headers = found
        .include
        .as_ref()
        .is_some_and(|i| i.join("Python.h").is_file());
    if !has_headers && !opts.no_headers {
        let package = match &target.headers_package {
            Some(p) => format!(" (on {}: install {p})", target.triple),
            None => String::new(),
        };
        bail!(
            "{} has no C headers ({}/Python.h){package}; without them C extensions and cffi \
             plugins cannot build against the archive. Install them, or pass --no-headers to \
             pack the tree without (the manifest then says so)",
            tree.display(),
            target.include_dir(&found.versions.python)
        );
    }
    let mut staged = stage(&found, target, out_dir)?;
    staged.no_headers = !has_headers;
    let mut build_paths = opts.build_paths.clone();
    if is_system_prefix(tree) {
        // Text files of an installed system name `/usr/bin/env` and the like,
        // which exist on every machine; only the folders packed must not be named.
        build_paths.push(found.stdlib.clone());
        build_paths.extend(found.include.clone());
    } else {
        build_paths.push(tree.to_path_buf());
    }
    relocate::check_no_build_paths(&staged, &build_paths)?;
    relocate(&staged)?;
    let bundled = match &opts.bundled {
        Some(prefix) => {
            let from = prefix.dir.join(crate::deps::LICENSES_DIR);
            pypy_archive::fs::copy_tree(&from, &staged.top.join(crate::deps::LICENSES_DIR))
                .with_context(|| format!("copying the licence texts of {}", from.display()))?;
            prefix.libraries.clone()
        }
        None => Vec::new(),
    };
    let manifest = build_manifest(&staged, origin, bundled)?;
    publish(&staged, &manifest, out_dir, opts)
}

/// `/usr`, `/usr/local` or `/`: a system's own prefix rather than a build tree.
fn is_system_prefix(tree: &Path) -> bool {
    let tree = tree.canonicalize().unwrap_or_else(|_| tree.to_path_buf());
    ["/", "/usr", "/usr/local"]
        .iter()
        .any(|p| tree == Path::new(p))
}
