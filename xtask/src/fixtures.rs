//! Where the real fixtures the test-suite and benchmarks use are, once prepared.
//!
//! The test-support crate prepares them (`cargo xtask test` runs its
//! binary); tests and benchmarks call the accessors here, which never
//! download anything and fail with the command that fixes a missing fixture.
//!
//! The real libpypy the tests embed comes from [`TestPypySource`]: Debian's
//! packages on Linux, PyPy's own binary release where apt does not exist
//! (`PYPY_EMBED_TEST_PYPY`, set per runner by `ci.yml` from the target table).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::targets::{self, Download, Target, TestPypy};
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

pub fn existing(path: PathBuf, what: &str) -> Result<PathBuf> {
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

/// File in the fixture folder recording which RPython the preparation chose.
const TRANSLATION_RPYTHON_FILE: &str = "translation-rpython.txt";

/// The RPython the preparation chose for this machine's small translations.
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
pub fn release_archive_name(release: &Download, target: &Target) -> Result<String> {
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
pub fn venv_program(venv: &Path, name: &str) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join(format!("{name}.exe"))
    } else {
        venv.join("bin").join(name)
    }
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
