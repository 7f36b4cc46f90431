//! Finds and checks the Python 2.7 host interpreter that runs RPython.
//!
//! Translation is hours of single-threaded Python, so the host matters: a
//! PyPy 2.7 is 2-3x faster than CPython 2.7 and is preferred when both exist.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

/// Environment variable naming the host interpreter (like `--host-python`).
pub const HOST_ENV: &str = "PYPY_EMBED_HOST_PYTHON";

/// A checked Python 2.7 interpreter, with the folder of extra packages it needs.
#[derive(Debug, Clone)]
pub struct HostPython {
    pub program: PathBuf,
    /// `PyPy` or `CPython`.
    pub implementation: String,
    /// The first line of `sys.version`, part of the build cache key.
    pub version: String,
    /// Our isolated folder of host packages, to put on `PYTHONPATH`.
    pub site: Option<PathBuf>,
}

/// How much longer RPython takes on CPython 2.7 than on PyPy 2.7, measured
/// on this project's CI kind of machine (2 cores): the annotation of PyPy
/// 3.11 v7.3.23 (`--annotate`, the longest single-threaded phase), CPython
/// 2.7.18 against PyPy 2.7 7.3.3 (Debian's), one run each, side by side
/// (each had one core; see `docs/build-report.md`). The later phases gain
/// more from PyPy's JIT; PyPy's own build docs say 2-3x for a whole build.
/// On the small test target CPython was faster (see `docs/build-report.md`):
/// a 30-second run is over before PyPy's JIT pays off.
pub const CPYTHON_SLOWDOWN: f64 = CPYTHON_SECONDS / PYPY_SECONDS;
/// The two timings behind [`CPYTHON_SLOWDOWN`], in seconds of wall time.
pub const CPYTHON_SECONDS: f64 = 674.4;
pub const PYPY_SECONDS: f64 = 459.6;

// The measured figures must say what the note says.
const _: () = assert!(CPYTHON_SECONDS > PYPY_SECONDS);

/// A warning for a CPython host, naming the expected slowdown and the faster
/// host `--bootstrap-host` would download (`bootstrap`, from the target
/// table); `None` for a PyPy host.
pub fn slow_host_note(host: &HostPython, bootstrap: &str) -> Option<String> {
    (host.implementation == "CPython").then(|| {
        format!(
            "CPython 2.7 runs RPython about {CPYTHON_SLOWDOWN:.1}x slower than PyPy 2.7 \
             (annotating PyPy 3.11 took {CPYTHON_SECONDS:.0} s against {PYPY_SECONDS:.0} s \
             here); --bootstrap-host downloads {bootstrap} and uses it instead"
        )
    })
}

/// What one candidate turned out to be, for the error when none fits.
struct Probe {
    implementation: String,
    major_minor: String,
    version: String,
}

fn probe(sh: &Shell, program: &Path) -> Result<Probe> {
    let script = "import sys, platform; print(platform.python_implementation()); \
                  print('%d.%d' % sys.version_info[:2]); print(sys.version.splitlines()[0])";
    let out = cmd!(sh, "{program} -c {script}")
        .quiet()
        .ignore_stderr()
        .read()
        .with_context(|| format!("{} does not run as a Python interpreter", program.display()))?;
    let mut lines = out.lines();
    let mut next = || lines.next().unwrap_or_default().trim().to_string();
    Ok(Probe {
        implementation: next(),
        major_minor: next(),
        version: next(),
    })
}

/// One place a host may be, in the order of the search.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Candidate {
    /// A program to probe, and how it was found.
    Program { path: PathBuf, how: String },
    /// A place that holds nothing: what was looked for, for the error.
    Absent(String),
}

