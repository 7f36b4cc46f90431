//! `test-support prepare` and `test-support emulated`: the fixture steps of
//! `cargo xtask test`, in a binary of their own so that the xtask does not
//! depend on its test fixtures.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use xshell::Shell;

#[derive(Parser)]
#[command(
    about = "Prepares the test fixtures and runs the emulated tests (`cargo xtask test` runs this)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Downloads or builds every fixture that is not there yet.
    Prepare,
    /// embed-runtime's scenarios and the JIT check under the emulator.
    Emulated {
        /// An archive of the emulated target to test instead of Debian's PyPy repackaged.
        #[arg(long, value_name = "ARCHIVE")]
        archive: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let sh = Shell::new()?;
    sh.change_dir(xtask::paths::workspace_root());
    match cli.command {
        Command::Prepare => test_support::prepare_all(&sh).context("preparing the test fixtures"),
        Command::Emulated { archive } => test_support::emulated::run(&sh, archive.as_deref())
            .context("the emulated embedding scenarios failed"),
    }
}
