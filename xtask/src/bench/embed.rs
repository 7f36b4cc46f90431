//! Benchmark section `embed`: embed-runtime against its baselines, measured
//! in one run on one machine with the repackaged Debian archive:
//! (a) start-up to the first executed statement against a C program making
//! the same three calls on the same library, and against the launcher's
//! `-c pass`; (b) first-run extraction against `tar -xzf`; (c) one fast-path
//! call against one `pypy_execute_source`; (d) RSS and time per call over
//! 100,000 fast-path calls with embed-runtime's default nursery against
//! PyPy's own choice on this machine.
//!
//! The measuring end is `embed-runtime/examples/embed_bench.rs`, built in
//! release mode; processes are timed from here, interleaved run by run so
//! that load from elsewhere on the machine falls on both sides alike.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::report::{Goal, Report, Row, Spread};
use crate::{fixtures, manifest, paths};

const SECTION: &str = "embed";
/// Measure this archive instead of the repackaged Debian one.
pub const ARCHIVE_ENV: &str = "PYPY_EMBED_BENCH_ARCHIVE";
const STARTUP_RUNS: usize = 30;
const EXTRACT_RUNS: usize = 5;
const CALLS: &str = "2000000";
const MEMORY_CALLS: &str = "100000";
const MEMORY_RUNS: usize = 5;

/// The C baseline of (a): what any embedder must do, and nothing more.
const STARTUP_C: &str = r#"
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: startup_c LIBPYPY HOME\n"); return 2; }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
    if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    int (*startup)(void) = (int (*)(void))dlsym(lib, "rpython_startup_code");
    int (*setup_home)(char *, int) = (int (*)(char *, int))dlsym(lib, "pypy_setup_home");
    void (*init_threads)(void) = (void (*)(void))dlsym(lib, "pypy_init_threads");
    int (*execute)(char *) = (int (*)(char *))dlsym(lib, "pypy_execute_source");
    if (!startup || !setup_home || !init_threads || !execute) { fprintf(stderr, "missing symbol\n"); return 1; }
    if (startup() != 0 || setup_home(argv[2], 0) != 0) return 1;
    init_threads();
    return execute("pass") == 0 ? 0 : 1;
}
"#;

pub fn section(report: &mut Report) -> Result<()> {
    // Another archive (a real build's, say) can be measured the same way.
    let archive = match crate::env::var_os(ARCHIVE_ENV) {
        Some(path) => PathBuf::from(path),
        None => fixtures::test_archive()?,
    };
    // Rows name the archive's PyPy, so two runs on two archives read side by side.
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The archive's name without its target: `pypy3.11-v7.3.23`.
    let pypy = match pypy_archive::name::parse(&name) {
        Some(parsed) => {
            let dotted = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
            format!("pypy{}-v{}", dotted(&parsed.python), dotted(&parsed.pypy))
        }
        None => name.clone(),
    };
    let section = format!("{SECTION} {pypy}");
    let sh = Shell::new()?;
    sh.change_dir(paths::workspace_root());
    cmd!(
        sh,
        "cargo build --release -p embed-runtime --example embed_bench"
    )
    .run()
    .context("building embed-runtime's bench example in release mode")?;
    let bench = release_example("embed_bench");
    let work = tempfile::tempdir().context("creating the benchmark folder")?;
    // The runtime's own cache (its bootstrap module) goes here too, not to the user's.
    sh.set_var(
        pypy_archive::cache::CACHE_ENV,
        work.path().join("runtime-cache"),
    );

    // (b) first, since its first run leaves the tree that (a) and (c) use.
    let (ours, tar) = extraction(&sh, &bench, &archive, work.path())?;
    report.add(Row {
        section: section.clone(),
        name: "first-run extraction (checked)".into(),
        value: ours.as_secs_f64(),
        baseline_name: "tar -xzf".into(),
        baseline: tar.as_secs_f64(),
        unit: "s".into(),
        goal: Goal::RatioAtMost(1.0),
    });

    let cache = work.path().join("cache");
    cmd!(sh, "{bench} extract {archive} {cache}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("extracting the archive for the start-up and call benchmarks")?;
    let top = extracted_top(&cache)?;
    let manifest_path = top.join(manifest::MANIFEST_NAME);
    let manifest = manifest::Manifest::from_json(&fs_err::read_to_string(&manifest_path)?)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let libpypy = top.join(&manifest.paths.libpypy);

    // (a)
    startup(
        &sh,
        &bench,
        &archive,
        &top,
        &libpypy,
        &manifest,
        work.path(),
        report,
        &section,
    )?;

    // (c)
    let output = cmd!(sh, "{bench} calls {top} {CALLS}")
        .quiet()
        .read()
        .context("running the call benchmark")?;
    let fast = value_of(&output, "fast_call_ns")?;
    let raw = value_of(&output, "execute_source_ns")?;
    report.add(Row {
        section: section.clone(),
        name: "one call, 16-byte bytes in and out".into(),
        value: fast,
        baseline_name: "one pypy_execute_source".into(),
        baseline: raw,
        unit: "ns".into(),
        goal: Goal::ValueBelow(1000.0),
    });

    // (d)
    memory(&sh, &bench, &top, report, &section)?;
    Ok(())
}

/// The ways a program starts PyPy, each timed as a whole process.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// embed-runtime from an extracted tree.
    Tree,
    /// A C program making the same three calls on the same library.
    C,
    /// The tree's own launcher, `-c pass`.
    Launcher,
    /// embed-runtime from the archive, cached (the cached tree is checked).
    Archive,
    /// The single-file binary: the archive built in (feature
    /// `embedded-archive`), cached after the first run.
    Embedded,
}

