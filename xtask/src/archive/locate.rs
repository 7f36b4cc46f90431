//! Step 1 of the archive pipeline: find the parts of a PyPy (libpypy, the
//! launcher, the standard library, the headers) in some tree, and the
//! versions the interpreter reports.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::binary;
use crate::targets::Target;

/// PyPy's version and the Python language version, as the interpreter reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// `3.11`
    pub python: String,
    /// `7.3.20`
    pub pypy: String,
}

/// The parts of a PyPy found in a tree of any layout.
#[derive(Debug, Clone)]
pub struct Found {
    pub libpypy: PathBuf,
    pub launcher: Option<PathBuf>,
    pub stdlib: PathBuf,
    pub include: Option<PathBuf>,
    pub license: Option<PathBuf>,
    /// Upstream's `README.rst` at the top of a release tree.
    pub readme: Option<PathBuf>,
    pub versions: Versions,
}

/// Splits a table pattern like `libpypy{py}-c.so` around its `{py}`.
fn pattern_parts(pattern: String) -> (String, String) {
    match pattern.split_once("{py}") {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (pattern, String::new()),
    }
}

/// `3.11` in `libpypy3.11-c.so`; only used to find the other parts, the
/// versions themselves come from the interpreter.
fn py_in_name(name: &str, prefix: &str, suffix: &str) -> Option<String> {
    let mid = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    let (major, minor) = mid.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor)).then(|| mid.to_string())
}

fn walk(tree: &Path) -> impl Iterator<Item = walkdir::DirEntry> {
    walkdir::WalkDir::new(tree)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
}

