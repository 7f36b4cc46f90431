//! `cargo xtask bench`: every benchmark the issues ask for, reported as
//! ratios against baselines measured in the same run on the same machine.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run only the sections whose name contains this (translate, archive, embed, typed).
    #[arg(long)]
    pub only: Option<String>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// One measured figure beside its baseline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub section: String,
    pub name: String,
    pub value: f64,
    pub baseline_name: String,
    pub baseline: f64,
    pub unit: String,
    /// The goal as the issue states it, e.g. "ratio <= 1.05".
    pub goal: String,
    /// Whether the goal was met.
    pub met: bool,
}

impl Row {
    pub fn ratio(&self) -> f64 {
        if self.baseline == 0.0 {
            f64::INFINITY
        } else {
            self.value / self.baseline
        }
    }
}

/// All rows of one run.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn add(&mut self, row: Row) {
        eprintln!(
            "bench: {}/{}: {:.4} {} vs {} {:.4} {} (ratio {:.3}; goal {}: {})",
            row.section,
            row.name,
            row.value,
            row.unit,
            row.baseline_name,
            row.baseline,
            row.unit,
            row.ratio(),
            row.goal,
            if row.met { "met" } else { "NOT met" }
        );
        self.rows.push(row);
    }

    fn print(&self) {
        println!(
            "{:<24} {:<40} {:>12} {:<32} {:>12} {:>8}  goal",
            "section", "figure", "value", "baseline", "baseline", "ratio"
        );
        for r in &self.rows {
            println!(
                "{:<24} {:<40} {:>12.4} {:<32} {:>12.4} {:>8.3}  {} ({})",
                r.section,
                r.name,
                r.value,
                r.baseline_name,
                r.baseline,
                r.ratio(),
                r.goal,
                if r.met { "met" } else { "NOT met" }
            );
        }
    }
}

/// The median of `runs` timings of `f`, after one warm-up run.
/// The middle value (the upper one of an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

pub fn median_time(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    f().context("warm-up run")?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

type Section = (&'static str, fn(&mut Report) -> Result<()>);

/// The benchmark sections, one per issue that asks for figures.
const SECTIONS: &[Section] = &[
    ("translate", crate::translate_bench::bench),
    ("archive", crate::archive::bench::section),
    ("embed", crate::embed_bench::section),
    ("typed", crate::typed_bench::section),
];

pub fn run(args: Args) -> Result<()> {
    let mut report = Report::default();
    for (name, section) in SECTIONS {
        if args.only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        eprintln!("bench: section {name}");
        section(&mut report).with_context(|| format!("benchmark section `{name}`"))?;
    }
    report.print();
    if let Some(path) = args.json {
        fs_err::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