/// (a): every way of starting, interleaved run by run in a rotating order,
/// so that load from elsewhere and order effects fall on all alike.
#[allow(clippy::too_many_arguments)]
fn startup(
    sh: &Shell,
    bench: &Path,
    archive: &Path,
    top: &Path,
    libpypy: &Path,
    manifest: &manifest::Manifest,
    work: &Path,
    report: &mut Report,
    section: &str,
) -> Result<()> {
    let source = work.join("startup_c.c");
    fs_err::write(&source, STARTUP_C)?;
    let host = crate::targets::get(crate::targets::host_triple())?;
    let program = crate::c_compiler::Program {
        source,
        exe: work.join("startup_c"),
        include_dirs: Vec::new(),
        link: crate::c_compiler::Link::Dl,
    };
    let startup_c = crate::c_compiler::compile(sh, &host, &program)
        .context("compiling the C start-up baseline")?;
    let embedded = embedded_bench(sh, archive)?;
    let launcher = manifest.paths.launcher.as_ref().map(|l| top.join(l));
    let mut ways = vec![Start::Tree, Start::C, Start::Archive, Start::Embedded];
    if launcher.is_some() {
        ways.push(Start::Launcher);
    }
    let mut times: Vec<(Start, Vec<Duration>)> = ways.iter().map(|w| (*w, Vec::new())).collect();
    for run in 0..STARTUP_RUNS + 1 {
        for k in 0..ways.len() {
            let way = ways[(run + k) % ways.len()];
            let took = time(|| {
                match way {
                    Start::Tree => cmd!(sh, "{bench} first-statement {top}").quiet().run()?,
                    Start::C => cmd!(sh, "{startup_c} {libpypy} {top}").quiet().run()?,
                    Start::Archive => cmd!(sh, "{bench} first-statement {archive}")
                        .quiet()
                        .run()?,
                    Start::Embedded => {
                        cmd!(sh, "{embedded} first-statement-found").quiet().run()?
                    }
                    Start::Launcher => {
                        let launcher = launcher.as_ref().context("a launcher")?;
                        cmd!(sh, "{launcher} -c pass").quiet().run()?
                    }
                }
                Ok(())
            })?;
            let slot = times.iter_mut().find(|(w, _)| *w == way);
            slot.context("a timed way")?.1.push(took);
        }
    }
    let stats = |way: Start| -> Spread {
        let runs = &times.iter().find(|(w, _)| *w == way).expect("timed").1;
        Spread::after_warmup(runs)
    };
    let (tree, c) = (stats(Start::Tree), stats(Start::C));
    let row =
        |name: &str, ours: &Spread, base_name: String, base: &Spread, goal: Option<f64>| Row {
            section: section.to_string(),
            name: name.to_string(),
            value: ours.median,
            baseline_name: base_name,
            baseline: base.median,
            unit: "ms".into(),
            goal: goal.map_or(Goal::Reference, Goal::RatioAtMost),
        };
    let c_name = "C: the same 3 calls".to_string();
    report.add_spread(
        row(
            "start-up to first statement",
            &tree,
            c_name.clone(),
            &c,
            Some(1.05),
        ),
        &tree,
        &c,
    );
    let from_archive = stats(Start::Archive);
    report.add_spread(
        row(
            "start-up from the archive (cached)",
            &from_archive,
            c_name,
            &c,
            None,
        ),
        &from_archive,
        &c,
    );
    let Some(launcher) = launcher else {
        eprintln!("bench: the archive names no launcher; no `-c pass` rows");
        return Ok(());
    };
    let l = stats(Start::Launcher);
    let l_name = format!(
        "{} -c pass",
        launcher.file_name().unwrap_or_default().to_string_lossy()
    );
    report.add_spread(
        row(
            "start-up, from a tree",
            &tree,
            l_name.clone(),
            &l,
            Some(1.00),
        ),
        &tree,
        &l,
    );
    report.add_spread(
        row(
            "start-up, from the cached archive",
            &from_archive,
            l_name.clone(),
            &l,
            Some(1.05),
        ),
        &from_archive,
        &l,
    );
    let single = stats(Start::Embedded);
    report.add_spread(
        row(
            "start-up, single-file binary (cached)",
            &single,
            l_name.clone(),
            &l,
            Some(1.05),
        ),
        &single,
        &l,
    );
    // Builder::find alone, in-process, on the warm cache: what discovery
    // and the cache check cost before any PyPy work.
    let out = cmd!(sh, "{bench} find {archive} 200")
        .quiet()
        .read()
        .context("timing Builder::find")?;
    let find_ms = value_of(&out, "find_ns")? / 1e6;
    let find = Spread {
        median: find_ms,
        min: find_ms,
        max: find_ms,
    };
    report.add_spread(
        row(
            "Builder::find, archive, warm cache",
            &find,
            l_name,
            &l,
            None,
        ),
        &find,
        &l,
    );
    Ok(())
}

