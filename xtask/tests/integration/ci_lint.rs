//! Lints every GitHub workflow with the real linter fixture (check-jsonschema and
//! its built-in GitHub workflow schema), and shows that a broken workflow is rejected.

use std::path::{Path, PathBuf};

use xshell::{cmd, Shell};
use xtask::{ci_matrix, fixtures, paths};

/// Runs the linter on one file: whether it passed, and everything it printed.
fn lint(file: &Path) -> (bool, String) {
    let linter = fixtures::workflow_linter().unwrap_or_else(|e| panic!("{e:#}"));
    let sh = Shell::new().unwrap();
    let out = cmd!(
        sh,
        "{linter} --builtin-schema vendor.github-workflows {file}"
    )
    .ignore_status()
    .output()
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn workflow_files() -> Vec<PathBuf> {
    let dir = paths::workspace_root().join(ci_matrix::WORKFLOWS_DIR);
    let mut files: Vec<PathBuf> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_workflow_passes_the_linter() {
    let files = workflow_files();
    assert!(
        files.len() >= 2,
        "expected ci.yml and release.yml, found {files:?}"
    );
    for file in files {
        let (ok, output) = lint(&file);
        assert!(
            ok,
            "{} fails the workflow linter:\n{output}",
            file.display()
        );
    }
}

/// A copy of a committed workflow with one edit, in a temporary folder.
fn broken_copy(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let source = paths::workspace_root()
        .join(ci_matrix::WORKFLOWS_DIR)
        .join(name);
    let text = fs_err::read_to_string(source).unwrap();
    assert!(text.contains(from), "{name} has no `{from}` to break");
    let path = dir.join(name);
    fs_err::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn a_broken_workflow_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // A misspelt key: the job no longer says where it runs.
        (
            "ci.yml",
            "runs-on:",
            "run-on:",
            "'runs-on' is a required property",
        ),
        // A value of the wrong type.
        (
            "release.yml",
            "timeout-minutes: 240",
            "timeout-minutes: four hours",
            "timeout-minutes",
        ),
        // An unknown trigger.
        (
            "release.yml",
            "workflow_dispatch:",
            "workflow_dispatched:",
            "workflow_dispatched",
        ),
    ];
    for (name, from, to, want) in cases {
        let file = broken_copy(dir.path(), name, from, to);
        let (ok, output) = lint(&file);
        assert!(!ok, "the linter accepted {name} with `{from}` -> `{to}`");
        assert!(output.contains(want), "{name}: `{want}` not in:\n{output}");
    }
}
