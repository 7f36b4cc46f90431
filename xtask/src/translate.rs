//! Drives the RPython translator with `--shared` and records what it did.
//!
//! The same driver serves PyPy and any other RPython target: a [`Spec`] says
//! what to translate, [`translate`] runs it (or takes it from the build
//! cache) and returns where the library and launcher are.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

use crate::build_cache::{self, BuildCache, KeyInputs};
use crate::host::{self, HostPython};
use crate::recipe::Recipe;
use crate::stage::Command;
use crate::{paths, targets};

/// Options of `cargo xtask translate`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Recipe name (a file stem in `recipes/`); the newest when omitted.
    #[arg(long)]
    pub recipe: Option<String>,
    /// Translate this PyPy source tree instead of the recipe's fetched release.
    #[arg(long)]
    pub source_dir: Option<PathBuf>,
    /// Target triple: this machine's own, or one the target table emulates here.
    #[arg(long)]
    pub target: Option<String>,
    /// Cache folder [default: $PYPY_EMBED_CACHE or the user's cache folder]; translations
    /// live in its `translations/`.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunOptions,
}

/// The translation options shared by `translate` and `build-pypy`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunOptions {
    /// The Python 2.7 that runs RPython (a PyPy 2.7 is 2-3x faster).
    #[arg(long, env = host::HOST_ENV)]
    pub host_python: Option<PathBuf>,
    /// RPython `--opt` level, overriding the recipe (`2` builds without the JIT, much faster).
    #[arg(long)]
    pub opt: Option<String>,
    /// Parallel jobs for the C compile (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// An extra RPython option, e.g. `--rpython-opt=--lto` (repeatable).
    #[arg(long = "rpython-opt", allow_hyphen_values = true)]
    pub rpython_opts: Vec<String>,
    /// An extra option for the target, e.g. `--target-opt=--withoutmod-_cppyy` (repeatable).
    #[arg(long = "target-opt", allow_hyphen_values = true)]
    pub target_opts: Vec<String>,
    /// Translate again even when the cache has this build.
    #[arg(long)]
    pub no_cache: bool,
    /// Download the official PyPy 2.7 of the target table and use it as host.
    #[arg(long, conflicts_with = "host_python")]
    pub bootstrap_host: bool,
}

/// What to translate and how.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The tree holding the `rpython` package (a PyPy source tree or the rpython sdist).
    pub source_root: PathBuf,
    /// Identity of the source for the cache key (release sha256, commit, or tree hash).
    pub source_id: String,
    /// The RPython target file (`pypy/goal/targetpypystandalone.py`).
    pub target_file: PathBuf,
    pub opt: String,
    /// RPython options other than `--batch`, `--opt` and `--make-jobs` (`--shared` among them).
    pub rpython_options: Vec<String>,
    pub target_options: Vec<String>,
    pub jobs: usize,
    pub triple: String,
    /// The date PyPy's `sys.version` records (see [`crate::source_date`]);
    /// `None` leaves `SOURCE_DATE_EPOCH` as the caller set it.
    pub source_date_epoch: Option<u64>,
    /// A portable build's compiler and C libraries; `None` translates with
    /// the machine's own compiler and libraries.
    pub portable: Option<crate::deps::Portable>,
    /// A cross-translation's compiler for the target and the emulator its
    /// configure programs run under; `None` translates for this machine.
    pub cross: Option<crate::emulator::Cross>,
}

/// Where a translation's results are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outputs {
    /// The cache entry holding everything below.
    pub dir: PathBuf,
    pub key: String,
    /// `lib<name>-c.so` / `.dylib` / `.dll`.
    pub library: PathBuf,
    /// `<name>-c` (the launcher linked against the library), when RPython made one.
    pub launcher: Option<PathBuf>,
    /// The Windows import library.
    pub import_library: Option<PathBuf>,
    /// The C headers the translation wrote into the source tree's
    /// `include/` (PyPy's cpyext: copies and generated declarations), which
    /// package.py ships and builds the test modules with; kept so that a
    /// build from the cache, in a fresh copy of the tree, has them too.
    pub include: Option<PathBuf>,
    pub log: PathBuf,
    /// `timings.json`: see [`Timings`].
    pub timings: PathBuf,
    /// Whether this came from the cache.
    pub cached: bool,
}

