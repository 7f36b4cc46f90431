//! The translation cache: outputs stored under a key made of every input that affects them.
//!
//! An entry is a folder `<root>/<key>/` that appears by one atomic rename once
//! everything is in it, so an interrupted translation never leaves an entry that
//! looks complete. A lock file per key keeps two builds of the same key from
//! translating twice at once.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped when the layout of an entry or the meaning of the key changes.
pub const CACHE_FORMAT: u32 = 2;

/// Everything that affects the translated outputs. `jobs` is deliberately absent:
/// parallel make gives the same binaries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyInputs {
    pub cache_format: u32,
    /// Release sha256, git commit, or a hash of the tree's files.
    pub source_id: String,
    /// sha256 of the target file (it may live outside the source tree).
    pub target_file_sha256: String,
    pub target_file_name: String,
    pub opt: String,
    pub rpython_options: Vec<String>,
    pub target_options: Vec<String>,
    pub host_version: String,
    pub compiler_version: String,
    pub triple: String,
    /// The `SOURCE_DATE_EPOCH` PyPy's `sys.version` takes its date from; absent
    /// (and so out of the key) for translations that are not dated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<u64>,
    /// A portable build's compiler environment (`CC`, `CFLAGS`, `LDFLAGS`,
    /// `PYPY_LOCALBASE`, …): a change of flags is a different translation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_env: Option<Vec<(String, String)>>,
    /// The folder the source was translated in: PyPy records it in libpypy,
    /// so a translation made elsewhere has other bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_root: Option<String>,
}

impl KeyInputs {
    /// The key: a sha256 of the inputs' canonical JSON.
    pub fn key(&self) -> String {
        let json = serde_json::to_vec(self).expect("key inputs serialise");
        hex::encode(Sha256::digest(&json))
    }
}

/// A cache folder of translation entries.
#[derive(Debug, Clone)]
pub struct BuildCache {
    root: PathBuf,
}

/// Held while a key is being built or read; released on drop.
pub struct KeyLock {
    _lock: pypy_archive::lock::FileLock,
}

