//! Preflight: checks that this machine can translate PyPy before an hour is spent on it.

use anyhow::{bail, Result};

/// Options of `cargo xtask doctor`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!("`cargo xtask doctor` is not implemented yet (the translate issue)")
}
