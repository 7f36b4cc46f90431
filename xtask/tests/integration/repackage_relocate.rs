//! A launcher whose RUNPATH names an absolute folder (as a build or a
//! distribution leaves it) comes out of repackage relative to `$ORIGIN`,
//! and runs from the unpacked archive.

// Debian's pypy3 (an x86_64 ELF tree in `usr/` layout) is a fixture of Linux machines only.
#![cfg(target_os = "linux")]

use xtask::{binary, fixtures, manifest, repackage, targets};

#[test]
fn absolute_runpath_becomes_origin_relative() {
    let debian = fixtures::debian_pypy3().unwrap();
    let tree = tempfile::tempdir_in(fixtures::root()).unwrap();
    let t = tree.path();
    // Hard links are cheap; the launcher is copied because patchelf edits it.
    fs_err::create_dir_all(t.join("build/goal")).unwrap();
    fs_err::hard_link(
        debian.join("usr/lib/x86_64-linux-gnu/libpypy3.9-c.so"),
        t.join("build/goal/libpypy3.9-c.so"),
    )
    .unwrap();
    let launcher = t.join("build/goal/pypy3.9-c");
    fs_err::copy(debian.join("usr/bin/pypy3.9"), &launcher).unwrap();
    let sh = xshell::Shell::new().unwrap();
    xshell::cmd!(
        sh,
        "patchelf --set-rpath /home/builder/pypy/goal {launcher}"
    )
    .run()
    .unwrap();
    let stdlib = debian.join("usr/lib/pypy3.9");
    fs_err::create_dir_all(t.join("lib")).unwrap();
    let dest = t.join("lib/pypy3.9");
    xshell::cmd!(sh, "cp -al {stdlib} {dest}").run().unwrap();
    let include = debian.join("usr/include/pypy3.9");
    fs_err::create_dir_all(t.join("include")).unwrap();
    let dest = t.join("include/pypy3.9");
    xshell::cmd!(sh, "cp -al {include} {dest}").run().unwrap();

    let out = tempfile::tempdir().unwrap();
    let target = targets::get("x86_64-unknown-linux-gnu").unwrap();
    // publish() verifies, which runs the relocated launcher and the C program.
    let p = repackage::repackage_tree(t, &target, out.path()).unwrap();
    assert_eq!(p.manifest.paths.launcher.as_deref(), Some("bin/pypy3.9"));

    let unpacked = tempfile::tempdir().unwrap();
    pypy_archive::extract::unpack_top(&p.archive, manifest::TOP_DIR, unpacked.path()).unwrap();
    let info = binary::read(&unpacked.path().join("pypy/bin/pypy3.9"))
        .unwrap()
        .unwrap();
    assert_eq!(info.search_paths, vec!["$ORIGIN".to_string()]);
    // The source tree is untouched.
    let original = binary::read(&launcher).unwrap().unwrap();
    assert_eq!(
        original.search_paths,
        vec!["/home/builder/pypy/goal".to_string()]
    );
}
