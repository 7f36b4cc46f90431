//! The archive format: `PYPY.json`, the manifest at the top of every archive.
//!
//! These types are the contract between the xtask that writes archives and
//! embed-runtime that reads them; both use this one definition. The whole
//! format (layout, reproducibility rules, checks) is described in
//! `docs/archive-format.md`. Note for readers: the `.tar.gz` is a series of
//! gzip members (compressed in parallel), so decode it with a multi-member
//! decoder (`flate2::read::MultiGzDecoder`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// File name of the manifest inside the top folder.
pub const MANIFEST_NAME: &str = "PYPY.json";
/// The one top folder of every archive.
pub const TOP_DIR: &str = "pypy";
/// Name of the C header we add for the embedding functions.
pub const HEADER_NAME: &str = "pypy_embed.h";

/// The embedding functions libpypy must export.
pub const EMBEDDING_API: [&str; 6] = [
    "rpython_startup_code",
    "pypy_setup_home",
    "pypy_init_threads",
    "pypy_execute_source",
    "pypy_execute_source_ptr",
    "pypy_thread_attach",
];

/// `PYPY.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    /// PyPy's version, e.g. `7.3.20`.
    pub pypy_version: String,
    /// The Python language version, e.g. `3.11`.
    pub python_version: String,
    pub target: String,
    /// Paths relative to the top folder, always with `/`.
    pub paths: Paths,
    /// Which of [`EMBEDDING_API`] libpypy exports.
    pub embedding_symbols: Vec<String>,
    /// The shared libraries libpypy needs (ELF `NEEDED`, Mach-O load commands, PE imports).
    pub needed_libraries: Vec<String>,
    pub origin: Origin,
    /// Packed without the C headers on purpose (`repackage --no-headers`):
    /// C extensions and cffi plugins cannot build against it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_headers: bool,
    /// Linux: whether the archive runs on other systems than the one that
    /// built it, judged by the target's portability policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portability: Option<Portability>,
    /// Every file under the top folder except the manifest, by relative path.
    pub files: BTreeMap<String, FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    pub libpypy: String,
    pub launcher: Option<String>,
    pub stdlib: String,
    pub include: String,
}

/// Where the interpreter came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// The recipe's name, when a recipe was used.
    pub recipe: Option<String>,
    pub source: Source,
    /// RPython options of the translation; empty for a repackaged build.
    pub translation_options: Vec<String>,
    /// Patches applied to the source before translating, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<PatchRecord>,
    /// The recipe lists patches, and the build left them out (`--no-patches`):
    /// the release as published.
    #[serde(default, skip_serializing_if = "is_false")]
    pub patches_skipped: bool,
    /// The prebuilt C dependencies a Windows build used (PyPy's `externals`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub externals: Option<PinnedRepo>,
    /// What a rebuild needs besides the recipe; present for archives that
    /// `build-pypy` translated (`cargo xtask rebuild-check` reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildRecord>,
}

impl Origin {
    /// A tree someone else built (an installed PyPy, an official binary
    /// release), repackaged as it is: no recipe, no translation.
    pub fn prebuilt(description: impl Into<String>, sha256: Option<String>) -> Origin {
        Origin::from_source(Source::Prebuilt {
            description: description.into(),
            sha256,
        })
    }

    /// A translation of a recipe's source release, with its RPython options;
    /// patches, externals and the build record are filled in by the build.
    pub fn recipe(name: &str, url: &str, sha256: &str, translation_options: Vec<String>) -> Origin {
        Origin {
            recipe: Some(name.to_string()),
            translation_options,
            ..Origin::from_source(Source::Release {
                url: url.to_string(),
                sha256: sha256.to_string(),
            })
        }
    }

    /// A local tree, with its git commit when it is a checkout.
    pub fn checkout(commit: Option<String>) -> Origin {
        Origin::from_source(Source::Checkout { commit })
    }

    fn from_source(source: Source) -> Origin {
        Origin {
            recipe: None,
            source,
            translation_options: Vec::new(),
            patches: Vec::new(),
            patches_skipped: false,
            externals: None,
            build: None,
        }
    }
}

