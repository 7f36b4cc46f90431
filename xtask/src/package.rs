//! Lays out a translated tree the way PyPy's release script does and archives it.

use anyhow::{bail, Result};

/// Options of `cargo xtask package`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!("`cargo xtask package` is not implemented yet (the archive issue)")
}
