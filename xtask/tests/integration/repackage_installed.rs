//! `cargo xtask repackage /usr` of a real apt installation of PyPy (Debian's
//! or Ubuntu's `pypy3` and `pypy3-dev`, which `.ci.test/run` and CI's test job
//! install): the interpreter says where its files are, the stray
//! `/usr/local/lib/pypy3.X` the package creates is not taken for the
//! standard library, and `verify` builds a cffi plugin, a C extension and a
//! pkg-config program against the result.

// The target table's Linux targets install these packages for the tests.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::Command;

#[test]
fn repackaging_the_system_pypy_gives_a_verified_archive() {
    let pypy = Path::new("/usr/bin/pypy3");
    assert!(
        pypy.exists(),
        "{} is missing: this test needs the distribution's PyPy; run \
         `apt-get install pypy3 pypy3-dev` (as .ci.test/run does)",
        pypy.display()
    );
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["repackage", "/usr", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "repackage /usr failed:\n{stdout}\n{stderr}"
    );
    for needle in [
        "verify: pkg-config: ok",
        "verify: cffi plugin: ok",
        "verify: C extension: ok",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }

    let version = Command::new(pypy)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .unwrap();
    let py = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let archive = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .expect("an archive in the output folder");
    let manifest = pypy_archive::extract::read_manifest(&archive).unwrap();
    assert_eq!(manifest.python_version, py);
    assert_eq!(manifest.paths.stdlib, format!("lib/pypy{py}"));
    assert!(!manifest.no_headers);
    for file in [
        format!("include/pypy{py}/Python.h"),
        format!("lib/pypy{py}/site.py"),
        format!("bin/libpypy{py}-c.so"),
        "bin/libpypy3-c.so".to_string(),
        format!("lib/pkgconfig/pypy{py}-embed.pc"),
    ] {
        assert!(
            manifest.files.contains_key(&file),
            "{file} not in the archive"
        );
    }
    // PEP 668's marker belongs to the distribution, not to our archive.
    assert!(!manifest
        .files
        .keys()
        .any(|f| f.ends_with("EXTERNALLY-MANAGED")));
}
