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
use crate::manifest::{BuildRecord, Origin, PinnedRepo};
use crate::translate::{self, RunOptions, Spec};
use crate::{archive, doctor, package, patch, paths, recipe, targets, verify};
use sha2::{Digest, Sha256};

/// Options of `cargo xtask build-pypy`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Recipe name (see `cargo xtask recipes`) or path; the newest when omitted.
    #[arg(long, value_name = "NAME|PATH")]
    pub recipe: Option<String>,
    /// Target triple: this machine's own, or one the target table emulates here.
    #[arg(long)]
    pub target: Option<String>,
    /// Where the archive goes [default: `dist/` in the workspace].
    #[arg(long, value_name = "DIR")]
    pub dist_dir: Option<PathBuf>,
    /// Skip the preflight checks of `cargo xtask doctor`.
    #[arg(long)]
    pub skip_doctor: bool,
    /// Linux: build with the machine's own C compiler and libraries instead
    /// of the portable toolchain; the archive then runs only on systems like
    /// this one (docs/portability.md).
    #[arg(long)]
    pub system_compiler: bool,
    /// Print every step the build would take for the target (commands and
    /// environment included) and stop; works for any target on any OS.
    #[arg(long)]
    pub plan: bool,
    /// The build date PyPy's `sys.version` records, in seconds since 1970
    /// [default: $SOURCE_DATE_EPOCH, else the source's own date].
    #[arg(long, value_name = "SECONDS")]
    pub source_date_epoch: Option<u64>,
    /// The folder the source is copied to and translated in [default:
    /// `<build_dir of the target table>/<recipe>-<source id>`]. PyPy records
    /// it in libpypy: builds in other folders differ in those bytes.
    #[arg(long, value_name = "DIR")]
    pub build_dir: Option<PathBuf>,
    #[command(flatten)]
    pub fetch: FetchArgs,
    #[command(flatten)]
    pub run: RunOptions,
}

/// What a build is asked for, with the flags resolved: what [`build`]
/// reads. `rebuild-check` makes one from an archive's record instead of
/// from flags.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub recipe: recipe::Recipe,
    pub target: targets::Target,
    /// Where the archive goes.
    pub dist_dir: PathBuf,
    pub skip_doctor: bool,
    /// Linux: the machine's own compiler and libraries, not the portable ones.
    pub system_compiler: bool,
    /// The date `sys.version` records; `None` takes the usual sources.
    pub source_date_epoch: Option<u64>,
    /// The folder the source is translated in; `None` is the table's default.
    pub build_dir: Option<PathBuf>,
    pub fetch: fetch::FetchOptions,
    pub run: RunOptions,
}

impl Args {
    /// The options these flags ask for.
    pub fn options(&self) -> Result<BuildOptions> {
        let recipe = match &self.recipe {
            Some(name) => recipe::find(name)?,
            None => recipe::newest()?,
        };
        let triple = self
            .target
            .clone()
            .unwrap_or_else(|| targets::host_triple().to_string());
        Ok(BuildOptions {
            recipe,
            target: targets::get(&triple)?,
            dist_dir: self.dist_dir.clone().unwrap_or_else(paths::dist_dir),
            skip_doctor: self.skip_doctor,
            system_compiler: self.system_compiler,
            source_date_epoch: self.source_date_epoch,
            build_dir: self.build_dir.clone(),
            fetch: self.fetch.options()?,
            run: self.run.clone(),
        })
    }
}

pub fn run(args: Args) -> Result<()> {
    let opts = args.options()?;
    if args.plan {
        let text = crate::plan::render(&crate::plan::PlanInput {
            recipe: &opts.recipe,
            target: &opts.target,
            fetch: &opts.fetch,
            run: &opts.run,
            dist: &opts.dist_dir,
            portable: !opts.system_compiler,
            build_machine: targets::host_triple(),
        })?;
        print!("{text}");
        return Ok(());
    }
    let archive = build(&opts)?;
    println!("{}", archive.display());
    Ok(())
}

