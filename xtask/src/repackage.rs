//! Builds our archive from a PyPy that someone else built (an official release, Debian's packages, any installed tree).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::archive::{self, PublishOptions, Published};
use crate::manifest::Origin;
use crate::{fetch, paths, targets};

/// Options of `cargo xtask repackage`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// An installed PyPy tree (any layout: upstream's, Debian's `usr/`…) or
    /// a PyPy binary release archive (`.tar.bz2`, `.tar.gz`, `.zip`).
    pub source: String,
    /// The sha256 the release archive must have (required for archives).
    #[arg(long)]
    pub sha256: Option<String>,
    /// Target triple of the PyPy being repackaged.
    #[arg(long, default_value = targets::host_triple())]
    pub target: String,
    /// Where the archive, its `.sha256` and `SHA256SUMS` go.
    #[arg(long, default_value_os_t = paths::dist_dir())]
    pub out: PathBuf,
    /// Cache folder for a downloaded release [default: $PYPY_EMBED_CACHE or the user's cache folder].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Pack a tree that has no C headers (`Python.h`); the manifest says so, and
    /// C extensions and cffi plugins cannot build against the archive.
    #[arg(long)]
    pub no_headers: bool,
}

pub fn run(args: Args) -> Result<()> {
    let target = targets::get(&args.target)?;
    let opts = PublishOptions {
        no_headers: args.no_headers,
        ..PublishOptions::default()
    };
    let needs_sha = |what: &str| {
        args.sha256.clone().with_context(|| {
            format!(
                "{what} is a release archive: give its expected checksum with --sha256 \
                 (pypy.org publishes them)"
            )
        })
    };
    let published = if is_url(&args.source) {
        let sha = needs_sha(&args.source)?;
        let cache = args.cache_dir.clone().unwrap_or_else(paths::cache_root);
        let file = fetch::download_verified(&args.source, &sha, &fetch::FetchOptions::new(&cache))?;
        repackage_release_file(&file, &sha, &target, &args.out, &opts)?
    } else {
        let path = PathBuf::from(&args.source);
        if path.is_dir() {
            repackage_tree_with(&path, &target, &args.out, &opts)?
        } else if path.is_file() {
            let sha = needs_sha(&args.source)?;
            repackage_release_file(&path, &sha, &target, &args.out, &opts)?
        } else {
            bail!("{} does not exist", path.display())
        }
    };
    println!("{}", published.summary());
    Ok(())
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Repackages an installed tree (the folder holding `usr/`, or a release's top folder).
pub fn repackage_tree(tree: &Path, target: &targets::Target, out_dir: &Path) -> Result<Published> {
    repackage_tree_with(tree, target, out_dir, &PublishOptions::default())
}

/// [`repackage_tree`] with options (`--no-headers`).
pub fn repackage_tree_with(
    tree: &Path,
    target: &targets::Target,
    out_dir: &Path,
    opts: &PublishOptions,
) -> Result<Published> {
    let layout = if tree.join("usr").is_dir() {
        "an installed tree with a usr/ folder (distribution layout)"
    } else {
        "an installed tree"
    };
    let origin = Origin::prebuilt(layout, None);
    archive::pack_tree(tree, target, out_dir, origin, opts)
}

/// Repackages an official binary release archive after checking its sha256.
pub fn repackage_release_file(
    file: &Path,
    sha256: &str,
    target: &targets::Target,
    out_dir: &Path,
    opts: &PublishOptions,
) -> Result<Published> {
    let got = crate::hash::sha256_file(file)?;
    if !got.eq_ignore_ascii_case(sha256.trim()) {
        bail!(
            "{}: sha256 is {got}, but {sha256} was expected; the file is damaged or not the \
             release you meant",
            file.display()
        );
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    fs_err::create_dir_all(out_dir)?;
    let unpacked = tempfile::Builder::new()
        .prefix(".pypy-release-")
        .tempdir_in(out_dir)?;
    let dir = unpacked.path().join("release");
    fetch::extract_archive(file, &dir).with_context(|| format!("unpacking {}", file.display()))?;
    let origin = Origin::prebuilt(format!("binary release {name}"), Some(got));
    archive::pack_tree(&dir, target, out_dir, origin, opts)
}

/// [`repackage_with_options`] with the target table's allow-list only.
pub fn repackage_with_origin(
    tree: &Path,
    target: &targets::Target,
    out_dir: &Path,
    origin: Origin,
) -> Result<Published> {
    archive::pack_tree(tree, target, out_dir, origin, &PublishOptions::default())
}
