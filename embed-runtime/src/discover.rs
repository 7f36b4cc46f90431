//! Finding PyPy: the discovery order of the crate docs, turning an archive
//! into an extracted tree, and checking a tree before libpypy is loaded.

use std::path::{Path, PathBuf};

use crate::cache::{self, ArchiveRef};
use crate::error::{Error, Searched};
use pypy_archive::head::{HeadError, ManifestHead};

use crate::manifest::{MANIFEST_NAME, TOP_DIR};

/// Names an extracted tree (the `pypy/` folder, or the folder holding it).
pub const HOME_ENV: &str = "PYPY_EMBED_HOME";
/// Names an archive.
pub const ARCHIVE_ENV: &str = "PYPY_EMBED_ARCHIVE";
/// Moves the cache: archives are extracted under `$PYPY_EMBED_CACHE/runtime`.
pub use pypy_archive::cache::CACHE_ENV;

/// The build target, for choosing among archives.
const TARGET: &str = env!("EMBED_RUNTIME_TARGET");
/// The archive the build script found (empty when none).
const BUILD_ARCHIVE: &str = env!("EMBED_RUNTIME_BUILD_ARCHIVE");
/// Where the build script looked, for the error when it found nothing.
const BUILD_SEARCHED: &str = env!("EMBED_RUNTIME_BUILD_SEARCHED");

/// Which discovery step found PyPy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// [`Builder::home`](crate::Builder::home).
    Explicit,
    /// `$PYPY_EMBED_HOME`.
    HomeEnv,
    /// `$PYPY_EMBED_ARCHIVE`.
    ArchiveEnv,
    /// A `pypy/` tree or an archive beside the running executable.
    NextToExecutable,
    /// The archive the build script found.
    BuildTime,
    /// The archive inside the binary (feature `embedded-archive`).
    Embedded,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Explicit => "Builder::home",
            Source::HomeEnv => HOME_ENV,
            Source::ArchiveEnv => ARCHIVE_ENV,
            Source::NextToExecutable => "next to the executable",
            Source::BuildTime => "archive found at build time",
            Source::Embedded => "archive embedded in the binary",
        }
    }
}

/// Where the running PyPy lives.
#[derive(Debug, Clone)]
pub struct Home {
    pub source: Source,
    /// The folder given to `pypy_setup_home`: the top `pypy/` folder of an
    /// archive, or a prefix such as Debian's `/usr`.
    pub root: PathBuf,
    pub libpypy: PathBuf,
    /// The launcher named by the manifest, used as `sys.executable`.
    pub launcher: Option<PathBuf>,
    /// PyPy's version (`7.3.20`), from the manifest of trees that have one.
    pub pypy_version: Option<String>,
    /// The Python language version (`3.11`), from the manifest.
    pub python_version: Option<String>,
    /// Set when the tree was extracted from an archive.
    pub archive: Option<ArchiveOrigin>,
}

/// The archive a home was extracted from.
#[derive(Debug, Clone)]
pub struct ArchiveOrigin {
    /// `None` for the archive embedded in the binary.
    pub path: Option<PathBuf>,
    pub sha256: String,
    /// Whether this process extracted it (false: the cache had it).
    pub extracted_now: bool,
    /// Why the cached copy was extracted again, when it was damaged.
    pub repaired: Option<String>,
}

/// What the search is told: set by the [`Builder`](crate::Builder), read
/// only here.
#[derive(Debug, Clone, Default)]
pub(crate) struct SearchOptions {
    /// Use this and search nowhere else.
    pub(crate) home: Option<PathBuf>,
    /// Extract archives here instead of the user's cache folder.
    pub(crate) cache_dir: Option<PathBuf>,
    /// Places not to look.
    pub(crate) skip: Vec<Source>,
}

/// Runs the discovery order of the crate docs. A step whose place is absent
/// passes to the next; a step whose place exists but is unusable is an
/// error, because silently using another PyPy than the one configured
/// would be worse.
pub(crate) fn find(options: &SearchOptions) -> Result<Home, Error> {
    if let Some(path) = &options.home {
        return from_path(Source::Explicit, path, &|| cache_dir(options));
    }
    let mut searched = Vec::new();
    for source in [
        Source::HomeEnv,
        Source::ArchiveEnv,
        Source::NextToExecutable,
        Source::BuildTime,
        Source::Embedded,
    ] {
        if options.skip.contains(&source) {
            searched.push(Searched {
                source: source.describe().to_string(),
                place: "-".into(),
                outcome: "skipped (Builder::skip)".into(),
            });
            continue;
        }
        let mut note = |place: String, outcome: &str| {
            searched.push(Searched {
                source: source.describe().to_string(),
                place,
                outcome: outcome.to_string(),
            })
        };
        if let Some(home) = try_source(source, options, &mut note)? {
            return Ok(home);
        }
    }
    Err(Error::NotFound { searched })
}

