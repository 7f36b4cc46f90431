//! Step 4: `PYPY.json` for a staged and relocated tree.

use anyhow::{Context, Result};

use super::stage::Staged;
use crate::binary;
use crate::manifest::{self, Manifest, Origin, Paths};

/// Builds `PYPY.json` for the staged tree (hashing every file).
/// `bundled` lists the C libraries built into the binaries (portable builds).
pub fn build_manifest(
    staged: &Staged,
    origin: Origin,
    bundled: Vec<crate::manifest::BundledLibrary>,
) -> Result<Manifest> {
    let py = &staged.versions.python;
    let target = &staged.target;
    let lib_rel = target.libpypy_path(py);
    let lib = binary::read(&staged.top.join(&lib_rel))?
        .with_context(|| format!("{lib_rel} is not a shared library"))?;
    let launcher_rel = target.launcher_path(py);
    let files = pypy_archive::tree::hash_tree(&staged.top)?;
    let portability = match &target.portability {
        Some(policy) => Some(
            crate::portability::describe_tree(&staged.top, &files, policy, bundled)
                .context("judging the binaries by the target's portability policy")?,
        ),
        None => None,
    };
    Ok(Manifest {
        format_version: manifest::FORMAT_VERSION,
        pypy_version: staged.versions.pypy.clone(),
        python_version: py.clone(),
        target: target.triple.clone(),
        no_headers: staged.no_headers,
        portability,
        paths: Paths {
            libpypy: lib_rel,
            launcher: files.contains_key(&launcher_rel).then_some(launcher_rel),
            stdlib: target.stdlib_dir(py),
            include: target.include_dir(py),
        },
        embedding_symbols: manifest::EMBEDDING_API
            .iter()
            .filter(|s| lib.exports.iter().any(|e| e == *s))
            .map(|s| s.to_string())
            .collect(),
        needed_libraries: lib.needed.clone(),
        origin,
        files,
    })
}
