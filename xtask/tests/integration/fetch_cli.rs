//! `cargo xtask fetch` end to end: the real binary, a recipe file pointing at
//! the rpython sdist, and a mirror folder holding the right or a tampered copy.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use xtask::fixtures::{self, RPYTHON_SDIST, RPYTHON_SHA256};

struct Setup {
    _tmp: tempfile::TempDir,
    recipe: PathBuf,
    mirror: PathBuf,
    cache: PathBuf,
    work: PathBuf,
}

/// A recipe whose source is the rpython sdist "upstream" (never contacted: the mirror serves it).
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("rpython-0.2.1.toml");
    let url = format!("https://files.pythonhosted.org/packages/source/r/rpython/{RPYTHON_SDIST}");
    std::fs::write(&recipe, common::rpython_recipe_text(&url)).unwrap();
    let mirror = tmp.path().join("mirror");
    std::fs::create_dir(&mirror).unwrap();
    Setup {
        cache: tmp.path().join("cache"),
        work: tmp.path().join("work"),
        recipe,
        mirror,
        _tmp: tmp,
    }
}

/// How the mirror folder is named to the binary.
#[derive(Clone, Copy)]
enum MirrorBy {
    Flag,
    Env,
}

fn fetch(s: &Setup, by: MirrorBy) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("fetch")
        .arg("--recipe")
        .arg(&s.recipe)
        .arg("--cache-dir")
        .arg(&s.cache)
        .arg("--work-dir")
        .arg(&s.work)
        .env_remove(xtask::fetch::MIRROR_ENV);
    match by {
        MirrorBy::Flag => cmd.arg("--mirror").arg(&s.mirror),
        MirrorBy::Env => cmd.env(xtask::fetch::MIRROR_ENV, &s.mirror),
    };
    cmd.output().unwrap()
}

#[test]
fn fetch_from_a_mirror_folder_verifies_and_unpacks() {
    for by in [MirrorBy::Flag, MirrorBy::Env] {
        let s = setup();
        std::fs::copy(
            fixtures::rpython_sdist().unwrap(),
            s.mirror.join(RPYTHON_SDIST),
        )
        .unwrap();
        check_good_fetch(&s, fetch(&s, by));
    }
}

fn check_good_fetch(s: &Setup, out: Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let root = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(
        root.starts_with(s.work.canonicalize().unwrap()),
        "{}",
        root.display()
    );
    assert!(root
        .join("rpython/translator/goal/targetnopstandalone.py")
        .is_file());
    let cached = s
        .cache
        .join("downloads/sha256")
        .join(RPYTHON_SHA256)
        .join(RPYTHON_SDIST);
    assert_eq!(common::files_except_locks(&s.cache), [cached]);
}

#[test]
fn tampered_mirror_file_fails_with_both_hashes_and_leaves_nothing() {
    let s = setup();
    let mut bytes = std::fs::read(fixtures::rpython_sdist().unwrap()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(s.mirror.join(RPYTHON_SDIST), &bytes).unwrap();
    let tampered = hex::encode(Sha256::digest(&bytes));

    let out = fetch(&s, MirrorBy::Flag);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(RPYTHON_SHA256), "{stderr}");
    assert!(stderr.contains(&tampered), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        common::files_except_locks(&s.cache).is_empty(),
        "{:?}",
        common::files_except_locks(&s.cache)
    );
    assert!(common::files_except_locks(&s.work).is_empty());
}

#[test]
fn unknown_recipe_name_lists_the_known_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["fetch", "--recipe", "pypy9.9-v0.0.0"])
        .env_remove(xtask::fetch::MIRROR_ENV)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no recipe named `pypy9.9-v0.0.0`"),
        "{stderr}"
    );
    assert!(stderr.contains("pypy3.11-v7.3.20"), "{stderr}");
}
