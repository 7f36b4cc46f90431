//! The `embedded-archive` feature for real: a binary built with it keeps
//! working after the archive it was built from is gone.

use std::path::PathBuf;
use std::process::Command;

/// The test archive `cargo xtask test` prepares (the repackaged Debian PyPy by default).
fn fixture_archive() -> PathBuf {
    if let Some(path) = std::env::var_os("PYPY_EMBED_TEST_ARCHIVE") {
        return PathBuf::from(path);
    }
    let fixtures = std::env::var_os("PYPY_EMBED_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"));
    let dist = fixtures.join("dist");
    let found = std::fs::read_dir(&dist)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"));
    found.unwrap_or_else(|| {
        panic!(
            "no test archive in {}; run `cargo xtask test` to prepare the fixtures",
            dist.display()
        )
    })
}

#[test]
fn a_binary_with_the_archive_inside_runs_after_the_archive_is_gone() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = fixture_archive();
    // A copy that the build embeds and the test then deletes.
    let copy = scratch.path().join(archive.file_name().unwrap());
    std::fs::copy(&archive, &copy).unwrap();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "embed-runtime",
            "--example",
            "hello",
        ])
        .args(["--features", "embedded-archive", "--message-format=json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PYPY_EMBED_BUILD_ARCHIVE", &copy)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let exe = String::from_utf8_lossy(&built.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["target"]["name"] == "hello")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the built example");
    // The binary moves away from the workspace, as a deployed program would.
    let deployed = scratch
        .path()
        .join(format!("hello{}", std::env::consts::EXE_SUFFIX));
    std::fs::copy(&exe, &deployed).unwrap();
    std::fs::remove_file(&copy).unwrap();

    let out = Command::new(&deployed)
        .env_remove(embed_runtime::HOME_ENV)
        .env_remove(embed_runtime::ARCHIVE_ENV)
        .env(embed_runtime::CACHE_ENV, scratch.path().join("cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("Hello from PyPy "), "{stdout}");
    assert!(
        stdout.contains("via archive embedded in the binary"),
        "{stdout}"
    );
}
