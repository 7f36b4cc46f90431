//! The main job: fetch, translate, package and verify one recipe for one target.

use anyhow::{bail, Result};

/// Options of `cargo xtask build-pypy`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!(
        "`cargo xtask build-pypy` is not implemented yet (the issues fetch → translate → archive)"
    )
}