/// Finds libpypy, the launcher, the standard library and the headers in an
/// installed tree (upstream's release layout, Debian's `usr/`, or any other
/// that keeps the usual folder names), and asks the interpreter its versions.
pub fn locate(tree: &Path, target: &Target) -> Result<Found> {
    if !tree.is_dir() {
        bail!("{} is not a folder", tree.display());
    }
    let (lib_prefix, lib_suffix) = pattern_parts(target.libpypy_name("{py}"));
    let libs: Vec<(PathBuf, String)> = walk(tree)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let py = py_in_name(&name, &lib_prefix, &lib_suffix)?;
            Some((e.into_path(), py))
        })
        .collect();
    let (libpypy, py) = match libs.as_slice() {
        [] => bail!(
            "no libpypy ({lib_prefix}<version>{lib_suffix}) in {}; repackage needs a PyPy \
             translated with --shared",
            tree.display()
        ),
        [one] => one.clone(),
        many => bail!(
            "two or more candidate libraries in {}: {}; pass a tree holding exactly one PyPy",
            tree.display(),
            many.iter()
                .map(|(p, _)| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let lib_name = libpypy.file_name().unwrap().to_string_lossy().into_owned();

    let launcher_names = [
        target.launcher_name(&py),
        target.translated_launcher_name(&py),
    ];
    let launcher = walk(tree)
        .filter(|e| e.file_type().is_file())
        .filter(|e| launcher_names.iter().any(|n| e.file_name() == n.as_str()))
        .map(|e| e.into_path())
        .find(|p| {
            binary::read(p)
                .ok()
                .flatten()
                .is_some_and(|info| info.needed.contains(&lib_name))
        });

    // The interpreter knows where its files are; folder names are only a
    // guess (a distribution may leave a second, empty `lib/pypy3.9` behind).
    let asked = interpreter_paths(launcher.as_deref(), &libpypy, tree);
    let stdlib_rel = target.stdlib_dir(&py);
    let stdlib = match asked.as_ref().and_then(|(stdlib, _)| stdlib.clone()) {
        Some(stdlib) => stdlib,
        None => {
            let stdlibs: Vec<PathBuf> = walk(tree)
                .filter(|e| e.file_type().is_dir() && e.path().ends_with(&stdlib_rel))
                .map(|e| e.into_path())
                .collect();
            match stdlibs.as_slice() {
                [] => bail!(
                    "no standard library folder `{stdlib_rel}` in {} (found libpypy at {})",
                    tree.display(),
                    libpypy.display()
                ),
                [one] => one.clone(),
                many => bail!(
                    "several standard library folders in {}: {}, and no launcher that could \
                     say which is its own",
                    tree.display(),
                    many.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };
    if !stdlib.join("site.py").is_file() {
        bail!(
            "the standard library at {} has no site.py, so PyPy could not start from it; \
             is the tree complete (Debian: install pypy3-lib too)?",
            stdlib.display()
        );
    }
    let include_rel = target.include_dir(&py);
    let include = match asked.and_then(|(_, include)| include) {
        Some(include) => Some(include),
        None => walk(tree)
            .filter(|e| e.file_type().is_dir() && e.path().ends_with(&include_rel))
            .map(|e| e.into_path())
            .next(),
    };
    let license = ["LICENSE", "usr/share/doc/pypy3/copyright"]
        .iter()
        .map(|rel| tree.join(rel))
        .find(|p| p.is_file());
    let readme = Some(tree.join("README.rst")).filter(|p| p.is_file());

    let versions = interpreter_versions(launcher.as_deref(), &libpypy)
        .with_context(|| format!("finding the versions of the PyPy in {}", tree.display()))?;
    if versions.python != py {
        bail!(
            "{} says it is Python {}, but its name says {py}; the tree is inconsistent",
            libpypy.display(),
            versions.python
        );
    }
    Ok(Found {
        libpypy,
        launcher,
        stdlib,
        include,
        license,
        readme,
        versions,
    })
}

/// Asks the launcher (with libpypy's folder on the loader path, since
/// layouts like Debian's keep them apart); when it cannot run (another
/// target, or no launcher), reads the version banner compiled into libpypy.
pub fn interpreter_versions(launcher: Option<&Path>, libpypy: &Path) -> Result<Versions> {
    if let Some(launcher) = launcher {
        let code = "import sys; v = sys.version_info; p = sys.pypy_version_info; \
                    print('%d.%d %d.%d.%d' % (v[0], v[1], p[0], p[1], p[2]))";
        if let Ok(out) = ask_launcher(launcher, libpypy, code) {
            if let Some((python, pypy)) = out.trim().split_once(' ') {
                return Ok(Versions {
                    python: python.into(),
                    pypy: pypy.into(),
                });
            }
        }
    }
    let bytes = fs_err::read(libpypy)?;
    versions_from_library(&bytes).with_context(|| {
        format!(
            "{} has no version banner (`3.x.y (` and `[PyPy x.y.z`) and no launcher could run",
            libpypy.display()
        )
    })
}

/// Asks the launcher (when it runs here) for its standard library and
/// header folders (`sysconfig`); each is kept only if it exists inside `tree`.
fn interpreter_paths(
    launcher: Option<&Path>,
    libpypy: &Path,
    tree: &Path,
) -> Option<(Option<PathBuf>, Option<PathBuf>)> {
    let code = "import sysconfig; print(sysconfig.get_path('stdlib')); \
                print(sysconfig.get_path('include'))";
    let out = ask_launcher(launcher?, libpypy, code).ok()?;
    let tree = tree.canonicalize().ok()?;
    let inside = |line: Option<&str>| {
        let path = PathBuf::from(line?.trim()).canonicalize().ok()?;
        (path.is_dir() && path.starts_with(&tree)).then_some(path)
    };
    let mut lines = out.lines();
    Some((inside(lines.next()), inside(lines.next())))
}

/// Runs `code` with the launcher (`-S`, no `PYTHONHOME`/`PYTHONPATH`), with
/// libpypy's folder on the loader path, since layouts like Debian's keep
/// the two apart; its stdout.
fn ask_launcher(launcher: &Path, libpypy: &Path, code: &str) -> Result<String> {
    let sh = Shell::new()?;
    let lib_dir = libpypy.parent().unwrap_or(Path::new("."));
    // The launcher runs here, so the loader is this machine's.
    let host = crate::targets::get(crate::targets::host_triple())?;
    let _env = sh.push_env(&host.loader_path_var, lib_dir);
    Ok(cmd!(sh, "{launcher} -S -c {code}")
        .env_remove("PYTHONHOME")
        .env_remove("PYTHONPATH")
        .quiet()
        .ignore_stderr()
        .read()?)
}

/// Reads the banner pieces PyPy compiles into libpypy for `sys.version`:
/// `3.9.16 (…` and `[PyPy 7.3.11 with …`.
pub fn versions_from_library(bytes: &[u8]) -> Option<Versions> {
    let pypy = find_after(bytes, b"[PyPy ", |b| b.is_ascii_digit() || b == b'.')?;
    let pypy = dotted(&pypy, 3)?;
    // The Python version starts a NUL-terminated string: "3.9.16 (".
    let python = bytes
        .split(|&b| b == 0)
        .filter_map(|s| std::str::from_utf8(s).ok())
        .find_map(|s| {
            let (ver, rest) = s.split_once(" (")?;
            (!rest.is_empty() && dotted(ver, 3).is_some() && ver.starts_with(['2', '3']))
                .then(|| ver.rsplit_once('.').unwrap().0.to_string())
        })?;
    Some(Versions { python, pypy })
}

fn find_after(bytes: &[u8], needle: &[u8], keep: impl Fn(u8) -> bool) -> Option<String> {
    let start = bytes.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let end = bytes[start..]
        .iter()
        .position(|&b| !keep(b))
        .map_or(bytes.len(), |n| start + n);
    String::from_utf8(bytes[start..end].to_vec()).ok()
}

fn dotted(s: &str, parts: usize) -> Option<String> {
    pypy_archive::version::has_parts(s, parts).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_in_library_name() {
        assert_eq!(
            py_in_name("libpypy3.11-c.so", "libpypy", "-c.so").as_deref(),
            Some("3.11")
        );
        assert_eq!(py_in_name("libpypy-c.so", "libpypy", "-c.so"), None);
        assert_eq!(py_in_name("libpypy3.x-c.so", "libpypy", "-c.so"), None);
    }

    #[test]
    fn banner_versions() {
        let bytes =
            b"junk\x003.11.13 (7.3.20+dfsg-1, Jan 01 2025, 00:00:00)\x00[PyPy 7.3.20 with GCC]\x00";
        assert_eq!(
            versions_from_library(bytes),
            Some(Versions {
                python: "3.11".into(),
                pypy: "7.3.20".into()
            })
        );
        assert_eq!(versions_from_library(b"nothing here"), None);
    }
}