/// One discovery step: `Ok(None)` when its place is absent (noted in `note`).
fn try_source(
    source: Source,
    options: &SearchOptions,
    note: &mut dyn FnMut(String, &str),
) -> Result<Option<Home>, Error> {
    let cache = || cache_dir(options);
    match source {
        Source::Explicit => unreachable!("handled before the search"),
        Source::HomeEnv => match crate::env::var_os(HOME_ENV) {
            Some(path) => from_tree(source, Path::new(&path)).map(Some),
            None => {
                note(format!("${HOME_ENV}"), "not set");
                Ok(None)
            }
        },
        Source::ArchiveEnv => match crate::env::var_os(ARCHIVE_ENV) {
            Some(path) => from_archive(source, Path::new(&path), &cache()?).map(Some),
            None => {
                note(format!("${ARCHIVE_ENV}"), "not set");
                Ok(None)
            }
        },
        Source::NextToExecutable => {
            let exe = match std::env::current_exe().and_then(|exe| exe.canonicalize()) {
                Ok(exe) => exe,
                Err(e) => {
                    note("the executable's folder".into(), &format!("unknown: {e}"));
                    return Ok(None);
                }
            };
            let dir = exe.parent().unwrap_or(Path::new("/"));
            let tree = dir.join(TOP_DIR);
            if tree.exists() {
                return from_tree(source, &tree).map(Some);
            }
            note(tree.display().to_string(), "does not exist");
            match pypy_archive::name::newest_for(dir, TARGET) {
                Some(archive) => from_archive(source, &archive, &cache()?).map(Some),
                None => {
                    let pattern = dir.join(format!("pypy*-v*-{TARGET}.tar.gz"));
                    note(pattern.display().to_string(), "no such archive");
                    Ok(None)
                }
            }
        }
        Source::BuildTime => match build_time_archive() {
            None => {
                note("the build script's search".into(), BUILD_SEARCHED);
                Ok(None)
            }
            Some(archive) if archive.is_file() => {
                from_archive(source, archive, &cache()?).map(Some)
            }
            Some(archive) => {
                note(
                    archive.display().to_string(),
                    "found when building, gone now; rebuild or put it back",
                );
                Ok(None)
            }
        },
        #[cfg(feature = "embedded-archive")]
        Source::Embedded => {
            let archive = ArchiveRef::Embedded {
                bytes: crate::embedded::ARCHIVE,
                sha256: crate::embedded::SHA256,
            };
            extracted(source, &archive, &cache()?).map(Some)
        }
        #[cfg(not(feature = "embedded-archive"))]
        Source::Embedded => {
            note("the binary".into(), "feature `embedded-archive` is off");
            Ok(None)
        }
    }
}

/// The archive the build script found (`$PYPY_EMBED_BUILD_ARCHIVE` at build
/// time, else the newest for the target in the workspace's `dist/`).
pub fn build_time_archive() -> Option<&'static Path> {
    (!BUILD_ARCHIVE.is_empty()).then(|| Path::new(BUILD_ARCHIVE))
}

/// The cache folder for extracted archives.
pub(crate) fn cache_dir(options: &SearchOptions) -> Result<PathBuf, Error> {
    if let Some(dir) = &options.cache_dir {
        return Ok(dir.clone());
    }
    pypy_archive::cache::cache_root()
        .map(|root| root.join("runtime"))
        .ok_or_else(|| Error::BadHome {
            source_name: "the user's cache folder".into(),
            path: PathBuf::new(),
            reason: format!(
                "this system has none (no $HOME or $XDG_CACHE_HOME); set {CACHE_ENV} to a \
                 writable folder"
            ),
        })
}

/// An explicit path: an archive file or a tree.
fn from_path(
    source: Source,
    path: &Path,
    cache: &dyn Fn() -> Result<PathBuf, Error>,
) -> Result<Home, Error> {
    if path.is_file() {
        from_archive(source, path, &cache()?)
    } else {
        from_tree(source, path)
    }
}

