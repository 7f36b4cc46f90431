//! The main job: fetch, translate, package and verify one recipe for one target.
//!
//! Each stage is its own subcommand too (`fetch`, `translate`, `package`,
//! `verify`); this module only strings them together and checks up front what
//! would otherwise fail an hour in.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::fetch::{self, FetchArgs};
use crate::manifest::Origin;
use crate::translate::{self, RunOptions, Spec};
use crate::{doctor, package, paths, recipe, targets};

/// Options of `cargo xtask build-pypy`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Recipe name (see `cargo xtask recipes`) or path; the newest when omitted.
    #[arg(long, value_name = "NAME|PATH")]
    pub recipe: Option<String>,
    /// Target triple; only this machine's own (RPython does not cross-translate).
    #[arg(long)]
    pub target: Option<String>,
    /// Where the archive goes [default: `dist/` in the workspace].
    #[arg(long, value_name = "DIR")]
    pub dist_dir: Option<PathBuf>,
    /// Skip the preflight checks of `cargo xtask doctor`.
    #[arg(long)]
    pub skip_doctor: bool,
    #[command(flatten)]
    pub fetch: FetchArgs,
    #[command(flatten)]
    pub run: RunOptions,
}

pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let sh = Shell::new()?;
    let recipe = match &args.recipe {
        Some(name) => recipe::find(name)?,
        None => recipe::newest()?,
    };
    let triple = args
        .target
        .clone()
        .unwrap_or_else(|| targets::host_triple().to_string());
    translate::refuse_cross(&triple)?;
    let target = targets::get(&triple)?;
    eprintln!("build-pypy: recipe {} for {triple}", recipe.name);

    // Stage 0: everything an hour-long translation needs, checked before it starts.
    let fetch_opts = args.fetch.options()?;
    let cache_root = fetch_opts.cache_dir.clone();
    let host = translate::find_host(&sh, &args.run, &recipe, &triple, &cache_root)
        .context("finding the Python 2.7 host")?;
    if !args.skip_doctor {
        let report = doctor::check(&sh, &recipe, &target, Some(&host.program));
        report.print();
        report
            .into_result()
            .context("preflight (cargo xtask doctor)")?;
    }

    // Stage 1: the source.
    let tree = fetch::fetch_source(&recipe, &fetch_opts)
        .with_context(|| format!("fetching the source of {}", recipe.name))?;
    eprintln!("build-pypy: source tree {}", tree.root.display());

    // Stage 2: the translation (or the cached one).
    let source_id = match &tree.source {
        embed_runtime::manifest::Source::Release { sha256, .. } => format!("sha256:{sha256}"),
        _ => translate::source_identity(&sh, &tree.root)?,
    };
    let spec = Spec::from_recipe(&recipe, &tree.root, source_id, &triple, &args.run)?;
    let outputs = translate::translate(
        &sh,
        &spec,
        &host,
        &translate::cache_in(&cache_root),
        args.run.no_cache,
    )
    .context("translating")?;
    eprintln!(
        "build-pypy: translated library {} ({})",
        outputs.library.display(),
        if outputs.cached {
            "from the cache"
        } else {
            "new"
        }
    );

    // Stages 3 and 4: lay out, archive and verify. PyPy's package.py looks for
    // the outputs where RPython itself leaves them, in `pypy/goal`.
    place_outputs(&outputs, &tree.root)?;
    let dist = args.dist_dir.clone().unwrap_or_else(paths::dist_dir);
    let published = package::package_translated(&package::PackageInput {
        source_tree: tree.root.clone(),
        target: target.clone(),
        recipe: Some(recipe.clone()),
        out_dir: dist,
        python: None,
        origin: Some(Origin {
            recipe: Some(recipe.name.clone()),
            source: tree.source.clone(),
            translation_options: spec.recorded_options(),
        }),
    })
    .context("packaging and verifying")?;
    eprintln!(
        "build-pypy: {} verified, in {:.0} s",
        published.archive.display(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", published.archive.display());
    Ok(())
}

/// Copies the translated library, launcher and import library into `pypy/goal`.
fn place_outputs(outputs: &translate::Outputs, tree: &Path) -> Result<()> {
    let goal = tree.join("pypy").join("goal");
    for file in [
        Some(&outputs.library),
        outputs.launcher.as_ref(),
        outputs.import_library.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        let name = file.file_name().context("output has a file name")?;
        let dest = goal.join(name);
        // Through a temporary name, so an interrupted copy is never taken for an output.
        let tmp = goal.join(format!(".{}.tmp", name.to_string_lossy()));
        fs_err::copy(file, &tmp)?;
        fs_err::rename(&tmp, &dest)
            .with_context(|| format!("placing {} in {}", file.display(), goal.display()))?;
    }
    Ok(())
}
