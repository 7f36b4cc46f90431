//! Trees that cannot become an archive: each error names the path, and
//! nothing is left in the output folder.

// Debian's pypy3 (an x86_64 ELF tree in `usr/` layout) is a fixture of Linux machines only.
#![cfg(target_os = "linux")]

use std::path::Path;

use xtask::{fixtures, repackage, targets};

/// A tree built from hard links into the Debian fixture (cheap, same file system).
fn tree_with(dir: &Path, parts: &[(&str, &str)]) {
    let debian = fixtures::debian_pypy3().unwrap();
    for (from, to) in parts {
        let dest = dir.join(to);
        fs_err::create_dir_all(dest.parent().unwrap()).unwrap();
        let src = debian.join(from);
        if src.is_dir() {
            for entry in walkdir::WalkDir::new(&src) {
                let entry = entry.unwrap();
                let d = dest.join(entry.path().strip_prefix(&src).unwrap());
                if entry.file_type().is_dir() {
                    fs_err::create_dir_all(&d).unwrap();
                } else {
                    fs_err::hard_link(entry.path(), &d).unwrap();
                }
            }
        } else {
            fs_err::hard_link(&src, &dest).unwrap();
        }
    }
}

const LIB: &str = "usr/lib/x86_64-linux-gnu/libpypy3.9-c.so";
const LAUNCHER: &str = "usr/bin/pypy3.9";
const STDLIB: &str = "usr/lib/pypy3.9";
const INCLUDE: &str = "usr/include/pypy3.9";
/// Everything a repackageable tree has: library, launcher, stdlib, headers.
const COMPLETE: &[(&str, &str)] = &[
    (LIB, LIB),
    (LAUNCHER, LAUNCHER),
    (STDLIB, STDLIB),
    (INCLUDE, INCLUDE),
];

fn repackage_err(tree: &Path) -> String {
    let out = tempfile::tempdir_in(fixtures::root()).unwrap();
    let target = targets::get("x86_64-unknown-linux-gnu").unwrap();
    let err = repackage::repackage_tree(tree, &target, out.path()).expect_err("must fail");
    let left: Vec<_> = fs_err::read_dir(out.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "output folder not empty after failure: {left:?}"
    );
    format!("{err:#}")
}

fn scratch() -> tempfile::TempDir {
    // Beside the fixtures so that hard links work.
    tempfile::tempdir_in(fixtures::root()).unwrap()
}

#[test]
fn no_libpypy() {
    let dir = scratch();
    tree_with(dir.path(), &[(LAUNCHER, LAUNCHER), (STDLIB, STDLIB)]);
    let err = repackage_err(dir.path());
    assert!(
        err.contains("no libpypy") && err.contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn two_candidate_libraries() {
    let dir = scratch();
    tree_with(
        dir.path(),
        &[
            (LIB, LIB),
            (LIB, "opt/pypy/bin/libpypy3.9-c.so"),
            (LAUNCHER, LAUNCHER),
            (STDLIB, STDLIB),
        ],
    );
    let err = repackage_err(dir.path());
    assert!(err.contains("two or more candidate libraries"), "{err}");
    assert!(
        err.contains(LIB) && err.contains("opt/pypy/bin/libpypy3.9-c.so"),
        "{err}"
    );
}

#[test]
fn stdlib_without_site_py() {
    let dir = scratch();
    tree_with(
        dir.path(),
        &[(LIB, LIB), (LAUNCHER, LAUNCHER), (STDLIB, STDLIB)],
    );
    fs_err::remove_file(dir.path().join(STDLIB).join("site.py")).unwrap();
    let err = repackage_err(dir.path());
    let stdlib = dir.path().join(STDLIB).display().to_string();
    assert!(err.contains(&stdlib) && err.contains("no site.py"), "{err}");
}

#[test]
fn no_stdlib_at_all() {
    let dir = scratch();
    tree_with(dir.path(), &[(LIB, LIB), (LAUNCHER, LAUNCHER)]);
    let err = repackage_err(dir.path());
    assert!(
        err.contains("no standard library folder `lib/pypy3.9`"),
        "{err}"
    );
}

#[test]
fn library_without_a_launcher_still_gives_versions() {
    // No launcher: the versions come from the banner compiled into libpypy.
    let dir = scratch();
    tree_with(dir.path(), &[(LIB, LIB), (STDLIB, STDLIB)]);
    let target = targets::get("x86_64-unknown-linux-gnu").unwrap();
    let found = xtask::archive::locate(dir.path(), &target).unwrap();
    assert!(found.launcher.is_none());
    assert_eq!(found.versions.python, "3.9");
    assert_eq!(found.versions.pypy, "7.3.11");
}

#[test]
fn text_file_naming_the_build_tree() {
    let dir = scratch();
    tree_with(dir.path(), COMPLETE);
    let pth = dir.path().join(STDLIB).join("build-paths.pth");
    fs_err::write(&pth, format!("{}/site-packages\n", dir.path().display())).unwrap();
    let err = repackage_err(dir.path());
    assert!(
        err.contains("pypy/lib/pypy3.9/build-paths.pth: names the build path"),
        "{err}"
    );
}

#[test]
fn a_tree_without_headers_is_refused_naming_the_package() {
    let dir = scratch();
    tree_with(
        dir.path(),
        &[(LIB, LIB), (LAUNCHER, LAUNCHER), (STDLIB, STDLIB)],
    );
    let err = repackage_err(dir.path());
    assert!(
        err.contains("include/pypy3.9/Python.h")
            && err.contains("install pypy3-dev")
            && err.contains("--no-headers"),
        "{err}"
    );
}

#[test]
fn no_headers_packs_the_tree_and_the_manifest_says_so() {
    let dir = scratch();
    tree_with(
        dir.path(),
        &[(LIB, LIB), (LAUNCHER, LAUNCHER), (STDLIB, STDLIB)],
    );
    let out = tempfile::tempdir_in(fixtures::root()).unwrap();
    let target = targets::get("x86_64-unknown-linux-gnu").unwrap();
    let published = repackage::repackage_tree_with(
        dir.path(),
        &target,
        out.path(),
        &xtask::archive::PublishOptions {
            no_headers: true,
            ..Default::default()
        },
    )
    .unwrap();
    let manifest = pypy_archive::extract::read_manifest(&published.archive).unwrap();
    assert!(manifest.no_headers);
    // verify knows, and says the plugin and extension were not built.
    let report = xtask::verify::verify_archive(&published.archive, &Default::default()).unwrap();
    let lines = report.ran.expect("verify ran the archive").consumers;
    assert!(
        lines.iter().any(|l| l.contains("packed with --no-headers")),
        "{lines:?}"
    );
}

#[test]
fn a_second_empty_stdlib_folder_is_not_taken_for_the_standard_library() {
    // Debian's pypy3 leaves an empty /usr/local/lib/pypy3.9/dist-packages
    // behind; the interpreter says which folder is its own.
    let dir = scratch();
    tree_with(dir.path(), COMPLETE);
    fs_err::create_dir_all(dir.path().join("usr/local/lib/pypy3.9/dist-packages")).unwrap();
    let target = targets::get("x86_64-unknown-linux-gnu").unwrap();
    let found = xtask::archive::locate(dir.path(), &target).unwrap();
    assert!(found.stdlib.ends_with(STDLIB), "{}", found.stdlib.display());
    assert!(
        found.include.as_ref().is_some_and(|i| i.ends_with(INCLUDE)),
        "{:?}",
        found.include
    );
}
