//! `cargo xtask`: parses the command line and hands each subcommand to its module.

use clap::{Parser, Subcommand};
use xtask::{
    bench, build_pypy, check_portable, ci_matrix, cross_lint, deps, doctor, fetch_cmd, package,
    rebuild_check, recipes_cmd, repackage, test_cmd, translate, verify,
};

/// Build PyPy as an embeddable shared library and ship it as a relocatable archive.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch, translate, package and verify a PyPy release (the main job).
    BuildPypy(build_pypy::Args),
    /// List the recipes in `recipes/`.
    Recipes(recipes_cmd::Args),
    /// Download and unpack a recipe's source release (first stage of build-pypy).
    Fetch(fetch_cmd::Args),
    /// Build the portable toolchain and the C libraries of recipes/deps.toml (Linux).
    Deps(deps::Args),
    /// Check the compiler, headers, disk and memory a translation needs.
    Doctor(doctor::Args),
    /// Run the RPython translation with --shared (second stage of build-pypy).
    Translate(translate::Args),
    /// Lay out and archive a translated tree (third stage of build-pypy).
    Package(package::Args),
    /// Build our archive from a PyPy someone else built.
    Repackage(repackage::Args),
    /// Check an archive: checksums, dependencies, and a run from a fresh folder.
    Verify(verify::Args),
    /// Run an archive's standard library in minimal chroots of Debian 11, 12 and 13 (root).
    CheckPortable(check_portable::Args),
    /// Rebuild an archive from the recipe and build record in its manifest, and compare the bytes.
    RebuildCheck(rebuild_check::Args),
    /// Run every benchmark the issues ask for and print ratios against baselines.
    Bench(bench::Args),
    /// Write (or with --check, compare) the GitHub workflows from the target table.
    CiMatrix(ci_matrix::Args),
    /// Compile and lint the workspace for the other OSes of the target table.
    CrossLint(cross_lint::Args),
    /// Prepare the real test fixtures, then run the whole test-suite.
    Test(test_cmd::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::BuildPypy(args) => build_pypy::run(args),
        Command::Recipes(args) => recipes_cmd::run(args),
        Command::Fetch(args) => fetch_cmd::run(args),
        Command::Deps(args) => deps::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Translate(args) => translate::run(args),
        Command::Package(args) => package::run(args),
        Command::Repackage(args) => repackage::run(args),
        Command::Verify(args) => verify::run(args),
        Command::RebuildCheck(args) => rebuild_check::run(args),
        Command::CheckPortable(args) => check_portable::run(args),
        Command::Bench(args) => bench::run(args),
        Command::CiMatrix(args) => ci_matrix::run(args),
        Command::CrossLint(args) => cross_lint::run(args),
        Command::Test(args) => test_cmd::run(args),
    }
}
