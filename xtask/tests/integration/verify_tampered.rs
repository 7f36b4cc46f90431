//! `verify` on damaged copies of the real repackaged Debian archive: each
//! failure must name the file and say what is wrong.

// Debian's pypy3 (an x86_64 ELF tree in `usr/` layout) is a fixture of Linux machines only.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pypy_archive::extract::unpack_top;
use xtask::archive::{write_tar_gz_file, WriteOptions};
use xtask::{fixtures, manifest, verify};

/// The fixture archive unpacked once (kept beside the fixtures, keyed by
/// the archive's checksum); tests work on hard-linked copies of it and must
/// [`unshare`] a file before changing it in place.
pub(crate) fn base_tree() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let archive = fixtures::debian_archive().unwrap();
        let sha = xtask::hash::sha256_file(&archive).unwrap();
        let cache = fixtures::root().join("test-cache");
        let base = cache.join(format!("unpacked-{}", &sha[..16]));
        if !base.is_dir() {
            fs_err::create_dir_all(&cache).unwrap();
            let tmp = tempfile::tempdir_in(&cache).unwrap();
            unpack_top(&archive, manifest::TOP_DIR, tmp.path()).unwrap();
            let kept = tmp.keep();
            if std::fs::rename(&kept, &base).is_err() {
                // Another test process won the race; its copy is as good.
                fs_err::remove_dir_all(&kept).unwrap();
            }
        }
        base
    })
}

/// Gives `path` its own inode so that editing it leaves the shared base alone.
pub(crate) fn unshare(path: &Path) {
    let bytes = fs_err::read(path).unwrap();
    let mode = fs_err::metadata(path).unwrap().permissions();
    fs_err::remove_file(path).unwrap();
    fs_err::write(path, bytes).unwrap();
    fs_err::set_permissions(path, mode).unwrap();
}

/// A copy of the fixture archive's tree, changed by `edit` (which must
/// [`unshare`] what it changes in place), archived again with a `.sha256`
/// that matches the new bytes (so only deeper checks can catch the change).
pub(crate) fn rebuilt(dir: &Path, edit: impl FnOnce(&Path)) -> PathBuf {
    let unpacked = dir.join("unpacked");
    fs_err::create_dir(&unpacked).unwrap();
    let top = unpacked.join(manifest::TOP_DIR);
    let base = base_tree().join(manifest::TOP_DIR);
    let sh = xshell::Shell::new().unwrap();
    xshell::cmd!(sh, "cp -al {base} {top}").run().unwrap();
    unshare(&top.join(manifest::MANIFEST_NAME));
    edit(&top);
    let dest = dir.join(fixtures::debian_archive_name());
    // Fast compression: these archives only live for one test.
    let opts = WriteOptions {
        level: 1,
        ..WriteOptions::default()
    };
    let (_, sha) = write_tar_gz_file(&top, manifest::TOP_DIR, &dest, &opts).unwrap();
    write_sha(&dest, &sha);
    dest
}

/// Beside the fixtures, so that hard links to the base tree work.
pub(crate) fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(fixtures::root()).unwrap()
}

fn write_sha(archive: &Path, sha: &str) {
    let name = archive.file_name().unwrap().to_string_lossy();
    fs_err::write(
        archive.with_file_name(format!("{name}.sha256")),
        format!("{sha}  {name}\n"),
    )
    .unwrap();
}

fn verify_err(archive: &Path) -> String {
    let err = verify::verify_archive(
        archive,
        &verify::VerifyOptions {
            no_run: true,
            ..Default::default()
        },
    )
    .expect_err("verify must fail");
    format!("{err:#}")
}

#[test]
fn tampered_file_is_named() {
    let dir = scratch();
    let archive = rebuilt(dir.path(), |top| {
        let os_py = top.join("lib/pypy3.9/os.py");
        unshare(&os_py);
        let mut text = fs_err::read_to_string(&os_py).unwrap();
        text.push_str("\nprint('owned')\n");
        fs_err::write(&os_py, text).unwrap();
    });
    let err = verify_err(&archive);
    assert!(
        err.contains("pypy/lib/pypy3.9/os.py: sha256") && err.contains("file was changed"),
        "{err}"
    );
    // Only that file is reported.
    assert_eq!(err.matches("sha256 ").count(), 1, "{err}");
}

#[test]
fn added_and_removed_files_are_named() {
    let dir = scratch();
    let archive = rebuilt(dir.path(), |top| {
        fs_err::remove_file(top.join("lib/pypy3.9/json/decoder.py")).unwrap();
        fs_err::write(top.join("lib/pypy3.9/sitecustomize.py"), "import evil\n").unwrap();
    });
    let err = verify_err(&archive);
    assert!(
        err.contains("pypy/lib/pypy3.9/json/decoder.py: listed in the manifest but missing"),
        "{err}"
    );
    assert!(
        err.contains("pypy/lib/pypy3.9/sitecustomize.py: in the archive but not in the manifest"),
        "{err}"
    );
}

