//! Recipes: one TOML file per PyPy release in `recipes/`, parsed strictly.
//!
//! A recipe is checked as it is read: unknown keys, a missing or malformed
//! checksum, a malformed URL, version or target triple are errors naming the
//! file and line, so a typo never turns into a silently different build.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use toml::Spanned;

use crate::{paths, targets};

/// The target table's file, which lives beside the recipes but is not one
/// (nor is the table of known failures, `known_failures::FILE`).
const TARGET_TABLE_FILE: &str = "targets.toml";
/// The dependency stage's table (`crate::deps`), which sits beside the recipes.
const DEPS_TABLE_FILE: &str = "deps.toml";

/// The archive name endings `fetch` can unpack (pypy-archive's table); a
/// source URL must end in one of them.
pub fn archive_suffixes() -> Vec<&'static str> {
    pypy_archive::extract::SUFFIXES
        .iter()
        .map(|(suffix, _)| *suffix)
        .collect()
}

/// One PyPy release and how to build it.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// File stem, e.g. `pypy3.11-v7.3.20`.
    pub name: String,
    pub path: PathBuf,
    pub pypy: Versions,
    pub source: Source,
    pub translate: Translate,
    pub host: Host,
    pub package: Package,
    /// Per-target overrides, keyed by target triple (each one in the target table).
    pub targets: BTreeMap<String, TargetOverride>,
    /// Changes to the source, applied in order after it is verified and unpacked.
    pub patches: Vec<Patch>,
}

/// Where the patches a recipe names by `file` live, beside the recipes.
pub const PATCHES_DIR: &str = "patches";

