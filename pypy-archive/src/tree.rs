//! A tree as the archive format sees it: its entries in archive order, and
//! every file hashed as the manifest records it.
//!
//! The order (depth first, names sorted bytewise, each folder before its
//! contents) and the modes (0o755 or 0o644 for files) are part of the
//! format: the writer packs in this order, and `PYPY.json`'s `files` is
//! [`hash_tree`] of the packed tree.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::hash::sha256_file;
use crate::manifest::{FileEntry, MANIFEST_NAME};

/// The mode every regular file is archived with: executable or not, nothing else.
pub fn normalise_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// What one entry of the tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    /// With its mode already normalised ([`normalise_mode`]).
    File {
        mode: u32,
    },
    Symlink {
        target: String,
    },
}

/// One entry of the tree, in archive order.
#[derive(Debug, Clone)]
pub struct TreeEntry {
    /// Path relative to the tree's root, with `/`.
    pub rel: String,
    pub path: PathBuf,
    pub kind: EntryKind,
}

fn invalid(text: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text)
}

/// Every entry below `root`, in archive order. Names that are not UTF-8 and
/// special files (sockets, devices) are refused: a release tree has none.
pub fn list_tree(root: &Path) -> io::Result<Vec<TreeEntry>> {
    let mut out = Vec::new();
    for entry in walk_sorted(root) {
        let entry =
            entry.map_err(|e| io::Error::other(format!("listing {}: {e}", root.display())))?;
        let rel = entry
            .path()
            .strip_prefix(root)
            .map_err(|e| io::Error::other(e.to_string()))?
            .to_str()
            .ok_or_else(|| invalid(format!("{} is not valid UTF-8", entry.path().display())))?
            .replace('\\', "/");
        let ft = entry.file_type();
        let kind = if ft.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            let target = target
                .to_str()
                .ok_or_else(|| invalid(format!("link {} is not UTF-8", entry.path().display())))?
                .to_string();
            EntryKind::Symlink { target }
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File {
                mode: normalise_mode(file_mode(&entry.metadata().map_err(io::Error::from)?)),
            }
        } else {
            return Err(invalid(format!(
                "{} is neither a file, a folder nor a symbolic link",
                entry.path().display()
            )));
        };
        out.push(TreeEntry {
            rel,
            path: entry.path().to_path_buf(),
            kind,
        });
    }
    Ok(out)
}

fn walk_sorted(root: &Path) -> walkdir::IntoIter {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .sort_by(|a, b| {
            a.file_name()
                .as_encoded_bytes()
                .cmp(b.file_name().as_encoded_bytes())
        })
        .into_iter()
}

#[cfg(unix)]
fn file_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode()
}

#[cfg(not(unix))]
fn file_mode(_meta: &std::fs::Metadata) -> u32 {
    // Windows has no executable bit; nothing in a Windows tree needs one.
    0o644
}

/// Every file and link below `top` except the manifest, as the manifest
/// records them (links by their target, see [`FileEntry::link`]).
pub fn hash_tree(top: &Path) -> io::Result<BTreeMap<String, FileEntry>> {
    let mut out = BTreeMap::new();
    for e in list_tree(top)? {
        if e.rel == MANIFEST_NAME {
            continue;
        }
        let entry = match &e.kind {
            EntryKind::Dir => continue,
            EntryKind::File { mode } => FileEntry {
                sha256: sha256_file(&e.path)?,
                size: std::fs::metadata(&e.path)?.len(),
                mode: *mode,
                link: None,
            },
            EntryKind::Symlink { target } => FileEntry::link(target),
        };
        out.insert(e.rel, entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha256_bytes;

    #[test]
    fn entries_come_in_archive_order_and_files_hash_as_the_manifest_says() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("lib/deep")).unwrap();
        std::fs::write(root.join("lib.txt"), b"a").unwrap();
        std::fs::write(root.join("lib/deep/x"), b"hello").unwrap();
        std::fs::write(root.join(MANIFEST_NAME), b"{}").unwrap();
        let names: Vec<String> = list_tree(root)
            .unwrap()
            .into_iter()
            .map(|e| e.rel)
            .collect();
        assert_eq!(
            names,
            ["PYPY.json", "lib", "lib/deep", "lib/deep/x", "lib.txt"]
        );
        let files = hash_tree(root).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["lib.txt", "lib/deep/x"]);
        assert_eq!(files["lib/deep/x"].sha256, sha256_bytes(b"hello"));
        assert_eq!(files["lib/deep/x"].size, 5);
    }

    #[test]
    fn modes_are_normalised() {
        assert_eq!(normalise_mode(0o700), 0o755);
        assert_eq!(normalise_mode(0o600), 0o644);
    }
}
