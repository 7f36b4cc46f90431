//! Builds our archive from a PyPy that someone else built (an official release, Debian's packages, any installed tree).

use anyhow::{bail, Result};

/// Options of `cargo xtask repackage`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!("`cargo xtask repackage` is not implemented yet (the archive issue)")
}