impl BuildCache {
    pub fn new(root: PathBuf) -> BuildCache {
        BuildCache { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The final folder of a key's entry (it exists only when the entry is complete).
    pub fn entry(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// A fresh work folder for building `key`, beside the entry so the final rename
    /// stays on one file system.
    pub fn work_dir(&self, key: &str) -> Result<PathBuf> {
        let dir = self
            .root
            .join(format!("{key}.partial-{}", std::process::id()));
        if dir.exists() {
            fs_err::remove_dir_all(&dir)?;
        }
        fs_err::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Waits for and takes the lock of `key`.
    pub fn lock(&self, key: &str) -> Result<KeyLock> {
        fs_err::create_dir_all(&self.root)?;
        let path = self.root.join(format!("{key}.lock"));
        let lock = pypy_archive::lock::FileLock::acquire(&path, |holder| {
            eprintln!(
                "translate: waiting for another run translating the same inputs ({}; lock {}); \
                 its result will be used",
                holder.describe(),
                path.display()
            )
        })
        .with_context(|| format!("locking {}", path.display()))?;
        Ok(KeyLock { _lock: lock })
    }

    /// Removes work folders of this key left by interrupted runs (call with the lock held).
    pub fn clean_stale(&self, key: &str) -> Result<()> {
        let prefix = format!("{key}.partial-");
        if let Ok(entries) = fs_err::read_dir(&self.root) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    fs_err::remove_dir_all(entry.path())?;
                }
            }
        }
        Ok(())
    }

    /// Makes `staged` the entry of `key` in one rename (call with the lock held).
    pub fn commit(&self, key: &str, staged: &Path) -> Result<PathBuf> {
        let entry = self.entry(key);
        pypy_archive::fs::replace_dir(staged, &entry).with_context(|| {
            format!(
                "moving the translation into the cache at {}",
                entry.display()
            )
        })?;
        Ok(entry)
    }
}

/// A stable hash of a source tree's files, for trees with no release checksum or commit.
///
/// Build products (bytecode, objects, libraries, RPython's outputs) are skipped so
/// that translating or packaging in the tree does not change its identity.
pub fn tree_hash(root: &Path, subdirs: &[&str]) -> Result<String> {
    let mut files = Vec::new();
    let dirs: Vec<PathBuf> = if subdirs.iter().any(|d| root.join(d).is_dir()) {
        subdirs
            .iter()
            .map(|d| root.join(d))
            .filter(|d| d.is_dir())
            .collect()
    } else {
        vec![root.to_path_buf()]
    };
    for dir in dirs {
        for entry in walkdir::WalkDir::new(&dir).sort_by_file_name() {
            let entry = entry.with_context(|| format!("walking {}", dir.display()))?;
            if entry.file_type().is_file() && !is_build_product(entry.path()) {
                files.push(entry.into_path());
            }
        }
    }
    let mut hasher = Sha256::new();
    for file in files {
        let rel = file.strip_prefix(root).unwrap_or(&file);
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(pypy_archive::hash::sha256_file(&file)?.as_bytes());
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Files that translating or packaging writes into a source tree.
pub fn is_build_product(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    // RPython keeps compile-check results in `rpython/_cache`.
    let in_pycache = path
        .components()
        .any(|c| c.as_os_str() == "__pycache__" || c.as_os_str() == "_cache");
    let ext = path.extension().map(|e| e.to_string_lossy().into_owned());
    // cffi's `ffi.compile()` writes its C source beside the build script when
    // PyPy's package step builds the standard library's cffi modules.
    let stem = path
        .file_stem()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let cffi_generated =
        ext.as_deref() == Some("c") && (stem.contains("_cffi") || stem == "_pypy_openssl");
    // RPython's vmprof support configures libbacktrace in the tree when translating.
    let configured = path.ends_with("libbacktrace/config.h");
    in_pycache
        || cffi_generated
        || configured
        || matches!(
            ext.as_deref(),
            Some("pyc" | "pyo" | "o" | "so" | "dylib" | "dll" | "lib" | "exe" | "pdb")
        )
        || name.ends_with("-c")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KeyInputs {
        KeyInputs {
            cache_format: CACHE_FORMAT,
            source_id: "abc".into(),
            target_file_sha256: "def".into(),
            target_file_name: "targetx.py".into(),
            opt: "2".into(),
            rpython_options: vec!["--shared".into()],
            target_options: vec![],
            host_version: "2.7.18".into(),
            compiler_version: "gcc 12".into(),
            source_date_epoch: None,
            triple: "x86_64-unknown-linux-gnu".into(),
            build_env: None,
            source_root: None,
        }
    }

    #[test]
    fn every_input_changes_the_key() {
        let base = inputs().key();
        let variants: [fn(&mut KeyInputs); 10] = [
            |k| k.source_id.push('x'),
            |k| k.target_file_sha256.push('x'),
            |k| k.opt = "jit".into(),
            |k| k.rpython_options.push("--lto".into()),
            |k| k.target_options.push("--withoutmod-micronumpy".into()),
            |k| k.host_version.push('x'),
            |k| k.compiler_version.push('x'),
            |k| k.triple = "aarch64-unknown-linux-gnu".into(),
            |k| k.build_env = Some(vec![("LDFLAGS".into(), "-ltinfo".into())]),
            |k| k.source_root = Some("/tmp/pypy-embed-build/x".into()),
        ];
        for change in variants {
            let mut k = inputs();
            change(&mut k);
            assert_ne!(k.key(), base, "{k:?}");
        }
        assert_eq!(inputs().key(), base);
    }

    #[test]
    fn tree_hash_ignores_build_products_but_not_sources() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join("rpython/__pycache__")).unwrap();
        fs_err::write(root.join("rpython/a.py"), "x = 1\n").unwrap();
        let before = tree_hash(root, &["rpython"]).unwrap();
        fs_err::write(root.join("rpython/a.pyc"), "junk").unwrap();
        fs_err::write(root.join("rpython/__pycache__/a.cpython.pyc"), "junk").unwrap();
        fs_err::write(root.join("rpython/libx-c.so"), "junk").unwrap();
        fs_err::write(root.join("rpython/_sqlite3_cffi.c"), "generated").unwrap();
        fs_err::create_dir_all(root.join("rpython/libbacktrace")).unwrap();
        fs_err::write(root.join("rpython/libbacktrace/config.h"), "generated").unwrap();
        assert_eq!(tree_hash(root, &["rpython"]).unwrap(), before);
        fs_err::write(root.join("rpython/a.py"), "x = 2\n").unwrap();
        assert_ne!(tree_hash(root, &["rpython"]).unwrap(), before);
    }

    #[test]
    fn an_uncommitted_work_dir_is_not_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BuildCache::new(dir.path().to_path_buf());
        let _lock = cache.lock("k").unwrap();
        let work = cache.work_dir("k").unwrap();
        fs_err::write(work.join("out"), "x").unwrap();
        assert!(!cache.entry("k").exists());
        cache.clean_stale("k").unwrap();
        assert!(!work.exists());
        let work = cache.work_dir("k").unwrap();
        fs_err::write(work.join("out"), "x").unwrap();
        let entry = cache.commit("k", &work).unwrap();
        assert!(entry.join("out").exists());
    }
}
