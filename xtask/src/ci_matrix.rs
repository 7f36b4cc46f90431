//! Writes the GitHub workflows from the target table, or checks that they are current.

use anyhow::{bail, Result};

/// Options of `cargo xtask ci-matrix`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!("`cargo xtask ci-matrix` is not implemented yet (the CI matrix issue)")
}
