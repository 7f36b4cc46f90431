//! The target table (`recipes/targets.toml`): every platform fact the xtask needs, keyed by triple.
//!
//! The table is compiled in, so every target's names, layouts and paths are
//! checked by the unit tests on any machine, and the GitHub workflows are
//! generated from it (`cargo xtask ci-matrix`).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The table as shipped with the xtask, so that tests on Linux see every target.
const TABLE: &str = include_str!("../../recipes/targets.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Macos,
    Windows,
}

impl Os {
    /// The name GitHub Actions gives this OS in `runner.os`.
    pub fn github_name(self) -> &'static str {
        match self {
            Os::Linux => "Linux",
            Os::Macos => "macOS",
            Os::Windows => "Windows",
        }
    }

    /// The `cfg` predicate Rust code uses for this OS.
    pub fn cfg_name(self) -> &'static str {
        match self {
            Os::Linux => "target_os = \"linux\"",
            Os::Macos => "target_os = \"macos\"",
            Os::Windows => "windows",
        }
    }
}

/// How a binary in the archive finds libpypy and its neighbours at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SearchPath {
    /// ELF RUNPATH relative to `$ORIGIN`.
    Origin,
    /// Mach-O `@rpath` install names with `@loader_path`-relative LC_RPATH entries.
    Rpath,
    /// Windows looks next to the executable first; nothing to rewrite.
    DllDir,
}

/// The package manager that installs a target's [`Target::system_packages`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    /// Debian and Ubuntu.
    Apt,
    /// Homebrew on macOS.
    Brew,
    /// Nothing to install: the runner image brings the toolchain (Windows).
    None,
}

/// Where CI's real-libpypy tests get a PyPy on a target's own OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestPypy {
    /// The distribution's `pypy3`, `pypy3-lib` and `pypy3-dev` packages (`apt-get download`).
    DebianPackages,
    /// PyPy's own binary release for this platform, through the fetch stage.
    OfficialRelease,
}

impl TestPypy {
    /// The value of [`TEST_PYPY_ENV`] that selects this source.
    pub fn as_str(self) -> &'static str {
        match self {
            TestPypy::DebianPackages => "debian-packages",
            TestPypy::OfficialRelease => "official-release",
        }
    }
}

/// Environment variable that tells the fixtures which [`TestPypy`] source to use;
/// `ci.yml` sets it per runner from the table.
pub const TEST_PYPY_ENV: &str = "PYPY_EMBED_TEST_PYPY";
/// With [`TestPypy::OfficialRelease`]: the URL of [`Target::test_release`], set by `ci.yml`.
pub const TEST_PYPY_URL_ENV: &str = "PYPY_EMBED_TEST_PYPY_URL";
/// With [`TestPypy::OfficialRelease`]: the sha256 of [`Target::test_release`], set by `ci.yml`.
pub const TEST_PYPY_SHA256_ENV: &str = "PYPY_EMBED_TEST_PYPY_SHA256";

/// Which RPython the test-suite's small translations run on a target's own OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestRpython {
    /// The `rpython` 0.2.1 sdist from PyPI: small and reachable through PyPI,
    /// but from 2017: it asserts an x86 Mac and builds 32-bit Windows only.
    PypiSdist,
    /// The RPython inside the newest recipe's PyPy source release, through the fetch stage.
    SourceRelease,
}

impl TestRpython {
    /// The value of [`TEST_RPYTHON_ENV`] that selects this RPython.
    pub fn as_str(self) -> &'static str {
        match self {
            TestRpython::PypiSdist => "pypi-sdist",
            TestRpython::SourceRelease => "source-release",
        }
    }
}

/// Environment variable that overrides [`Target::test_rpython`]: `pypi-sdist`,
/// `source-release`, or the path of a PyPy source tree.
pub const TEST_RPYTHON_ENV: &str = "PYPY_EMBED_TEST_RPYTHON";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Download {
    pub url: String,
    pub sha256: String,
}

impl Download {
    /// The last path segment of the URL.
    pub fn file_name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url)
    }
}

/// The C compiler a build of the target drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompilerKind {
    /// `$CC`, else `cc` (gcc, clang).
    Cc,
    /// MSVC's `cl.exe`, found in the Visual Studio installation as the cc crate finds it.
    Msvc,
}

/// A program doctor runs to see that it is there, and what installs it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbedTool {
    pub program: String,
    /// An argument that makes it run and stop (`--version`).
    pub probe: String,
    pub install: String,
}

/// The build machine's tools for a target, as doctor checks them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tools {
    pub compiler: CompilerKind,
    /// What installs the compiler when it is missing.
    pub compiler_install: String,
    /// `make`, or `nmake` (beside `cl.exe`, found the same way).
    pub make: String,
    /// The tool the package stage rewrites search paths with (none on Windows).
    #[serde(default)]
    pub relocation_tool: Option<ProbedTool>,
    /// What installs git when it is missing.
    pub git_install: String,
    /// macOS: the Xcode command line tools must be selected.
    #[serde(default)]
    pub xcode: bool,
    /// Whether the C libraries' headers are looked for with the compiler
    /// (not on Windows, where the externals bring them).
    pub headers: bool,
}

/// The part of a target's entry that only CI and the test-suite read.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ci {
    /// The GitHub Actions runner image that builds this target.
    pub runner: String,
    /// Whether `ci.yml` also runs the test-suite on this target's runner.
    pub test: bool,
    /// What the runner image already brings and a build relies on (compiler, make, …).
    pub runner_provides: Vec<String>,
    /// Where CI's real-libpypy tests get a PyPy on this OS.
    pub test_pypy: TestPypy,
    /// Which RPython the test-suite's small translations use on this OS.
    pub test_rpython: TestRpython,
    /// Packages only the test-suite needs on top of [`Target::system_packages`].
    pub test_packages: Vec<String>,
    /// PyPy's own PyPy 3.11 binary release for this platform: the real libpypy that
    /// CI's tests embed where [`Ci::test_pypy`] is [`TestPypy::OfficialRelease`].
    pub test_release: Download,
}