/// The build machine's side of a translation: what must match for a rebuild
/// to give the same bytes (docs/reproducible-builds.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildRecord {
    /// The Python 2.7 that ran RPython, e.g. `PyPy 2.7.18`.
    pub host_python: String,
    /// The first line of the C compiler's `--version`.
    pub compiler: String,
    /// The date PyPy's `sys.version` carries, in seconds since 1970.
    pub source_date_epoch: u64,
    /// Where that date came from (the caller's variable, a commit, the release's files).
    pub source_date_from: String,
    /// The folder the source was translated in; PyPy records it in the library,
    /// so a rebuild elsewhere differs in those strings.
    pub source_root: String,
    /// The target table's entry for [`Manifest::target`], as it was.
    pub target_entry: serde_json::Value,
}

/// What the target's portability policy found in every binary of the archive
/// (`docs/portability.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Portability {
    /// The oldest glibc the policy asks for, e.g. `2.17`.
    pub glibc_baseline: String,
    /// The newest `GLIBC_x` symbol version any binary imports.
    pub newest_glibc: Option<String>,
    /// Every binary meets the policy.
    pub portable: bool,
    /// Why not: one line per binary that breaks the policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The shared libraries from outside the archive that any of its binaries
    /// needs (libpypy, the launcher and every compiled module), sorted.
    pub system_libraries: Vec<String>,
    /// The C libraries built into the binaries, with their sources and licences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bundled: Vec<BundledLibrary>,
}

/// One C library linked statically into the archive's binaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundledLibrary {
    pub name: String,
    pub version: String,
    /// Where its source came from (the source package and file).
    pub source: String,
    pub source_sha256: String,
    /// SPDX licence expression.
    pub license: String,
    /// The licence text's path in the archive.
    pub license_file: String,
}

/// A git repository at one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedRepo {
    pub url: String,
    pub branch: String,
    pub commit: String,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// One patch applied to the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchRecord {
    /// The file name (`recipes/patches/<name>`, or the last part of the URL).
    pub name: String,
    pub sha256: String,
    /// Where an upstream patch was fetched from; none for one of ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Source {
    /// A source release checked against the recipe's sha256.
    Release { url: String, sha256: String },
    /// A local source tree; the git commit when it is a checkout.
    Checkout { commit: Option<String> },
    /// A PyPy built by someone else and repackaged (a release archive, Debian packages, a tree).
    Prebuilt {
        description: String,
        sha256: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub sha256: String,
    pub size: u64,
    /// Unix mode bits as archived (0o755 or 0o644); symlinks are recorded by `link`.
    pub mode: u32,
    /// Target of a symbolic link (relative, inside the archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl FileEntry {
    /// How the manifest records a symbolic link: by its target, with the
    /// target string's sha256 and length and mode 0o777, so that one
    /// comparison covers files and links alike.
    pub fn link(target: &str) -> FileEntry {
        FileEntry {
            sha256: crate::hash::sha256_bytes(target.as_bytes()),
            size: target.len() as u64,
            mode: 0o777,
            link: Some(target.to_string()),
        }
    }
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("PYPY.json is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("PYPY.json has no integer `format_version`")]
    NoVersion,
    #[error(
        "PYPY.json has format version {found}, but this code reads version {FORMAT_VERSION}; \
         rebuild the archive with a matching xtask or update embed-runtime"
    )]
    UnknownVersion { found: u64 },
}

/// How a tree's file differs from a list of files (a manifest's `files`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileDifference {
    /// Listed, but not in the tree.
    Missing(String),
    /// In the tree, but not listed.
    Unlisted(String),
    /// A link where a file is listed, a file where a link is, or another target.
    Link {
        path: String,
        listed: Option<String>,
        found: Option<String>,
    },
    /// Other bytes: another sha256 or size.
    Content {
        path: String,
        listed: FileEntry,
        found: FileEntry,
    },
    Mode {
        path: String,
        listed: u32,
        found: u32,
    },
}

impl FileDifference {
    pub fn path(&self) -> &str {
        match self {
            FileDifference::Missing(path) | FileDifference::Unlisted(path) => path,
            FileDifference::Link { path, .. }
            | FileDifference::Content { path, .. }
            | FileDifference::Mode { path, .. } => path,
        }
    }
}

