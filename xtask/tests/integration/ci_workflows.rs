//! The committed GitHub workflows against the target table: generated, current, and
//! (parsed by a real YAML parser) carrying the matrix, triggers and steps the table
//! implies; their shell steps run here with real bash on real files.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};
use xtask::{ci_matrix, fixtures, paths, targets};

#[test]
fn committed_workflows_equal_the_generated_ones() {
    let workflows = ci_matrix::render(&targets::all().unwrap()).unwrap();
    if let Err(e) = ci_matrix::check(&paths::workspace_root(), &workflows) {
        panic!("{e:#}");
    }
}

#[test]
fn adding_a_target_without_regenerating_fails() {
    let mut table = targets::all().unwrap();
    let mut riscv = table[0].clone();
    riscv.triple = "riscv64gc-unknown-linux-gnu".into();
    riscv.ci.runner = "ubuntu-24.04-riscv".into();
    riscv.ci.test = false;
    table.push(riscv);
    let workflows = ci_matrix::render(&table).unwrap();
    let err = ci_matrix::check(&paths::workspace_root(), &workflows)
        .unwrap_err()
        .to_string();
    // Only the release matrix lists targets that CI does not test.
    assert!(
        err.starts_with(".github/workflows/release.yml out of date"),
        "{err}"
    );
    assert!(err.contains("run `cargo xtask ci-matrix`"), "{err}");

    let last = table.last_mut().unwrap();
    last.ci.test = true;
    let workflows = ci_matrix::render(&table).unwrap();
    let err = ci_matrix::check(&paths::workspace_root(), &workflows)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(".github/workflows/ci.yml, .github/workflows/release.yml"),
        "{err}"
    );
}

/// A workflow as JSON, parsed by ruamel.yaml from the linter's own virtualenv,
/// so the assertions below read what GitHub would read, not our template text.
fn parse(path: &Path) -> Result<Value> {
    let linter = fixtures::workflow_linter()?;
    let python = linter
        .parent()
        .context("the linter lives in a virtualenv's bin folder")?
        .join("python");
    let sh = Shell::new()?;
    let script = "import json, sys\n\
                  from ruamel.yaml import YAML\n\
                  print(json.dumps(YAML(typ='safe').load(open(sys.argv[1]))))";
    let out = cmd!(sh, "{python} -c {script} {path}")
        .read()
        .with_context(|| format!("parsing {} as YAML", path.display()))?;
    Ok(serde_json::from_str(&out)?)
}

fn workflow(name: &str) -> Value {
    let path = paths::workspace_root()
        .join(ci_matrix::WORKFLOWS_DIR)
        .join(name);
    parse(&path).unwrap_or_else(|e| panic!("{e:#}"))
}