fn bad(source: Source, path: &Path, reason: impl Into<String>) -> Error {
    Error::BadHome {
        source_name: source.describe().to_string(),
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn from_archive(source: Source, path: &Path, cache: &Path) -> Result<Home, Error> {
    if !path.is_file() {
        let reason = if path.exists() {
            "it is not a file; an archive is a pypy*.tar.gz file"
        } else {
            "it does not exist"
        };
        return Err(bad(source, path, reason));
    }
    extracted(source, &ArchiveRef::File(path), cache)
}

fn extracted(source: Source, archive: &ArchiveRef<'_>, cache: &Path) -> Result<Home, Error> {
    let done = cache::ensure(cache, archive)?;
    let mut home = from_tree(source, &done.top)?;
    home.archive = Some(ArchiveOrigin {
        path: match archive {
            ArchiveRef::File(p) => Some(p.to_path_buf()),
            ArchiveRef::Embedded { .. } => None,
        },
        sha256: done.sha256,
        extracted_now: done.extracted_now,
        repaired: done.repaired,
    });
    Ok(home)
}

/// A tree: the `pypy/` folder with `PYPY.json`, the folder holding it, or a
/// tree without a manifest whose libpypy is found by its usual places.
pub(crate) fn from_tree(source: Source, path: &Path) -> Result<Home, Error> {
    if !path.exists() {
        return Err(bad(source, path, "it does not exist"));
    }
    if path.is_file() {
        return Err(bad(
            source,
            path,
            format!("it is a file, and a folder was expected (for an archive use {ARCHIVE_ENV} or Builder::home)"),
        ));
    }
    let root = if path.join(MANIFEST_NAME).is_file() {
        path.to_path_buf()
    } else if path.join(TOP_DIR).join(MANIFEST_NAME).is_file() {
        path.join(TOP_DIR)
    } else {
        return from_bare_tree(source, path);
    };
    let manifest = read_manifest_head(&root.join(MANIFEST_NAME))?;
    let libpypy = root.join(&manifest.paths.libpypy);
    if !libpypy.is_file() {
        return Err(bad(
            source,
            &root,
            format!(
                "{MANIFEST_NAME} names libpypy {}, which is missing",
                manifest.paths.libpypy
            ),
        ));
    }
    let stdlib = root.join(&manifest.paths.stdlib);
    if !stdlib.is_dir() {
        return Err(bad(
            source,
            &root,
            format!(
                "{MANIFEST_NAME} names the standard library {}, which is missing",
                manifest.paths.stdlib
            ),
        ));
    }
    let launcher = manifest
        .paths
        .launcher
        .as_ref()
        .map(|l| root.join(l))
        .filter(|l| l.is_file());
    Ok(Home {
        source,
        root,
        libpypy,
        launcher,
        pypy_version: Some(manifest.pypy_version),
        python_version: Some(manifest.python_version),
        archive: None,
    })
}

fn read_manifest_head(path: &Path) -> Result<ManifestHead, Error> {
    pypy_archive::head::read_head(path).map_err(|e| match e {
        HeadError::Io(e) => Error::io("reading", path, e),
        HeadError::Manifest(reason) => Error::Manifest {
            path: path.to_path_buf(),
            reason,
        },
    })
}

/// A tree without `PYPY.json` (an upstream release, Debian's `/usr`): libpypy
/// in `bin/`, the top, `lib/` or `lib/<multiarch>/`, and the standard library
/// where `pypy_setup_home` looks for it.
fn from_bare_tree(source: Source, path: &Path) -> Result<Home, Error> {
    let mut places = vec![path.join("bin"), path.to_path_buf(), path.join("lib")];
    if let Ok(entries) = std::fs::read_dir(path.join("lib")) {
        let mut subdirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subdirs.sort();
        places.extend(subdirs);
    }
    let libpypy = places
        .iter()
        .find_map(|dir| find_libpypy(dir))
        .ok_or_else(|| {
            bad(
                source,
                path,
                format!(
                    "it has no {MANIFEST_NAME}, and no libpypy*-c.{} in bin/, lib/ or lib/*/",
                    std::env::consts::DLL_EXTENSION
                ),
            )
        })?;
    // `libpypy3.11-c.so` -> `3.11`, for `lib/pypy3.11/site.py`.
    let version = libpypy
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("libpypy"))
        .and_then(|n| n.split_once("-c."))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default();
    let site_candidates = [
        path.join("lib")
            .join(format!("pypy{version}"))
            .join("site.py"),
        path.join("Lib").join("site.py"),
        path.join("lib_pypy").join("site.py"),
        path.join("lib-python").join("3").join("site.py"),
    ];
    if !site_candidates.iter().any(|p| p.is_file()) {
        return Err(bad(
            source,
            path,
            format!(
                "it has libpypy ({}) but no standard library: none of {} exists",
                libpypy.display(),
                site_candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(Home {
        source,
        root: path.to_path_buf(),
        libpypy,
        launcher: None,
        pypy_version: None,
        python_version: None,
        archive: None,
    })
}

fn find_libpypy(dir: &Path) -> Option<PathBuf> {
    let suffix = format!("-c.{}", std::env::consts::DLL_EXTENSION);
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libpypy") && name.ends_with(&suffix)
        })
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tree_is_an_error_naming_its_source() {
        let err = from_tree(Source::HomeEnv, Path::new("/nonexistent/pypy")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(HOME_ENV) && text.contains("does not exist"),
            "{text}"
        );
    }

    #[test]
    fn a_tree_without_libpypy_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let text = from_tree(Source::Explicit, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("no libpypy") && text.contains("lib/*/"),
            "{text}"
        );
    }

    #[test]
    fn a_tree_without_stdlib_is_refused_before_loading() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let lib = bin.join(format!("libpypy3.11-c.{}", std::env::consts::DLL_EXTENSION));
        std::fs::write(&lib, b"").unwrap();
        let text = from_tree(Source::Explicit, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("no standard library") && text.contains("pypy3.11"),
            "{text}"
        );
        std::fs::create_dir_all(dir.path().join("lib/pypy3.11")).unwrap();
        std::fs::write(dir.path().join("lib/pypy3.11/site.py"), b"").unwrap();
        let home = from_tree(Source::Explicit, dir.path()).unwrap();
        assert_eq!(home.libpypy, lib);
        assert!(home.python_version.is_none());
    }
}