/// The machine-readable record of one translation (`timings.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timings {
    /// RPython's own `[Timer]` table, phase name to seconds, in its order.
    pub phases: Vec<(String, f64)>,
    pub rpython_total_seconds: Option<f64>,
    pub wall_seconds: f64,
    /// Peak resident memory of the translating process (Linux only).
    pub peak_rss_bytes: Option<u64>,
    pub host: String,
    pub compiler: String,
    pub command: Vec<String>,
    pub key_inputs: KeyInputs,
}

/// Name of the file in an entry that lists its outputs.
const OUTPUTS_FILE: &str = "outputs.json";

/// The folder of the source tree where the translation writes C headers.
pub const INCLUDE_DIR: &str = "include";

pub fn run(args: Args) -> Result<()> {
    let sh = Shell::new()?;
    let recipe = match &args.recipe {
        Some(name) => crate::recipe::find(name)?,
        None => crate::recipe::newest()?,
    };
    let triple = args
        .target
        .clone()
        .unwrap_or_else(|| targets::host_triple().to_string());
    refuse_cross(&triple)?;
    let Some(source_dir) = args.source_dir.clone() else {
        bail!(
            "`cargo xtask translate` needs --source-dir (a PyPy source tree); \
             `cargo xtask build-pypy` fetches the recipe's release and translates it"
        );
    };
    let source_id = crate::fetch::source_identity(&sh, &source_dir)?;
    let mut spec = Spec::from_recipe(&recipe, &source_dir, source_id, &triple, &args.run)?;
    spec.source_date_epoch = Some(crate::source_date::for_tree(&sh, &source_dir)?.0);
    let cache_root = args.cache_dir.clone().unwrap_or_else(paths::cache_root);
    let host = find_host(&sh, &args.run, &recipe, &cache_root)?;
    let outputs = translate(&sh, &spec, &host, &cache_in(&cache_root), args.run.no_cache)?;
    println!("{}", serde_json::to_string_pretty(&outputs)?);
    Ok(())
}

/// RPython translates for the machine it runs on, and for a target the table
/// emulates here; the target table names the runner that builds any other.
pub fn refuse_cross(triple: &str) -> Result<()> {
    targets::ensure_buildable_here(triple).map(|_| ())
}

/// The translation cache inside a cache root.
pub fn cache_in(cache_root: &Path) -> BuildCache {
    BuildCache::new(cache_root.join("translations"))
}

/// The host the options ask for: `--bootstrap-host` downloads the official
/// PyPy 2.7 of this machine's entry in the target table (checked against its
/// sha256; RPython runs here, whatever the target); otherwise the usual search.
pub fn find_host(
    sh: &Shell,
    opts: &RunOptions,
    recipe: &Recipe,
    cache_root: &Path,
) -> Result<HostPython> {
    if !opts.bootstrap_host {
        return host::find(
            sh,
            opts.host_python.as_deref(),
            &recipe.host.packages,
            cache_root,
        );
    }
    let target = targets::get(targets::host_triple())?;
    let fetch_opts = crate::fetch::FetchOptions::new(cache_root);
    let archive = crate::fetch::download_verified(
        &target.bootstrap.url,
        &target.bootstrap.sha256,
        &fetch_opts,
    )
    .context("downloading the PyPy 2.7 host named in the target table")?;
    let dest = bootstrap_dir(cache_root, &target);
    crate::fetch::extract_once(&archive, &dest).context("unpacking the PyPy 2.7 host")?;
    let program = bootstrap_program(&dest, &target)?;
    host::find(sh, Some(&program), &recipe.host.packages, cache_root)
}

/// Where `--bootstrap-host` unpacks the target table's PyPy 2.7.
pub fn bootstrap_dir(cache_root: &Path, target: &targets::Target) -> PathBuf {
    cache_root
        .join("hosts")
        .join(&target.bootstrap.sha256[..16])
}

/// The interpreter's path inside an official PyPy 2.7's top folder.
pub fn bootstrap_exe(target: &targets::Target) -> &'static str {
    if target.os == targets::Os::Windows {
        "pypy.exe"
    } else {
        "bin/pypy"
    }
}

