//! Benchmark section `archive`: our reproducible writer against `tar -czf`
//! (GNU tar with gzip -6) on the repackaged Debian tree, same run, same machine.

use std::time::Duration;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use super::report::{median_time, Goal, Report, Row};
use crate::archive::writer::{write_tar_gz_file, WriteOptions};
use crate::{fixtures, manifest};

const RUNS: usize = 3;

pub fn section(report: &mut Report) -> Result<()> {
    let archive = fixtures::test_archive()?;
    let work = tempfile::tempdir().context("creating the benchmark folder")?;
    let tree = work.path().join("tree");
    fs_err::create_dir(&tree)?;
    pypy_archive::extract::unpack_top(&archive, manifest::TOP_DIR, &tree)?;
    let top = tree.join(manifest::TOP_DIR);
    let ours = work.path().join("ours.tar.gz");
    let theirs = work.path().join("tar.tar.gz");

    let sh = Shell::new()?;
    let top_name = manifest::TOP_DIR;
    let tar_time = median_time(RUNS, || {
        cmd!(sh, "tar -czf {theirs} -C {tree} {top_name}")
            .quiet()
            .run()
            .context("running `tar -czf` (GNU tar and gzip needed)")
    })?;
    let run_ours = |threads: usize| -> Result<Duration> {
        let opts = WriteOptions {
            threads,
            ..WriteOptions::default()
        };
        median_time(RUNS, || {
            write_tar_gz_file(&top, top_name, &ours, &opts).map(|_| ())
        })
    };
    let one_thread = run_ours(1)?;
    let ours_time = run_ours(0)?;
    let ours_size = fs_err::metadata(&ours)?.len() as f64;
    let tar_size = fs_err::metadata(&theirs)?.len() as f64;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    let time_row = |name: String, value: Duration| Row {
        section: "archive".into(),
        name,
        value: value.as_secs_f64(),
        baseline_name: "tar -czf".into(),
        baseline: tar_time.as_secs_f64(),
        unit: "s".into(),
        goal: Goal::RatioAtMost(1.0),
    };
    report.add(time_row(
        format!("create archive ({threads} threads; stretch goal 0.5)"),
        ours_time,
    ));
    report.add(time_row("create archive (1 thread)".into(), one_thread));
    report.add(Row {
        section: "archive".into(),
        name: "archive size".into(),
        value: ours_size / 1e6,
        baseline_name: "tar -czf".into(),
        baseline: tar_size / 1e6,
        unit: "MB".into(),
        goal: Goal::RatioAtMost(1.05),
    });
    Ok(())
}
