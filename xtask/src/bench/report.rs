//! What every benchmark section reports: rows of a figure beside its
//! baseline from the same run, and the medians they are taken from.

use std::time::{Duration, Instant};

use anyhow::{Context, Result as AnyResult};

/// A row's goal, as the issue states it: it both prints and judges, so the
/// two can never disagree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// value / baseline at most this.
    RatioAtMost(f64),
    /// value / baseline below this.
    RatioBelow(f64),
    /// The value, in the row's unit, at most this.
    ValueAtMost(f64),
    /// The value, in the row's unit, below this.
    ValueBelow(f64),
    /// Shown beside the others; nothing to meet.
    Reference,
}

impl Goal {
    /// Whether `value` against `baseline` meets the goal.
    pub fn met(&self, value: f64, baseline: f64) -> bool {
        let ratio = ratio(value, baseline);
        match *self {
            Goal::RatioAtMost(limit) => ratio <= limit,
            Goal::RatioBelow(limit) => ratio < limit,
            Goal::ValueAtMost(limit) => value <= limit,
            Goal::ValueBelow(limit) => value < limit,
            Goal::Reference => true,
        }
    }

    /// "ratio <= 1.05", "value < 2 s", "reference".
    pub fn describe(&self, unit: &str) -> String {
        match *self {
            Goal::RatioAtMost(limit) => format!("ratio <= {limit}"),
            Goal::RatioBelow(limit) => format!("ratio < {limit}"),
            Goal::ValueAtMost(limit) => format!("value <= {limit} {unit}"),
            Goal::ValueBelow(limit) => format!("value < {limit} {unit}"),
            Goal::Reference => "reference".into(),
        }
    }
}

fn ratio(value: f64, baseline: f64) -> f64 {
    if baseline == 0.0 {
        f64::INFINITY
    } else {
        value / baseline
    }
}

/// One measured figure beside its baseline.
#[derive(Debug, Clone)]
pub struct Row {
    pub section: String,
    pub name: String,
    pub value: f64,
    pub baseline_name: String,
    pub baseline: f64,
    pub unit: String,
    pub goal: Goal,
}

impl Row {
    pub fn ratio(&self) -> f64 {
        ratio(self.value, self.baseline)
    }

    /// Whether the goal was met.
    pub fn met(&self) -> bool {
        self.goal.met(self.value, self.baseline)
    }
}

/// The JSON report keeps its fields: the goal as text, and whether it was met.
impl serde::Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut row = serializer.serialize_struct("Row", 8)?;
        row.serialize_field("section", &self.section)?;
        row.serialize_field("name", &self.name)?;
        row.serialize_field("value", &self.value)?;
        row.serialize_field("baseline_name", &self.baseline_name)?;
        row.serialize_field("baseline", &self.baseline)?;
        row.serialize_field("unit", &self.unit)?;
        row.serialize_field("goal", &self.goal.describe(&self.unit))?;
        row.serialize_field("met", &self.met())?;
        row.end()
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
            row.goal.describe(&row.unit),
            if row.met() { "met" } else { "NOT met" }
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
                r.goal.describe(&r.unit),
                if r.met() { "met" } else { "NOT met" }
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
pub fn median_time(runs: usize, mut f: impl FnMut() -> AnyResult<()>) -> AnyResult<Duration> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_goal_prints_what_it_judges() {
        assert!(Goal::RatioAtMost(1.05).met(105.0, 100.0));
        assert!(!Goal::RatioAtMost(1.05).met(106.0, 100.0));
        assert!(!Goal::RatioBelow(1.0).met(1.0, 1.0));
        assert!(Goal::ValueBelow(2.0).met(1.9, 0.0));
        assert!(!Goal::ValueAtMost(2048.0).met(2049.0, 1.0));
        assert!(Goal::Reference.met(f64::INFINITY, 0.0));
        assert_eq!(Goal::RatioAtMost(1.05).describe("ms"), "ratio <= 1.05");
        assert_eq!(Goal::ValueBelow(2.0).describe("s"), "value < 2 s");
        let row = Row {
            section: "s".into(),
            name: "n".into(),
            value: 2.0,
            baseline_name: "b".into(),
            baseline: 1.0,
            unit: "ms".into(),
            goal: Goal::RatioAtMost(1.0),
        };
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["goal"], "ratio <= 1");
        assert_eq!(json["met"], false);
    }
}
