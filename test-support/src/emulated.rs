//! embed-runtime's scenarios and PyPy's JIT for a target this machine runs
//! under an emulator (`cargo xtask test --emulated`).

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

/// embed-runtime's scenarios, cross-compiled for the emulated target and
/// run under its emulator (see `--emulated`).
pub fn run(sh: &Shell, archive: Option<&std::path::Path>) -> Result<()> {
    let host = xtask::targets::host_triple();
    let mut emulated = crate::prepare::prepare_emulated(sh)?
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
fn jit_under_the_emulator(sh: &Shell, emulated: &crate::prepare::Emulated) -> Result<()> {
    let tree = tempfile::tempdir()?;
    let unpacked = tree.path().join("unpacked");
    xtask::fetch::extract_archive(&emulated.archive, &unpacked)?;
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
    let emulator = xtask::emulator::Emulator {
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
