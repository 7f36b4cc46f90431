//! Repackages Debian's real PyPy (libpypy, launcher, stdlib) and checks the
//! result: verified (launcher and C embedding run from a fresh folder),
//! reproducible to the byte, and the same from an upstream-layout release file.

// Debian's pypy3 (an x86_64 ELF tree in `usr/` layout) is a fixture of Linux machines only.
#![cfg(target_os = "linux")]

use std::path::Path;

use xtask::{fixtures, manifest, repackage, targets};

fn linux() -> targets::Target {
    targets::get("x86_64-unknown-linux-gnu").unwrap()
}

fn only_archive(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != xtask::archive::publish::SUMS_LOCK)
        .collect();
    names.sort();
    names
}

#[test]
fn debian_tree_repackages_verifies_and_is_reproducible() {
    let tree = fixtures::debian_pypy3().unwrap();
    let out_a = tempfile::tempdir().unwrap();
    let out_b = tempfile::tempdir().unwrap();

    let a = repackage::repackage_tree(&tree, &linux(), out_a.path()).unwrap();
    let name = fixtures::debian_archive_name();
    assert_eq!(a.archive, out_a.path().join(&name));
    assert_eq!(
        only_archive(out_a.path()),
        vec![
            "SHA256SUMS".to_string(),
            name.to_string(),
            format!("{name}.sha256")
        ],
        "nothing else (no staging folder) may be left in the output folder"
    );
    let sums = fs_err::read_to_string(out_a.path().join("SHA256SUMS")).unwrap();
    assert_eq!(sums, format!("{}  {name}\n", a.sha256));

    let m = &a.manifest;
    assert_eq!(m.format_version, manifest::FORMAT_VERSION);
    assert_eq!(
        (m.python_version.as_str(), m.pypy_version.as_str()),
        ("3.9", "7.3.11")
    );
    assert_eq!(m.paths.libpypy, "bin/libpypy3.9-c.so");
    assert_eq!(m.paths.launcher.as_deref(), Some("bin/pypy3.9"));
    assert_eq!(m.paths.stdlib, "lib/pypy3.9");
    assert_eq!(m.embedding_symbols, manifest::EMBEDDING_API.to_vec());
    assert!(m.needed_libraries.contains(&"libffi.so.8".to_string()));
    assert!(m.files.contains_key("include/pypy3.9/pypy_embed.h"));
    assert!(m.files.contains_key("lib/pypy3.9/site.py"));
    assert!(
        !m.files.contains_key("lib/pypy3.9/EXTERNALLY-MANAGED"),
        "Debian's PEP 668 marker must not follow PyPy out of Debian"
    );
    assert_eq!(
        m.files["bin/pypy3"].link.as_deref(),
        Some("pypy3.9"),
        "the upstream alias"
    );

    // repackage verified the archive before moving it into place.
    let report = a.verified.clone().expect("repackage verifies");
    let ran = report
        .ran
        .expect("the archive is for this machine, so it runs");
    let top = ran.top.display().to_string();
    assert_eq!(ran.launcher_prefix.as_deref(), Some(top.as_str()));
    assert_eq!(ran.embed_output, format!("pypy-embed-ok {top}"));
    assert!(
        !ran.top.starts_with(out_a.path()) && !ran.top.starts_with(&tree),
        "the run must happen somewhere else"
    );

    // Same tree, same bytes.
    let b = repackage::repackage_tree(&tree, &linux(), out_b.path()).unwrap();
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(
        fs_err::read(&a.archive).unwrap(),
        fs_err::read(&b.archive).unwrap()
    );
}

#[test]
fn release_file_in_upstream_layout_is_checked_and_repackaged() {
    // The fixture archive has upstream's POSIX release layout under `pypy/`,
    // as an official `pypy3.9-v7.3.11-linux64.tar.bz2` has under its top folder.
    let release = fixtures::debian_archive().unwrap();
    let sha = xtask::hash::sha256_file(&release).unwrap();
    let out = tempfile::tempdir().unwrap();

    let wrong = "0".repeat(64);
    let err = repackage::repackage_release_file(
        &release,
        &wrong,
        &linux(),
        out.path(),
        &Default::default(),
    )
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(&wrong) && text.contains(&fixtures::debian_archive_name()),
        "{text}"
    );
    assert!(
        only_archive(out.path()).is_empty(),
        "{:?}",
        only_archive(out.path())
    );

    let p = repackage::repackage_release_file(
        &release,
        &sha,
        &linux(),
        out.path(),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(p.manifest.pypy_version, "7.3.11");
    match &p.manifest.origin.source {
        manifest::Source::Prebuilt { sha256, .. } => {
            assert_eq!(sha256.as_deref(), Some(sha.as_str()))
        }
        other => panic!("unexpected origin {other:?}"),
    }
    assert_eq!(only_archive(out.path()).len(), 3);
}
