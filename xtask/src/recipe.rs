//! Recipes: one TOML file per PyPy release in `recipes/`, parsed strictly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// One PyPy release and how to build it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// File stem, e.g. `pypy3.11-v7.3.20`; filled in after parsing.
    #[serde(skip)]
    pub name: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub pypy: Versions,
    pub source: Source,
    pub translate: Translate,
    #[serde(default)]
    pub host: Host,
    #[serde(default)]
    pub package: Package,
    /// Per-target overrides, keyed by target triple.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetOverride>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Versions {
    /// PyPy's own version, e.g. `7.3.20`.
    pub version: String,
    /// The Python language version, e.g. `3.11`.
    pub python: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub url: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Translate {
    /// The RPython target, relative to the source tree.
    pub target: String,
    /// `--opt` level: `jit`, `2`, …
    pub opt: String,
    /// Further RPython options (`--shared` among them).
    pub options: Vec<String>,
    /// Options given to the target after its name.
    #[serde(default)]
    pub target_options: Vec<String>,
    /// What a translation needs, checked by `doctor` before it starts.
    pub min_memory_gib: u64,
    pub min_disk_gib: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// The Python version RPython runs on (`2.7`).
    #[serde(default = "default_host_python")]
    pub python: String,
    /// Packages the host needs, installed into a folder of ours.
    #[serde(default)]
    pub packages: Vec<String>,
}

fn default_host_python() -> String {
    "2.7".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Shared libraries the result may need beyond the target table's defaults.
    #[serde(default)]
    pub allowed_libraries: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetOverride {
    pub opt: Option<String>,
    #[serde(default)]
    pub extra_options: Vec<String>,
    #[serde(default)]
    pub allowed_libraries: Vec<String>,
}

impl Recipe {
    /// Reads and checks one recipe file.
    pub fn load(path: &Path) -> Result<Recipe> {
        let text = fs_err::read_to_string(path)?;
        let mut recipe: Recipe =
            toml::from_str(&text).with_context(|| format!("invalid recipe {}", path.display()))?;
        recipe.name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        recipe.path = path.to_path_buf();
        Ok(recipe)
    }

    /// The file name of the source archive, as served by upstream and by mirrors.
    pub fn source_file_name(&self) -> &str {
        self.source
            .url
            .rsplit('/')
            .next()
            .unwrap_or(&self.source.url)
    }
}
