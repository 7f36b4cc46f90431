//! `cargo xtask test`: prepares every real fixture, then runs the whole workspace test-suite.

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::{cross_lint, fixtures, paths};

/// Options of `cargo xtask test`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Prepare the fixtures and stop.
    #[arg(long)]
    pub prepare_only: bool,
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(paths::workspace_root());
    fixtures::prepare_all(&sh).context("preparing the test fixtures")?;
    if args.prepare_only {
        return Ok(());
    }
    let root = fixtures::root();
    let _env = sh.push_env(fixtures::FIXTURES_ENV, &root);
    // embed-runtime's build script takes this archive as "the one found at
    // build time", so its discovery test does not depend on what is in dist/.
    let archive = fixtures::test_archive()?;
    let _build_archive = sh.push_env("PYPY_EMBED_BUILD_ARCHIVE", &archive);
    // The archive embed-runtime's tests run against: the Debian repackage on
    // Linux, the official release's on macOS and Windows. Kept when the caller
    // names another (a real build's, say).
    let _test_archive = crate::env::var_os("PYPY_EMBED_TEST_ARCHIVE")
        .is_none()
        .then(|| sh.push_env("PYPY_EMBED_TEST_ARCHIVE", &archive));
    let extra = &args.cargo_args;
    cmd!(
        sh,
        "cargo test --workspace --all-targets --no-run {extra...}"
    )
    .run()
    .context("building the test-suite failed")?;
    // Unit tests need no fixture: they run first against an empty fixture
    // folder, as on a fresh checkout.
    {
        let empty = tempfile::tempdir()?;
        let _no_fixtures = sh.push_env(fixtures::FIXTURES_ENV, empty.path());
        cmd!(sh, "cargo test --workspace --lib {extra...}")
            .run()
            .context("the unit tests failed without fixtures")?;
    }
    // The other OSes' code paths are compiled and linted here, as no runner
    // of theirs is at hand: while the tests run, which leave a core idle for
    // long stretches (RPython annotates on one), rather than while they build.
    let cross = args
        .cargo_args
        .is_empty()
        .then(|| std::thread::spawn(|| cross_lint::run(cross_lint::Args { targets: vec![] })));
    cmd!(sh, "cargo test --workspace --all-targets {extra...}")
        .run()
        .context("the test-suite failed")?;
    if let Some(cross) = cross {
        cross
            .join()
            .map_err(|_| anyhow::anyhow!("the cross-lint thread panicked"))?
            .context("linting for the other operating systems")?;
    }
    Ok(())
}