/// The main job; returns the verified archive in the dist folder.
pub fn build(opts: &BuildOptions) -> Result<PathBuf> {
    let started = Instant::now();
    let sh = Shell::new()?;
    // Hashed now: the binary may be rebuilt while an hour-long translation runs.
    let xtask_id = xtask_identity()?;
    let target = opts.target.clone();
    let triple = target.triple.clone();
    translate::refuse_cross(&triple)?;
    let fetch_opts = opts.fetch.clone();
    let cache_root = fetch_opts.cache_dir.clone();
    // A cross-build: zig for the target, the emulator, and our RPython patch.
    let cross = crate::emulator::cross_for(&sh, &target, &cache_root)
        .context("preparing the cross-build's compiler and emulator")?;
    let recipe = match &cross {
        Some(_) => crate::emulator::recipe_for_cross(&opts.recipe),
        None => opts.recipe.clone(),
    };
    eprintln!("build-pypy: recipe {} for {triple}", recipe.name);
    if let Some(cross) = &cross {
        eprintln!(
            "build-pypy: cross-build with {} ({}), target programs run under {}",
            cross.zig.target,
            crate::emulator::RPYTHON_PATCH,
            cross.emulator.program.display()
        );
    }
    // The translated interpreter is started by other programs (RPython's
    // last task builds the stdlib's cffi modules with it, then package.py
    // does): the emulator is registered with the kernel for the whole build.
    let _binfmt = match &cross {
        Some(cross) => Some(
            cross
                .emulator
                .register_for(&target, &sh)
                .context("registering the emulator for the cross-build")?,
        ),
        None => None,
    };

    // Stage 0: everything an hour-long translation needs, checked before it starts.
    let host = translate::find_host(&sh, &opts.run, &recipe, &cache_root)
        .context("finding the Python 2.7 host")?;
    if opts.skip_doctor {
        // doctor's report says it otherwise.
        let here = targets::get(targets::host_triple())?;
        let bootstrap = here.bootstrap.url.rsplit('/').next().unwrap_or_default();
        if let Some(note) = crate::host::slow_host_note(&host, bootstrap) {
            eprintln!("build-pypy: note: {note}");
        }
    } else {
        let report = doctor::check(&sh, &recipe, &target, Some(&host.program), &cache_root);
        report.print();
        report
            .into_result()
            .context("preflight (cargo xtask doctor)")?;
    }

    // Stage 1: the source.
    let tree = fetch::fetch_source(&recipe, &fetch_opts)
        .with_context(|| format!("fetching the source of {}", recipe.name))?;
    eprintln!("build-pypy: source tree {}", tree.root.display());

    // The date PyPy's sys.version records, from the pristine source (see source_date).
    // A date given that equals the source's own keeps the source as its
    // origin: `rebuild-check` passes the recorded date, and the manifest it
    // rebuilds must say the same.
    let derived = crate::source_date::for_tree(&sh, &tree.root)
        .context("dating the source for SOURCE_DATE_EPOCH")?;
    let (source_date, source_date_from) = match opts.source_date_epoch {
        Some(epoch) if epoch != derived.0 => (epoch, crate::source_date::Origin::Flag),
        _ => derived,
    };
    eprintln!(
        "build-pypy: SOURCE_DATE_EPOCH={source_date} (from {})",
        source_date_from.describe()
    );

    // Stage 1b: the recipe's patches, onto a copy (never onto the pristine tree).
    let source_id = fetch::source_id_of(&sh, &tree)?;
    let patched = patch::apply_recipe_patches(&sh, &recipe, &tree.root, &source_id, &fetch_opts)
        .with_context(|| format!("patching the source of {}", recipe.name))?;

    // Stage 1c (Windows): PyPy's prebuilt C dependencies, pinned in the target table.
    if let Some(pin) = &target.externals {
        let dir = crate::externals::ensure(&sh, pin, &cache_root, &patched.root)
            .context("preparing PyPy's externals")?;
        eprintln!("build-pypy: externals {} at {}", pin.commit, dir.display());
    }

    // Stage 1d (Linux): the compiler for the glibc baseline and the C
    // libraries built with it, unless the machine's own are asked for.
    let portable = match (&target.toolchain, opts.system_compiler) {
        (Some(toolchain), false) => {
            let portable = crate::deps::portable_for(&sh, &target, &cache_root)?;
            eprintln!(
                "build-pypy: portable build with {} and the libraries in {}",
                toolchain.zig_target,
                portable.prefix.dir.display()
            );
            Some(portable)
        }
        _ => None,
    };

    // Stage 1e: a fresh copy in the fixed build folder, the same on every
    // machine, since PyPy records the folder in libpypy (see build_dir).
    let build_path = match &opts.build_dir {
        Some(dir) => dir.clone(),
        None => crate::build_dir::default_path(&target, &recipe.name, &patched.source_id),
    };
    crate::build_dir::check_not_inside(&patched.root, &build_path)?;
    let build_tree = crate::build_dir::prepare(&patched.root, &build_path)
        .context("preparing the build folder")?;

    // Stage 2: the translation (or the cached one).
    let mut spec = Spec::from_recipe(
        &recipe,
        &build_tree.root,
        patched.source_id.clone(),
        &triple,
        &opts.run,
    )?;
    spec.source_date_epoch = Some(source_date);
    spec.portable = portable.clone();
    spec.cross = cross.clone();
    let outputs = translate::translate(
        &sh,
        &spec,
        &host,
        &translate::cache_in(&cache_root),
        opts.run.no_cache,
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

    // Stages 3 and 4: lay out, archive and verify. The archive is reproducible,
    // so one made from the same translation, recipe and xtask is reused.
    let dist = opts.dist_dir.clone();
    let origin = Origin {
        recipe: Some(recipe.name.clone()),
        source: tree.source.clone(),
        translation_options: spec.recorded_options(),
        patches: patched.patches.clone(),
        patches_skipped: patched.skipped,
        externals: target.externals.as_ref().map(|pin| PinnedRepo {
            url: pin.url.clone(),
            branch: pin.branch.clone(),
            commit: pin.commit.clone(),
        }),
        build: Some(BuildRecord {
            host_python: format!("{} {}", host.implementation, host.version),
            compiler: translate::compiler_version(&sh, spec.portable.as_ref())?,
            source_date_epoch: source_date,
            source_date_from: source_date_from.describe().to_string(),
            source_root: build_tree.root.display().to_string(),
            target_entry: serde_json::to_value(&target)
                .context("recording the target table's entry")?,
        }),
    };
    let stored = outputs
        .dir
        .join("packages")
        .join(package_key(&outputs, &recipe, &origin, &xtask_id)?);
    let archive = match reuse_package(&stored, &dist, &recipe, &target, &cache_root)? {
        Some(archive) => archive,
        None => {
            // PyPy's package.py looks for the outputs where RPython itself
            // leaves them, in `pypy/goal`.
            place_outputs(&outputs, &build_tree.root)?;
            let published = package::package_translated(&package::PackageInput {
                source_tree: build_tree.root.clone(),
                target: target.clone(),
                recipe: Some(recipe.clone()),
                out_dir: dist,
                python: None,
                origin: Some(origin),
                portable,
                cross: cross.clone(),
                cache_root: Some(cache_root.clone()),
            })
            .context("packaging and verifying")?;
            store_package(&published.archive, &stored)?;
            published.archive
        }
    };
    build_tree.finish()?;
    eprintln!(
        "build-pypy: {} verified, in {:.0} s",
        archive.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(archive)
}

/// Everything that shapes the archive besides the translation itself: the
/// recipe's text, the manifest's origin, and this xtask's own binary (a
/// rebuilt xtask may package differently, so it packages again).
fn package_key(
    outputs: &translate::Outputs,
    recipe: &recipe::Recipe,
    origin: &Origin,
    xtask_id: &str,
) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(outputs.key.as_bytes());
    hasher.update(fs_err::read(&recipe.path)?);
    hasher.update(serde_json::to_vec(origin)?);
    hasher.update(xtask_id.as_bytes());
    Ok(hex::encode(hasher.finalize()))
}

/// The sha256 of this xtask's own binary.
fn xtask_identity() -> Result<String> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    crate::hash::sha256_file(&exe).with_context(|| format!("hashing {}", exe.display()))
}