/// One supported target.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub triple: String,
    pub os: Os,
    /// The fixed folder builds translate in (see [`crate::build_dir`]).
    pub build_dir: String,
    /// The platform suffix of PyPy's own release names (`linux64`, `win64`, …).
    pub upstream_platform: String,
    /// Extension of PyPy's own release archives for this platform (`tar.bz2`, `zip`).
    pub upstream_archive: String,
    libpypy: String,
    launcher: String,
    translated_launcher: String,
    #[serde(default)]
    import_library: Option<String>,
    #[serde(default)]
    import_library_path: Option<String>,
    bin_dir: String,
    stdlib_dir: String,
    include_dir: String,
    /// Names beside libpypy that link to it (`libpypy{py_major}-c.so`).
    link_aliases: Vec<String>,
    /// Names beside the launcher that link to it (`python{py}`), as
    /// upstream's package.py makes them.
    launcher_aliases: Vec<String>,
    /// The SONAME libpypy gets (Linux).
    #[serde(default)]
    soname: Option<String>,
    /// Where the pkg-config file goes.
    pkgconfig_dir: String,
    /// The `Libs:` line of the pkg-config file.
    pkgconfig_libs: String,
    pub search_path: SearchPath,
    /// The variable the loader searches for shared libraries
    /// (`LD_LIBRARY_PATH`, `DYLD_LIBRARY_PATH`, `PATH`).
    pub loader_path_var: String,
    /// MACOSX_DEPLOYMENT_TARGET of macOS builds.
    #[serde(default)]
    pub deployment_target: Option<String>,
    /// PyPy's prebuilt C dependencies for Windows builds, pinned.
    #[serde(default)]
    pub externals: Option<Externals>,
    /// Installs [`Target::system_packages`] and [`Target::test_packages`].
    pub package_manager: PackageManager,
    /// The distribution package with PyPy's C headers (`pypy3-dev` on Debian).
    #[serde(default)]
    pub headers_package: Option<String>,
    /// Folders whose `include/`, `lib/` and `lib/pkgconfig/` a build searches
    /// (Homebrew's keg-only formulae, which the compiler does not see by itself).
    pub library_prefixes: Vec<String>,
    /// Packages the runner installs before a build (apt on Linux, Homebrew on macOS).
    pub system_packages: Vec<String>,
    /// Shared libraries that binaries in the archive may depend on.
    pub allowed_libraries: Vec<String>,
    /// An official PyPy 2.7 binary that `--bootstrap-host` can use as translation host.
    pub bootstrap: Download,
    /// What only the workflows and the test-suite read. Not recorded in
    /// archives: their build record keeps the release layout alone.
    #[serde(skip_serializing)]
    pub ci: Ci,
    /// The build machine's tools, as doctor checks them (not recorded).
    #[serde(skip_serializing)]
    pub tools: Tools,
    /// Linux: what a portable archive may need of the system it runs on.
    #[serde(default)]
    pub portability: Option<Portability>,
    /// Linux: the C toolchain that builds for [`Portability::glibc`] from any newer Linux.
    #[serde(default)]
    pub toolchain: Option<Toolchain>,
    /// How programs of this target run on a build machine of another
    /// architecture. Not recorded when absent, so that adding it left the
    /// other targets' recorded entries (and archives) as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator: Option<EmulatorPin>,
}

/// Debian's qemu-user and a sysroot of the target's own Debian packages:
/// enough to run a dynamically linked program of the target on an x86-64
/// Linux build machine (the configure programs of a cross-translation, the
/// translated interpreter, the embedding tests).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorPin {
    /// The build machine this works on.
    pub build_machine: String,
    /// The build machine's package with the emulator (`qemu-user`, static since Debian 13).
    pub package: String,
    /// The emulator's program in that package.
    pub program: String,
    /// Debian's name of the target's architecture (`arm64`).
    pub debian_arch: String,
    /// The target's packages unpacked as the sysroot (the C library and its loader).
    pub sysroot_packages: Vec<String>,
    /// The ELF `e_machine` of the target's programs (183 for aarch64), by
    /// which the kernel hands them to the emulator when the tests register
    /// it (`binfmt_misc`).
    pub elf_machine: u16,
}

/// The portability policy of a Linux target, in the manner of manylinux and
/// python-build-standalone: only the C library's own family may be needed,
/// no symbol version above the baseline, and no bundled library's symbols
/// exported (they would clash with a host program's own copy).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Portability {
    /// The oldest glibc the archive runs on, e.g. `2.17`.
    pub glibc: String,
    /// The only shared libraries a portable binary may need.
    pub libraries: Vec<String>,
    /// Prefixes of the bundled libraries' symbols (`SSL_`, `ffi_`, …), which
    /// no binary of the archive may export.
    pub private_symbol_prefixes: Vec<String>,
    /// Names with those prefixes that PyPy's own code defines (`EVP_hash`).
    #[serde(default)]
    pub allowed_exports: Vec<String>,
}

/// zig's C compiler, from PyPI's `ziglang` wheel, pinned by file name and sha256.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Toolchain {
    /// What zig's `-target` says to build for this triple at the baseline
    /// (`x86_64-linux-gnu.2.17`).
    pub zig_target: String,
    /// The wheel of the zig that runs on this triple (a build machine's own).
    pub zig_wheel: String,
    pub zig_sha256: String,
}