/// The candidates in the order the translate issue asks for.
fn candidates(explicit: Option<&Path>) -> Vec<Candidate> {
    let program = |path: PathBuf, how: String| Candidate::Program { path, how };
    if let Some(p) = explicit {
        return vec![program(p.to_path_buf(), "--host-python".into())];
    }
    if let Some(p) = crate::env::var_os(HOST_ENV) {
        return vec![program(PathBuf::from(p), format!("${HOST_ENV}"))];
    }
    let mut found = Vec::new();
    for name in ["pypy2.7", "pypy", "python2.7", "python2"] {
        found.push(match which(name) {
            Some(p) => program(p, format!("`{name}` on PATH")),
            None => Candidate::Absent(format!("`{name}` on PATH (not found)")),
        });
    }
    found.push(match find_cpython27() {
        Ok(p) => program(p, "pyenv's 2.7 versions".into()),
        Err(_) => Candidate::Absent("pyenv's 2.7 versions (none installed)".into()),
    });
    found
}

/// Finds a Python 2.7 host and makes `packages` importable for it.
///
/// `packages` are pip requirement strings (`cffi<1.16`); a PyPy host has cffi
/// built in, so only what is really missing gets installed, into a folder of
/// ours and never into the user's site-packages.
/// Packages missing from the host go to `<cache_root>/host-packages/<key>`.
pub fn find(
    sh: &Shell,
    explicit: Option<&Path>,
    packages: &[String],
    cache_root: &Path,
) -> Result<HostPython> {
    let mut searched = Vec::new();
    for candidate in candidates(explicit) {
        let (program, how) = match candidate {
            Candidate::Program { path, how } => (path, how),
            Candidate::Absent(what) => {
                searched.push(what);
                continue;
            }
        };
        match probe(sh, &program) {
            Ok(p) if p.major_minor == "2.7" => {
                let mut host = HostPython {
                    program: program.clone(),
                    implementation: p.implementation,
                    version: p.version,
                    site: None,
                };
                host.site = ensure_packages(sh, &host, packages, cache_root)?;
                return Ok(host);
            }
            Ok(p) => searched.push(format!(
                "{} ({how}): {} {}, not 2.7",
                program.display(),
                p.implementation,
                p.major_minor
            )),
            Err(e) => searched.push(format!("{} ({how}): {e:#}", program.display())),
        }
    }
    bail!(
        "no Python 2.7 host interpreter for RPython was found.\nSearched:\n  - {}\n\
         Get one of:\n  - a PyPy 2.7 binary from https://pypy.org/download.html (fastest), \
         then pass --host-python PATH/bin/pypy or set {HOST_ENV}\n  \
         - `cargo xtask build-pypy --bootstrap-host` to download the official PyPy 2.7 named in the target table\n  \
         - CPython 2.7: `pyenv install 2.7.18`",
        searched.join("\n  - ")
    )
}

/// The module a requirement string makes importable (`cffi<1.16` -> `cffi`).
pub fn module_of(requirement: &str) -> &str {
    let end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(requirement.len());
    &requirement[..end]
}

fn importable(sh: &Shell, host: &HostPython, module: &str, site: Option<&Path>) -> bool {
    let program = &host.program;
    let _env = site.map(|s| sh.push_env("PYTHONPATH", s));
    let import = format!("import {module}");
    cmd!(sh, "{program} -c {import}")
        .quiet()
        .ignore_stderr()
        .ignore_stdout()
        .run()
        .is_ok()
}

