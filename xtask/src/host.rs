//! Finds and checks the Python 2.7 host interpreter that runs RPython.
//!
//! Translation is hours of single-threaded Python, so the host matters: a
//! PyPy 2.7 is 2-3x faster than CPython 2.7 and is preferred when both exist.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::{fixtures, paths};

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

/// The candidates in the order the translate issue asks for, each with how it was found.
fn candidates(explicit: Option<&Path>) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    if let Some(p) = explicit {
        found.push((p.to_path_buf(), "--host-python".to_string()));
        return found;
    }
    if let Some(p) = std::env::var_os(HOST_ENV) {
        found.push((PathBuf::from(p), format!("${HOST_ENV}")));
        return found;
    }
    for name in ["pypy2.7", "pypy", "python2.7", "python2"] {
        match fixtures::which(name) {
            Some(p) => found.push((p, format!("`{name}` on PATH"))),
            None => found.push((PathBuf::from(name), format!("`{name}` on PATH (not found)"))),
        }
    }
    if let Ok(p) = fixtures::find_cpython27() {
        found.push((p, "pyenv's 2.7 versions".to_string()));
    } else {
        found.push((
            PathBuf::from("~/.pyenv/versions/2.7*"),
            "pyenv's 2.7 versions (none installed)".to_string(),
        ));
    }
    found
}

/// Finds a Python 2.7 host and makes `packages` importable for it.
///
/// `packages` are pip requirement strings (`cffi<1.16`); a PyPy host has cffi
/// built in, so only what is really missing gets installed, into a folder of
/// ours and never into the user's site-packages.
pub fn find(sh: &Shell, explicit: Option<&Path>, packages: &[String]) -> Result<HostPython> {
    let mut searched = Vec::new();
    for (program, how) in candidates(explicit) {
        if !how.ends_with("(not found)") && !how.ends_with("(none installed)") {
            match probe(sh, &program) {
                Ok(p) if p.major_minor == "2.7" => {
                    let mut host = HostPython {
                        program: program.clone(),
                        implementation: p.implementation,
                        version: p.version,
                        site: None,
                    };
                    host.site = ensure_packages(sh, &host, packages)?;
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
        } else {
            searched.push(how);
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
pub(crate) fn module_of(requirement: &str) -> &str {
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

fn ensure_packages(sh: &Shell, host: &HostPython, packages: &[String]) -> Result<Option<PathBuf>> {
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
    let site = paths::cache_root().join("host-packages").join(key);
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
        assert_eq!(c[0].0, PathBuf::from("/opt/pypy/bin/pypy"));
    }

    #[test]
    fn a_python3_is_rejected_with_what_was_found() {
        let sh = Shell::new().unwrap();
        let err = find(&sh, Some(Path::new("python3")), &[]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("not 2.7"), "{msg}");
        assert!(msg.contains("--host-python"), "{msg}");
    }

    #[test]
    fn the_machines_python27_is_accepted() {
        let sh = Shell::new().unwrap();
        let python = fixtures::find_cpython27().expect("Python 2.7 fixture");
        let host = find(&sh, Some(&python), &[]).unwrap();
        // CPython from pyenv here; CI's runners have PyPy 2.7 as `python2.7`.
        assert!(
            ["CPython", "PyPy"].contains(&host.implementation.as_str()),
            "{}",
            host.implementation
        );
        assert!(host.version.starts_with("2.7"), "{}", host.version);
    }
}