/// Where the interpreter is once the archive is unpacked, as a plan shows
/// it: `<bootstrap_dir>/<archive name without its suffix>/<exe>` (PyPy's
/// releases hold one top folder of that name).
pub fn bootstrap_program_planned(cache_root: &Path, target: &targets::Target) -> PathBuf {
    let file = target.bootstrap.url.rsplit('/').next().unwrap_or_default();
    let top = pypy_archive::extract::strip_suffix(file).unwrap_or(file);
    bootstrap_dir(cache_root, target)
        .join(top)
        .join(bootstrap_exe(target))
}

/// The interpreter inside an unpacked official PyPy 2.7 (`<top>/bin/pypy`, `pypy.exe` on Windows).
fn bootstrap_program(dest: &Path, target: &targets::Target) -> Result<PathBuf> {
    let exe = bootstrap_exe(target);
    for entry in fs_err::read_dir(dest)? {
        let candidate = entry?.path().join(exe);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "the PyPy 2.7 host unpacked in {} has no {exe}",
        dest.display()
    )
}

impl Spec {
    /// The translation a recipe asks for, with command-line overrides.
    pub fn from_recipe(
        recipe: &Recipe,
        source_root: &Path,
        source_id: String,
        triple: &str,
        opts: &RunOptions,
    ) -> Result<Spec> {
        let spec = Spec::planned(recipe, source_root, source_id, triple, opts);
        if !spec.target_file.is_file() {
            bail!(
                "{} is not a PyPy source tree: {} is missing",
                source_root.display(),
                recipe.translate.target
            );
        }
        Ok(spec)
    }

    /// [`Spec::from_recipe`] for a tree that need not exist yet (`build-pypy --plan`).
    pub fn planned(
        recipe: &Recipe,
        source_root: &Path,
        source_id: String,
        triple: &str,
        opts: &RunOptions,
    ) -> Spec {
        let over = recipe.targets.get(triple).cloned().unwrap_or_default();
        let mut rpython_options = recipe.translate.options.clone();
        rpython_options.extend(over.extra_options);
        rpython_options.extend(opts.rpython_opts.iter().cloned());
        let mut target_options = recipe.translate.target_options.clone();
        target_options.extend(opts.target_opts.iter().cloned());
        Spec {
            source_root: source_root.to_path_buf(),
            source_id,
            target_file: source_root.join(&recipe.translate.target),
            opt: opts
                .opt
                .clone()
                .or(over.opt)
                .unwrap_or_else(|| recipe.translate.opt.clone()),
            rpython_options,
            target_options,
            jobs: opts.jobs.unwrap_or_else(default_jobs),
            triple: triple.to_string(),
            source_date_epoch: None,
            portable: None,
            cross: None,
        }
    }

    /// The options that shaped the result, for the manifest: `--opt`, RPython's
    /// options, then the target's (`--make-jobs` and `--batch` change nothing).
    pub fn recorded_options(&self) -> Vec<String> {
        let mut options = vec![format!("--opt={}", self.opt)];
        options.extend(self.rpython_options.iter().cloned());
        options.extend(self.target_options.iter().cloned());
        options
    }

    /// The command line, as run from the work folder.
    pub fn command_line(&self, host: &HostPython) -> Vec<String> {
        let mut line = vec![
            host.program.display().to_string(),
            "-m".into(),
            "rpython".into(),
            "--batch".into(),
            format!("--opt={}", self.opt),
            // RPython records its options in the library (`sys.pypy_translation_info`),
            // so the job count would make a 2-core and an 8-core build differ;
            // the parallel make comes from `MAKEFLAGS` instead (see `rpython_env`).
            "--make-jobs=1".into(),
        ];
        line.extend(self.rpython_options.iter().cloned());
        line.push(self.target_file.display().to_string());
        line.extend(self.target_options.iter().cloned());
        line
    }
}

pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The first line of `$CC --version` (or `cc`), part of the cache key; for a
/// portable build, zig's version and target, and the C libraries' prefix
/// (its name is a hash of every library's key).
pub fn compiler_version(sh: &Shell, portable: Option<&crate::deps::Portable>) -> Result<String> {
    compiler_version_of(sh, portable, None)
}

/// [`compiler_version`], with a cross-translation's compiler when there is one.
fn compiler_version_of(
    sh: &Shell,
    portable: Option<&crate::deps::Portable>,
    cross: Option<&crate::emulator::Cross>,
) -> Result<String> {
    if let (None, Some(cross)) = (portable, cross) {
        return Ok(format!(
            "{}{} ({})",
            crate::toolchain::VERSION_PREFIX,
            cross.zig.version(sh)?,
            cross.zig.target
        ));
    }
    if let Some(p) = portable {
        return Ok(portable_compiler_line(
            &p.zig.version(sh)?,
            &p.zig.target,
            &p.prefix.dir,
        ));
    }
    let cc = crate::env::var("CC")?.unwrap_or_else(|| "cc".into());
    let mut parts = cc.split_whitespace();
    let program = parts.next().unwrap_or("cc").to_string();
    let args: Vec<&str> = parts.collect();
    let out = cmd!(sh, "{program} {args...} --version")
        .quiet()
        .read()
        .with_context(|| {
            format!("no working C compiler (`{cc} --version` failed); run `cargo xtask doctor`")
        })?;
    Ok(out.lines().next().unwrap_or_default().to_string())
}

/// How a portable build's compiler is recorded: zig's version and target,
/// and the libraries' combined prefix (named by a hash of their keys).
pub fn portable_compiler_line(zig_version: &str, zig_target: &str, prefix: &Path) -> String {
    let libraries = prefix.file_name().unwrap_or_default().to_string_lossy();
    format!(
        "{}{zig_version} ({zig_target}), libraries {libraries}",
        crate::toolchain::VERSION_PREFIX
    )
}

/// Translates `spec`, or returns the cached outputs of an identical earlier translation.
pub fn translate(
    sh: &Shell,
    spec: &Spec,
    host: &HostPython,
    cache: &BuildCache,
    no_cache: bool,
) -> Result<Outputs> {
    let key_inputs = KeyInputs {
        cache_format: build_cache::CACHE_FORMAT,
        source_id: spec.source_id.clone(),
        target_file_sha256: crate::hash::sha256_file(&spec.target_file)?,
        target_file_name: spec
            .target_file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        opt: spec.opt.clone(),
        rpython_options: spec.rpython_options.clone(),
        target_options: spec.target_options.clone(),
        host_version: format!("{} {}", host.implementation, host.version),
        compiler_version: compiler_version_of(sh, spec.portable.as_ref(), spec.cross.as_ref())?,
        triple: spec.triple.clone(),
        source_date_epoch: spec.source_date_epoch,
        build_env: spec.portable.as_ref().map(|p| {
            p.env()
                .into_iter()
                .map(|(var, value)| (var.to_string(), value.to_string_lossy().into_owned()))
                .collect()
        }),
        source_root: Some(spec.source_root.display().to_string()),
    };
    let key = key_inputs.key();
    let _lock = cache.lock(&key)?;
    let entry = cache.entry(&key);
    if !no_cache {
        if let Some(outputs) = read_entry(&entry)? {
            eprintln!("translate: cache hit {}", entry.display());
            return Ok(outputs);
        }
    }
    cache.clean_stale(&key)?;
    let work = cache.work_dir(&key)?;
    let staged = run_rpython(sh, spec, host, &work, key_inputs)
        .with_context(|| format!("translating {}", spec.target_file.display()))?;
    let entry = cache.commit(&key, &staged)?;
    let mut outputs = read_entry(&entry)?.context("the committed cache entry is unreadable")?;
    outputs.cached = false;
    Ok(outputs)
}

