//! Drives the RPython translator with --shared and records what it did.

use anyhow::{bail, Result};

/// Options of `cargo xtask translate`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!("`cargo xtask translate` is not implemented yet (the translate issue)")
}