#[test]
fn archive_changed_after_its_checksum_is_caught() {
    let dir = scratch();
    let src = fixtures::debian_archive().unwrap();
    let copy = dir.path().join(fixtures::debian_archive_name());
    let mut bytes = fs_err::read(&src).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs_err::write(&copy, &bytes).unwrap();
    fs_err::copy(
        src.with_file_name(format!("{}.sha256", fixtures::debian_archive_name())),
        dir.path()
            .join(format!("{}.sha256", fixtures::debian_archive_name())),
    )
    .unwrap();
    let err = verify_err(&copy);
    assert!(
        err.contains(&fixtures::debian_archive_name()) && err.contains("damaged"),
        "{err}"
    );

    // Without its checksum file, verify refuses rather than trusting it.
    fs_err::remove_file(
        dir.path()
            .join(format!("{}.sha256", fixtures::debian_archive_name())),
    )
    .unwrap();
    let err = verify_err(&copy);
    assert!(err.contains("no checksum file"), "{err}");
}

#[test]
fn truncated_archive_is_named() {
    let dir = scratch();
    let src = fixtures::debian_archive().unwrap();
    let copy = dir.path().join(fixtures::debian_archive_name());
    let bytes = fs_err::read(&src).unwrap();
    fs_err::write(&copy, &bytes[..bytes.len() * 2 / 3]).unwrap();
    write_sha(&copy, &xtask::hash::sha256_file(&copy).unwrap());
    let err = verify_err(&copy);
    assert!(
        err.contains(&fixtures::debian_archive_name()) && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn unknown_manifest_version_is_named() {
    let dir = scratch();
    let archive = rebuilt(dir.path(), |top| {
        let path = top.join(manifest::MANIFEST_NAME);
        let text = fs_err::read_to_string(&path).unwrap();
        let changed = text.replacen(
            &format!("\"format_version\": {}", manifest::FORMAT_VERSION),
            "\"format_version\": 99",
            1,
        );
        assert_ne!(text, changed);
        fs_err::write(&path, changed).unwrap();
    });
    let err = verify_err(&archive);
    assert!(
        err.contains("PYPY.json") && err.contains("format version 99"),
        "{err}"
    );
    assert!(err.contains(&fixtures::debian_archive_name()), "{err}");
}

#[test]
fn absolute_runpath_is_named() {
    let dir = scratch();
    let archive = rebuilt(dir.path(), |top| {
        let launcher = top.join("bin/pypy3.9");
        unshare(&launcher);
        let sh = xshell::Shell::new().unwrap();
        xshell::cmd!(sh, "patchelf --set-rpath /usr/lib/pypy-build {launcher}")
            .run()
            .unwrap();
        // Keep the manifest in step so that only the search path is wrong.
        let path = top.join(manifest::MANIFEST_NAME);
        let mut m = manifest::Manifest::from_json(&fs_err::read_to_string(&path).unwrap()).unwrap();
        let e = m.files.get_mut("bin/pypy3.9").unwrap();
        e.sha256 = xtask::hash::sha256_file(&launcher).unwrap();
        e.size = fs_err::metadata(&launcher).unwrap().len();
        fs_err::write(&path, m.to_json()).unwrap();
    });
    let err = verify_err(&archive);
    assert!(
        err.contains("pypy/bin/pypy3.9: runtime search path /usr/lib/pypy-build"),
        "{err}"
    );
}

#[test]
fn dependency_outside_the_allow_list_is_named() {
    let dir = scratch();
    let module = "lib/pypy3.9/_sqlite3_cffi.pypy39-pp73-x86_64-linux-gnu.so";
    let archive = rebuilt(dir.path(), |top| {
        let path = top.join(module);
        unshare(&path);
        let sh = xshell::Shell::new().unwrap();
        xshell::cmd!(sh, "patchelf --add-needed libbuildmachine.so.9 {path}")
            .run()
            .unwrap();
        let mpath = top.join(manifest::MANIFEST_NAME);
        let mut m =
            manifest::Manifest::from_json(&fs_err::read_to_string(&mpath).unwrap()).unwrap();
        let e = m.files.get_mut(module).unwrap();
        e.sha256 = xtask::hash::sha256_file(&path).unwrap();
        e.size = fs_err::metadata(&path).unwrap().len();
        fs_err::write(&mpath, m.to_json()).unwrap();
    });
    let err = verify_err(&archive);
    assert!(
        err.contains(&format!("pypy/{module}: needs libbuildmachine.so.9")),
        "{err}"
    );
}

#[test]
fn the_command_line_names_the_tampered_file() {
    let dir = scratch();
    let archive = rebuilt(dir.path(), |top| {
        unshare(&top.join("lib/pypy3.9/this.py"));
        fs_err::write(top.join("lib/pypy3.9/this.py"), "print('changed')\n").unwrap();
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("verify")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pypy/lib/pypy3.9/this.py: sha256"),
        "{stderr}"
    );
}