fn read_entry(entry: &Path) -> Result<Option<Outputs>> {
    let file = entry.join(OUTPUTS_FILE);
    if !file.exists() {
        return Ok(None);
    }
    let rel: RelOutputs = serde_json::from_str(&fs_err::read_to_string(&file)?)
        .with_context(|| format!("reading {}", file.display()))?;
    let outputs = rel.resolve(entry);
    for path in [&outputs.library, &outputs.log, &outputs.timings]
        .into_iter()
        .chain(&outputs.launcher)
        .chain(&outputs.import_library)
        .chain(&outputs.include)
    {
        if !path.exists() {
            // Someone deleted part of the entry by hand: translate again.
            eprintln!(
                "translate: cache entry {} lacks {}",
                entry.display(),
                path.display()
            );
            return Ok(None);
        }
    }
    Ok(Some(outputs))
}

/// `outputs.json`: names relative to the entry, so the cache can move.
#[derive(Serialize, Deserialize)]
struct RelOutputs {
    key: String,
    library: String,
    launcher: Option<String>,
    import_library: Option<String>,
    #[serde(default)]
    include: Option<String>,
}

impl RelOutputs {
    fn resolve(self, entry: &Path) -> Outputs {
        Outputs {
            dir: entry.to_path_buf(),
            key: self.key,
            library: entry.join(self.library),
            launcher: self.launcher.map(|l| entry.join(l)),
            import_library: self.import_library.map(|l| entry.join(l)),
            include: self.include.map(|l| entry.join(l)),
            log: entry.join("translate.log"),
            timings: entry.join("timings.json"),
            cached: true,
        }
    }
}