/// Every difference between the `listed` files and the `found` ones, in path
/// order, at most one per path: the first of link, content and mode. The one
/// comparison behind `verify`, the runtime's extraction check and
/// `rebuild-check`; each words the differences for its own reader.
pub fn compare_files(
    listed: &BTreeMap<String, FileEntry>,
    found: &BTreeMap<String, FileEntry>,
) -> Vec<FileDifference> {
    let paths: std::collections::BTreeSet<&String> = listed.keys().chain(found.keys()).collect();
    let mut out = Vec::new();
    for path in paths {
        let difference = match (listed.get(path), found.get(path)) {
            (Some(_), None) => FileDifference::Missing(path.clone()),
            (None, Some(_)) => FileDifference::Unlisted(path.clone()),
            (Some(want), Some(got)) if want.link != got.link => FileDifference::Link {
                path: path.clone(),
                listed: want.link.clone(),
                found: got.link.clone(),
            },
            // A link is its target; its sha256, size and mode only restate that.
            (Some(want), Some(_)) if want.link.is_some() => continue,
            (Some(want), Some(got)) if want.sha256 != got.sha256 || want.size != got.size => {
                FileDifference::Content {
                    path: path.clone(),
                    listed: want.clone(),
                    found: got.clone(),
                }
            }
            (Some(want), Some(got)) if want.mode != got.mode => FileDifference::Mode {
                path: path.clone(),
                listed: want.mode,
                found: got.mode,
            },
            _ => continue,
        };
        out.push(difference);
    }
    out
}

impl Manifest {
    /// Parses a manifest, checking the format version before anything else
    /// so that a newer format gets a clear error, not a field mismatch.
    pub fn from_json(text: &str) -> Result<Manifest, ManifestError> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or(ManifestError::NoVersion)?;
        if version != u64::from(FORMAT_VERSION) {
            return Err(ManifestError::UnknownVersion { found: version });
        }
        Ok(serde_json::from_value(value)?)
    }

    /// Pretty JSON with a trailing newline; field order is fixed, so output is reproducible.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("manifest always serialises");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            recipe: Some("pypy3.11-v7.3.23".into()),
            source: Source::Checkout { commit: None },
            translation_options: vec!["--opt=jit".into()],
            patches: Vec::new(),
            patches_skipped: false,
            externals: None,
            build: None,
        }
    }

    #[test]
    fn unpatched_origins_keep_their_old_form() {
        // Archives without patches stay byte-identical to those made before
        // the fields existed, and old manifests still read.
        let json = serde_json::to_string(&origin()).unwrap();
        assert!(!json.contains("patches"), "{json}");
        let old = r#"{"recipe":null,"source":{"kind":"checkout","commit":null},"translation_options":[]}"#;
        let read: Origin = serde_json::from_str(old).unwrap();
        assert!(read.patches.is_empty() && !read.patches_skipped);
    }

    #[test]
    fn patches_and_their_absence_are_recorded() {
        let mut patched = origin();
        patched.patches.push(PatchRecord {
            name: "fix.patch".into(),
            sha256: "ab".repeat(32),
            url: None,
        });
        let json = serde_json::to_string(&patched).unwrap();
        assert!(
            json.contains(r#""patches":[{"name":"fix.patch","sha256":"abab"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Origin>(&json).unwrap(), patched);

        let mut skipped = origin();
        skipped.patches_skipped = true;
        let json = serde_json::to_string(&skipped).unwrap();
        assert!(json.contains(r#""patches_skipped":true"#), "{json}");
    }

    fn file(sha: &str, mode: u32) -> FileEntry {
        FileEntry {
            sha256: sha.into(),
            size: 1,
            mode,
            link: None,
        }
    }

    #[test]
    fn compare_files_names_one_difference_per_path_in_order() {
        let listed = BTreeMap::from([
            ("a".to_string(), file("1", 0o644)),
            ("b".to_string(), file("2", 0o644)),
            ("c".to_string(), file("3", 0o644)),
            ("l".to_string(), file("4", 0o777)),
            ("same".to_string(), file("5", 0o644)),
        ]);
        let mut link = file("4", 0o777);
        link.link = Some("target".into());
        let found = BTreeMap::from([
            ("b".to_string(), file("x", 0o755)),
            ("c".to_string(), file("3", 0o755)),
            ("d".to_string(), file("6", 0o644)),
            ("l".to_string(), link),
            ("same".to_string(), file("5", 0o644)),
        ]);
        let paths: Vec<String> = compare_files(&listed, &found)
            .iter()
            .map(|d| {
                format!("{d:?}")
                    .split([' ', '('])
                    .next()
                    .unwrap()
                    .to_string()
                    + " "
                    + d.path()
            })
            .collect();
        assert_eq!(
            paths,
            ["Missing a", "Content b", "Mode c", "Unlisted d", "Link l"]
        );
    }
}
