//! Step 3: make the staged binaries find libpypy beside them, and check
//! that no build path is left in them.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use xshell::Shell;

use super::stage::Staged;
use crate::binary;
use crate::manifest;
use pypy_archive::tree::EntryKind;

/// Makes every binary in the staged tree find the libraries of the tree
/// relative to itself, and drops absolute search paths (build folders,
/// distribution paths).
pub fn relocate(staged: &Staged) -> Result<()> {
    let sh = Shell::new()?;
    let entries = pypy_archive::tree::list_tree(&staged.top)?;
    let files: Vec<&pypy_archive::tree::TreeEntry> = entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File { .. }))
        .collect();
    let mut binaries = Vec::new();
    for e in &files {
        if let Some(info) = binary::read(&e.path)? {
            binaries.push((*e, info));
        }
    }
    let library_names: Vec<String> = binaries
        .iter()
        .filter_map(|(e, _)| e.rel.rsplit('/').next().map(str::to_string))
        .collect();
    for (entry, info) in &binaries {
        // Libraries this binary needs that the archive itself provides.
        let in_tree: Vec<String> = info
            .needed
            .iter()
            .filter_map(|needed| {
                let base = needed.rsplit('/').next().unwrap_or(needed);
                binaries
                    .iter()
                    .find(|(other, _)| other.rel.rsplit('/').next() == Some(base))
                    .map(|(other, _)| other.rel.clone())
            })
            .collect();
        let plan =
            binary::plan_search_path(&staged.target, &entry.rel, &info.search_paths, &in_tree)
                .with_context(|| format!("relocating {}", entry.rel))?;
        if let Some(plan) = plan {
            binary::apply_search_path(&sh, &entry.path, info, &plan)
                .with_context(|| format!("relocating {}", entry.rel))?;
        }
        let names = binary::plan_install_names(&staged.target, &entry.rel, info, &library_names);
        if !names.is_empty() {
            binary::apply_install_names(&sh, &entry.path, &names)
                .with_context(|| format!("relocating {}", entry.rel))?;
        }
        let py = &staged.versions.python;
        if let Some(soname) = staged.target.soname(py) {
            if entry.rel == staged.target.libpypy_path(py)
                && info.own_name.as_ref() != Some(&soname)
            {
                binary::apply_soname(&sh, &entry.path, &soname)
                    .with_context(|| format!("relocating {}", entry.rel))?;
            }
        }
    }
    Ok(())
}

/// Refuses a staged tree whose text files (no NUL byte: `.py`, `.cfg`,
/// `.pth`, `.txt`…) name one of `build_paths` (the source tree, a build
/// folder): such a path would point nowhere once the archive is unpacked
/// on another machine. Binaries are checked separately (search paths only;
/// debug strings naming the build folder are harmless).
pub fn check_no_build_paths(staged: &Staged, build_paths: &[PathBuf]) -> Result<()> {
    let needles: Vec<String> = build_paths
        .iter()
        .flat_map(|p| [Some(p.clone()), p.canonicalize().ok()])
        .flatten()
        .map(|p| p.display().to_string())
        .filter(|p| p.len() > 1)
        .collect();
    let mut hits = Vec::new();
    for e in pypy_archive::tree::list_tree(&staged.top)? {
        if !matches!(e.kind, EntryKind::File { .. }) {
            continue;
        }
        let bytes = fs_err::read(&e.path)?;
        if bytes.contains(&0) {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Some(n) = needles.iter().find(|n| text.contains(n.as_str())) {
            hits.push(format!(
                "{}/{}: names the build path {n}",
                manifest::TOP_DIR,
                e.rel
            ));
        }
    }
    if !hits.is_empty() {
        bail!(
            "text files would point to this machine after relocation:\n  {}",
            hits.join("\n  ")
        );
    }
    Ok(())
}
