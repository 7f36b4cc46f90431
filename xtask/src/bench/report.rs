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

/// The median of a figure's runs, with the fastest and the slowest (ms).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// Of `runs`, leaving out the first (cold caches).
    pub fn after_warmup(runs: &[Duration]) -> Spread {
        let mut ms: Vec<f64> = runs.iter().skip(1).map(|d| d.as_secs_f64() * 1e3).collect();
        if ms.is_empty() {
            ms = runs.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        }
        ms.sort_by(f64::total_cmp);
        Spread {
            median: ms.get(ms.len() / 2).copied().unwrap_or(f64::NAN),
            min: ms.first().copied().unwrap_or(f64::NAN),
            max: ms.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// All rows of one run.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
    /// The min and max behind a row's medians, by row index: (value, baseline).
    pub spreads: Vec<(usize, Spread, Spread)>,
}

impl Report {
    /// Adds `row`, whose value and baseline are the medians of `value` and `baseline`.
    pub fn add_spread(&mut self, row: Row, value: &Spread, baseline: &Spread) {
        eprintln!(
            "bench:   min-max {:.2}-{:.2} against {:.2}-{:.2}",
            value.min, value.max, baseline.min, baseline.max
        );
        self.spreads.push((self.rows.len(), *value, *baseline));
        self.add(row);
    }

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
        for (index, value, baseline) in &self.spreads {
            let r = &self.rows[*index];
            println!(
                "  {}/{}: min-max {:.2}-{:.2} {} against {:.2}-{:.2}",
                r.section, r.name, value.min, value.max, r.unit, baseline.min, baseline.max
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