fn ensure_packages(
    sh: &Shell,
    host: &HostPython,
    packages: &[String],
    cache_root: &Path,
) -> Result<Option<PathBuf>> {
    let missing: Vec<&String> = packages
        .iter()
        .filter(|p| !importable(sh, host, module_of(p), None))
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    // One folder per interpreter and package set, so different hosts never share builds of cffi.
    let mut hasher = Sha256::new();
    hasher.update(host.program.to_string_lossy().as_bytes());
    hasher.update(host.version.as_bytes());
    for p in &missing {
        hasher.update(p.as_bytes());
    }
    let key = &hex::encode(hasher.finalize())[..16];
    let site = cache_root.join("host-packages").join(key);
    if missing
        .iter()
        .all(|p| importable(sh, host, module_of(p), Some(&site)))
    {
        return Ok(Some(site));
    }
    eprintln!(
        "host: installing {:?} for {} into {}",
        missing,
        host.program.display(),
        site.display()
    );
    let parent = site.parent().context("host package folder has a parent")?;
    fs_err::create_dir_all(parent)?;
    let tmp = tempfile::tempdir_in(parent)?;
    let dir = tmp.path();
    let program = &host.program;
    let requirements = missing.clone();
    cmd!(sh, "{program} -m pip install --quiet --disable-pip-version-check --target {dir} {requirements...}")
        .quiet()
        .run()
        .with_context(|| {
            format!(
                "installing {missing:?} for the host {} failed; install them for it by hand \
                 or use a PyPy 2.7 host, which has cffi built in",
                program.display()
            )
        })?;
    if site.exists() {
        fs_err::remove_dir_all(&site)?;
    }
    fs_err::rename(tmp.keep(), &site)?;
    Ok(Some(site))
}

/// A Python 2.7: `$PYPY_EMBED_HOST_PYTHON` when set (CI points it at the PyPy
/// 2.7 that `setup-python` installs, as the runners no longer have CPython
/// 2.7), else CPython as pyenv installs it on these machines, else
/// `python2.7` (or `python2`) on PATH.
pub fn find_cpython27() -> Result<PathBuf> {
    let pyenv_roots: Vec<PathBuf> = [
        crate::env::var_os("PYENV_ROOT").map(PathBuf::from),
        crate::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")),
    ]
    .into_iter()
    .flatten()
    .collect();
    find_python27_in(
        crate::env::var_os(HOST_ENV).as_deref(),
        &pyenv_roots,
        crate::env::var_os("PATH").as_deref(),
    )
}

/// [`find_cpython27`] with `$PYPY_EMBED_HOST_PYTHON`, the pyenv roots and the PATH given.
fn find_python27_in(
    explicit: Option<&OsStr>,
    pyenv_roots: &[PathBuf],
    path: Option<&OsStr>,
) -> Result<PathBuf> {
    if let Some(explicit) = explicit.filter(|v| !v.is_empty()).map(PathBuf::from) {
        if !explicit.is_file() {
            bail!(
                "${} names {}, which is not a file; point it at a Python 2.7 interpreter or unset it",
                HOST_ENV,
                explicit.display()
            );
        }
        return Ok(explicit);
    }
    let mut searched = Vec::new();
    for root in pyenv_roots {
        let versions = root.join("versions");
        if let Ok(entries) = std::fs::read_dir(&versions) {
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("2.7"))
                .map(|e| e.path().join("bin").join("python"))
                .filter(|p| p.exists())
                .collect();
            found.sort();
            if let Some(p) = found.pop() {
                return Ok(p);
            }
        }
        searched.push(versions.display().to_string());
    }
    for name in ["python2.7", "python2"] {
        if let Some(p) = path.and_then(|path| which_in(path, name)) {
            return Ok(p);
        }
        searched.push(format!("{name} on PATH"));
    }
    bail!(
        "no Python 2.7 found (searched {}); install one with `pyenv install 2.7.18`, \
         `apt-get install python2.7` where the distribution still has it, or put a \
         PyPy 2.7 on PATH as `python2.7`",
        searched.join(", ")
    )
}

/// A program on PATH, without running it.
pub fn which(name: &str) -> Option<PathBuf> {
    which_in(&crate::env::var_os("PATH")?, name)
}

