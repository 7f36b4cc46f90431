//! `cargo xtask bench`: every benchmark the issues ask for, reported as
//! ratios against baselines measured in the same run on the same machine.

use anyhow::{Context, Result};

mod archive;
mod embed;
mod portable;
mod report;
mod translate;
mod typed;

pub use report::{median, median_time, Report, Row};

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run only the sections whose name contains this (translate, archive, embed, typed, portable).
    #[arg(long)]
    pub only: Option<String>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

type Section = (&'static str, fn(&mut Report) -> Result<()>);

/// The benchmark sections, one per issue that asks for figures.
const SECTIONS: &[Section] = &[
    ("translate", translate::section),
    ("archive", archive::section),
    ("embed", embed::section),
    ("typed", typed::section),
    ("portable", portable::section),
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
