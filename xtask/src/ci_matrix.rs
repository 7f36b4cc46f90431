//! `cargo xtask ci-matrix`: writes the GitHub workflows from the target table, or checks that they are current.
//!
//! The workflows are YAML text rendered from templates in this file, with the
//! matrices filled in from `recipes/targets.toml`. Rendering our own text
//! (rather than serialising a YAML tree) keeps the comments a maintainer reads
//! in the workflows and makes the output byte-for-byte deterministic, so that
//! `--check` and the test-suite can compare it with the committed files.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::paths;
use crate::targets::{self, Target};

/// Folder of the workflows, relative to the workspace root.
pub const WORKFLOWS_DIR: &str = ".github/workflows";

/// Minutes a release build may take: a full JIT translation measured 44-75 min
/// on 2 cores with a PyPy 2.7 host (docs/build-report.md), and longer with
/// CPython 2.7; the rest covers packaging, verification and runners slower
/// than that machine.
pub const RELEASE_BUILD_TIMEOUT_MINUTES: u32 = 240;

/// Minutes the test job may take (fixtures, a small real translation, the suite).
pub const CI_TEST_TIMEOUT_MINUTES: u32 = 60;

/// Options of `cargo xtask ci-matrix`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Do not write anything; fail if a committed workflow differs from the generated one.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: Args) -> Result<()> {
    let targets = targets::all()?;
    let workflows = render(&targets).context("rendering the workflows")?;
    let root = paths::workspace_root();
    if args.check {
        check(&root, &workflows)?;
        println!("{} workflows are current", workflows.len());
    } else {
        for path in write(&root, &workflows)? {
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// One generated workflow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    /// Path relative to the workspace root, with `/`.
    pub path: String,
    pub text: String,
}

/// Renders every workflow from the given target table.
pub fn render(targets: &[Target]) -> Result<Vec<Workflow>> {
    if targets.is_empty() {
        bail!("the target table is empty; there is nothing to build or test");
    }
    Ok(vec![
        Workflow {
            path: format!("{WORKFLOWS_DIR}/ci.yml"),
            text: render_ci(targets)?,
        },
        Workflow {
            path: format!("{WORKFLOWS_DIR}/release.yml"),
            text: render_release(targets)?,
        },
    ])
}

/// Writes the workflows under `root`, each through a temporary file renamed into place.
pub fn write(root: &Path, workflows: &[Workflow]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for wf in workflows {
        let path = root.join(&wf.path);
        let dir = path.parent().context("a workflow path has a folder")?;
        fs_err::create_dir_all(dir)?;
        pypy_archive::fs::write_atomic(&path, wf.text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The workflows whose committed file under `root` is missing or differs from `workflows`.
pub fn stale(root: &Path, workflows: &[Workflow]) -> Result<Vec<String>> {
    let mut stale = Vec::new();
    for wf in workflows {
        let path = root.join(&wf.path);
        let committed = match fs_err::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        // A Windows checkout with core.autocrlf turns LF into CRLF; that is not staleness.
        if committed.map(|t| t.replace("\r\n", "\n")).as_deref() != Some(wf.text.as_str()) {
            stale.push(wf.path.clone());
        }
    }
    Ok(stale)
}

/// Fails, naming the files and the command that fixes them, when a workflow is stale.
pub fn check(root: &Path, workflows: &[Workflow]) -> Result<()> {
    let stale = stale(root, workflows)?;
    if !stale.is_empty() {
        bail!(
            "{} out of date with recipes/targets.toml; run `cargo xtask ci-matrix` and commit the result",
            stale.join(", ")
        );
    }
    Ok(())
}

/// A YAML double-quoted scalar; JSON's string syntax is a subset of it.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

/// The `include:` entries of a job matrix, one per target, indented for the templates below.
/// The test job also gets the test-only packages, the 2.7 host and the test PyPy source.
fn matrix_include(targets: &[&Target], for_tests: bool) -> Result<String> {
    let mut out = String::new();
    for t in targets {
        let mut packages = t.system_packages.clone();
        if for_tests {
            packages.extend(t.ci.test_packages.iter().cloned());
        }
        let install = t.install_command(&packages).unwrap_or_default();
        let mut fields = vec![
            ("triple", t.triple.clone()),
            ("runner", t.ci.runner.clone()),
            ("install", install),
        ];
        if for_tests {
            fields.push(("host27", t.bootstrap_python_version()?));
            fields.push(("test_pypy", t.ci.test_pypy.as_str().to_string()));
            fields.push(("test_release_url", t.ci.test_release.url.clone()));
            fields.push(("test_release_sha256", t.ci.test_release.sha256.clone()));
        }
        for (i, (key, value)) in fields.iter().enumerate() {
            let lead = if i == 0 { "- " } else { "  " };
            out.push_str(&format!("          {lead}{key}: {}\n", q(value)));
        }
    }
    Ok(out)
}

const HEADER: &str = "\
# Generated by `cargo xtask ci-matrix` from recipes/targets.toml. Do not edit
# by hand: change the table (or the templates in xtask/src/ci_matrix.rs), run
# `cargo xtask ci-matrix` and commit the result. `cargo xtask test` fails while
# this file differs from what the table generates.
";

/// Steps both workflows start a job on a target's runner with.
const RUNNER_SETUP: &str = r#"      # A Windows checkout would otherwise get CRLF line endings, which
      # breaks byte comparisons of committed files.
      - name: Keep line endings as committed
        run: git config --global core.autocrlf false
      - uses: actions/checkout@v4
      - name: Keep downloads and fixtures in the runner's temporary folder
        run: |
          echo "PYPY_EMBED_CACHE=$RUNNER_TEMP/pypy-embed-cache" >> "$GITHUB_ENV"
          echo "PYPY_EMBED_FIXTURES=$RUNNER_TEMP/pypy-embed-fixtures" >> "$GITHUB_ENV"
      - name: Install system packages (from recipes/targets.toml)
        if: matrix.install != ''
        run: ${{ matrix.install }}
      - uses: dtolnay/rust-toolchain@stable
        with:
          components: rustfmt, clippy
      - uses: Swatinem/rust-cache@v2
        with:
          key: ${{ matrix.triple }}
"#;

const CI_TEMPLATE: &str = r#"name: CI

on:
  push:
  pull_request:

permissions:
  contents: read

concurrency:
  group: ci-${{ github.ref }}
  cancel-in-progress: true

env:
  CARGO_TERM_COLOR: always

defaults:
  run:
    shell: bash

jobs:
  test:
    name: test (${{ matrix.triple }})
    runs-on: ${{ matrix.runner }}
    timeout-minutes: @TIMEOUT@
    strategy:
      fail-fast: false
      matrix:
        # The targets with `ci = true` in recipes/targets.toml: one runner per OS.
        include:
@INCLUDE@    env:
      # Where the real-libpypy tests get a PyPy on this OS (`test_pypy` in the
      # table): `debian-packages` is the distribution's pypy3, pypy3-lib and pypy3-dev
      # (apt-get download, unpacked); `official-release` is PyPy's own binary
      # release for this platform (`test_release`: URL and the sha256 from
      # pypy.org), downloaded and checked by the fetch stage.
      @TEST_PYPY_ENV@: ${{ matrix.test_pypy }}
      @TEST_PYPY_URL_ENV@: ${{ matrix.test_release_url }}
      @TEST_PYPY_SHA256_ENV@: ${{ matrix.test_release_sha256 }}
    steps:
@RUNNER_SETUP@      - name: Cache fetched archives
        uses: actions/cache@v4
        with:
          path: ${{ runner.temp }}/pypy-embed-cache
          key: pypy-embed-${{ matrix.triple }}-${{ hashFiles('recipes/*.toml') }}
          restore-keys: pypy-embed-${{ matrix.triple }}-
      - name: Cache test fixtures
        uses: actions/cache@v4
        with:
          path: ${{ runner.temp }}/pypy-embed-fixtures
          key: fixtures-${{ matrix.triple }}-${{ hashFiles('xtask/src/fixtures.rs') }}
      # A Python 3 for pip and venv (PyPI fixtures, the workflow linter), named by
      # path: Windows has no `python3`, and `python` becomes PyPy 2.7 below.
      - name: Python 3
        id: python3
        uses: actions/setup-python@v5
        with:
          python-version: "3.12"
      - name: Use it for the fixtures
        env:
          PYTHON3: ${{ steps.python3.outputs.python-path }}
        run: echo "PYPY_EMBED_PYTHON3=$PYTHON3" >> "$GITHUB_ENV"
      # The translation tests need a Python 2.7 host; the runners no longer
      # ship CPython 2.7, so they get the same PyPy 2.7 that --bootstrap-host uses.
      - name: Python 2.7 host
        id: host27
        uses: actions/setup-python@v5
        with:
          python-version: ${{ matrix.host27 }}
      # Named by path, as Windows has no `python2.7` to find on PATH.
      - name: Use it as the host of the translation tests
        env:
          HOST27: ${{ steps.host27.outputs.python-path }}
        run: echo "PYPY_EMBED_HOST_PYTHON=$HOST27" >> "$GITHUB_ENV"
      - name: Formatting
        run: cargo fmt --all --check
      - name: Lints
        run: cargo clippy --workspace --all-targets -- -D warnings
      # The README's test command: prepares the real fixtures, lints these
      # workflows, checks them against the target table, runs every test.
      - name: Tests
        run: cargo xtask test
"#;

const RELEASE_TEMPLATE: &str = r#"name: Release

on:
  push:
    tags:
      - "v*"
  workflow_dispatch:
    inputs:
      recipe:
        description: "Recipe to build: a file name in recipes/ without .toml (see `cargo xtask recipes`); empty builds the newest"
        type: string
        required: false
        default: ""

permissions:
  contents: read

concurrency:
  group: release-${{ github.ref }}
  cancel-in-progress: false

env:
  CARGO_TERM_COLOR: always

defaults:
  run:
    shell: bash

jobs:
  plan:
    name: check the recipe
    runs-on: ubuntu-24.04
    timeout-minutes: 10
    outputs:
      recipe: ${{ steps.recipe.outputs.recipe }}
    steps:
      - uses: actions/checkout@v4
      # Fail in seconds, not after @COUNT@ runners have started, when the recipe does not exist.
      - name: Check the recipe exists
        id: recipe
        env:
          RECIPE: ${{ inputs.recipe }}
        run: |
          if [ -n "$RECIPE" ] && [ ! -f "recipes/$RECIPE.toml" ]; then
            echo "::error::no recipe \`$RECIPE\`; the recipes are: $(cd recipes && ls pypy*.toml | sed 's/\.toml$//' | tr '\n' ' ')"
            exit 1
          fi
          echo "recipe=$RECIPE" >> "$GITHUB_OUTPUT"

  build:
    name: build (${{ matrix.triple }})
    needs: plan
    runs-on: ${{ matrix.runner }}
    # A full JIT translation takes ~55 min on 2 cores with a PyPy 2.7 host and
    # ~2 h with CPython 2.7; the rest is packaging, verification and slack.
    timeout-minutes: @TIMEOUT@
    strategy:
      fail-fast: false
      matrix:
        # Every target in recipes/targets.toml: on its own runner, or, when
        # its [target.emulator] names a build machine, cross-built on that
        # machine's runner (qemu-user runs its programs; docs/platforms.md).
        include:
@INCLUDE@    env:
      RECIPE: ${{ needs.plan.outputs.recipe }}
    steps:
@RUNNER_SETUP@      - name: Cache fetched archives and the bootstrap host
        uses: actions/cache@v4
        with:
          path: ${{ runner.temp }}/pypy-embed-cache
          key: pypy-embed-release-${{ matrix.triple }}-${{ hashFiles('recipes/*.toml') }}
          restore-keys: pypy-embed-release-${{ matrix.triple }}-
      # The plan and the doctor report first, kept for a failed build: the
      # first real failure on a runner can then be read without a rerun.
      - name: Plan and preflight
        run: |
          mkdir -p build-logs
          cargo xtask build-pypy ${RECIPE:+--recipe "$RECIPE"} --target "${{ matrix.triple }}" --bootstrap-host --plan | tee build-logs/plan.txt
          # For the record only: build-pypy checks again, with its bootstrapped host.
          cargo xtask doctor ${RECIPE:+--recipe "$RECIPE"} 2>&1 | tee build-logs/doctor.txt || true
      # Without a recipe, build-pypy takes the newest one.
      - name: Build (fetch, translate, package, verify)
        run: cargo xtask build-pypy ${RECIPE:+--recipe "$RECIPE"} --target "${{ matrix.triple }}" --bootstrap-host
      - name: Verify the archive
        run: |
          shopt -s nullglob
          archives=(dist/*-${{ matrix.triple }}.tar.gz)
          if [ "${#archives[@]}" -ne 1 ]; then
            echo "::error::expected one archive for ${{ matrix.triple }} in dist/, found ${#archives[@]}"
            exit 1
          fi
          cargo xtask verify "${archives[0]}"
      - uses: actions/upload-artifact@v4
        with:
          name: pypy-${{ matrix.triple }}
          path: |
            dist/*-${{ matrix.triple }}.tar.gz
            dist/*-${{ matrix.triple }}.tar.gz.sha256
            dist/*-${{ matrix.triple }}.tar.gz.build.json
          if-no-files-found: error
      - name: Keep the plan, the doctor report and the translation log of a failed build
        if: failure()
        uses: actions/upload-artifact@v4
        with:
          name: logs-${{ matrix.triple }}
          path: |
            build-logs/
            ${{ runner.temp }}/pypy-embed-cache/**/*.log
          if-no-files-found: ignore

  test-native:
    name: test on its own hardware (${{ matrix.triple }})
    needs: build
    runs-on: ${{ matrix.runner }}
    timeout-minutes: @NATIVE_TIMEOUT@
    strategy:
      fail-fast: false
      matrix:
        # The cross-built targets, on a runner of their own architecture: the
        # emulator that tested them during the build hides what only real
        # hardware shows (the JIT's cache flushes, memory ordering).
        include:
@NATIVE_INCLUDE@    steps:
@RUNNER_SETUP@      - uses: actions/download-artifact@v4
        with:
          name: pypy-${{ matrix.triple }}
          path: dist
      # Natively, verify runs every check: the launcher, the C embedding
      # program, pkg-config, a cffi plugin, a C extension.
      - name: Verify the archive natively
        run: cargo xtask verify dist/*-${{ matrix.triple }}.tar.gz
      - name: The embedding scenarios against the archive
        run: |
          archive=$(ls "$PWD"/dist/*-${{ matrix.triple }}.tar.gz)
          PYPY_EMBED_BUILD_ARCHIVE="$archive" PYPY_EMBED_TEST_ARCHIVE="$archive" \
            cargo test -p embed-runtime --test scenarios

  publish:
    name: checksums, provenance and release
    needs: [build, test-native]
    runs-on: ubuntu-24.04
    timeout-minutes: 30
    permissions:
      contents: write
      id-token: write
      attestations: write
    steps:
      - uses: actions/download-artifact@v4
        with:
          pattern: pypy-*
          path: dist
          merge-multiple: true
      - name: Write SHA256SUMS and check it against each archive's .sha256
        working-directory: dist
        run: |
          set -euo pipefail
          shopt -s nullglob
          for triple in @TRIPLES@; do
            found=(*-"$triple".tar.gz)
            if [ "${#found[@]}" -ne 1 ]; then
              echo "::error::expected one archive for $triple, found ${#found[@]}"
              exit 1
            fi
          done
          archives=(*.tar.gz)
          sha256sum "${archives[@]}" > SHA256SUMS
          for archive in "${archives[@]}"; do
            if [ ! -f "$archive.sha256" ]; then
              echo "::error::$archive has no $archive.sha256 beside it"
              exit 1
            fi
            # What a rebuild needs (cargo xtask rebuild-check), published beside it.
            if [ ! -f "$archive.build.json" ]; then
              echo "::error::$archive has no $archive.build.json beside it"
              exit 1
            fi
            want=$(awk '{ print $1; exit }' "$archive.sha256")
            got=$(awk -v name="$archive" '$2 == name { print $1 }' SHA256SUMS)
            if [ -z "$want" ] || [ "$want" != "$got" ]; then
              echo "::error::$archive: its .sha256 says '$want' but the downloaded archive hashes to '$got'"
              exit 1
            fi
          done
          cat SHA256SUMS
      - name: Attest build provenance
        uses: actions/attest-build-provenance@v2
        with:
          subject-path: dist/*.tar.gz
      - uses: actions/upload-artifact@v4
        with:
          name: SHA256SUMS
          path: dist/SHA256SUMS
          if-no-files-found: error
      # A tag publishes; a run started by hand on a branch stops here (a dry run
      # whose archives stay attached to the run).
      - name: Publish the release
        if: github.ref_type == 'tag'
        env:
          GH_TOKEN: ${{ github.token }}
          GH_REPO: ${{ github.repository }}
          TAG: ${{ github.ref_name }}
        run: |
          files=(dist/*.tar.gz dist/*.tar.gz.sha256 dist/*.tar.gz.build.json dist/SHA256SUMS)
          if gh release view "$TAG" > /dev/null 2>&1; then
            gh release upload "$TAG" --clobber "${files[@]}"
          else
            gh release create "$TAG" --verify-tag --title "$TAG" --generate-notes "${files[@]}"
          fi
"#;

fn render_ci(targets: &[Target]) -> Result<String> {
    let tested: Vec<&Target> = targets.iter().filter(|t| t.ci.test).collect();
    if tested.is_empty() {
        bail!("no target has `ci = true` in the table; CI would test nothing");
    }
    let body = CI_TEMPLATE
        .replace("@TIMEOUT@", &CI_TEST_TIMEOUT_MINUTES.to_string())
        .replace("@INCLUDE@", &matrix_include(&tested, true)?)
        .replace("@TEST_PYPY_ENV@", targets::TEST_PYPY_ENV)
        .replace("@TEST_PYPY_URL_ENV@", targets::TEST_PYPY_URL_ENV)
        .replace("@TEST_PYPY_SHA256_ENV@", targets::TEST_PYPY_SHA256_ENV)
        .replace("@RUNNER_SETUP@", RUNNER_SETUP);
    Ok(format!("{HEADER}\n{body}"))
}

fn render_release(targets: &[Target]) -> Result<String> {
    // A target the table cross-builds is built on its build machine's
    // runner, with that machine's packages, then tested on its own.
    let mut built = Vec::new();
    let mut cross_built = Vec::new();
    for t in targets {
        match &t.emulator {
            Some(pin) => {
                let mut machine = targets::find(targets, &pin.build_machine)?;
                machine.triple = t.triple.clone();
                built.push(machine);
                cross_built.push(t);
            }
            None => built.push(t.clone()),
        }
    }
    if cross_built.is_empty() {
        bail!("no target is cross-built; the release workflow's test-native job would be empty");
    }
    let built: Vec<&Target> = built.iter().collect();
    let triples: Vec<&str> = targets.iter().map(|t| t.triple.as_str()).collect();
    let body = RELEASE_TEMPLATE
        .replace("@TIMEOUT@", &RELEASE_BUILD_TIMEOUT_MINUTES.to_string())
        .replace("@NATIVE_TIMEOUT@", &CI_TEST_TIMEOUT_MINUTES.to_string())
        .replace("@INCLUDE@", &matrix_include(&built, false)?)
        .replace("@NATIVE_INCLUDE@", &matrix_include(&cross_built, false)?)
        .replace("@COUNT@", &targets.len().to_string())
        .replace("@TRIPLES@", &triples.join(" "))
        .replace("@RUNNER_SETUP@", RUNNER_SETUP);
    Ok(format!("{HEADER}\n{body}"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn rendered() -> Vec<Workflow> {
        render(&targets::all().unwrap()).unwrap()
    }

    /// Every `matrix.<key>` the templates use, so a typo cannot hide in an expression
    /// that the schema linter treats as an opaque string.
    fn matrix_keys_used(text: &str) -> BTreeSet<String> {
        text.match_indices(" matrix.")
            .map(|(i, m)| {
                text[i + m.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_matrix_key_used_is_set_in_every_entry() {
        for wf in rendered() {
            let used = matrix_keys_used(&wf.text);
            assert!(used.contains("triple"), "{}", wf.path);
            let entries = wf.text.matches("- triple: ").count();
            for key in &used {
                let set = wf.text.matches(&format!(" {key}: \"")).count();
                assert_eq!(
                    set, entries,
                    "{}: matrix.{key} is not set in every entry",
                    wf.path
                );
            }
        }
    }

    #[test]
    fn no_placeholder_is_left_over() {
        for wf in rendered() {
            for p in [
                "@TIMEOUT@",
                "@INCLUDE@",
                "@COUNT@",
                "@TRIPLES@",
                "@RUNNER_SETUP@",
                "@TEST_PYPY_ENV@",
                "@TEST_PYPY_URL_ENV@",
                "@TEST_PYPY_SHA256_ENV@",
            ] {
                assert!(!wf.text.contains(p), "{} still has {p}", wf.path);
            }
            assert!(wf
                .text
                .starts_with("# Generated by `cargo xtask ci-matrix`"));
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        assert_eq!(rendered(), rendered());
    }

    #[test]
    fn release_matrix_lists_every_target_and_ci_only_the_ci_ones() {
        let targets = targets::all().unwrap();
        let wfs = rendered();
        let (ci, release) = (&wfs[0].text, &wfs[1].text);
        for t in &targets {
            let entry = format!(
                "- triple: {}\n            runner: {}\n",
                q(&t.triple),
                q(&t.ci.runner)
            );
            assert!(release.contains(&entry), "release lacks {}", t.triple);
            assert_eq!(ci.contains(&entry), t.ci.test, "ci and {}", t.triple);
        }
        assert!(release.contains("timeout-minutes: 240"));
    }

    #[test]
    fn quoting_survives_yaml_special_characters() {
        assert_eq!(q("a: b # c"), "\"a: b # c\"");
        assert_eq!(q("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
    }

    #[test]
    fn an_empty_table_or_no_ci_target_is_an_error() {
        assert!(render(&[]).is_err());
        let mut targets = targets::all().unwrap();
        for t in &mut targets {
            t.ci.test = false;
        }
        let err = render(&targets).unwrap_err().to_string();
        assert!(err.contains("ci = true"), "{err}");
    }

    #[test]
    fn write_then_check_round_trips_and_a_change_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let wfs = rendered();
        assert_eq!(stale(dir.path(), &wfs).unwrap().len(), 2);
        write(dir.path(), &wfs).unwrap();
        check(dir.path(), &wfs).unwrap();
        // Leave no temporary file beside the workflows.
        let names: Vec<_> = fs_err::read_dir(dir.path().join(WORKFLOWS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let ci = dir.path().join(&wfs[0].path);
        let crlf = fs_err::read_to_string(&ci).unwrap().replace('\n', "\r\n");
        fs_err::write(&ci, crlf).unwrap();
        check(dir.path(), &wfs).unwrap();
        fs_err::write(&ci, "name: CI\n").unwrap();
        let err = check(dir.path(), &wfs).unwrap_err().to_string();
        assert!(
            err.contains(".github/workflows/ci.yml out of date"),
            "{err}"
        );
        assert!(err.contains("run `cargo xtask ci-matrix`"), "{err}");
    }
}