impl Toolchain {
    /// The name, version and platform tags of [`Toolchain::zig_wheel`]
    /// (`ziglang-0.17.1-py3-none-manylinux_2_12_x86_64.manylinux2010_x86_64.whl`),
    /// which is what `pip download` needs to fetch exactly that file.
    pub fn wheel_requirement(&self) -> Result<(String, String, Vec<String>)> {
        let wheel = &self.zig_wheel;
        let stem = wheel
            .strip_suffix(".whl")
            .with_context(|| format!("`{wheel}` is not a wheel file name (no .whl)"))?;
        let parts: Vec<&str> = stem.split('-').collect();
        let [name, version, _python, _abi, platforms] = parts[..] else {
            bail!("`{wheel}` is not a wheel file name (name-version-python-abi-platform.whl)");
        };
        Ok((
            name.to_string(),
            version.to_string(),
            platforms.split('.').map(str::to_string).collect(),
        ))
    }
}

/// A git repository pinned to one commit (PyPy's `externals` on Windows).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Externals {
    pub url: String,
    /// The branch PyPy's `get_externals.py` checks out (`win64_14x`).
    pub branch: String,
    /// The commit of that branch this project builds with.
    pub commit: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    target: Vec<Target>,
}

/// Every supported target, in table order.
pub fn all() -> Result<Vec<Target>> {
    parse(TABLE).context("recipes/targets.toml is invalid")
}

/// Parses and checks a target table; [`all`] uses the shipped one.
pub fn parse(text: &str) -> Result<Vec<Target>> {
    let table: Table = toml::from_str(text)?;
    let mut seen = std::collections::BTreeSet::new();
    for t in &table.target {
        if !seen.insert(t.triple.as_str()) {
            bail!("target `{}` appears twice in the table", t.triple);
        }
        t.check()
            .with_context(|| format!("target `{}` in the table is inconsistent", t.triple))?;
    }
    Ok(table.target)
}

/// The target with this triple, or an error listing the supported ones.
pub fn get(triple: &str) -> Result<Target> {
    find(&all()?, triple)
}

pub fn find(all: &[Target], triple: &str) -> Result<Target> {
    if let Some(t) = all.iter().find(|t| t.triple == triple) {
        return Ok(t.clone());
    }
    bail!(
        "unsupported target `{triple}`; supported targets: {}",
        triples(all).join(", ")
    )
}

fn triples(all: &[Target]) -> Vec<&str> {
    all.iter().map(|t| t.triple.as_str()).collect()
}

/// The triple this xtask was compiled for, which is the only one it can translate for.
pub fn host_triple() -> &'static str {
    env!("XTASK_HOST_TRIPLE")
}

/// The target `triple` if this machine can build it, else an error saying where to build it.
///
/// RPython translates for the machine it runs on and nothing else, so every
/// target is built on its own runner (the release workflow's matrix).
pub fn ensure_buildable_here(triple: &str) -> Result<Target> {
    ensure_buildable_on(&all()?, triple, host_triple())
}

/// [`ensure_buildable_here`] for a given table and host, so every case can be tested anywhere.
pub fn ensure_buildable_on(all: &[Target], triple: &str, host: &str) -> Result<Target> {
    let target = find(all, triple)?;
    // A target whose `[target.emulator]` names this machine is cross-built here.
    let emulated_here = target
        .emulator
        .as_ref()
        .is_some_and(|pin| pin.build_machine == host);
    if target.triple == host || emulated_here {
        return Ok(target);
    }
    let host_note = if all.iter().any(|t| t.triple == host) {
        String::new()
    } else {
        format!(
            "; this machine's triple `{host}` is not a supported target either (supported: {})",
            triples(all).join(", ")
        )
    };
    bail!(
        "cannot build `{triple}` on this `{host}` machine: build {triple} on a `{}` runner \
         (RPython cross-translates only for targets whose [target.emulator] in \
         recipes/targets.toml names this machine; the release workflow, \
         .github/workflows/release.yml, builds every other target on its own runner){host_note}",
        target.ci.runner
    )
}

