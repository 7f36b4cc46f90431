//! `cargo xtask recipes`: lists the recipes and what they build.

use anyhow::{bail, Result};

/// Options of `cargo xtask recipes`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!("`cargo xtask recipes` is not implemented yet (the fetch issue)")
}
