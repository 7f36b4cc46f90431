//! `cargo xtask translate` as a user runs it: interrupted, then completed, then cached.

use crate::common;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use xtask::fixtures;

fn write_recipe(dir: &Path) -> std::path::PathBuf {
    xtask::fixtures::write_small_recipe(dir).unwrap()
}

fn translate_cmd(recipe: &Path, cache: &Path) -> Command {
    let host = fixtures::host27().expect("Python 2.7 host fixture");
    let tree = fixtures::translation_rpython()
        .expect("RPython fixture")
        .tree;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("translate")
        .arg("--recipe")
        .arg(recipe)
        .arg("--source-dir")
        .arg(&tree)
        .arg("--host-python")
        .arg(&host.python)
        .arg("--cache-dir")
        .arg(cache)
        // The host's packages come from the fixture folder instead of being installed.
        .env("PYTHONPATH", &host.site)
        .env("RUST_BACKTRACE", "0");
    cmd
}

fn complete_entries(cache: &Path) -> Vec<String> {
    let dir = cache.join("translations");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.contains('.'))
        .collect()
}

#[test]
fn interrupted_then_complete_then_cached() {
    let _turn = common::rpython_turn();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = write_recipe(tmp.path());
    let cache = tmp.path().join("cache");

    // Interrupt the first run as soon as RPython is annotating.
    let mut cmd = translate_cmd(&recipe, &cache);
    own_process_group(&mut cmd);
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines().map_while(Result::ok) {
        let annotating = line.contains("Annotating");
        seen.push(line);
        if annotating {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.contains("Annotating")), "{seen:#?}");
    interrupt(&mut child);
    child.wait().unwrap();
    assert!(
        complete_entries(&cache).is_empty(),
        "an interrupted run left an entry"
    );

    // The next run translates from scratch and leaves one complete entry.
    let out = translate_cmd(&recipe, &cache).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(complete_entries(&cache).len(), 1, "{err}");
    let outputs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outputs["cached"], false);
    let partials = std::fs::read_dir(cache.join("translations"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .count();
    assert_eq!(partials, 0, "the stale work folder was not cleaned");

    // Nothing changed: a cache hit (`cargo xtask bench` measures how fast).
    let out = translate_cmd(&recipe, &cache).output().unwrap();
    assert!(out.status.success());
    let outputs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outputs["cached"], true);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cache hit"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Its own process group, so that an interruption reaches RPython too, as Ctrl-C would.
#[cfg(unix)]
fn own_process_group(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
}

/// Windows has no process groups to signal; the run is killed outright instead.
#[cfg(not(unix))]
fn own_process_group(_cmd: &mut Command) {}

/// Ctrl-C to the whole process group.
#[cfg(unix)]
fn interrupt(child: &mut Child) {
    let group = format!("-{}", child.id());
    let killed = Command::new("kill")
        .args(["-INT", "--", &group])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// A harder interruption than Ctrl-C: the xtask is terminated without any
/// chance to clean up, which must still leave no complete entry.
#[cfg(not(unix))]
fn interrupt(child: &mut Child) {
    child.kill().unwrap();
}

#[test]
fn another_os_target_is_refused_with_its_runner() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "translate",
            "--target",
            "aarch64-apple-darwin",
            "--source-dir",
            "/nonexistent",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cross-translates only"), "{err}");
    assert!(err.contains("macos-15"), "{err}");
}

#[test]
fn build_pypy_for_another_os_names_the_runner_to_use() {
    for (triple, runner) in [
        ("x86_64-pc-windows-msvc", "windows-2022"),
        ("x86_64-apple-darwin", "macos-15-intel"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["build-pypy", "--target", triple])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains(&format!("build {triple} on a `{runner}` runner")),
            "{err}"
        );
        assert!(err.contains("cross-translates only"), "{err}");
    }
}
