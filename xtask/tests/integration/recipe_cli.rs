//! `cargo xtask recipes` end to end: the listing, and a broken recipe reported with file and line.

use std::process::Command;

fn recipes(dir: Option<&std::path::Path>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("recipes");
    if let Some(dir) = dir {
        cmd.arg("--dir").arg(dir);
    }
    cmd.output().unwrap()
}

#[test]
fn lists_the_shipped_recipes() {
    let out = recipes(None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = stdout.lines().nth(1).unwrap();
    assert!(first.starts_with("pypy3.11-v7.3.23 (default)"), "{stdout}");
    assert!(stdout.contains("pypy3.10-v7.3.19"), "{stdout}");
}

#[test]
fn broken_recipe_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = xtask::paths::recipes_dir().join("pypy3.11-v7.3.20.toml");
    let text = std::fs::read_to_string(shipped).unwrap();
    // Line of the checksum in the shipped recipe, 1-based.
    let line = text.lines().position(|l| l.starts_with("sha256")).unwrap() + 1;
    let broken = text.replace("sha256 = \"7786dda7", "sha256 = \"7786dda");
    let path = dir.path().join("pypy3.11-v7.3.20.toml");
    std::fs::write(&path, broken).unwrap();
    let out = recipes(Some(dir.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let location = format!("{}:{line}:", path.display());
    assert!(stderr.contains(&location), "{location} not in {stderr}");
    assert!(stderr.contains("64 hex digits"), "{stderr}");
}
