//! `cargo xtask cross-lint`: compiles and lints the workspace for the other operating systems of the target table.
//!
//! No macOS or Windows machine runs here, so the next best check of their
//! code paths is the compiler: `cargo clippy --all-targets -- -D warnings`
//! for one CI target of every OS but the host's and Linux, from this
//! machine. The xtask uses the system's TLS on macOS and Windows (see
//! `xtask/Cargo.toml`) so that no C cross-compiler is needed for them.

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::paths;
use crate::targets::{self, Os, Target};

/// Options of `cargo xtask cross-lint`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Lint for these triples instead of one CI target per other OS.
    #[arg(long = "target")]
    pub targets: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(paths::workspace_root());
    let all = targets::all()?;
    let chosen = if args.targets.is_empty() {
        let host = targets::get(targets::host_triple())?;
        lint_targets(&all, &host)
    } else {
        args.targets
            .iter()
            .map(|t| targets::get(t))
            .collect::<Result<Vec<_>>>()?
    };
    for target in &chosen {
        lint(&sh, target)?;
    }
    Ok(())
}

/// One CI target of every OS other than the host's, in table order: the
/// host's own OS is linted by the normal build. Linux is left out: its TLS
/// (rustls over ring) compiles C, which needs a cross C compiler elsewhere;
/// CI's Linux job lints the other two.
pub fn lint_targets(all: &[Target], host: &Target) -> Vec<Target> {
    let mut chosen: Vec<Target> = Vec::new();
    let others = all
        .iter()
        .filter(|t| t.ci.test && t.os != host.os && t.os != Os::Linux);
    for target in others {
        if !chosen.iter().any(|c| c.os == target.os) {
            chosen.push(target.clone());
        }
    }
    chosen
}

/// Installs the target's standard library if rustup lacks it, then lints the
/// workspace for it in its own target folder (so the host's build stays warm
/// and a concurrent `cargo test` is not blocked on its lock). The compiler's
/// output is kept and shown only when something is wrong, so that it does not
/// interleave with the test-suite's.
fn lint(sh: &Shell, target: &Target) -> Result<()> {
    let triple = &target.triple;
    let installed = cmd!(sh, "rustup target list --installed").read().context(
        "asking rustup for the installed targets; cross-lint needs rustup (https://rustup.rs)",
    )?;
    if !installed.lines().any(|l| l.trim() == triple) {
        cmd!(sh, "rustup target add {triple}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| {
                format!("installing Rust's standard library for {triple} (`rustup target add {triple}`)")
            })?;
    }
    let target_dir = paths::workspace_root().join("target").join("cross");
    let started = std::time::Instant::now();
    let out = cmd!(
        sh,
        "cargo clippy --quiet --profile cross-lint --workspace --all-targets --target {triple} --target-dir {target_dir} -- -D warnings"
    )
    .quiet()
    .ignore_status()
    .output()
    .context("running cargo clippy")?;
    if !out.status.success() {
        bail!(
            "the workspace does not compile or lint cleanly for {triple} ({}); fix the code \
             under cfg({}) or the code every OS shares:\n{}{}",
            target.ci.runner,
            target.os.cfg_name(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!(
        "cross-lint: {triple} compiles and lints cleanly ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The triples cross-lint picks on a machine of `host`'s OS.
    fn chosen_on(host: &str) -> Vec<String> {
        let all = targets::all().unwrap();
        let host = targets::get(host).unwrap();
        lint_targets(&all, &host)
            .into_iter()
            .map(|t| t.triple)
            .collect()
    }

    #[test]
    fn one_target_per_other_os_but_linux() {
        assert_eq!(
            chosen_on("x86_64-unknown-linux-gnu"),
            ["aarch64-apple-darwin", "x86_64-pc-windows-msvc"]
        );
        assert_eq!(
            chosen_on("x86_64-pc-windows-msvc"),
            ["aarch64-apple-darwin"]
        );
        assert_eq!(chosen_on("x86_64-apple-darwin"), ["x86_64-pc-windows-msvc"]);
    }
}
