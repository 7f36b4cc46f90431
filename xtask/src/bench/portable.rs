//! Benchmark section `portable`: pure-Python workloads on a portable
//! archive (zig, static libraries) against one built with the machine's gcc,
//! measured in the same run, alternating, on the same machine.
//!
//! The two archives are named by `PYPY_EMBED_BENCH_PORTABLE` and
//! `PYPY_EMBED_BENCH_SYSTEM` (`build-pypy` and `build-pypy --system-compiler`
//! of one recipe); without both the section says so and adds no row.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::report::{median, Goal, Report, Row};
use crate::manifest;

/// The portable archive to measure.
pub const PORTABLE_ENV: &str = "PYPY_EMBED_BENCH_PORTABLE";
/// Its baseline, built with the machine's compiler.
pub const SYSTEM_ENV: &str = "PYPY_EMBED_BENCH_SYSTEM";

const WORKLOADS_PY: &str = include_str!("../../assets/workloads.py");
const WORKLOADS: [&str; 5] = ["scheduler", "nbody", "json", "regex", "dicts"];
const ROUNDS: usize = 9;
/// The goal for each workload and for their geometric mean.
const GOAL: f64 = 1.03;

pub fn section(report: &mut Report) -> Result<()> {
    let (Some(portable), Some(system)) = (
        crate::env::var_os(PORTABLE_ENV),
        crate::env::var_os(SYSTEM_ENV),
    ) else {
        eprintln!(
            "bench: portable: no rows; set {PORTABLE_ENV} and {SYSTEM_ENV} to a portable \
             archive and one built with --system-compiler"
        );
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let script = work.path().join("workloads.py");
    fs_err::write(&script, WORKLOADS_PY)?;
    let portable = launcher(Path::new(&portable), &work.path().join("portable"))?;
    let system = launcher(Path::new(&system), &work.path().join("system"))?;
    let sh = Shell::new()?;
    let mut ratios = Vec::new();
    for workload in WORKLOADS {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        // Alternating, so that a change of the machine's load hits both sides.
        for _ in 0..ROUNDS {
            ours.push(seconds(&sh, &portable, &script, workload)?);
            theirs.push(seconds(&sh, &system, &script, workload)?);
        }
        let (value, baseline) = (median(&mut ours), median(&mut theirs));
        ratios.push(value / baseline);
        report.add(Row {
            section: "portable".into(),
            name: format!("{workload}, portable build"),
            value: value * 1e3,
            baseline_name: "same, gcc build".into(),
            baseline: baseline * 1e3,
            unit: "ms".into(),
            goal: Goal::RatioAtMost(GOAL),
        });
    }
    let geomean = ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64;
    let geomean = geomean.exp();
    report.add(Row {
        section: "portable".into(),
        name: "geometric mean of the ratios".into(),
        value: geomean,
        baseline_name: "gcc build".into(),
        baseline: 1.0,
        unit: "x".into(),
        goal: Goal::RatioAtMost(GOAL),
    });
    Ok(())
}

/// Unpacks `archive` into `dir` and returns its launcher.
fn launcher(archive: &Path, dir: &Path) -> Result<PathBuf> {
    fs_err::create_dir_all(dir)?;
    pypy_archive::extract::unpack_top(archive, manifest::TOP_DIR, dir)
        .with_context(|| format!("unpacking {}", archive.display()))?;
    let manifest = pypy_archive::extract::read_manifest(archive)?;
    let rel = manifest
        .paths
        .launcher
        .with_context(|| format!("{} has no launcher", archive.display()))?;
    Ok(dir.join(manifest::TOP_DIR).join(rel))
}

/// The seconds the workload's measured runs took, as the script prints them.
fn seconds(sh: &Shell, python: &Path, script: &Path, workload: &str) -> Result<f64> {
    let out = cmd!(sh, "{python} {script} {workload}")
        .quiet()
        .read()
        .with_context(|| format!("running the {workload} workload with {}", python.display()))?;
    match out.trim().parse::<f64>() {
        Ok(s) if s > 0.0 => Ok(s),
        _ => bail!("the {workload} workload printed {out:?}, not seconds"),
    }
}