/// `embed_bench` built with the archive inside it (feature
/// `embedded-archive`), in a target folder of its own.
fn embedded_bench(sh: &Shell, archive: &Path) -> Result<PathBuf> {
    let target_dir = release_dir()
        .parent()
        .context("the target folder")?
        .join("bench-embedded");
    let _archive = sh.push_env("PYPY_EMBED_BUILD_ARCHIVE", archive);
    cmd!(
        sh,
        "cargo build --release -p embed-runtime --example embed_bench --features embedded-archive --target-dir {target_dir}"
    )
    .run()
    .context("building the single-file bench binary (feature embedded-archive)")?;
    Ok(target_dir.join("release/examples/embed_bench"))
}

/// Figures of one `embed_bench memory` run.
struct MemoryRun {
    call_ns: f64,
    rss_added_kb: f64,
    rss_end_kb: f64,
    nursery_kb: f64,
}

/// (d): each nursery in its own processes (one PyPy per process),
/// interleaved; medians of [`MEMORY_RUNS`] runs each.
fn memory(sh: &Shell, bench: &Path, top: &Path, report: &mut Report, section: &str) -> Result<()> {
    let run = |nursery: &str| -> Result<MemoryRun> {
        let out = cmd!(sh, "{bench} memory {top} {MEMORY_CALLS} {nursery}")
            .quiet()
            .read()
            .with_context(|| format!("running the memory benchmark with the {nursery} nursery"))?;
        let start = value_of(&out, "rss_start_kb")?;
        let end = value_of(&out, "rss_end_kb")?;
        Ok(MemoryRun {
            call_ns: value_of(&out, "call_ns")?,
            rss_added_kb: end - start,
            rss_end_kb: end,
            nursery_kb: value_of(&out, "nursery_kb")?,
        })
    };
    let mut ours = Vec::new();
    let mut pypys = Vec::new();
    for i in 0..MEMORY_RUNS {
        if i % 2 == 0 {
            ours.push(run("default")?);
            pypys.push(run("pypy")?);
        } else {
            pypys.push(run("pypy")?);
            ours.push(run("default")?);
        }
    }
    let median = |runs: &[MemoryRun], f: fn(&MemoryRun) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let nursery = |runs: &[MemoryRun]| median(runs, |r| r.nursery_kb) / 1024.0;
    let baseline_name = format!("PyPy's own nursery ({:.1} MB)", nursery(&pypys));
    let name = |what: &str| format!("{what}, nursery {:.1} MB", nursery(&ours));
    let (added, added_pypy) = (
        median(&ours, |r| r.rss_added_kb) / 1024.0,
        median(&pypys, |r| r.rss_added_kb) / 1024.0,
    );
    report.add(Row {
        section: section.to_string(),
        name: name("RSS added by 100k calls"),
        value: added,
        baseline_name: baseline_name.clone(),
        baseline: added_pypy,
        unit: "MB".into(),
        goal: Goal::RatioAtMost(0.1),
    });
    let (end, end_pypy) = (
        median(&ours, |r| r.rss_end_kb) / 1024.0,
        median(&pypys, |r| r.rss_end_kb) / 1024.0,
    );
    report.add(Row {
        section: section.to_string(),
        name: name("process RSS after 100k calls"),
        value: end,
        baseline_name: baseline_name.clone(),
        baseline: end_pypy,
        unit: "MB".into(),
        goal: Goal::Reference,
    });
    let (ns, ns_pypy) = (median(&ours, |r| r.call_ns), median(&pypys, |r| r.call_ns));
    report.add(Row {
        section: section.to_string(),
        name: name("one call (100k-call run)"),
        value: ns,
        baseline_name,
        baseline: ns_pypy,
        unit: "ns".into(),
        goal: Goal::RatioAtMost(1.05),
    });
    Ok(())
}