fn expand(pattern: &str, py: &str) -> String {
    let major = py.split('.').next().unwrap_or(py);
    pattern
        .replace("{py_nodot}", &py.replace('.', ""))
        .replace("{py_major}", major)
        .replace("{py}", py)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

impl Target {
    /// `libpypy3.11-c.so`, `.dylib` or `.dll`.
    pub fn libpypy_name(&self, py: &str) -> String {
        expand(&self.libpypy, py)
    }
    /// The launcher's name in the release tree (`pypy3.11`, `pypy3.11.exe`).
    pub fn launcher_name(&self, py: &str) -> String {
        expand(&self.launcher, py)
    }
    /// The launcher's name as RPython writes it (`pypy3.11-c`).
    pub fn translated_launcher_name(&self, py: &str) -> String {
        expand(&self.translated_launcher, py)
    }
    /// The import library RPython writes beside the DLL (`libpypy3.11-c.lib`); Windows only.
    pub fn import_library_name(&self, py: &str) -> Option<String> {
        self.import_library.as_deref().map(|p| expand(p, py))
    }
    /// Where the release tree keeps the import library (`libs/python311.lib`); Windows only.
    pub fn import_library_path(&self, py: &str) -> Option<String> {
        self.import_library_path.as_deref().map(|p| expand(p, py))
    }
    /// Links to libpypy beside it, relative to the top folder (`bin/libpypy3-c.so`).
    pub fn link_alias_paths(&self, py: &str) -> Vec<String> {
        self.link_aliases
            .iter()
            .map(|a| join(&self.bin_dir, &expand(a, py)))
            .collect()
    }
    /// The links beside the launcher (`bin/python3.11`), each with the
    /// launcher's name it points to; an alias equal to that name is left out.
    pub fn launcher_alias_paths(&self, py: &str) -> Vec<String> {
        let name = self.launcher_name(py);
        self.launcher_aliases
            .iter()
            .map(|a| expand(a, py))
            .filter(|a| *a != name)
            .map(|a| join(&self.bin_dir, &a))
            .collect()
    }
    /// The SONAME libpypy must carry (`libpypy3.11-c.so`); Linux only.
    pub fn soname(&self, py: &str) -> Option<String> {
        self.soname.as_deref().map(|p| expand(p, py))
    }
    /// The pkg-config file, relative to the top folder (`lib/pkgconfig/pypy3.11-embed.pc`).
    pub fn pkgconfig_path(&self, py: &str) -> String {
        join(&self.pkgconfig_dir, &format!("pypy{py}-embed.pc"))
    }
    /// The pkg-config `Libs:` line, with `${libdir}` left for pkg-config.
    pub fn pkgconfig_libs(&self, py: &str) -> String {
        expand(&self.pkgconfig_libs, py)
    }
    /// The folder the pkg-config file's `${libdir}` names: the import
    /// library's on Windows, libpypy's elsewhere.
    pub fn pkgconfig_libdir(&self, py: &str) -> String {
        match self.import_library_path(py) {
            Some(path) => path
                .rsplit_once('/')
                .map_or(String::new(), |(dir, _)| dir.to_string()),
            None => self.bin_dir.clone(),
        }
    }
    /// The text of the pkg-config file for PyPy `pypy` (Python `py`): every
    /// path relative to the file itself, so the tree works wherever it is
    /// unpacked.
    pub fn pkgconfig_text(&self, py: &str, pypy: &str) -> String {
        let up = vec![".."; self.pkgconfig_dir.split('/').count()].join("/");
        let sub = |dir: String| {
            if dir.is_empty() {
                "${prefix}".to_string()
            } else {
                format!("${{prefix}}/{dir}")
            }
        };
        format!(
            "# Embedding PyPy {py} (libpypy and pypy_embed.h) from this relocatable tree.\n\
             prefix=${{pcfiledir}}/{up}\n\
             libdir={}\n\
             includedir={}\n\
             \n\
             Name: pypy{py}-embed\n\
             Description: PyPy {pypy} (Python {py}) as an embeddable library\n\
             Version: {pypy}\n\
             Libs: {}\n\
             Cflags: -I${{includedir}}\n",
            sub(self.pkgconfig_libdir(py)),
            sub(self.include_dir(py)),
            self.pkgconfig_libs(py)
        )
    }
    /// Folder of executables and libpypy, relative to the top folder ("" on Windows).
    pub fn bin_dir(&self) -> &str {
        &self.bin_dir
    }
    /// Path of libpypy relative to the top folder.
    pub fn libpypy_path(&self, py: &str) -> String {
        join(&self.bin_dir, &self.libpypy_name(py))
    }
    /// Path of the launcher relative to the top folder.
    pub fn launcher_path(&self, py: &str) -> String {
        join(&self.bin_dir, &self.launcher_name(py))
    }
    /// The standard library folder relative to the top folder.
    pub fn stdlib_dir(&self, py: &str) -> String {
        expand(&self.stdlib_dir, py)
    }
    /// The C headers folder relative to the top folder.
    pub fn include_dir(&self, py: &str) -> String {
        expand(&self.include_dir, py)
    }
    /// `pypy3.11-v7.3.20-x86_64-unknown-linux-gnu.tar.gz`
    pub fn archive_name(&self, py: &str, pypy: &str) -> String {
        format!("pypy{py}-v{pypy}-{}.tar.gz", self.triple)
    }
    /// The checksum file beside the archive: [`Target::archive_name`] plus `.sha256`.
    pub fn checksum_name(&self, py: &str, pypy: &str) -> String {
        format!("{}.sha256", self.archive_name(py, pypy))
    }
    /// PyPy's own binary release for this platform: `pypy3.11-v7.3.20-macos_arm64.tar.bz2`.
    pub fn upstream_release_name(&self, py: &str, pypy: &str) -> String {
        format!(
            "pypy{py}-v{pypy}-{}.{}",
            self.upstream_platform, self.upstream_archive
        )
    }
    /// Where PyPy publishes [`Target::upstream_release_name`] (its checksum is on pypy.org).
    pub fn upstream_release_url(&self, py: &str, pypy: &str) -> String {
        format!(
            "https://downloads.python.org/pypy/{}",
            self.upstream_release_name(py, pypy)
        )
    }
    /// The `actions/setup-python` version of the bootstrap host, e.g. `pypy2.7-v7.3.20`.
    pub fn bootstrap_python_version(&self) -> Result<String> {
        let suffix = format!("-{}.{}", self.upstream_platform, self.upstream_archive);
        let name = self.bootstrap.file_name();
        name.strip_suffix(&suffix)
            .map(str::to_string)
            .with_context(|| {
                format!(
                    "bootstrap file `{name}` of `{}` does not end in `{suffix}`",
                    self.triple
                )
            })
    }
    /// The shell command that installs `packages` with this target's package manager on
    /// a GitHub runner (with `sudo` for apt), or `None` when there is nothing to install.
    /// The environment a C build for this target needs so that the compiler,
    /// the linker and pkg-config find [`Target::library_prefixes`]: `CPATH`,
    /// `LIBRARY_PATH` and `PKG_CONFIG_PATH`, each prepended to the value
    /// `current` gives (the caller's environment); and on macOS
    /// `MACOSX_DEPLOYMENT_TARGET`. Empty when there are none.
    pub fn build_env(
        &self,
        current: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Vec<(&'static str, std::ffi::OsString)>> {
        let mut env = Vec::new();
        let deployment = self
            .deployment_target
            .as_ref()
            .map(|version| ("MACOSX_DEPLOYMENT_TARGET", version.into()));
        if self.library_prefixes.is_empty() {
            env.extend(deployment);
            return Ok(env);
        }
        for (var, sub) in [
            ("CPATH", "include"),
            ("LIBRARY_PATH", "lib"),
            ("PKG_CONFIG_PATH", "lib/pkgconfig"),
        ] {
            let mut dirs: Vec<std::path::PathBuf> = self
                .library_prefixes
                .iter()
                .map(|p| std::path::Path::new(p).join(sub))
                .collect();
            if let Some(existing) = current(var).filter(|v| !v.is_empty()) {
                dirs.extend(std::env::split_paths(&existing));
            }
            let joined = std::env::join_paths(&dirs)
                .with_context(|| format!("a folder of library_prefixes cannot go into ${var}"))?;
            env.push((var, joined));
        }
        env.extend(deployment);
        Ok(env)
    }

    /// Sets [`Target::build_env`] on `sh` for as long as the guards live.
    pub fn push_build_env<'a>(&self, sh: &'a xshell::Shell) -> Result<Vec<xshell::PushEnv<'a>>> {
        Ok(self
            .build_env(crate::env::lookup)?
            .into_iter()
            .map(|(var, value)| sh.push_env(var, value))
            .collect())
    }

    pub fn install_command(&self, packages: &[String]) -> Option<String> {
        if packages.is_empty() {
            return None;
        }
        let list = packages.join(" ");
        match self.package_manager {
            PackageManager::Apt => Some(format!(
                "sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive \
                 apt-get install -y -q --no-install-recommends {list}"
            )),
            PackageManager::Brew => Some(format!("brew install {list}")),
            PackageManager::None => None,
        }
    }

    /// Facts that must agree with each other, so a typo in the table fails early.
    fn check(&self) -> Result<()> {
        let runner_prefix = match self.os {
            Os::Linux => "ubuntu-",
            Os::Macos => "macos-",
            Os::Windows => "windows-",
        };
        if !self.ci.runner.starts_with(runner_prefix) {
            bail!(
                "runner `{}` is not a {:?} image (expected `{runner_prefix}…`)",
                self.ci.runner,
                self.os
            );
        }
        let (lib_ext, manager) = match self.os {
            Os::Linux => (".so", PackageManager::Apt),
            Os::Macos => (".dylib", PackageManager::Brew),
            Os::Windows => (".dll", PackageManager::None),
        };
        if !self.libpypy.ends_with(lib_ext) {
            bail!("libpypy `{}` does not end in `{lib_ext}`", self.libpypy);
        }
        if self.package_manager != manager {
            bail!(
                "package manager {:?} does not fit {:?} (expected {manager:?})",
                self.package_manager,
                self.os
            );
        }
        if manager == PackageManager::None
            && !(self.system_packages.is_empty() && self.ci.test_packages.is_empty())
        {
            bail!("packages are listed but there is no package manager to install them");
        }
        let windows = self.os == Os::Windows;
        if windows != self.import_library.is_some() || windows != self.import_library_path.is_some()
        {
            bail!("import_library and import_library_path are for Windows targets, and required there");
        }
        for (what, download) in [
            ("bootstrap", &self.bootstrap),
            ("test_release", &self.ci.test_release),
        ] {
            let sha = &download.sha256;
            if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("{what} sha256 `{sha}` is not 64 hex digits");
            }
            if !download.url.starts_with("https://") {
                bail!("{what} URL `{}` is not https", download.url);
            }
        }
        self.bootstrap_python_version()?;
        if (self.os == Os::Linux) != self.portability.is_some()
            || self.portability.is_some() != self.toolchain.is_some()
        {
            bail!("portability and toolchain are for Linux targets, and required there");
        }
        if let Some(toolchain) = &self.toolchain {
            let sha = &toolchain.zig_sha256;
            if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("zig_sha256 `{sha}` is not 64 hex digits");
            }
            toolchain.wheel_requirement()?;
        }
        let suffix = format!("-{}.{}", self.upstream_platform, self.upstream_archive);
        if !self.ci.test_release.file_name().ends_with(&suffix) {
            bail!(
                "test_release `{}` is not a release for this platform (expected a name ending in `{suffix}`)",
                self.ci.test_release.url
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PY: &str = "3.11";
    const PYPY: &str = "7.3.20";

    fn t(triple: &str) -> Target {
        get(triple).unwrap()
    }

    #[test]
    fn the_table_has_the_five_targets_in_order() {
        let all = all().unwrap();
        assert_eq!(
            triples(&all),
            [
                "x86_64-unknown-linux-gnu",
                "aarch64-unknown-linux-gnu",
                "x86_64-apple-darwin",
                "aarch64-apple-darwin",
                "x86_64-pc-windows-msvc",
            ]
        );
    }

    #[test]
    fn linux_x86_64_names_and_layout() {
        let t = t("x86_64-unknown-linux-gnu");
        assert_eq!(t.os, Os::Linux);
        assert_eq!(t.ci.runner, "ubuntu-24.04");
        assert!(t.ci.test);
        assert_eq!(t.libpypy_name(PY), "libpypy3.11-c.so");
        assert_eq!(t.launcher_name(PY), "pypy3.11");
        assert_eq!(t.translated_launcher_name(PY), "pypy3.11-c");
        assert_eq!(t.libpypy_path(PY), "bin/libpypy3.11-c.so");
        assert_eq!(t.launcher_path(PY), "bin/pypy3.11");
        assert_eq!(t.stdlib_dir(PY), "lib/pypy3.11");
        assert_eq!(t.include_dir(PY), "include/pypy3.11");
        assert_eq!(t.import_library_name(PY), None);
        assert_eq!(t.search_path, SearchPath::Origin);
        assert_eq!(
            t.archive_name(PY, PYPY),
            "pypy3.11-v7.3.20-x86_64-unknown-linux-gnu.tar.gz"
        );
        assert_eq!(
            t.checksum_name(PY, PYPY),
            "pypy3.11-v7.3.20-x86_64-unknown-linux-gnu.tar.gz.sha256"
        );
        assert_eq!(
            t.upstream_release_url(PY, PYPY),
            "https://downloads.python.org/pypy/pypy3.11-v7.3.20-linux64.tar.bz2"
        );
        assert_eq!(t.ci.test_pypy, TestPypy::DebianPackages);
        assert!(t
            .allowed_libraries
            .iter()
            .any(|l| l == "ld-linux-x86-64.so.2"));
    }

    #[test]
    fn linux_aarch64_names_and_layout() {
        let t = t("aarch64-unknown-linux-gnu");
        assert_eq!(t.ci.runner, "ubuntu-24.04-arm");
        assert_eq!(t.libpypy_path("3.10"), "bin/libpypy3.10-c.so");
        assert_eq!(t.stdlib_dir("3.10"), "lib/pypy3.10");
        assert_eq!(
            t.archive_name("3.10", "7.3.19"),
            "pypy3.10-v7.3.19-aarch64-unknown-linux-gnu.tar.gz"
        );
        assert_eq!(
            t.upstream_release_name(PY, PYPY),
            "pypy3.11-v7.3.20-aarch64.tar.bz2"
        );
        assert!(t
            .allowed_libraries
            .iter()
            .any(|l| l == "ld-linux-aarch64.so.1"));
        assert!(!t
            .allowed_libraries
            .iter()
            .any(|l| l == "ld-linux-x86-64.so.2"));
    }

    #[test]
    fn macos_names_and_layout() {
        for (triple, runner, platform) in [
            ("x86_64-apple-darwin", "macos-15-intel", "macos_x86_64"),
            ("aarch64-apple-darwin", "macos-15", "macos_arm64"),
        ] {
            let t = t(triple);
            assert_eq!(t.os, Os::Macos);
            assert_eq!(t.ci.runner, runner);
            assert_eq!(t.libpypy_path(PY), "bin/libpypy3.11-c.dylib");
            assert_eq!(t.launcher_path(PY), "bin/pypy3.11");
            assert_eq!(t.stdlib_dir(PY), "lib/pypy3.11");
            assert_eq!(t.include_dir(PY), "include/pypy3.11");
            assert_eq!(t.search_path, SearchPath::Rpath);
            assert_eq!(t.package_manager, PackageManager::Brew);
            assert_eq!(t.ci.test_pypy, TestPypy::OfficialRelease);
            assert_eq!(
                t.archive_name(PY, PYPY),
                format!("pypy3.11-v7.3.20-{triple}.tar.gz")
            );
            assert_eq!(
                t.upstream_release_name(PY, PYPY),
                format!("pypy3.11-v7.3.20-{platform}.tar.bz2")
            );
            assert!(t
                .allowed_libraries
                .contains(&"/usr/lib/libSystem.B.dylib".to_string()));
            assert_eq!(
                t.install_command(&t.system_packages).unwrap(),
                "brew install pkg-config libffi openssl@3 sqlite xz gdbm tcl-tk"
            );
        }
    }

    #[test]
    fn windows_names_and_layout() {
        let t = t("x86_64-pc-windows-msvc");
        assert_eq!(t.os, Os::Windows);
        assert_eq!(t.ci.runner, "windows-2022");
        assert_eq!(t.bin_dir(), "");
        assert_eq!(t.libpypy_path(PY), "libpypy3.11-c.dll");
        assert_eq!(t.launcher_path(PY), "pypy3.11.exe");
        assert_eq!(t.translated_launcher_name(PY), "pypy3.11-c.exe");
        assert_eq!(t.stdlib_dir(PY), "Lib");
        assert_eq!(t.include_dir(PY), "include");
        assert_eq!(
            t.import_library_name(PY).as_deref(),
            Some("libpypy3.11-c.lib")
        );
        assert_eq!(
            t.import_library_path(PY).as_deref(),
            Some("libs/python311.lib")
        );
        assert_eq!(
            t.import_library_path("3.10").as_deref(),
            Some("libs/python310.lib")
        );
        assert_eq!(t.search_path, SearchPath::DllDir);
        assert_eq!(t.package_manager, PackageManager::None);
        assert_eq!(t.install_command(&t.system_packages), None);
        assert_eq!(
            t.archive_name(PY, PYPY),
            "pypy3.11-v7.3.20-x86_64-pc-windows-msvc.tar.gz"
        );
        assert_eq!(
            t.upstream_release_url(PY, PYPY),
            "https://downloads.python.org/pypy/pypy3.11-v7.3.20-win64.zip"
        );
        assert!(t.allowed_libraries.contains(&"KERNEL32.dll".to_string()));
    }

    #[test]
    fn every_bootstrap_is_the_official_pypy27_v7_3_20_of_its_platform() {
        for t in all().unwrap() {
            assert_eq!(
                t.bootstrap.url,
                format!(
                    "https://downloads.python.org/pypy/pypy2.7-v7.3.20-{}.{}",
                    t.upstream_platform, t.upstream_archive
                ),
                "{}",
                t.triple
            );
            assert_eq!(t.bootstrap_python_version().unwrap(), "pypy2.7-v7.3.20");
        }
        // Spot-check that the published checksums were carried over, not re-typed.
        assert_eq!(
            t("x86_64-unknown-linux-gnu").bootstrap.sha256,
            "aa3bb92dbb529fa2d4920895b16d67a810b0c709207857d56cfe4a6e3b41e02a"
        );
        assert_eq!(
            t("x86_64-pc-windows-msvc").bootstrap.sha256,
            "76d02853601ef8d3c9dd821a9faa84cabf9bc469d6b77797b21ed311b25d5419"
        );
    }

    #[test]
    fn every_test_release_is_pypy311_v7_3_20_of_its_platform() {
        for t in all().unwrap() {
            assert_eq!(
                t.ci.test_release.url,
                t.upstream_release_url(PY, PYPY),
                "{}",
                t.triple
            );
        }
        // As published on pypy.org's checksums page.
        assert_eq!(
            t("aarch64-apple-darwin").ci.test_release.sha256,
            "84a48e09c97f57df62cc9f01b7a6d8c3e306b6270671d871aa8ab8c06945940d"
        );
        assert_eq!(
            t("x86_64-pc-windows-msvc").ci.test_release.sha256,
            "a8d36f6ceb1d9be6cf24a73b0ba103e7567e396b2f7a33426b05e4a06330755b"
        );
    }

    #[test]
    fn only_macos_builds_get_library_folders_from_homebrew() {
        for t in all().unwrap() {
            let env = t.build_env(|_| None).unwrap();
            match t.os {
                Os::Macos => {
                    // Homebrew's prefix differs by architecture.
                    let brew = if t.triple.starts_with("aarch64") {
                        "/opt/homebrew"
                    } else {
                        "/usr/local"
                    };
                    let names: Vec<_> = env.iter().map(|(var, _)| *var).collect();
                    assert_eq!(
                        names,
                        [
                            "CPATH",
                            "LIBRARY_PATH",
                            "PKG_CONFIG_PATH",
                            "MACOSX_DEPLOYMENT_TARGET"
                        ]
                    );
                    // PyPy's own releases since 7.3.17.
                    let deployment = if t.triple.starts_with("aarch64") {
                        "11.0"
                    } else {
                        "10.15"
                    };
                    assert_eq!(env[3].1, deployment, "{}", t.triple);
                    let cpath = env[0].1.to_str().unwrap();
                    for keg in ["libffi", "openssl@3", "sqlite", "tcl-tk"] {
                        assert!(
                            cpath.contains(&format!("{brew}/opt/{keg}/include")),
                            "{}: {cpath}",
                            t.triple
                        );
                    }
                    assert!(t.library_prefixes.iter().all(|p| p.starts_with(brew)));
                }
                Os::Linux | Os::Windows => assert!(env.is_empty(), "{}", t.triple),
            }
        }
    }

    #[test]
    fn library_folders_come_before_the_callers_own() {
        let mac = t("aarch64-apple-darwin");
        let env = mac
            .build_env(|var| (var == "PKG_CONFIG_PATH").then(|| "/mine/pkgconfig".into()))
            .unwrap();
        let pkg = std::env::split_paths(&env[2].1).collect::<Vec<_>>();
        assert_eq!(
            pkg.first().unwrap(),
            std::path::Path::new("/opt/homebrew/opt/libffi/lib/pkgconfig")
        );
        assert_eq!(pkg.last().unwrap(), std::path::Path::new("/mine/pkgconfig"));
        let cpath = std::env::split_paths(&env[0].1).collect::<Vec<_>>();
        assert_eq!(cpath.len(), mac.library_prefixes.len());
    }

    #[test]
    fn apt_targets_install_the_translation_headers() {
        for t in all().unwrap().iter().filter(|t| t.os == Os::Linux) {
            let cmd = t.install_command(&t.system_packages).unwrap();
            assert!(cmd.starts_with("sudo apt-get update -q && "), "{cmd}");
            for pkg in ["libffi-dev", "libssl-dev", "libsqlite3-dev", "tk-dev"] {
                assert!(cmd.contains(pkg), "{} lacks {pkg}", t.triple);
            }
            assert_eq!(t.ci.test_packages, ["python3-venv", "pypy3", "pypy3-dev"]);
        }
    }

    #[test]
    fn link_names_and_pkg_config_for_every_os() {
        let linux = get("x86_64-unknown-linux-gnu").unwrap();
        assert_eq!(linux.link_alias_paths("3.11"), ["bin/libpypy3-c.so"]);
        assert_eq!(linux.soname("3.11").as_deref(), Some("libpypy3.11-c.so"));
        assert_eq!(
            linux.pkgconfig_path("3.11"),
            "lib/pkgconfig/pypy3.11-embed.pc"
        );
        let pc = linux.pkgconfig_text("3.11", "7.3.23");
        for line in [
            "prefix=${pcfiledir}/../..",
            "libdir=${prefix}/bin",
            "includedir=${prefix}/include/pypy3.11",
            "Version: 7.3.23",
            "Libs: -L${libdir} -lpypy3.11-c -Wl,-rpath,${libdir}",
            "Cflags: -I${includedir}",
        ] {
            assert!(pc.lines().any(|l| l == line), "{line:?} not in:\n{pc}");
        }

        let mac = get("aarch64-apple-darwin").unwrap();
        assert_eq!(mac.link_alias_paths("3.11"), ["bin/libpypy3-c.dylib"]);
        // macOS names libraries by install name (@rpath/...), not SONAME.
        assert_eq!(mac.soname("3.11"), None);

        let windows = get("x86_64-pc-windows-msvc").unwrap();
        assert!(windows.link_alias_paths("3.11").is_empty());
        let pc = windows.pkgconfig_text("3.11", "7.3.23");
        assert_eq!(
            windows.pkgconfig_path("3.11"),
            "libs/pkgconfig/pypy3.11-embed.pc"
        );
        assert!(pc.contains("libdir=${prefix}/libs\n"), "{pc}");
        assert!(pc.contains("Libs: -L${libdir} -lpython311\n"), "{pc}");
        assert!(pc.contains("includedir=${prefix}/include\n"), "{pc}");
    }

    #[test]
    fn ci_tests_on_one_runner_per_os() {
        let all = all().unwrap();
        let ci: Vec<&str> = all
            .iter()
            .filter(|t| t.ci.test)
            .map(|t| t.ci.runner.as_str())
            .collect();
        assert_eq!(ci, ["ubuntu-24.04", "macos-15", "windows-2022"]);
    }

    #[test]
    fn launcher_aliases_are_upstreams_names_beside_the_launcher() {
        let linux = get("x86_64-unknown-linux-gnu").unwrap();
        assert_eq!(
            linux.launcher_alias_paths("3.11"),
            [
                "bin/pypy",
                "bin/pypy3",
                "bin/python",
                "bin/python3",
                "bin/python3.11"
            ]
        );
        // The launcher's own name is never an alias of itself.
        let mut named_pypy = linux.clone();
        named_pypy.launcher = "pypy".into();
        assert!(!named_pypy
            .launcher_alias_paths("3.11")
            .contains(&"bin/pypy".to_string()));
        let windows = get("x86_64-pc-windows-msvc").unwrap();
        assert!(windows.launcher_alias_paths("3.11").is_empty());
    }

    #[test]
    fn the_host_builds_itself() {
        let all = all().unwrap();
        let linux = "x86_64-unknown-linux-gnu";
        assert_eq!(
            ensure_buildable_on(&all, linux, linux).unwrap().triple,
            linux
        );
    }

    #[test]
    fn another_os_is_refused_with_the_runner_to_use() {
        let all = all().unwrap();
        let err = ensure_buildable_on(&all, "x86_64-apple-darwin", "x86_64-unknown-linux-gnu")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("build x86_64-apple-darwin on a `macos-15-intel` runner"),
            "{err}"
        );
        assert!(err.contains("RPython cross-translates only"), "{err}");
        let err = ensure_buildable_on(&all, "x86_64-pc-windows-msvc", "aarch64-apple-darwin")
            .unwrap_err()
            .to_string();
        assert!(err.contains("on a `windows-2022` runner"), "{err}");
        // Same OS, other architecture: cross-built where the table has an
        // emulator for it, refused elsewhere.
        let arm = "aarch64-unknown-linux-gnu";
        let x86 = "x86_64-unknown-linux-gnu";
        assert_eq!(ensure_buildable_on(&all, arm, x86).unwrap().triple, arm);
        let err = ensure_buildable_on(&all, x86, arm).unwrap_err().to_string();
        assert!(err.contains("on a `ubuntu-24.04` runner"), "{err}");
    }

    #[test]
    fn this_machine_refuses_every_target_it_cannot_build_or_emulate() {
        for t in all().unwrap() {
            let result = ensure_buildable_here(&t.triple);
            let emulated = t
                .emulator
                .as_ref()
                .is_some_and(|pin| pin.build_machine == host_triple());
            if t.triple == host_triple() || emulated {
                assert_eq!(result.unwrap().triple, t.triple);
            } else {
                let err = result.unwrap_err().to_string();
                assert!(
                    err.contains(&format!("build {} on a `{}` runner", t.triple, t.ci.runner)),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn an_unknown_triple_lists_the_supported_ones() {
        let err = ensure_buildable_here("riscv64gc-unknown-linux-gnu")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported target `riscv64gc-unknown-linux-gnu`"));
        for t in all().unwrap() {
            assert!(err.contains(&t.triple), "{err}");
        }
    }

    #[test]
    fn an_unsupported_host_says_so() {
        let all = all().unwrap();
        let err = ensure_buildable_on(
            &all,
            "x86_64-unknown-linux-gnu",
            "x86_64-unknown-linux-musl",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("on a `ubuntu-24.04` runner"), "{err}");
        assert!(
            err.contains("`x86_64-unknown-linux-musl` is not a supported target either"),
            "{err}"
        );
    }

    fn table_with(from: &str, to: &str) -> String {
        assert!(TABLE.contains(from), "{from}");
        TABLE.replacen(from, to, 1)
    }

    #[test]
    fn inconsistent_tables_are_rejected() {
        let cases = [
            (
                "runner = \"ubuntu-24.04\"",
                "runner = \"macos-15\"",
                "is not a Linux image",
            ),
            (
                "libpypy = \"libpypy{py}-c.so\"",
                "libpypy = \"libpypy{py}-c.dll\"",
                "does not end in `.so`",
            ),
            (
                "package_manager = \"apt\"",
                "package_manager = \"brew\"",
                "does not fit Linux",
            ),
            (
                "aa3bb92dbb529fa2d4920895b16d67a810b0c709207857d56cfe4a6e3b41e02a",
                "aa3bb92d",
                "not 64 hex digits",
            ),
            (
                "pypy3.11-v7.3.20-linux64.tar.bz2",
                "pypy3.11-v7.3.20-win64.zip",
                "is not a release for this platform",
            ),
            (
                "import_library_path = \"libs/python{py_nodot}.lib\"\n",
                "",
                "import_library",
            ),
            (
                "triple = \"aarch64-unknown-linux-gnu\"",
                "triple = \"x86_64-unknown-linux-gnu\"",
                "appears twice",
            ),
        ];
        for (from, to, want) in cases {
            let err = format!("{:#}", parse(&table_with(from, to)).unwrap_err());
            assert!(err.contains(want), "{from} -> {to}: {err}");
        }
        let err = format!(
            "{:#}",
            parse(&table_with("test = true", "test = true\ncolour = \"red\"")).unwrap_err()
        );
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn loader_variables_follow_the_os() {
        for t in all().unwrap() {
            let expected = match t.os {
                Os::Linux => "LD_LIBRARY_PATH",
                Os::Macos => "DYLD_LIBRARY_PATH",
                Os::Windows => "PATH",
            };
            assert_eq!(t.loader_path_var, expected, "{}", t.triple);
        }
    }
}
