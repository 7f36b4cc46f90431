//! First stage of build-pypy: a recipe's source release lands on disk, verified and unpacked.
//!
//! The pieces are public for the other stages: [`fetch_source`] (a recipe to
//! a source tree), [`download_verified`] (any URL plus sha256 to a cached,
//! checked file; used for the PyPy 2.7 host and official binary releases)
//! and [`extract_archive`] (safe unpacking).

mod download;
mod extract;
mod progress;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::manifest;
use crate::paths;
use crate::recipe::Recipe;

pub use crate::lock::FileLock;
pub use download::{cached_path, download_verified};
pub use extract::{extract_archive, extract_once};

/// Environment variable naming a mirror (folder or base URL), like `--mirror`.
pub const MIRROR_ENV: &str = "PYPY_EMBED_MIRROR";

/// The fetch options on the command line, shared with `build-pypy` (`#[command(flatten)]`).
#[derive(clap::Args, Debug, Clone)]
pub struct FetchArgs {
    /// A folder or base URL serving the same file names as upstream; files are
    /// still checked against the recipe's sha256.
    #[arg(long, env = MIRROR_ENV, value_name = "DIR|URL")]
    pub mirror: Option<String>,
    /// Use this local source tree instead of downloading the release (no checksum;
    /// the git commit is recorded when it is a checkout). Any mirror is then unused.
    #[arg(long, value_name = "DIR")]
    pub source_dir: Option<PathBuf>,
    /// Cache folder for verified downloads [default: $PYPY_EMBED_CACHE or the user's cache folder].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Where sources are unpacked [default: `sources/` in the cache folder].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// How often a connection error or a 5xx answer is retried (with exponential backoff).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RETRIES)]
    pub retries: u32,
    /// Leave out the recipe's patches: build the release as published (the
    /// manifest says so).
    #[arg(long)]
    pub no_patches: bool,
}

const DEFAULT_RETRIES: u32 = 4;
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

// Written out so that code building these without clap gets clap's defaults.
impl Default for FetchArgs {
    fn default() -> FetchArgs {
        FetchArgs {
            mirror: None,
            source_dir: None,
            cache_dir: None,
            work_dir: None,
            retries: DEFAULT_RETRIES,
            no_patches: false,
        }
    }
}

impl FetchArgs {
    /// The options these flags (and the environment) describe.
    pub fn options(&self) -> Result<FetchOptions> {
        let cache_dir = self.cache_dir.clone().unwrap_or_else(paths::cache_root);
        let mut opts = FetchOptions::new(&cache_dir);
        if let Some(work) = &self.work_dir {
            opts.work_dir = work.clone();
        }
        opts.mirror = self.mirror.as_deref().map(Mirror::parse).transpose()?;
        opts.source_dir = self.source_dir.clone();
        opts.retries = self.retries;
        opts.no_patches = self.no_patches;
        Ok(opts)
    }
}

/// Where files come from instead of their upstream URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mirror {
    /// A local folder holding the files under their upstream names.
    Dir(PathBuf),
    /// A server: `<base>/<file name>`.
    Url(reqwest::Url),
}

impl Mirror {
    /// `http(s)://…` is a server; anything else must be an existing folder.
    pub fn parse(value: &str) -> Result<Mirror> {
        if value.starts_with("http://") || value.starts_with("https://") {
            let url = reqwest::Url::parse(value)
                .with_context(|| format!("the mirror `{value}` is not a valid URL"))?;
            return Ok(Mirror::Url(url));
        }
        let dir = PathBuf::from(value);
        if !dir.is_dir() {
            bail!(
                "the mirror `{value}` is neither an http(s) URL nor an existing folder \
                 (set by --mirror or ${MIRROR_ENV})"
            );
        }
        Ok(Mirror::Dir(dir))
    }
}

/// How and where to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Verified downloads live in `<cache_dir>/downloads/sha256/<hash>/<file name>`.
    pub cache_dir: PathBuf,
    /// Source archives are unpacked into `<work_dir>/<archive stem>-<hash prefix>`.
    pub work_dir: PathBuf,
    pub mirror: Option<Mirror>,
    /// A local tree used instead of the recipe's archive.
    pub source_dir: Option<PathBuf>,
    /// Retries after a connection error or a 5xx answer.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Leave out the recipe's patches.
    pub no_patches: bool,
}

impl FetchOptions {
    /// Defaults for a cache at `cache_dir`: sources unpacked under it, no mirror, 4 retries from 1 s.
    pub fn new(cache_dir: &Path) -> FetchOptions {
        FetchOptions {
            cache_dir: cache_dir.to_path_buf(),
            work_dir: cache_dir.join("sources"),
            mirror: None,
            source_dir: None,
            retries: DEFAULT_RETRIES,
            backoff: DEFAULT_BACKOFF,
            no_patches: false,
        }
    }
}

impl Default for FetchOptions {
    fn default() -> FetchOptions {
        FetchOptions::new(&paths::cache_root())
    }
}

/// A source tree ready for translation and where it came from (for `PYPY.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTree {
    /// The folder holding `pypy/` and `rpython/` (the archive's single top folder).
    pub root: PathBuf,
    pub source: manifest::Source,
}