/// One patch of a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// File name: of the file in `recipes/patches/`, or the URL's last part.
    pub name: String,
    pub from: PatchFrom,
    /// Why the patch is needed (an upstream issue, say).
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchFrom {
    /// A patch of ours, at this path.
    File(PathBuf),
    /// Upstream's patch, fetched and checked like the source.
    Url { url: String, sha256: String },
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
    /// Where upstream publishes the source archive (`http(s)`, ending in an archive name).
    pub url: String,
    /// Its published sha256, 64 lowercase hex digits.
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

#[derive(Debug, Clone, Deserialize)]
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

// Written out because a derived Default would leave `python` empty when the
// whole `[host]` table is missing.
impl Default for Host {
    fn default() -> Host {
        Host {
            python: default_host_python(),
            packages: Vec::new(),
        }
    }
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

/// The file as written, with the positions of the values that are checked
/// after parsing; converted into a [`Recipe`] once every check passed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    pypy: RawVersions,
    source: RawSource,
    translate: Translate,
    #[serde(default)]
    host: Host,
    #[serde(default)]
    package: Package,
    #[serde(default)]
    targets: BTreeMap<Spanned<String>, TargetOverride>,
    #[serde(default)]
    patches: Vec<Spanned<RawPatch>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPatch {
    file: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    sha256: Option<Spanned<String>>,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersions {
    version: Spanned<String>,
    python: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: Spanned<String>,
    sha256: Spanned<String>,
}

/// `path:line:column: message`, the position taken from a byte span of `text`.
fn located(path: &Path, text: &str, span: Option<Range<usize>>, message: &str) -> anyhow::Error {
    match span {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            anyhow!("{}:{line}:{column}: {message}", path.display())
        }
        None => anyhow!("{}: {message}", path.display()),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// `64` hex digits, normalised to lowercase; `None` when malformed.
pub fn normalize_sha256(value: &str) -> Option<String> {
    (value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| value.to_ascii_lowercase())
}

/// Why a source URL cannot be used, or `None` when it is fine.
fn url_problem(value: &str) -> Option<String> {
    let url = match reqwest::Url::parse(value) {
        Ok(url) => url,
        Err(e) => return Some(format!("`{value}` is not a valid URL ({e})")),
    };
    if !matches!(url.scheme(), "https" | "http") {
        return Some(format!(
            "`{value}` has scheme `{}`; only https (or http) URLs can be downloaded",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Some(format!("`{value}` names no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Some(format!(
            "`{value}` has a query or fragment; mirrors serve files by name, so the URL must end in the file name"
        ));
    }
    let file = url.path().rsplit('/').next().unwrap_or("");
    if pypy_archive::extract::strip_suffix(file).is_none() {
        return Some(format!(
            "`{value}` does not end in an archive file name (one of {})",
            archive_suffixes().join(", ")
        ));
    }
    None
}

/// Why a patch URL cannot be used, or `None` when it is fine.
fn patch_url_problem(value: &str) -> Option<String> {
    let url = match reqwest::Url::parse(value) {
        Ok(url) => url,
        Err(e) => return Some(format!("`{value}` is not a valid URL ({e})")),
    };
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none_or(str::is_empty) {
        return Some(format!("`{value}` is not an http(s) URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Some(format!(
            "`{value}` has a query or fragment; mirrors serve files by name, so the URL must end in the file name"
        ));
    }
    if url.path().rsplit('/').next().unwrap_or("").is_empty() {
        return Some(format!("`{value}` does not end in a file name"));
    }
    None
}

/// Whether `value` is dot-separated numbers with `parts` components (`7.3.20`, `3.11`).
fn is_version(value: &str, parts: usize) -> bool {
    pypy_archive::version::has_parts(value, parts)
}

/// `arch-vendor-os[-env]`: three or four non-empty parts of lowercase letters, digits, `_` or `.`.
fn is_triple_shaped(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    (3..=4).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        })
}

/// Numeric version components for ordering (`3.11` > `3.10`).
fn version_key(value: &str) -> Vec<u32> {
    pypy_archive::version::parse(value).unwrap_or_default()
}

impl Recipe {
    /// Reads and checks one recipe file.
    pub fn load(path: &Path) -> Result<Recipe> {
        let text = fs_err::read_to_string(path).context("reading a recipe")?;
        Recipe::parse(&text, path)
    }

    /// Checks the text of a recipe; `path` names it in errors and gives its name.
    pub fn parse(text: &str, path: &Path) -> Result<Recipe> {
        let raw: RawRecipe = toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end();
            let hint = if message.contains("missing field `sha256`") {
                "; copy the checksum upstream publishes for the file (pypy.org/checksums.html), \
                 never one computed from a download"
            } else {
                "; the recipes shipped in recipes/ show every key"
            };
            located(
                path,
                text,
                e.span(),
                &format!("invalid recipe: {message}{hint}"),
            )
        })?;
        let at = |span: Range<usize>, message: String| located(path, text, Some(span), &message);

        let version = &raw.pypy.version;
        if !is_version(version.get_ref(), 3) {
            return Err(at(
                version.span(),
                format!(
                    "pypy.version `{}` is not a PyPy version like `7.3.20`",
                    version.get_ref()
                ),
            ));
        }
        let python = &raw.pypy.python;
        if !is_version(python.get_ref(), 2) {
            return Err(at(
                python.span(),
                format!(
                    "pypy.python `{}` is not a Python version like `3.11`",
                    python.get_ref()
                ),
            ));
        }
        let url = &raw.source.url;
        if let Some(problem) = url_problem(url.get_ref()) {
            return Err(at(url.span(), format!("source.url: {problem}")));
        }
        let sha = &raw.source.sha256;
        let Some(sha256) = normalize_sha256(sha.get_ref()) else {
            return Err(at(
                sha.span(),
                format!(
                    "source.sha256 `{}` is not a sha256 (64 hex digits); copy the checksum \
                     that upstream publishes for this file (pypy.org/checksums.html)",
                    sha.get_ref()
                ),
            ));
        };
        let table = targets::all()?;
        let mut overrides = BTreeMap::new();
        for (triple, over) in raw.targets {
            if !is_triple_shaped(triple.get_ref()) {
                return Err(at(
                    triple.span(),
                    format!(
                        "`{}` is not a target triple (arch-vendor-os[-env], e.g. \
                         x86_64-unknown-linux-gnu)",
                        triple.get_ref()
                    ),
                ));
            }
            if !table.iter().any(|t| &t.triple == triple.get_ref()) {
                let known: Vec<&str> = table.iter().map(|t| t.triple.as_str()).collect();
                return Err(at(
                    triple.span(),
                    format!(
                        "target `{}` is not in recipes/targets.toml; supported targets: {}",
                        triple.get_ref(),
                        known.join(", ")
                    ),
                ));
            }
            overrides.insert(triple.into_inner(), over);
        }

        let patches_dir = path.parent().unwrap_or(Path::new(".")).join(PATCHES_DIR);
        let mut patches = Vec::new();
        for raw_patch in raw.patches {
            let span = raw_patch.span();
            let raw_patch = raw_patch.into_inner();
            let patch = match (raw_patch.file, raw_patch.url, raw_patch.sha256) {
                (Some(file), None, None) => {
                    let name = file.get_ref();
                    let plain = !name.is_empty()
                        && !name.contains(['/', '\\'])
                        && name != "."
                        && name != "..";
                    if !plain {
                        return Err(at(
                            file.span(),
                            format!(
                                "patches.file `{name}` must be a file name in recipes/{PATCHES_DIR}/"
                            ),
                        ));
                    }
                    let full = patches_dir.join(name);
                    if !full.is_file() {
                        return Err(at(
                            file.span(),
                            format!("patches.file `{name}`: there is no {}", full.display()),
                        ));
                    }
                    Patch {
                        name: name.clone(),
                        from: PatchFrom::File(full),
                        reason: raw_patch.reason,
                    }
                }
                (None, Some(url), Some(sha)) => {
                    if let Some(problem) = patch_url_problem(url.get_ref()) {
                        return Err(at(url.span(), format!("patches.url: {problem}")));
                    }
                    let Some(sha256) = normalize_sha256(sha.get_ref()) else {
                        return Err(at(
                            sha.span(),
                            format!(
                                "patches.sha256 `{}` is not a sha256 (64 hex digits)",
                                sha.get_ref()
                            ),
                        ));
                    };
                    let url = url.into_inner();
                    Patch {
                        name: url.rsplit('/').next().unwrap_or_default().to_string(),
                        from: PatchFrom::Url { url, sha256 },
                        reason: raw_patch.reason,
                    }
                }
                (None, Some(_), None) => {
                    return Err(at(
                        span,
                        "a patch with a url needs the sha256 of the file upstream serves".into(),
                    ))
                }
                _ => {
                    return Err(at(
                        span,
                        "a patch is either `file = \"name.patch\"` (in recipes/patches/) or \
                         `url` with `sha256`"
                            .into(),
                    ))
                }
            };
            if patches.iter().any(|p: &Patch| p.name == patch.name) {
                return Err(at(span, format!("two patches are named `{}`", patch.name)));
            }
            patches.push(patch);
        }

        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Recipe {
            name,
            path: path.to_path_buf(),
            pypy: Versions {
                version: raw.pypy.version.into_inner(),
                python: raw.pypy.python.into_inner(),
            },
            source: Source {
                url: raw.source.url.into_inner(),
                sha256,
            },
            translate: raw.translate,
            host: raw.host,
            package: raw.package,
            targets: overrides,
            patches,
        })
    }

    /// The file name of the source archive, as served by upstream and by mirrors.
    pub fn source_file_name(&self) -> &str {
        self.source
            .url
            .rsplit('/')
            .next()
            .unwrap_or(&self.source.url)
    }

    /// Shared libraries the result may need on `triple` beyond the target table's:
    /// the recipe's list plus the target's override.
    pub fn allowed_libraries(&self, triple: &str) -> Vec<String> {
        let mut libs = self.package.allowed_libraries.clone();
        if let Some(over) = self.targets.get(triple) {
            libs.extend(over.allowed_libraries.iter().cloned());
        }
        libs
    }

    /// Ordering key: PyPy version first, then Python version.
    fn newness(&self) -> (Vec<u32>, Vec<u32>) {
        (
            version_key(&self.pypy.version),
            version_key(&self.pypy.python),
        )
    }
}

/// Every recipe in `dir`, newest first (by PyPy version, then Python version).
pub fn all_in(dir: &Path) -> Result<Vec<Recipe>> {
    let mut recipes = Vec::new();
    let entries = fs_err::read_dir(dir)
        .with_context(|| format!("listing the recipes in {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        // The other tables of recipes/ sit beside the recipes.
        let tables = [
            TARGET_TABLE_FILE,
            crate::known_failures::FILE,
            DEPS_TABLE_FILE,
        ];
        let is_recipe = path.extension().is_some_and(|e| e == "toml")
            && path
                .file_name()
                .is_some_and(|n| !tables.iter().any(|t| n == *t));
        if is_recipe {
            recipes.push(Recipe::load(&path)?);
        }
    }
    recipes.sort_by(|a, b| b.newness().cmp(&a.newness()).then(a.name.cmp(&b.name)));
    Ok(recipes)
}

/// Every recipe in the workspace's `recipes/`, newest first.
pub fn all() -> Result<Vec<Recipe>> {
    all_in(&paths::recipes_dir())
}

/// The newest recipe: what `build-pypy` builds without `--recipe`.
pub fn newest() -> Result<Recipe> {
    newest_in(&paths::recipes_dir())
}

/// The newest recipe in `dir`.
pub fn newest_in(dir: &Path) -> Result<Recipe> {
    all_in(dir)?
        .into_iter()
        .next()
        .with_context(|| format!("no recipes in {}; add a `pypy*.toml` there", dir.display()))
}

/// A recipe by name (`pypy3.11-v7.3.20`) from `recipes/`, or by the path of a
/// recipe file (anything ending in `.toml` or containing a path separator),
/// so that tests and experiments can use recipes kept elsewhere.
pub fn find(name_or_path: &str) -> Result<Recipe> {
    find_in(&paths::recipes_dir(), name_or_path)
}

/// Like [`find`], looking names up in `dir`.
pub fn find_in(dir: &Path, name_or_path: &str) -> Result<Recipe> {
    let looks_like_path = name_or_path.ends_with(".toml")
        || name_or_path.contains('/')
        || name_or_path.contains(std::path::MAIN_SEPARATOR);
    if looks_like_path {
        return Recipe::load(Path::new(name_or_path));
    }
    let recipes = all_in(dir)?;
    if let Some(recipe) = recipes.iter().find(|r| r.name == name_or_path) {
        return Ok(recipe.clone());
    }
    let known: Vec<&str> = recipes.iter().map(|r| r.name.as_str()).collect();
    bail!(
        "no recipe named `{name_or_path}` in {}; known recipes: {} (see `cargo xtask recipes`)",
        dir.display(),
        known.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"# a comment
[pypy]
version = "7.3.20"
python = "3.11"

[source]
url = "https://downloads.python.org/pypy/pypy3.11-v7.3.20-src.tar.bz2"
sha256 = "7786dda760003e2ea7409c1037e50200c578ec427ce0245ac4cd758710b206fb"

[translate]
target = "pypy/goal/targetpypystandalone.py"
opt = "jit"
options = ["--shared"]
min_memory_gib = 8
min_disk_gib = 10

[targets."aarch64-unknown-linux-gnu"]
extra_options = ["--no-shared-stuff"]
"#;

    fn parse(text: &str) -> Result<Recipe> {
        Recipe::parse(text, Path::new("recipes/test-recipe.toml"))
    }

    /// The error text of a recipe that must be rejected.
    fn rejected(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("recipe was accepted:\n{text}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn good_recipe_parses() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.name, "test-recipe");
        assert_eq!(r.pypy.version, "7.3.20");
        assert_eq!(r.pypy.python, "3.11");
        assert_eq!(r.source_file_name(), "pypy3.11-v7.3.20-src.tar.bz2");
        assert_eq!(r.host.python, "2.7");
        assert_eq!(
            r.targets["aarch64-unknown-linux-gnu"].extra_options,
            ["--no-shared-stuff"]
        );
    }

    #[test]
    fn per_target_overrides_apply_to_their_target_only() {
        let text = GOOD.replace(
            "extra_options = [\"--no-shared-stuff\"]",
            "opt = \"2\"\nextra_options = [\"--gc=incminimark\"]\nallowed_libraries = [\"libx.so.1\"]",
        );
        let r = parse(&text).unwrap();
        let recorded = |triple: &str| {
            crate::translate::Spec::planned(
                &r,
                Path::new("/src"),
                String::new(),
                triple,
                &Default::default(),
            )
            .recorded_options()
        };
        assert_eq!(
            recorded("aarch64-unknown-linux-gnu"),
            ["--opt=2", "--shared", "--gc=incminimark"]
        );
        assert_eq!(
            recorded("x86_64-unknown-linux-gnu"),
            ["--opt=jit", "--shared"]
        );
        assert_eq!(
            r.allowed_libraries("aarch64-unknown-linux-gnu"),
            ["libx.so.1"]
        );
        assert!(r.allowed_libraries("x86_64-unknown-linux-gnu").is_empty());
    }

    #[test]
    fn patches_are_files_of_ours_or_urls_with_checksums() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(PATCHES_DIR)).unwrap();
        std::fs::write(dir.path().join("patches/fix.patch"), "--- a\n").unwrap();
        let path = dir.path().join("r.toml");
        let with = |patches: &str| {
            Recipe::parse(&format!("{GOOD}\n{patches}"), &path).map_err(|e| format!("{e:#}"))
        };
        let r = with(
            "[[patches]]\nfile = \"fix.patch\"\nreason = \"ours\"\n\
             [[patches]]\nurl = \"https://github.com/pypy/pypy/commit/abc.patch\"\n\
             sha256 = \"7786DDA760003e2ea7409c1037e50200c578ec427ce0245ac4cd758710b206fb\"\n\
             reason = \"upstream\"\n",
        )
        .unwrap();
        assert_eq!(r.patches.len(), 2);
        assert_eq!(
            r.patches[0].from,
            PatchFrom::File(dir.path().join("patches/fix.patch"))
        );
        assert_eq!(r.patches[1].name, "abc.patch");
        assert!(
            matches!(&r.patches[1].from, PatchFrom::Url { sha256, .. } if sha256.starts_with("7786dda7"))
        );

        for (patches, needle) in [
            (
                "[[patches]]\nfile = \"../x.patch\"\nreason = \"r\"\n",
                "must be a file name in recipes/patches/",
            ),
            (
                "[[patches]]\nfile = \"missing.patch\"\nreason = \"r\"\n",
                "there is no",
            ),
            (
                "[[patches]]\nurl = \"https://example.org/a.patch\"\nreason = \"r\"\n",
                "needs the sha256",
            ),
            (
                "[[patches]]\nurl = \"https://example.org/a.patch\"\nsha256 = \"abc\"\nreason = \"r\"\n",
                "is not a sha256",
            ),
            (
                "[[patches]]\nurl = \"ftp://example.org/a.patch\"\nsha256 = \"abc\"\nreason = \"r\"\n",
                "not an http(s) URL",
            ),
            (
                "[[patches]]\nfile = \"fix.patch\"\nurl = \"https://example.org/a.patch\"\nreason = \"r\"\n",
                "either `file",
            ),
            ("[[patches]]\nfile = \"fix.patch\"\n", "missing field `reason`"),
            (
                "[[patches]]\nfile = \"fix.patch\"\nreason = \"r\"\n\
                 [[patches]]\nfile = \"fix.patch\"\nreason = \"r\"\n",
                "two patches are named `fix.patch`",
            ),
        ] {
            let message = with(patches).unwrap_err();
            assert!(message.contains(needle), "{needle:?} not in: {message}");
            assert!(message.contains("r.toml:"), "no position in: {message}");
        }
    }

    #[test]
    fn every_shipped_311_recipe_carries_the_lock_patch() {
        // PyPy issue #5527 affects every 3.11 release up to 7.3.23.
        for r in all().unwrap() {
            if r.pypy.python == "3.11" {
                assert!(
                    r.patches
                        .iter()
                        .any(|p| p.name.ends_with("lazy-thread-locks.patch")
                            && p.reason.contains("5527")),
                    "{} lacks the patch for PyPy issue #5527",
                    r.name
                );
            }
        }
        assert_eq!(newest().unwrap().name, "pypy3.11-v7.3.23");
    }

    #[test]
    fn uppercase_checksum_is_normalised() {
        let text = GOOD.replace("7786dda7", "7786DDA7");
        assert!(parse(&text).unwrap().source.sha256.starts_with("7786dda7"));
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let text = GOOD.replace("opt = \"jit\"", "opt = \"jit\"\noptz = \"2\"");
        let err = rejected(&text);
        assert!(err.starts_with("recipes/test-recipe.toml:13:"), "{err}");
        assert!(err.contains("optz"), "{err}");
    }

    #[test]
    fn unknown_table_names_its_line() {
        let text = format!("{GOOD}\n[extra]\nx = 1\n");
        let err = rejected(&text);
        assert!(err.starts_with("recipes/test-recipe.toml:20:"), "{err}");
        assert!(err.contains("extra"), "{err}");
    }

    #[test]
    fn missing_checksum_names_the_source_table() {
        let text = GOOD.replace(
            "sha256 = \"7786dda760003e2ea7409c1037e50200c578ec427ce0245ac4cd758710b206fb\"\n",
            "",
        );
        let err = rejected(&text);
        assert!(err.starts_with("recipes/test-recipe.toml:6:"), "{err}");
        assert!(err.contains("missing field `sha256`"), "{err}");
        assert!(err.contains("checksums"), "{err}");
    }

    #[test]
    fn short_checksum_is_rejected_at_its_line() {
        let text = GOOD.replace("7786dda760003e2ea7409c1037e50200", "7786dda7");
        let err = rejected(&text);
        assert!(err.starts_with("recipes/test-recipe.toml:8:10:"), "{err}");
        assert!(err.contains("64 hex digits"), "{err}");
    }

    #[test]
    fn non_hex_checksum_is_rejected() {
        let text = GOOD.replace("7786dda7", "7786ddz7");
        let err = rejected(&text);
        assert!(err.starts_with("recipes/test-recipe.toml:8:"), "{err}");
        assert!(err.contains("7786ddz7"), "{err}");
    }

    #[test]
    fn malformed_urls_are_rejected_at_their_line() {
        for bad in [
            "downloads.python.org/pypy/pypy3.11-v7.3.20-src.tar.bz2",
            "ftp://downloads.python.org/pypy/pypy3.11-v7.3.20-src.tar.bz2",
            "https:///pypy3.11-v7.3.20-src.tar.bz2",
            "https://downloads.python.org/pypy/",
            "https://downloads.python.org/pypy/pypy3.11-v7.3.20-src.tar.bz2?x=1",
            "https://downloads.python.org/pypy/pypy3.11-v7.3.20-src.rar",
        ] {
            let text = GOOD.replace(
                "https://downloads.python.org/pypy/pypy3.11-v7.3.20-src.tar.bz2",
                bad,
            );
            let err = rejected(&text);
            assert!(err.starts_with("recipes/test-recipe.toml:7:7:"), "{err}");
            assert!(err.contains("source.url"), "{err}");
        }
    }

    #[test]
    fn malformed_triple_is_rejected_at_its_line() {
        let text = GOOD.replace("aarch64-unknown-linux-gnu", "aarch64 linux");
        let err = rejected(&text);
        assert!(err.starts_with("recipes/test-recipe.toml:17:"), "{err}");
        assert!(err.contains("not a target triple"), "{err}");
    }

    #[test]
    fn unsupported_triple_lists_the_supported_ones() {
        let text = GOOD.replace("aarch64-unknown-linux-gnu", "riscv64gc-unknown-linux-gnu");
        let err = rejected(&text);
        assert!(err.starts_with("recipes/test-recipe.toml:17:"), "{err}");
        assert!(err.contains("x86_64-unknown-linux-gnu"), "{err}");
    }

    #[test]
    fn malformed_versions_are_rejected() {
        let err = rejected(&GOOD.replace("\"7.3.20\"", "\"7.3\""));
        assert!(err.starts_with("recipes/test-recipe.toml:3:"), "{err}");
        let err = rejected(&GOOD.replace("\"3.11\"", "\"three\""));
        assert!(err.starts_with("recipes/test-recipe.toml:4:"), "{err}");
    }

    #[test]
    fn toml_syntax_error_names_its_line() {
        let text = GOOD.replace("opt = \"jit\"", "opt = jit");
        let err = rejected(&text);
        assert!(err.starts_with("recipes/test-recipe.toml:12:"), "{err}");
    }

    #[test]
    fn shipped_recipes_parse_and_newest_is_pypy_3_11() {
        let all = all().unwrap();
        let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
        assert!(names.contains(&"pypy3.10-v7.3.19"), "{names:?}");
        assert!(names.contains(&"pypy3.11-v7.3.20"), "{names:?}");
        for r in &all {
            assert!(r.source_file_name().ends_with("-src.tar.bz2"), "{}", r.name);
            assert_eq!(
                r.source_file_name(),
                format!("{}-src.tar.bz2", r.name),
                "a recipe's file is named after its source archive"
            );
        }
        assert_eq!(newest().unwrap().name, "pypy3.11-v7.3.23");
    }

    #[test]
    fn newest_orders_by_pypy_then_python_version() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pypy: &str, py: &str| {
            let text = GOOD
                .replace("\"7.3.20\"", &format!("\"{pypy}\""))
                .replace("\"3.11\"", &format!("\"{py}\""));
            fs_err::write(dir.path().join(format!("{name}.toml")), text).unwrap();
        };
        write("a", "7.3.9", "3.11");
        write("b", "7.3.20", "3.10");
        write("c", "7.3.20", "3.9");
        write("d", "7.3.10", "3.12");
        let order: Vec<String> = all_in(dir.path())
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(order, ["b", "c", "d", "a"]);
        assert_eq!(newest_in(dir.path()).unwrap().name, "b");
    }

    #[test]
    fn find_by_name_and_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.toml");
        fs_err::write(&path, GOOD).unwrap();
        assert_eq!(find_in(dir.path(), "mine").unwrap().name, "mine");
        assert_eq!(
            find_in(Path::new("/nonexistent"), path.to_str().unwrap())
                .unwrap()
                .name,
            "mine"
        );
        let err = format!("{:#}", find_in(dir.path(), "other").unwrap_err());
        assert!(err.contains("no recipe named `other`"), "{err}");
        assert!(err.contains("known recipes: mine"), "{err}");
    }

    #[test]
    fn empty_recipe_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", newest_in(dir.path()).unwrap_err());
        assert!(err.contains("no recipes in"), "{err}");
    }
}
