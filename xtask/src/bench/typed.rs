//! Benchmark section `typed`: embed-runtime's typed calls and object
//! handles on PyPy against PyO3 on the machine's CPython 3, side by side in
//! one run: (a) the call overhead of `f(i, s) -> dict` converted to a Rust
//! map, (b) a hot pure-Python loop, (c) handle create + getattr + drop; and
//! the wire format, marshal against JSON. The PyO3 side is
//! `xtask/bench-pyo3`, a workspace of its own, so that PyO3 never enters
//! embed-runtime's dependencies.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use super::report::{Goal, Report, Row};
use crate::{fixtures, paths};

const CALLS: &str = "200000";
const HOT_CALLS: &str = "200";
const HANDLES: &str = "200000";
const ROUNDS: usize = 3;

pub fn section(report: &mut Report) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(paths::workspace_root());
    let archive = match crate::env::var_os(super::embed::ARCHIVE_ENV) {
        Some(path) => PathBuf::from(path),
        None => fixtures::test_archive()?,
    };
    cmd!(
        sh,
        "cargo build --release -p embed-runtime --example embed_bench"
    )
    .run()
    .context("building embed-runtime's bench example in release mode")?;
    let bench_pyo3 = paths::workspace_root().join("xtask/bench-pyo3");
    let python = crate::env::var("PYO3_PYTHON")?.unwrap_or_else(|| "python3".into());
    cmd!(
        sh,
        "cargo build --release --manifest-path {bench_pyo3}/Cargo.toml"
    )
    .env("PYO3_PYTHON", &python)
    .run()
    .context(
        "building the PyO3 side of the bench (it needs CPython's headers and library: \
             Debian's python3-dev)",
    )?;
    let work = tempfile::tempdir()?;
    let _cache = sh.push_env(pypy_archive::cache::CACHE_ENV, work.path().join("cache"));
    let ours_exe = super::embed::release_example("embed_bench");
    let theirs_exe = bench_pyo3.join("target/release/bench-pyo3");
    // Both sides in turn, several rounds: a machine's load then weighs on
    // both alike, and the median of each figure is reported.
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..ROUNDS {
        ours.push(
            cmd!(
                sh,
                "{ours_exe} typed {archive} {CALLS} {HOT_CALLS} {HANDLES}"
            )
            .quiet()
            .read()
            .context("running embed-runtime's typed bench")?,
        );
        theirs.push(
            cmd!(sh, "{theirs_exe} {CALLS} {HOT_CALLS} {HANDLES}")
                .quiet()
                .read()
                .context("running the PyO3 bench")?,
        );
    }
    let value = |outs: &[String], key: &str| -> Result<f64> {
        let mut values = outs
            .iter()
            .map(|out| super::embed::value_of(out, key))
            .collect::<Result<Vec<f64>>>()?;
        Ok(super::report::median(&mut values))
    };
    let name = archive_label(&archive);
    let section = format!("typed {name} vs PyO3 on CPython");

    let (a, a_pyo3) = (value(&ours, "call_ns")?, value(&theirs, "call_ns")?);
    report.add(Row {
        section: section.clone(),
        name: "(a) f(i, s) -> dict as HashMap".into(),
        value: a,
        baseline_name: "PyO3 call1 + extract".into(),
        baseline: a_pyo3,
        unit: "ns".into(),
        goal: Goal::RatioAtMost(2.0),
    });
    let (b, b_pyo3) = (value(&ours, "hot_ms")?, value(&theirs, "hot_ms")?);
    report.add(Row {
        section: section.clone(),
        name: "(b) a 100,000-step Python loop".into(),
        value: b,
        baseline_name: "PyO3 on CPython".into(),
        baseline: b_pyo3,
        unit: "ms".into(),
        goal: Goal::RatioAtMost(0.2),
    });
    let (c, c_pyo3) = (value(&ours, "handle_ns")?, value(&theirs, "handle_ns")?);
    report.add(Row {
        section: section.clone(),
        name: "(c) import + getattr + drop".into(),
        value: c,
        baseline_name: "PyO3 import + getattr + drop".into(),
        baseline: c_pyo3,
        unit: "ns".into(),
        goal: Goal::Reference,
    });
    let churn = value(&ours, "churn_rss_growth_kb")?;
    report.add(Row {
        section: section.clone(),
        name: "RSS over 1,000,000 handles created and dropped".into(),
        value: churn,
        baseline_name: "flat (limit)".into(),
        baseline: 2048.0,
        unit: "kB".into(),
        goal: Goal::ValueAtMost(2048.0),
    });
    let json = value(&ours, "json_call_ns")?;
    report.add(Row {
        section,
        name: "(a) with marshal (the wire format)".into(),
        value: a,
        baseline_name: "(a) with JSON on both sides".into(),
        baseline: json,
        unit: "ns".into(),
        goal: Goal::RatioBelow(1.0),
    });
    Ok(())
}

fn archive_label(archive: &Path) -> String {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.split("-x86").next().unwrap_or(&name).to_string()
}