/// The recipe's source, downloaded, verified and unpacked (or the local tree
/// of `opts.source_dir`). Unpacked trees are reused: they are named after the
/// archive's hash and only ever appear whole.
pub fn fetch_source(recipe: &Recipe, opts: &FetchOptions) -> Result<SourceTree> {
    let tree = match &opts.source_dir {
        Some(dir) => local_tree(dir)?,
        None => release_tree(recipe, opts)?,
    };
    let target = tree.root.join(&recipe.translate.target);
    if !target.is_file() {
        bail!(
            "the source tree {} has no {} (recipe {}'s translation target); is it the \
             right source tree for this recipe?",
            tree.root.display(),
            recipe.translate.target,
            recipe.name
        );
    }
    Ok(tree)
}

fn release_tree(recipe: &Recipe, opts: &FetchOptions) -> Result<SourceTree> {
    let archive = download_verified(&recipe.source.url, &recipe.source.sha256, opts)
        .context("downloading the source release")?;
    let dest = unpack_dir(recipe, opts);
    if !extract_once(&archive, &dest).context("unpacking the source release")? {
        eprintln!("fetch: reusing {}", dest.display());
    }
    // Absolute, since later stages run tools from folders inside the tree.
    let root = fs_err::canonicalize(single_top_folder(&dest)?)?;
    Ok(SourceTree {
        root,
        source: manifest::Source::Release {
            url: recipe.source.url.clone(),
            sha256: recipe.source.sha256.clone(),
        },
    })
}

/// Where the recipe's source release is unpacked: `<work>/<archive stem>-<sha256 prefix>`.
pub fn unpack_dir(recipe: &Recipe, opts: &FetchOptions) -> PathBuf {
    let file_name = recipe.source_file_name();
    let stem = pypy_archive::extract::strip_suffix(file_name).unwrap_or(file_name);
    opts.work_dir
        .join(format!("{stem}-{}", &recipe.source.sha256[..12]))
}

/// Source archives hold one top folder (`pypy3.11-v7.3.20-src/`); the tree is inside it.
fn single_top_folder(dest: &Path) -> Result<PathBuf> {
    let entries: Vec<PathBuf> = fs_err::read_dir(dest)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("listing {}", dest.display()))?;
    match entries.as_slice() {
        [only] if only.is_dir() => Ok(only.clone()),
        _ => Ok(dest.to_path_buf()),
    }
}

fn local_tree(dir: &Path) -> Result<SourceTree> {
    if !dir.is_dir() {
        bail!(
            "--source-dir {} is not a folder; give the top of a PyPy source tree",
            dir.display()
        );
    }
    let root = fs_err::canonicalize(dir).context("resolving --source-dir")?;
    let commit = git_commit(&root);
    match &commit {
        Some(c) => eprintln!("fetch: using the checkout {} at {c}", root.display()),
        None => eprintln!(
            "fetch: using {} (not a git checkout: no commit recorded)",
            root.display()
        ),
    }
    Ok(SourceTree {
        root,
        source: manifest::Source::Checkout { commit },
    })
}

/// The HEAD commit when `dir` is the top of a git checkout; `None` otherwise
/// (no git, not a checkout, or a folder inside someone else's checkout, whose
/// commit would say nothing about this tree).
pub fn git_commit(dir: &Path) -> Option<String> {
    crate::git::commit_of_top(&Shell::new().ok()?, dir)
}

/// The identity of a fetched tree for the build cache: a release's sha256,
/// else [`source_identity`] of the local tree.
pub fn source_id_of(sh: &Shell, tree: &SourceTree) -> Result<String> {
    match &tree.source {
        manifest::Source::Release { sha256, .. } => Ok(format!("sha256:{sha256}")),
        _ => source_identity(sh, &tree.root),
    }
}

/// The git commit of a clean checkout, else a hash of the tree's sources.
pub fn source_identity(sh: &Shell, dir: &Path) -> Result<String> {
    if dir.join(".git").exists() {
        let commit = crate::git::head(sh, dir);
        let clean = crate::git::is_clean(sh, dir);
        if let (Ok(commit), Ok(clean)) = (commit, clean) {
            if clean {
                return Ok(format!("git:{commit}"));
            }
        }
    }
    let hash = crate::build_cache::tree_hash(dir, &["rpython", "pypy", "lib_pypy", "lib-python"])
        .with_context(|| format!("hashing the source tree {}", dir.display()))?;
    Ok(format!("tree:{hash}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_parsing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Mirror::parse(dir.path().to_str().unwrap()).unwrap(),
            Mirror::Dir(dir.path().to_path_buf())
        );
        assert!(matches!(
            Mirror::parse("https://mirror.example/pypy").unwrap(),
            Mirror::Url(_)
        ));
        let err = Mirror::parse("/no/such/folder").unwrap_err();
        assert!(err
            .to_string()
            .contains("neither an http(s) URL nor an existing folder"));
    }

    #[test]
    fn default_args_match_the_command_line_defaults() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            fetch: FetchArgs,
        }
        let parsed = Cli::try_parse_from(["x"]).unwrap().fetch;
        let default = FetchArgs::default();
        assert_eq!(parsed.retries, default.retries);
        assert_eq!(parsed.cache_dir, default.cache_dir);
        assert_eq!(parsed.work_dir, default.work_dir);
    }

    #[test]
    fn default_work_dir_is_under_the_cache() {
        let opts = FetchOptions::new(Path::new("/c"));
        assert_eq!(opts.work_dir, Path::new("/c/sources"));
    }

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("abc");
        fs_err::write(&file, "abc").unwrap();
        // FIPS 180-2's test vector for "abc".
        assert_eq!(
            crate::hash::sha256_file(&file).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