/// Publishes a stored archive into `dist` and verifies it there, or says there is none.
fn reuse_package(
    stored: &Path,
    dist: &Path,
    recipe: &recipe::Recipe,
    target: &targets::Target,
    cache_root: &Path,
) -> Result<Option<PathBuf>> {
    let Some(name) = stored_archive_name(stored)? else {
        return Ok(None);
    };
    eprintln!("build-pypy: reusing the archive packaged from this translation");
    fs_err::create_dir_all(dist)?;
    let sha256 = crate::hash::sha256_file(&stored.join(&name))?;
    let record = archive::publish::build_record_name(&name);
    for file in [name.clone(), format!("{name}.sha256"), record] {
        if !stored.join(&file).exists() {
            continue;
        }
        pypy_archive::fs::copy_atomic(&stored.join(&file), &dist.join(&file))
            .with_context(|| format!("copying {file} into {}", dist.display()))?;
    }
    archive::publish::update_sha256sums(dist, &name, &sha256)?;
    let archive = dist.join(&name);
    verify::verify_archive(
        &archive,
        &verify::VerifyOptions {
            extra_allowed: package::extra_allowed(Some(recipe), target),
            cache_root: Some(cache_root.to_path_buf()),
            ..Default::default()
        },
    )
    .with_context(|| format!("verifying {}", archive.display()))?;
    Ok(Some(archive))
}