fn include(job: &Value) -> Vec<(String, String)> {
    job["strategy"]["matrix"]["include"]
        .as_array()
        .expect("a matrix with include entries")
        .iter()
        .map(|e| {
            (
                e["triple"].as_str().unwrap().to_string(),
                e["runner"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn runs(job: &Value) -> Vec<String> {
    job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_string))
        .collect()
}

fn uses(job: &Value) -> Vec<String> {
    job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["uses"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn release_workflow_builds_every_target_on_its_runner_or_its_build_machines() {
    let table = targets::all().unwrap();
    let wf = workflow("release.yml");
    assert_eq!(wf["on"]["push"]["tags"], serde_json::json!(["v*"]));
    assert_eq!(
        wf["on"]["workflow_dispatch"]["inputs"]["recipe"]["type"],
        "string"
    );

    let build = &wf["jobs"]["build"];
    // A cross-built target builds on its build machine's runner.
    let runner_of = |triple: &str| targets::get(triple).unwrap().ci.runner;
    let expected: Vec<(String, String)> = table
        .iter()
        .map(|t| match &t.emulator {
            Some(pin) => (t.triple.clone(), runner_of(&pin.build_machine)),
            None => (t.triple.clone(), t.ci.runner.clone()),
        })
        .collect();
    assert_eq!(include(build), expected);
    assert_eq!(
        expected
            .iter()
            .find(|(t, _)| t == "aarch64-unknown-linux-gnu")
            .unwrap()
            .1,
        "ubuntu-24.04",
        "aarch64 is cross-built on x86-64"
    );
    // ... and is then tested on its own runner, before anything is published.
    let native = &wf["jobs"]["test-native"];
    let cross_built: Vec<(String, String)> = table
        .iter()
        .filter(|t| t.emulator.is_some())
        .map(|t| (t.triple.clone(), t.ci.runner.clone()))
        .collect();
    assert_eq!(include(native), cross_built);
    assert_eq!(native["needs"], "build");
    let native_runs = runs(native).join("\n");
    assert!(
        native_runs.contains("cargo xtask verify")
            && native_runs.contains("cargo test -p embed-runtime --test scenarios"),
        "{native_runs}"
    );
    assert_eq!(build["runs-on"], "${{ matrix.runner }}");
    assert_eq!(
        build["timeout-minutes"],
        ci_matrix::RELEASE_BUILD_TIMEOUT_MINUTES
    );
    let steps = runs(build).join("\n");
    assert!(
        steps.contains("cargo xtask build-pypy ${RECIPE:+--recipe \"$RECIPE\"} --target \"${{ matrix.triple }}\" --bootstrap-host"),
        "{steps}"
    );
    assert!(steps.contains("cargo xtask verify"), "{steps}");
    assert!(uses(build).contains(&"actions/upload-artifact@v4".to_string()));
    // A failed build keeps its plan, doctor report and translation log.
    let plan = step_script("build", "Plan and preflight");
    assert!(
        plan.contains("--plan | tee build-logs/plan.txt")
            && plan.contains("tee build-logs/doctor.txt"),
        "{plan}"
    );
    let kept = build["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["if"] == "failure()")
        .expect("a step that runs when the build failed");
    let kept_paths = kept["with"]["path"].as_str().unwrap();
    assert!(
        kept_paths.contains("build-logs/") && kept_paths.contains("**/*.log"),
        "{kept_paths}"
    );

    let publish = &wf["jobs"]["publish"];
    assert_eq!(
        publish["needs"],
        serde_json::json!(["build", "test-native"])
    );
    assert_eq!(publish["permissions"]["id-token"], "write");
    assert_eq!(publish["permissions"]["attestations"], "write");
    assert_eq!(publish["permissions"]["contents"], "write");
    let publish_uses = uses(publish);
    assert!(publish_uses.contains(&"actions/attest-build-provenance@v2".to_string()));
    let publish_runs = runs(publish).join("\n");
    for t in &table {
        assert!(
            publish_runs.contains(&t.triple),
            "publish does not expect {}",
            t.triple
        );
    }
    assert!(publish_runs.contains("sha256sum \"${archives[@]}\" > SHA256SUMS"));
    assert!(publish_runs.contains("gh release create"));
}

#[test]
fn ci_workflow_tests_on_each_os_with_the_readme_command() {
    let table = targets::all().unwrap();
    let wf = workflow("ci.yml");
    assert!(wf["on"].get("push").is_some() && wf["on"].get("pull_request").is_some());
    let test = &wf["jobs"]["test"];
    let expected: Vec<(String, String)> = table
        .iter()
        .filter(|t| t.ci.test)
        .map(|t| (t.triple.clone(), t.ci.runner.clone()))
        .collect();
    assert_eq!(include(test), expected);
    let oses: Vec<targets::Os> = table.iter().filter(|t| t.ci.test).map(|t| t.os).collect();
    for os in [targets::Os::Linux, targets::Os::Macos, targets::Os::Windows] {
        assert!(
            oses.contains(&os),
            "CI does not test on {}",
            os.github_name()
        );
    }
    assert_eq!(
        test["env"][targets::TEST_PYPY_ENV],
        "${{ matrix.test_pypy }}"
    );
    for entry in test["strategy"]["matrix"]["include"].as_array().unwrap() {
        let t = targets::get(entry["triple"].as_str().unwrap()).unwrap();
        assert_eq!(entry["test_pypy"], t.ci.test_pypy.as_str());
        assert_eq!(entry["test_release_url"], t.ci.test_release.url.as_str());
        assert_eq!(
            entry["test_release_sha256"],
            t.ci.test_release.sha256.as_str()
        );
        assert_eq!(
            entry["host27"],
            t.bootstrap_python_version().unwrap().as_str()
        );
    }
    assert_eq!(
        test["env"][targets::TEST_PYPY_URL_ENV],
        "${{ matrix.test_release_url }}"
    );
    assert_eq!(
        test["env"][targets::TEST_PYPY_SHA256_ENV],
        "${{ matrix.test_release_sha256 }}"
    );
    let steps = runs(test);
    for want in [
        "cargo fmt --all --check",
        "cargo clippy --workspace --all-targets -- -D warnings",
        "cargo xtask test",
    ] {
        assert!(steps.iter().any(|s| s == want), "no step runs `{want}`");
    }
    // The README's test command is the one CI runs.
    let readme = fs_err::read_to_string(paths::workspace_root().join("README.md")).unwrap();
    assert!(readme.contains("cargo xtask test"));
    let cached: Vec<String> = test["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["uses"] == "actions/cache@v4")
        .map(|s| s["with"]["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        cached.contains(&"${{ runner.temp }}/pypy-embed-cache".to_string()),
        "{cached:?}"
    );
    assert!(uses(test).contains(&"Swatinem/rust-cache@v2".to_string()));
}

// The release workflow's shell steps, run here.

/// The `run` script of the step of `job` whose name starts with `name`.
fn step_script(job: &str, name: &str) -> String {
    let wf = workflow("release.yml");
    wf["jobs"][job]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with(name)))
        .and_then(|s| s["run"].as_str())
        .unwrap_or_else(|| panic!("release.yml has no step `{name}…` in job {job}"))
        .to_string()
}

/// Runs a step's script with bash in `dir`: whether it passed, and what it printed.
fn run_bash(dir: &Path, script: &str, env: &[(&str, &str)]) -> (bool, String) {
    let sh = Shell::new().unwrap();
    sh.change_dir(dir);
    let mut command = cmd!(sh, "bash -c {script}").ignore_status();
    for (k, v) in env {
        command = command.env(k, v);
    }
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One small archive per target with a correct `.sha256` and a `.build.json`,
/// as the build jobs upload them.
fn release_files(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for t in targets::all().unwrap() {
        let name = t.archive_name("3.11", "7.3.20");
        let bytes = format!("not really a tarball for {}", t.triple).into_bytes();
        fs_err::write(dir.join(&name), &bytes).unwrap();
        let hash = sha256_hex(&bytes);
        fs_err::write(
            dir.join(t.checksum_name("3.11", "7.3.20")),
            format!("{hash}  {name}\n"),
        )
        .unwrap();
        fs_err::write(dir.join(format!("{name}.build.json")), "{}\n").unwrap();
        files.push((name, hash));
    }
    files
}

#[test]
fn publish_writes_sha256sums_that_match_every_archive() {
    let script = step_script("publish", "Write SHA256SUMS");
    let dir = tempfile::tempdir().unwrap();
    let mut files = release_files(dir.path());
    let (ok, output) = run_bash(dir.path(), &script, &[]);
    assert!(ok, "{output}");
    files.sort();
    let expected: String = files
        .iter()
        .map(|(name, hash)| format!("{hash}  {name}\n"))
        .collect();
    let written = fs_err::read_to_string(dir.path().join("SHA256SUMS")).unwrap();
    assert_eq!(written, expected);
}

#[test]
fn publish_rejects_an_archive_that_does_not_match_its_sha256() {
    let script = step_script("publish", "Write SHA256SUMS");
    let dir = tempfile::tempdir().unwrap();
    let files = release_files(dir.path());
    let (victim, _) = &files[2];
    fs_err::write(dir.path().join(victim), b"damaged on the way").unwrap();
    let (ok, output) = run_bash(dir.path(), &script, &[]);
    assert!(!ok, "a damaged archive was accepted:\n{output}");
    assert!(
        output.contains(&format!("::error::{victim}: its .sha256 says")),
        "{output}"
    );
}

#[test]
fn publish_rejects_an_archive_without_its_build_record() {
    let script = step_script("publish", "Write SHA256SUMS");
    let dir = tempfile::tempdir().unwrap();
    let files = release_files(dir.path());
    let (victim, _) = &files[1];
    fs_err::remove_file(dir.path().join(format!("{victim}.build.json"))).unwrap();
    let (ok, output) = run_bash(dir.path(), &script, &[]);
    assert!(
        !ok,
        "an archive without .build.json was accepted:\n{output}"
    );
    assert!(
        output.contains(&format!(
            "::error::{victim} has no {victim}.build.json beside it"
        )),
        "{output}"
    );
}

#[test]
fn publish_rejects_an_archive_without_its_sha256() {
    let script = step_script("publish", "Write SHA256SUMS");
    let dir = tempfile::tempdir().unwrap();
    release_files(dir.path());
    let mac = targets::get("aarch64-apple-darwin").unwrap();
    fs_err::remove_file(dir.path().join(mac.checksum_name("3.11", "7.3.20"))).unwrap();
    let (ok, output) = run_bash(dir.path(), &script, &[]);
    assert!(!ok, "an archive without .sha256 was accepted:\n{output}");
    let archive = mac.archive_name("3.11", "7.3.20");
    assert!(
        output.contains(&format!(
            "::error::{archive} has no {archive}.sha256 beside it"
        )),
        "{output}"
    );
}

#[test]
fn publish_rejects_a_missing_target() {
    let script = step_script("publish", "Write SHA256SUMS");
    let dir = tempfile::tempdir().unwrap();
    release_files(dir.path());
    let windows = targets::get("x86_64-pc-windows-msvc").unwrap();
    fs_err::remove_file(dir.path().join(windows.archive_name("3.11", "7.3.20"))).unwrap();
    let (ok, output) = run_bash(dir.path(), &script, &[]);
    assert!(!ok, "a release without Windows was accepted:\n{output}");
    assert!(
        output.contains("expected one archive for x86_64-pc-windows-msvc, found 0"),
        "{output}"
    );
}

#[test]
fn plan_accepts_a_real_or_empty_recipe_and_lists_the_recipes_for_a_wrong_one() {
    let script = step_script("plan", "Check the recipe");
    let root = paths::workspace_root();
    let out_dir = tempfile::tempdir().unwrap();
    let output_file = out_dir.path().join("github_output");
    let output_path = output_file.to_str().unwrap();

    let real = fs_err::read_dir(root.join("recipes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("pypy") && n.ends_with(".toml"))
        .expect("a recipe in recipes/");
    let real = real.trim_end_matches(".toml");
    for recipe in [real, ""] {
        fs_err::write(&output_file, "").unwrap();
        let env = [("RECIPE", recipe), ("GITHUB_OUTPUT", output_path)];
        let (ok, output) = run_bash(&root, &script, &env);
        assert!(ok, "recipe `{recipe}`: {output}");
        assert_eq!(
            fs_err::read_to_string(&output_file).unwrap(),
            format!("recipe={recipe}\n")
        );
    }

    let env = [("RECIPE", "pypy9.9-v0.0.0"), ("GITHUB_OUTPUT", output_path)];
    let (ok, output) = run_bash(&root, &script, &env);
    assert!(!ok, "an unknown recipe was accepted");
    assert!(
        output.contains("::error::no recipe `pypy9.9-v0.0.0`; the recipes are: "),
        "{output}"
    );
    assert!(output.contains(real), "{output}");
}

#[test]
fn ci_matrix_check_command_passes_on_the_committed_workflows() {
    let sh = Shell::new().unwrap();
    let xtask = env!("CARGO_BIN_EXE_xtask");
    let out = cmd!(sh, "{xtask} ci-matrix --check").read().unwrap();
    assert_eq!(out, "2 workflows are current");
}

/// `.ci/run` installs what the target table lists for this machine's target:
/// its Python snippet, run as the script runs it, prints the table's
/// system and test packages (a renamed key fails here, not in CI).
#[cfg(target_os = "linux")]
#[test]
fn ci_run_installs_the_tables_packages() {
    let root = xtask::paths::workspace_root();
    let script = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    let snippet = script
        .split_once("python3 -c '")
        .and_then(|(_, rest)| rest.split_once("')"))
        .expect(".ci/run reads the package list with `python3 -c '...'`")
        .0;
    let out = std::process::Command::new("python3")
        .args(["-c", snippet])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        ".ci/run's snippet failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host = targets::get(targets::host_triple()).unwrap();
    let mut expected = host.system_packages.clone();
    expected.extend(host.ci.test_packages.iter().cloned());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expected.join(" ")
    );
}