/// A program in one of the folders of `path` (a PATH value); `NAME.exe` also counts on Windows.
fn which_in(path: &OsStr, name: &str) -> Option<PathBuf> {
    let names = if cfg!(windows) {
        vec![name.to_string(), format!("{name}.exe")]
    } else {
        vec![name.to_string()]
    };
    std::env::split_paths(path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_come_from_requirements() {
        assert_eq!(module_of("cffi<1.16"), "cffi");
        assert_eq!(module_of("py==1.11.0"), "py");
        assert_eq!(module_of("cffi"), "cffi");
    }

    #[test]
    fn a_cpython_host_is_told_how_much_slower_it_is() {
        let host = |implementation: &str| HostPython {
            program: PathBuf::from("/usr/bin/python2.7"),
            implementation: implementation.into(),
            version: "2.7.18".into(),
            site: None,
        };
        let note = slow_host_note(&host("CPython"), "pypy2.7-v7.3.20-linux64.tar.bz2").unwrap();
        assert!(
            note.contains(&format!("{CPYTHON_SLOWDOWN:.1}x slower"))
                && note.contains("--bootstrap-host downloads pypy2.7-v7.3.20-linux64.tar.bz2"),
            "{note}"
        );
        assert_eq!(slow_host_note(&host("PyPy"), "x"), None);
    }

    #[test]
    fn explicit_host_is_the_only_candidate() {
        let c = candidates(Some(Path::new("/opt/pypy/bin/pypy")));
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0],
            Candidate::Program {
                path: PathBuf::from("/opt/pypy/bin/pypy"),
                how: "--host-python".into()
            }
        );
    }

    #[test]
    fn a_python3_is_rejected_with_what_was_found() {
        let sh = Shell::new().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let err = find(&sh, Some(Path::new("python3")), &[], cache.path()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("not 2.7"), "{msg}");
        assert!(msg.contains("--host-python"), "{msg}");
    }

    #[test]
    fn the_machines_python27_is_accepted() {
        let sh = Shell::new().unwrap();
        let python = find_cpython27().expect("Python 2.7 fixture");
        let cache = tempfile::tempdir().unwrap();
        let host = find(&sh, Some(&python), &[], cache.path()).unwrap();
        // CPython from pyenv here; CI's runners have PyPy 2.7 as `python2.7`.
        assert!(
            ["CPython", "PyPy"].contains(&host.implementation.as_str()),
            "{}",
            host.implementation
        );
        assert!(host.version.starts_with("2.7"), "{}", host.version);
    }

    #[test]
    fn python27_on_path_is_found_without_pyenv() {
        // CI's macOS runner: no pyenv, a `python2.7` link on PATH to setup-python's PyPy 2.7.
        let bin = tempfile::tempdir().unwrap();
        let real = bin.path().join("real-python");
        fs_err::write(&real, "").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&real, bin.path().join("python2.7")).unwrap();
        #[cfg(windows)]
        fs_err::copy(&real, bin.path().join("python2.7.exe")).unwrap();
        let no_pyenv = [bin.path().join("no-pyenv")];
        let path = std::env::join_paths([Path::new("/nonexistent"), bin.path()]).unwrap();
        let found = find_python27_in(None, &no_pyenv, Some(&path)).unwrap();
        assert_eq!(found.parent(), Some(bin.path()));

        let err = find_python27_in(None, &no_pyenv, Some(OsStr::new(""))).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("no-pyenv") && text.contains("python2.7 on PATH"),
            "{text}"
        );
    }

    #[test]
    fn the_host_variable_comes_first_and_must_name_a_file() {
        // CI's Windows runner: setup-python's PyPy 2.7 is `python.exe` in a
        // folder of its own, named by $PYPY_EMBED_HOST_PYTHON.
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("python.exe");
        fs_err::write(&real, "").unwrap();
        let pyenv = [PathBuf::from("/nonexistent")];
        let found = find_python27_in(Some(real.as_os_str()), &pyenv, None).unwrap();
        assert_eq!(found, real);
        // Set but empty counts as unset.
        let err = find_python27_in(Some(OsStr::new("")), &pyenv, None).unwrap_err();
        assert!(
            format!("{err:#}").contains("no Python 2.7 found"),
            "{err:#}"
        );

        let missing = tempfile::tempdir().unwrap().path().join("python.exe");
        let err = find_python27_in(Some(missing.as_os_str()), &pyenv, None).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains(HOST_ENV) && text.contains("python.exe") && text.contains("not a file"),
            "{text}"
        );
    }
}