fn stored_archive_name(stored: &Path) -> Result<Option<String>> {
    if !stored.is_dir() {
        return Ok(None);
    }
    for entry in fs_err::read_dir(stored)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tar.gz") && stored.join(format!("{name}.sha256")).is_file() {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Keeps a copy of a verified archive beside its translation; it appears by one rename.
fn store_package(archive: &Path, stored: &Path) -> Result<()> {
    let parent = stored.parent().context("package folder has a parent")?;
    fs_err::create_dir_all(parent)?;
    let tmp = tempfile::tempdir_in(parent)?;
    let name = archive.file_name().context("archive has a file name")?;
    fs_err::copy(archive, tmp.path().join(name))?;
    let sha = format!("{}.sha256", name.to_string_lossy());
    fs_err::copy(archive.with_file_name(&sha), tmp.path().join(&sha))?;
    let record = archive::publish::build_record_name(&name.to_string_lossy());
    if archive.with_file_name(&record).exists() {
        fs_err::copy(archive.with_file_name(&record), tmp.path().join(&record))?;
    }
    pypy_archive::fs::replace_dir(&tmp.keep(), stored)
        .with_context(|| format!("storing the archive in {}", stored.display()))?;
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
        // An interrupted copy is never taken for an output.
        pypy_archive::fs::copy_atomic(file, &dest)
            .with_context(|| format!("placing {} in {}", file.display(), goal.display()))?;
    }
    // The headers the translation wrote into the tree, for a tree that was
    // copied afresh (a translation from the cache).
    if let Some(include) = &outputs.include {
        let dest = tree.join(translate::INCLUDE_DIR);
        pypy_archive::fs::copy_tree(include, &dest)
            .with_context(|| format!("placing the translated headers in {}", dest.display()))?;
    }
    Ok(())
}