/// RPython's command for `spec`, with its environment (see [`rpython_env`]):
/// what the translation runs and the plan prints.
pub fn rpython_command(
    spec: &Spec,
    host: &HostPython,
    usession: &Path,
    ccache: bool,
    current: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Command> {
    Ok(Command::new(spec.command_line(host))
        .envs(rpython_env(spec, host, usession, ccache, current)?))
}

/// The environment RPython runs in, on top of the caller's (`current`):
/// the session folder, unbuffered output, the `PYTHONPATH` that finds the
/// tree's own `rpython` package and the host's packages, `ccache` when it
/// is installed, and the target table's build environment. `build-pypy
/// --plan` prints the same list.
pub fn rpython_env(
    spec: &Spec,
    host: &HostPython,
    usession: &Path,
    ccache: bool,
    current: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Vec<(&'static str, std::ffi::OsString)>> {
    let target = targets::get(&spec.triple)?;
    // A portable build's compiler and libraries come first, then the caller's.
    let portable: Vec<(&'static str, std::ffi::OsString)> =
        spec.portable.iter().flat_map(|p| p.env()).collect();
    let current = |var: &str| {
        portable
            .iter()
            .find(|(v, _)| *v == var)
            .map(|(_, value)| value.clone())
            .or_else(|| current(var))
    };
    let mut env: Vec<(&'static str, std::ffi::OsString)> = portable
        .iter()
        .filter(|(var, _)| *var != "CFLAGS")
        .cloned()
        .collect();
    if let Some(cross) = &spec.cross {
        if spec.portable.is_none() {
            env.extend(cross.zig.env());
        }
        env.push((
            crate::emulator::RUNNER_VAR,
            cross.emulator.runner().join(" ").into(),
        ));
        env.push((
            crate::emulator::HOST_CC_VAR,
            cross.host_zig.cc().into_os_string(),
        ));
        // RPython asks the compiler for `--print-multiarch` through
        // `execute`, which runs it under the emulator; the name of the
        // target's extension modules (`.pypy311-pp73-aarch64-linux-gnu.so`)
        // comes from this instead.
        env.push((
            "PYPY_MULTIARCH",
            crate::deps::gnu_triple(&cross.zig.target).into(),
        ));
        // RPython's last task runs the translated interpreter to build the
        // stdlib's cffi modules: through the kernel's registration of the
        // emulator, which finds the target's C library here.
        env.push(cross.emulator.env());
    }
    env.extend([
        ("PYPY_USESSION_DIR", usession.into()),
        // Python buffers a piped stdout; progress must arrive as it happens.
        ("PYTHONUNBUFFERED", "1".into()),
        // A randomised str hash reorders RPython's dicts and so its C; with
        // the reproducible-builds patch, a fixed seed makes the output depend
        // on the source alone (docs/reproducible-builds.md).
        ("PYTHONHASHSEED", "0".into()),
    ]);
    // The source tree first, so `-m rpython` finds its own rpython package.
    let mut pythonpath: Vec<std::ffi::OsString> = vec![spec.source_root.clone().into()];
    pythonpath.extend(host.site.iter().map(|p| p.clone().into()));
    pythonpath.extend(current("PYTHONPATH"));
    // The target's separator: this also renders plans for other OSes.
    let separator = if target.os == targets::Os::Windows {
        ";"
    } else {
        ":"
    };
    env.push((
        "PYTHONPATH",
        pythonpath.join(std::ffi::OsStr::new(separator)),
    ));
    if let Some(epoch) = spec.source_date_epoch {
        env.push((crate::source_date::VAR, epoch.to_string().into()));
    }
    if target.os != targets::Os::Windows {
        // The parallel C compile, outside RPython's recorded options (see
        // `command_line`); Windows' nmake has no parallel mode.
        env.push(("MAKEFLAGS", format!("-j{}", spec.jobs).into()));
        // ccache in front of `cc`; MSVC builds on Windows have no `cc` to wrap.
        if current("CC").is_none() && ccache {
            env.push(("CC", "ccache cc".into()));
        }
        // Headers are included by absolute path, and `__FILE__` in their
        // assertions would carry the source and session folders into the
        // library; RPython appends `$CFLAGS` to its own flags.
        let mut cflags = current("CFLAGS").unwrap_or_default();
        for (dir, name) in [
            (spec.source_root.as_path(), "pypy-src"),
            (usession, "usession"),
        ] {
            if !cflags.is_empty() {
                cflags.push(" ");
            }
            cflags.push(format!("-ffile-prefix-map={}={name}", dir.display()));
        }
        env.push(("CFLAGS", cflags));
    }
    env.extend(target.build_env(current)?);
    Ok(env)
}

/// Runs RPython in `work`, then stages the outputs in `work/out` for the cache.
fn run_rpython(
    sh: &Shell,
    spec: &Spec,
    host: &HostPython,
    work: &Path,
    key_inputs: KeyInputs,
) -> Result<PathBuf> {
    let usession = work.join("usession");
    fs_err::create_dir_all(&usession)?;
    let log_path = work.join("translate.log");
    let compiler = key_inputs.compiler_version.clone();

    let _dir = sh.push_dir(work);
    let ccache = crate::host::which("ccache").is_some();
    let rpython = rpython_command(spec, host, &usession, ccache, crate::env::lookup)?;
    let line = &rpython.argv;
    let program = &line[0];
    let mut command: std::process::Command = rpython.cmd(sh)?.into();
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    eprintln!("translate: {}", line.join(" "));
    eprintln!("translate: log in {}", log_path.display());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let pid = child.id();

    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);

    // Line by line, so that `tail -f` on the log follows an hour-long run.
    let mut log = std::io::LineWriter::new(fs_err::File::create(&log_path)?);
    let mut progress = Progress::new(started);
    let mut peak_rss = None;
    let mut transcript = Transcript::default();
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                writeln!(log, "{line}")?;
                progress.line(&line);
                transcript.line(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => progress.tick(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        peak_rss = peak_rss.max(peak_rss_of(pid));
    }
    for r in readers {
        let _ = r.join();
    }
    log.flush()?;
    drop(log);
    let status = child.wait()?;
    let wall = started.elapsed();
    progress.finish();
    if !status.success() {
        bail!(
            "RPython failed ({status}) after {:.0} s. Last lines of the log:\n{}\nFull log: {}\nWork folder kept: {}{}",
            wall.as_secs_f64(),
            transcript.failure_excerpt(),
            log_path.display(),
            work.display(),
            crate::known_failures::advice(&transcript.failure_excerpt())
        );
    }

    // Stage everything the entry keeps in `out`, then drop the bulky usession.
    let out = work.join("out");
    fs_err::create_dir_all(&out)?;
    let found = find_outputs(&transcript.lines, work)?;
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut rel = RelOutputs {
        key: key_inputs.key(),
        library: String::new(),
        launcher: None,
        import_library: None,
        include: None,
    };
    let include = spec.source_root.join(INCLUDE_DIR);
    if include.is_dir() {
        pypy_archive::fs::copy_tree(&include, &out.join(INCLUDE_DIR))
            .with_context(|| format!("keeping {}", include.display()))?;
        rel.include = Some(INCLUDE_DIR.into());
    }
    for (path, slot) in [
        (Some(found.library.clone()), 0),
        (found.launcher.clone(), 1),
        (found.import_library.clone(), 2),
    ] {
        let Some(path) = path else { continue };
        let file = name(&path).context("output has a file name")?;
        fs_err::rename(&path, out.join(&file))
            .with_context(|| format!("staging {}", path.display()))?;
        match slot {
            0 => rel.library = file,
            1 => rel.launcher = Some(file),
            _ => rel.import_library = Some(file),
        }
    }
    let timings = Timings {
        phases: transcript.timer_phases(),
        rpython_total_seconds: transcript.timer_total(),
        wall_seconds: wall.as_secs_f64(),
        peak_rss_bytes: peak_rss,
        host: format!(
            "{} {} ({})",
            host.implementation,
            host.version,
            host.program.display()
        ),
        compiler,
        command: line.clone(),
        key_inputs,
    };
    fs_err::write(
        out.join("timings.json"),
        serde_json::to_string_pretty(&timings)?,
    )?;
    fs_err::write(out.join(OUTPUTS_FILE), serde_json::to_string_pretty(&rel)?)?;
    fs_err::rename(&log_path, out.join("translate.log"))?;
    let staged = work.with_extension("staged");
    if staged.exists() {
        fs_err::remove_dir_all(&staged)?;
    }
    fs_err::rename(&out, &staged)?;
    fs_err::remove_dir_all(work).context("removing the usession folder")?;
    Ok(staged)
}

struct Found {
    library: PathBuf,
    launcher: Option<PathBuf>,
    import_library: Option<PathBuf>,
}

/// RPython announces its outputs as `copied: PATH` (the library, the import
/// library) and `created: PATH` (the launcher); that is where they are.
fn find_outputs(lines: &[String], work: &Path) -> Result<Found> {
    let mut library = None;
    let mut launcher = None;
    let mut import_library = None;
    for line in lines {
        let Some(info) = line.strip_prefix("[translation:info] ") else {
            continue;
        };
        if let Some(path) = info.strip_prefix("created: ") {
            launcher = Some(PathBuf::from(path.trim()));
        } else if let Some(rest) = info.strip_prefix("copied: ") {
            // Windows: "copied: OLD to NEW" for the import library.
            let path = PathBuf::from(rest.rsplit(" to ").next().unwrap_or(rest).trim());
            match path.extension().and_then(|e| e.to_str()) {
                Some("so" | "dylib" | "dll") => library = Some(path),
                Some("lib") => import_library = Some(path),
                _ => {}
            }
        }
    }
    let library = library.with_context(|| {
        format!(
            "RPython finished but announced no shared library; was --shared given? \
             (looked for `copied: …` lines in the log; work folder {})",
            work.display()
        )
    })?;
    if !library.is_file() {
        bail!(
            "RPython announced {} but it does not exist",
            library.display()
        );
    }
    Ok(Found {
        library,
        launcher: launcher.filter(|p| p.is_file()),
        import_library: import_library.filter(|p| p.is_file()),
    })
}

/// The peak resident memory of a running process (Linux `VmHWM`).
fn peak_rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The lines of a run, kept for finding outputs and explaining failures.
#[derive(Default)]
struct Transcript {
    lines: Vec<String>,
}

impl Transcript {
    fn line(&mut self, line: String) {
        // C compile lines are most of a PyPy log and say nothing useful here.
        if !line.starts_with("[c:writing]") {
            self.lines.push(line);
        }
    }

    /// From the first `[translation:ERROR]` on, else the last non-empty lines.
    fn failure_excerpt(&self) -> String {
        let meaningful: Vec<&String> = self.lines.iter().filter(|l| !l.trim().is_empty()).collect();
        let start = meaningful
            .iter()
            .position(|l| l.contains("[translation:ERROR]"))
            .unwrap_or(meaningful.len().saturating_sub(30));
        let end = (start + 40).min(meaningful.len());
        meaningful[start..end]
            .iter()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `[Timer] annotate   ---  7.5 s` lines.
    fn timer_phases(&self) -> Vec<(String, f64)> {
        self.lines
            .iter()
            .filter_map(|l| parse_timer(l))
            .filter(|(name, _)| name != "Total:")
            .collect()
    }

    fn timer_total(&self) -> Option<f64> {
        self.lines
            .iter()
            .filter_map(|l| parse_timer(l))
            .find(|(name, _)| name == "Total:")
            .map(|(_, s)| s)
    }
}

fn parse_timer(line: &str) -> Option<(String, f64)> {
    let rest = line.strip_prefix("[Timer] ")?;
    let (name, value) = rest.split_once("---")?;
    let seconds: f64 = value.trim().trim_end_matches('s').trim().parse().ok()?;
    Some((name.trim().to_string(), seconds))
}

/// The current phase and elapsed time: a live line on a terminal, log lines otherwise.
struct Progress {
    started: Instant,
    phase: String,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(started: Instant) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .expect("static template"),
            );
            bar.set_message("starting RPython");
            bar
        });
        Progress {
            started,
            phase: "starting".into(),
            bar,
        }
    }

    fn line(&mut self, line: &str) {
        let Some(info) = line.strip_prefix("[translation:info] ") else {
            return;
        };
        if !info.ends_with("...") {
            return;
        }
        self.phase = info.trim_end_matches("...").to_string();
        let elapsed = self.started.elapsed().as_secs();
        match &self.bar {
            Some(bar) => bar.set_message(self.phase.clone()),
            None => eprintln!(
                "translate: [{:02}:{:02}] {}",
                elapsed / 60,
                elapsed % 60,
                self.phase
            ),
        }
    }

    fn tick(&self) {
        if let Some(bar) = &self.bar {
            bar.tick();
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "translate: finished after {:.0} s (last phase: {})",
            self.started.elapsed().as_secs_f64(),
            self.phase
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_lines_are_parsed() {
        let mut t = Transcript::default();
        for l in [
            "[Timer] Timings:",
            "[Timer] annotate                       ---  7.5 s",
            "[Timer] database_c                     --- 13.9 s",
            "[Timer] =========================================",
            "[Timer] Total:                         --- 29.1 s",
        ] {
            t.line(l.to_string());
        }
        assert_eq!(
            t.timer_phases(),
            vec![
                ("annotate".to_string(), 7.5),
                ("database_c".to_string(), 13.9)
            ]
        );
        assert_eq!(t.timer_total(), Some(29.1));
    }

    #[test]
    fn outputs_come_from_the_announcements() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libx-c.so");
        let exe = dir.path().join("x-c");
        fs_err::write(&lib, "").unwrap();
        fs_err::write(&exe, "").unwrap();
        let lines = vec![
            format!("[translation:info] copied: {}", lib.display()),
            format!("[translation:info] created: {}", exe.display()),
        ];
        let found = find_outputs(&lines, dir.path()).unwrap();
        assert_eq!(found.library, lib);
        assert_eq!(found.launcher, Some(exe));
        let err = find_outputs(&lines[1..], dir.path()).err().unwrap();
        assert!(format!("{err:#}").contains("--shared"));
    }

    #[test]
    fn failure_excerpt_starts_at_the_error() {
        let mut t = Transcript::default();
        for i in 0..100 {
            t.line(format!("noise {i}"));
        }
        t.line("[translation:ERROR] AnnotatorError: ".into());
        t.line("Blocked block -- operation cannot succeed".into());
        let excerpt = t.failure_excerpt();
        assert!(excerpt.starts_with("  | [translation:ERROR]"), "{excerpt}");
        assert!(!excerpt.contains("noise"));
    }

    #[test]
    fn another_os_is_refused_naming_its_runner() {
        let err = refuse_cross("x86_64-pc-windows-msvc")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cross-translates only"), "{err}");
        assert!(err.contains("windows-2022"), "{err}");
        assert!(err.contains("build x86_64-pc-windows-msvc on a"), "{err}");
        refuse_cross(targets::host_triple()).unwrap();
    }
}
