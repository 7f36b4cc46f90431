//! Benchmark section `translate`: the driver's overhead over running the same
//! rpython command by hand, and the time of a cache-hit rebuild.

use std::time::Instant;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use super::report::{Goal, Report, Row};
use crate::build_cache::BuildCache;
use crate::translate::{self, Spec};
use crate::{fixtures, host, targets};

/// The small target the test-suite translates too.
fn small_spec() -> Result<Spec> {
    let target = fixtures::small_target();
    let rpython = fixtures::translation_rpython()?;
    Ok(Spec {
        source_root: rpython.tree,
        source_id: rpython.source_id,
        target_file: target,
        opt: "2".into(),
        rpython_options: vec!["--shared".into()],
        target_options: vec![],
        jobs: translate::default_jobs(),
        triple: targets::host_triple().into(),
        source_date_epoch: None,
        portable: None,
        cross: None,
    })
}

pub fn section(report: &mut Report) -> Result<()> {
    let sh = Shell::new()?;
    let spec = small_spec()?;
    let h = fixtures::host27()?;
    let mut host = host::find(&sh, Some(&h.python), &[], &crate::paths::cache_root())?;
    host.site = Some(h.site.clone());

    // Alternate the two ways so that machine noise hits both alike.
    let rounds = 3;
    let mut by_hand = Vec::new();
    let mut driven = Vec::new();
    for round in 0..rounds {
        eprintln!("bench: translate round {}/{rounds}", round + 1);
        by_hand.push(time_by_hand(&sh, &spec, &host)?);
        let cache_dir = tempfile::tempdir()?;
        let cache = BuildCache::new(cache_dir.path().to_path_buf());
        let start = Instant::now();
        translate::translate(&sh, &spec, &host, &cache, true)?;
        driven.push(start.elapsed().as_secs_f64());
    }
    let hand = super::report::median(&mut by_hand);
    let ours = super::report::median(&mut driven);
    report.add(Row {
        section: "translate".into(),
        name: "driver, small target (median s)".into(),
        value: ours,
        baseline_name: "same rpython command by hand".into(),
        baseline: hand,
        unit: "s".into(),
        goal: Goal::RatioBelow(1.03),
    });

    // A cache hit: the whole `translate()` call, host probe and key included.
    let cache_dir = tempfile::tempdir()?;
    let cache = BuildCache::new(cache_dir.path().to_path_buf());
    translate::translate(&sh, &spec, &host, &cache, false)?;
    let mut hits = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let out = translate::translate(&sh, &spec, &host, &cache, false)?;
        hits.push(start.elapsed().as_secs_f64());
        anyhow::ensure!(out.cached, "the second translation was not a cache hit");
    }
    let hit = super::report::median(&mut hits);
    report.add(Row {
        section: "translate".into(),
        name: "cache hit, translate() (median s)".into(),
        value: hit,
        baseline_name: "full translation (driver)".into(),
        baseline: ours,
        unit: "s".into(),
        goal: Goal::ValueBelow(2.0),
    });

    // The same as a user sees it: the whole `cargo xtask translate` process.
    let cli = cli_cache_hit(&sh, &h)?;
    report.add(Row {
        section: "translate".into(),
        name: "cache hit, xtask translate CLI (median s)".into(),
        value: cli,
        baseline_name: "full translation (driver)".into(),
        baseline: ours,
        unit: "s".into(),
        goal: Goal::ValueBelow(2.0),
    });
    Ok(())
}

/// Median wall time of `xtask translate` on the small target once it is cached.
fn cli_cache_hit(sh: &Shell, h: &fixtures::Host27) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let recipe = fixtures::write_small_recipe(dir.path())?;
    let cache = dir.path().join("cache");
    let tree = fixtures::translation_rpython()?.tree;
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let python = &h.python;
    let _site = sh.push_env("PYTHONPATH", &h.site);
    let run = || -> Result<f64> {
        let start = Instant::now();
        cmd!(sh, "{exe} translate --recipe {recipe} --source-dir {tree} --host-python {python} --cache-dir {cache}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .context("xtask translate on the small target")?;
        Ok(start.elapsed().as_secs_f64())
    };
    run()?; // translates and fills the cache
    let mut times = Vec::new();
    for _ in 0..5 {
        times.push(run()?);
    }
    Ok(super::report::median(&mut times))
}

/// The command line the driver would run, run plainly with the same environment.
fn time_by_hand(sh: &Shell, spec: &Spec, host: &host::HostPython) -> Result<f64> {
    let work = tempfile::tempdir()?;
    let usession = work.path().join("usession");
    fs_err::create_dir_all(&usession)?;
    let _dir = sh.push_dir(work.path());
    let _u = sh.push_env("PYPY_USESSION_DIR", &usession);
    let mut pythonpath = vec![spec.source_root.clone()];
    pythonpath.extend(host.site.iter().cloned());
    let _p = sh.push_env("PYTHONPATH", std::env::join_paths(&pythonpath)?);
    let line = spec.command_line(host);
    let (program, rest) = (&line[0], &line[1..]);
    let log = work.path().join("log");
    let start = Instant::now();
    let out = cmd!(sh, "{program} {rest...}")
        .quiet()
        .ignore_status()
        .output()
        .context("running rpython by hand")?;
    let elapsed = start.elapsed().as_secs_f64();
    fs_err::write(&log, &out.stderr)?;
    anyhow::ensure!(
        out.status.success(),
        "rpython by hand failed; see {}",
        log.display()
    );
    Ok(elapsed)
}
