//! `cargo xtask test`: prepares every real fixture (with the test-support
//! crate's binary), then runs the whole workspace test-suite.

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::{cross_lint, fixtures, paths};

/// Options of `cargo xtask test`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Prepare the fixtures and stop.
    #[arg(long)]
    pub prepare_only: bool,
    /// Then run embed-runtime's embedding scenarios for each target this
    /// machine runs under an emulator (aarch64 on x86-64 Linux): built with
    /// zig for that target, against Debian's PyPy for it, under qemu-user
    /// registered with the kernel for the run (binfmt_misc; needs root).
    #[arg(long)]
    pub emulated: bool,
    /// With `--emulated`: run the scenarios and the JIT check against this
    /// archive of the emulated target (a cross-built one of ours) instead of
    /// Debian's PyPy repackaged.
    #[arg(long, requires = "emulated", value_name = "ARCHIVE")]
    pub emulated_archive: Option<std::path::PathBuf>,
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(paths::workspace_root());
    // The fixtures are made by the test-support crate, which depends on this
    // one: its binary runs here rather than its code being linked in.
    cmd!(sh, "cargo run --quiet --package test-support -- prepare")
        .run()
        .context("preparing the test fixtures")?;
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
    if args.emulated {
        let archive: Vec<std::ffi::OsString> = args
            .emulated_archive
            .iter()
            .map(|a| std::path::absolute(a).map(|a| format!("--archive={}", a.display()).into()))
            .collect::<std::io::Result<_>>()?;
        cmd!(
            sh,
            "cargo run --quiet --package test-support -- emulated {archive...}"
        )
        .run()
        .context("the emulated embedding scenarios failed")?;
    }
    Ok(())
}