/// Medians of interleaved runs: ours into a fresh cache, `tar -xzf` into a fresh folder.
fn extraction(
    sh: &Shell,
    bench: &Path,
    archive: &Path,
    work: &Path,
) -> Result<(Duration, Duration)> {
    let mut ours = Vec::new();
    let mut tar = Vec::new();
    for run in 0..EXTRACT_RUNS + 1 {
        let cache = work.join(format!("extract-ours-{run}"));
        let into = work.join(format!("extract-tar-{run}"));
        fs_err::create_dir_all(&into)?;
        ours.push(time(|| {
            let out = cmd!(sh, "{bench} extract {archive} {cache}")
                .quiet()
                .read()?;
            if out.trim() != "extracted_now=true" {
                bail!("the bench binary did not extract: {out}");
            }
            Ok(())
        })?);
        tar.push(time(|| {
            cmd!(sh, "tar -xzf {archive} -C {into}")
                .quiet()
                .run()
                .context("running `tar -xzf` (GNU tar and gzip needed)")
        })?);
        fs_err::remove_dir_all(&cache)?;
        fs_err::remove_dir_all(&into)?;
    }
    Ok((median_after_warmup(ours), median_after_warmup(tar)))
}

fn time(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

/// The median, leaving out the first run (cold caches).
fn median_after_warmup(mut times: Vec<Duration>) -> Duration {
    times.remove(0);
    times.sort();
    times[times.len() / 2]
}

/// An example of embed-runtime built in release mode.
pub fn release_example(name: &str) -> PathBuf {
    release_dir().join("examples").join(name)
}

/// `key=value` from the bench binary's output.
pub fn value_of(output: &str, key: &str) -> Result<f64> {
    output
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .with_context(|| format!("the bench binary printed no {key}: {output}"))?
        .trim()
        .parse()
        .with_context(|| format!("{key} is not a number in: {output}"))
}

/// The `pypy/` folder of the one extraction in a cache folder.
fn extracted_top(cache: &Path) -> Result<PathBuf> {
    for entry in fs_err::read_dir(cache)? {
        let path = entry?.path();
        let top = path.join(manifest::TOP_DIR);
        if path.is_dir() && top.join(manifest::MANIFEST_NAME).is_file() {
            return Ok(top);
        }
    }
    bail!("no extracted archive in {}", cache.display())
}

/// `target/release`, honouring CARGO_TARGET_DIR like cargo does.
fn release_dir() -> PathBuf {
    crate::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::workspace_root().join("target"))
        .join("release")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_and_medians() {
        let out = "fast_call_ns=412.5\nexecute_source_ns=30000.0\n";
        assert_eq!(value_of(out, "fast_call_ns").unwrap(), 412.5);
        assert!(value_of(out, "missing")
            .unwrap_err()
            .to_string()
            .contains("missing"));
        let d = |ms| Duration::from_millis(ms);
        // The first (warm-up) run is left out, however slow.
        assert_eq!(median_after_warmup(vec![d(900), d(3), d(1), d(2)]), d(2));
    }
}
