//! What every benchmark section reports: rows of a figure beside its
//! baseline from the same run, and the medians they are taken from.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

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

    pub(super) fn print(&self) {
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

/// The middle value (the upper one of an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// The median of `runs` timings of `f`, after one warm-up run.
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
