//! The target table (`recipes/targets.toml`): every platform fact the xtask needs, keyed by triple.

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The table as shipped with the xtask, so that tests on Linux see every target.
const TABLE: &str = include_str!("../../recipes/targets.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Macos,
    Windows,
}

/// How a binary in the archive finds libpypy and its neighbours at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SearchPath {
    /// ELF RUNPATH relative to `$ORIGIN`.
    Origin,
    /// Mach-O `@rpath` install names with `@loader_path`-relative LC_RPATH entries.
    Rpath,
    /// Windows looks next to the executable first; nothing to rewrite.
    DllDir,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Download {
    pub url: String,
    pub sha256: String,
}

/// One supported target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub triple: String,
    pub os: Os,
    /// The GitHub Actions runner image that builds this target.
    pub runner: String,
    /// The platform suffix of PyPy's own release names (`linux64`, `win64`, …).
    pub upstream_platform: String,
    libpypy: String,
    launcher: String,
    translated_launcher: String,
    bin_dir: String,
    stdlib_dir: String,
    include_dir: String,
    pub search_path: SearchPath,
    /// Packages the runner installs before a build (apt on Linux, Homebrew on macOS).
    pub system_packages: Vec<String>,
    /// Shared libraries that binaries in the archive may depend on.
    pub allowed_libraries: Vec<String>,
    /// An official PyPy 2.7 binary that `--bootstrap-host` can use as translation host.
    pub bootstrap: Download,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    target: Vec<Target>,
}

/// Every supported target, in table order.
pub fn all() -> Result<Vec<Target>> {
    let table: Table = toml::from_str(TABLE).context("recipes/targets.toml is invalid")?;
    Ok(table.target)
}

/// The target with this triple, or an error listing the supported ones.
pub fn get(triple: &str) -> Result<Target> {
    let all = all()?;
    if let Some(t) = all.iter().find(|t| t.triple == triple) {
        return Ok(t.clone());
    }
    let known: Vec<&str> = all.iter().map(|t| t.triple.as_str()).collect();
    bail!(
        "unsupported target `{triple}`; supported targets: {}",
        known.join(", ")
    )
}

/// The triple this xtask was compiled for, which is the only one it can translate for.
pub fn host_triple() -> &'static str {
    env!("XTASK_HOST_TRIPLE")
}

fn expand(pattern: &str, py: &str) -> String {
    pattern.replace("{py}", py)
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
}
