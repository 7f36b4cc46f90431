//! `rebuild-check` on copies of the real repackaged Debian archive: the
//! comparison names each differing file and manifest field, and an archive
//! that cannot be rebuilt here is refused before any translation starts.

// The Debian archive is a fixture of Linux machines only.
#![cfg(target_os = "linux")]

use std::path::Path;

use xtask::rebuild_check::compare_archives;
use xtask::{fixtures, manifest, targets};

use crate::verify_tampered::{rebuilt, scratch, unshare};

fn edit_manifest(top: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = top.join(manifest::MANIFEST_NAME);
    unshare(&path);
    let mut value: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(&path).unwrap()).unwrap();
    edit(&mut value);
    fs_err::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

#[test]
fn the_same_archive_is_identical() {
    let archive = fixtures::debian_archive().unwrap();
    let comparison = compare_archives(&archive, &archive).unwrap();
    assert!(comparison.identical());
    let text = comparison.render(&archive, &archive);
    assert!(
        text.contains("identical: the rebuild has the same sha256"),
        "{text}"
    );
}

#[test]
fn each_differing_file_and_manifest_field_is_named() {
    let dir = scratch();
    let changed = rebuilt(dir.path(), |top| {
        let os_py = top.join("lib/pypy3.9/os.py");
        unshare(&os_py);
        let mut text = fs_err::read_to_string(&os_py).unwrap();
        text.push_str("\n# rebuilt\n");
        fs_err::write(&os_py, text).unwrap();
        edit_manifest(top, |m| m["pypy_version"] = "7.3.99".into());
    });
    let original = fixtures::debian_archive().unwrap();
    let comparison = compare_archives(&original, &changed).unwrap();
    assert!(!comparison.identical());
    assert_eq!(comparison.files.len(), 1, "{:?}", comparison.files);
    let (path, what) = &comparison.files[0];
    assert_eq!(path, "lib/pypy3.9/os.py");
    assert!(what.starts_with("content ("), "{what}");
    assert_eq!(
        comparison.manifest_fields.len(),
        1,
        "{:?}",
        comparison.manifest_fields
    );
    assert!(
        comparison.manifest_fields[0].starts_with("pypy_version: \"7.3.11\" against \"7.3.99\""),
        "{:?}",
        comparison.manifest_fields
    );
    let text = comparison.render(&original, &changed);
    assert!(
        text.contains("differs: lib/pypy3.9/os.py: content ("),
        "{text}"
    );
    assert!(text.contains("differs: PYPY.json: pypy_version"), "{text}");
}

fn rebuild_check(archive: &Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["rebuild-check"])
        .arg(archive)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_archive_without_a_build_record_is_refused() {
    let (ok, stderr) = rebuild_check(&fixtures::debian_archive().unwrap());
    assert!(!ok);
    assert!(
        stderr.contains("no build record (origin.build)"),
        "{stderr}"
    );
}

/// A manifest that claims a `build-pypy` translation of the default recipe on this machine.
fn claim_default_recipe(m: &mut serde_json::Value, source_sha256: &str) {
    m["target"] = targets::host_triple().into();
    m["origin"]["recipe"] = "pypy3.11-v7.3.23".into();
    m["origin"]["source"] = serde_json::json!({
        "kind": "release",
        "url": "https://downloads.python.org/pypy/pypy3.11-v7.3.23-src.tar.bz2",
        "sha256": source_sha256,
    });
    m["origin"]["translation_options"] = serde_json::json!(["--opt=jit", "--shared"]);
    m["origin"]["build"] = serde_json::json!({
        "host_python": "PyPy 2.7.18",
        "compiler": "cc (Debian 12.2.0-14) 12.2.0",
        "source_date_epoch": 1779734355u64,
        "source_date_from": "the newest file in the source release",
        "source_root": "/somewhere/else",
        "target_entry": {},
    });
}

#[test]
fn a_recipe_whose_source_changed_is_refused_before_translating() {
    let dir = scratch();
    let archive = rebuilt(dir.path(), |top| {
        edit_manifest(top, |m| claim_default_recipe(m, &"0".repeat(64)));
    });
    let (ok, stderr) = rebuild_check(&archive);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("(sha256 {})", "0".repeat(64)))
            && stderr.contains("check out the commit that built the archive"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("translate:"),
        "it must not translate: {stderr}"
    );
}

#[test]
fn other_translation_options_are_refused_before_translating() {
    let dir = scratch();
    let recipe = xtask::recipe::find("pypy3.11-v7.3.23").unwrap();
    let archive = rebuilt(dir.path(), |top| {
        edit_manifest(top, |m| {
            claim_default_recipe(m, &recipe.source.sha256);
            m["origin"]["translation_options"] =
                serde_json::json!(["--opt=jit", "--shared", "--lto"]);
        });
    });
    let (ok, stderr) = rebuild_check(&archive);
    assert!(!ok);
    assert!(
        stderr.contains("\"--lto\"") && stderr.contains("rebuilds recipes as written"),
        "{stderr}"
    );
}

/// On x86-64 Linux, which the table names as aarch64's build machine.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_cross_built_archive_needs_the_cross_builds_patches_and_other_os_archives_are_refused() {
    let dir = scratch();
    let recipe = xtask::recipe::find("pypy3.11-v7.3.23").unwrap();
    // An aarch64 archive (this machine cross-builds it) that records only the
    // recipe's patches: a cross-build also applies our RPython patch.
    let archive = rebuilt(dir.path(), |top| {
        edit_manifest(top, |m| {
            claim_default_recipe(m, &recipe.source.sha256);
            m["target"] = "aarch64-unknown-linux-gnu".into();
            m["origin"]["patches"] = serde_json::json!([]);
        });
    });
    let (ok, stderr) = rebuild_check(&archive);
    assert!(!ok);
    assert!(
        stderr.contains("rpython-target-runner.patch")
            && stderr.contains("are not recipe pypy3.11-v7.3.23's"),
        "{stderr}"
    );
    // Another OS: refused, naming the runner that builds it.
    let dir = scratch();
    let archive = rebuilt(dir.path(), |top| {
        edit_manifest(top, |m| {
            claim_default_recipe(m, &recipe.source.sha256);
            m["target"] = "x86_64-apple-darwin".into();
        });
    });
    let (ok, stderr) = rebuild_check(&archive);
    assert!(!ok);
    assert!(stderr.contains("on a `macos-15-intel` runner"), "{stderr}");
}
