//! `cargo xtask test`: prepares every real fixture, then runs the whole workspace test-suite.

use anyhow::{bail, Context, Result};
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
    if args.emulated {
        run_emulated(&sh, args.emulated_archive.as_deref())
            .context("the emulated embedding scenarios failed")?;
    }
    Ok(())
}

/// embed-runtime's scenarios, cross-compiled for the emulated target and
/// run under its emulator (see `--emulated`).
fn run_emulated(sh: &Shell, archive: Option<&std::path::Path>) -> Result<()> {
    let host = crate::targets::host_triple();
    let mut emulated = fixtures::prepare_emulated(sh)?
        .with_context(|| format!("recipes/targets.toml emulates no target on {host}"))?;
    if let Some(archive) = archive {
        let manifest = pypy_archive::extract::read_manifest(archive)
            .with_context(|| format!("reading the manifest of {}", archive.display()))?;
        if manifest.target != emulated.target.triple {
            bail!(
                "{} is an archive for {}, not for the emulated {}",
                archive.display(),
                manifest.target,
                emulated.target.triple
            );
        }
        emulated.archive = std::path::absolute(archive)?;
    }
    let triple = &emulated.target.triple;
    let pin = emulated
        .target
        .emulator
        .as_ref()
        .context("an emulated target has an emulator pin")?;
    cmd!(sh, "rustup target add {triple}")
        .quiet()
        .run()
        .with_context(|| {
            format!("adding Rust's standard library for {triple} (`rustup target add`)")
        })?;
    let _binfmt = emulated.cross.emulator.register(pin, sh)?;
    let upper = triple.to_uppercase().replace('-', "_");
    let lower = triple.replace('-', "_");
    let cc = emulated.cross.zig.cc();
    let ar = emulated.cross.zig.bin.join("ar");
    let _env: Vec<_> = [
        (
            format!("CARGO_TARGET_{upper}_LINKER"),
            cc.clone().into_os_string(),
        ),
        (format!("CC_{lower}"), cc.into_os_string()),
        (format!("AR_{lower}"), ar.into_os_string()),
        // Also for the scenario that builds a program of its own with cargo.
        ("CARGO_BUILD_TARGET".into(), triple.into()),
        // The emulator, started by the kernel, finds the target's libraries here.
        (
            "QEMU_LD_PREFIX".into(),
            emulated.sysroot.clone().into_os_string(),
        ),
        (
            "PYPY_EMBED_BUILD_ARCHIVE".into(),
            emulated.archive.clone().into_os_string(),
        ),
        (
            "PYPY_EMBED_TEST_ARCHIVE".into(),
            emulated.archive.clone().into_os_string(),
        ),
    ]
    .into_iter()
    .map(|(var, value)| sh.push_env(var, value))
    .collect();
    eprintln!(
        "test: embed-runtime's scenarios for {triple} under {}, against {}",
        emulated.cross.emulator.program.display(),
        emulated.archive.display()
    );
    cmd!(sh, "cargo test -p embed-runtime --test scenarios").run()?;
    jit_under_the_emulator(sh, &emulated).context("the JIT check under the emulator failed")
}

/// A loop in pure Python, long enough for the JIT to matter.
const JIT_LOOP: &str = "def f():\n    s = 0\n    for i in range(3000000):\n        s += i % 7\n    return s\nprint(f())";

/// The emulated archive's own launcher runs a pure-Python loop under the
/// emulator: PyPy's JIT for the target compiles it (`PYPYLOG=jit-summary`
/// counts the loops traced and compiled), and it runs faster than with
/// `--jit off`. Medians of three alternating runs each; only the ratio
/// means anything under emulation.
fn jit_under_the_emulator(sh: &Shell, emulated: &fixtures::Emulated) -> Result<()> {
    let tree = tempfile::tempdir()?;
    let unpacked = tree.path().join("unpacked");
    crate::fetch::extract_archive(&emulated.archive, &unpacked)?;
    let top = unpacked.join(pypy_archive::manifest::TOP_DIR);
    let manifest = pypy_archive::manifest::Manifest::from_json(&fs_err::read_to_string(
        top.join(pypy_archive::manifest::MANIFEST_NAME),
    )?)?;
    let launcher = top.join(
        manifest
            .paths
            .launcher
            .as_deref()
            .context("the emulated archive has a launcher")?,
    );
    let emulator = crate::emulator::Emulator {
        program: emulated.cross.emulator.program.clone(),
        sysroot: emulated.sysroot.clone(),
    };
    let log = tree.path().join("jit-summary.log");
    let run = |args: &[&str]| -> Result<f64> {
        let started = std::time::Instant::now();
        let out = emulator
            .command(&launcher, args)
            .env("PYPYLOG", format!("jit-summary:{}", log.display()))
            .cmd(sh)?
            .read()?;
        if out.trim() != "8999994" {
            bail!("the loop printed {out:?}, expected 8999994");
        }
        Ok(started.elapsed().as_secs_f64())
    };
    let (mut jit, mut off) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        off.push(run(&["--jit", "off", "-c", JIT_LOOP])?);
        jit.push(run(&["-c", JIT_LOOP])?);
    }
    let summary = fs_err::read_to_string(&log)?;
    let count = |label: &str| -> u64 {
        summary
            .lines()
            .find(|l| l.starts_with(label))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let (traced, compiled) = (count("Tracing:"), count("Backend:"));
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (jit, off) = (median(&mut jit), median(&mut off));
    let ratio = jit / off;
    eprintln!(
        "test: JIT under the emulator: {traced} loop(s) traced, {compiled} compiled; \
         {jit:.2} s with the JIT, {off:.2} s with --jit off (ratio {ratio:.2})"
    );
    if compiled == 0 {
        bail!("PYPYLOG=jit-summary shows no compiled loop:\n{summary}");
    }
    if ratio >= 1.0 {
        bail!(
            "the JIT run took {jit:.2} s, not less than --jit off's {off:.2} s (ratio {ratio:.2})"
        );
    }
    Ok(())
}
