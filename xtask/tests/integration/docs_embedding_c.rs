//! Runs every command of `docs/embedding-c.md`, in order, against the real
//! test archive from a fresh folder: what the page tells a user to type works.

// The page's commands are Linux's (GNU ld flags, `.so` names).
#![cfg(target_os = "linux")]

use std::process::Command;

/// The page's ```sh blocks, in order.
fn shell_blocks(page: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in page.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```sh block");
    blocks
}

#[test]
fn every_command_of_the_c_embedding_page_works() {
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/embedding-c.md"),
    )
    .unwrap();
    let blocks = shell_blocks(&page);
    assert_eq!(
        blocks.len(),
        6,
        "the page's steps changed; update this test"
    );
    let script = format!("set -euo pipefail\n{}", blocks.join("\n"));
    let archive = xtask::fixtures::test_archive().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("ARCHIVE", &archive)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the page's commands failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for needle in [
        "hello from PyPy (3,",
        "hello from PyPy, called from C++",
        "plugin says 42",
        "extension says 42",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
}

#[test]
fn blocks_are_read_in_order() {
    let page = "text\n```sh\necho one\n```\nmore\n```rust\nno\n```\n```sh\necho two\n```\n";
    assert_eq!(shell_blocks(page), ["echo one\n", "echo two\n"]);
}
