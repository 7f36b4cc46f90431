//! `cargo xtask bench`: every benchmark the issues ask for, reported as ratios against baselines measured in the same run.

use anyhow::{bail, Result};

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!("`cargo xtask bench` is not implemented yet (each issue's benchmark section)")
}
