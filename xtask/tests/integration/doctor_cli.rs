//! `cargo xtask doctor` and the host search, run as a user would, on this real machine.

use std::process::{Command, Output};

use xtask::{doctor, targets};

fn xtask(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args).env("RUST_BACKTRACE", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("xtask runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn this_os() -> targets::Target {
    targets::get(targets::host_triple()).unwrap()
}

// Windows builds take their libraries from PyPy's get_externals.py, not from
// system headers, so doctor has no header checks there.
#[cfg(not(windows))]
#[test]
fn missing_headers_are_named_with_their_packages() {
    // A real compiler that sees no system headers: every library is missing.
    let out = xtask(&["doctor"], &[("CC", "cc -nostdinc")]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    let os = this_os();
    let ffi = doctor::install_hint(&os, "libffi-dev", "libffi");
    assert!(
        err.contains(&format!("no <ffi.h> header (fix: {ffi})")),
        "{err}"
    );
    assert!(
        err.contains(&doctor::install_hint(&os, "libsqlite3-dev", "sqlite")),
        "{err}"
    );
    assert!(
        err.contains(&doctor::install_hint(&os, "tk-dev", "tcl-tk")),
        "{err}"
    );
}

#[cfg(not(windows))]
#[test]
fn this_machine_passes_the_header_checks() {
    let out = xtask(&["doctor"], &[]);
    let err = stderr(&out);
    for lib in [
        "libffi", "zlib", "bz2", "expat", "sqlite3", "openssl", "ncursesw", "gdbm", "lzma", "tk",
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(&format!(" {lib} ")))
            .unwrap_or_else(|| panic!("no line for {lib}: {err}"));
        assert!(line.contains("ok"), "{line}");
    }
}

#[test]
fn a_missing_compiler_is_named() {
    let out = xtask(&["doctor"], &[("CC", "/nonexistent/cc")]);
    let err = stderr(&out);
    assert!(!out.status.success());
    let fix = doctor::compiler_hint(&this_os());
    assert!(
        err.contains(&format!(
            "C compiler: `/nonexistent/cc` does not run (fix: {fix})"
        )),
        "{err}"
    );
}

#[test]
fn a_missing_host_interpreter_lists_what_was_searched() {
    let empty = tempfile::tempdir().unwrap();
    let home = empty.path().to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["doctor"])
        .env_clear()
        .env("PATH", home)
        .env("HOME", home)
        .env("PYENV_ROOT", home)
        .env("CC", "/usr/bin/cc")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("no Python 2.7 host interpreter"), "{err}");
    for searched in ["`pypy2.7` on PATH", "`python2.7` on PATH", "pyenv"] {
        assert!(err.contains(searched), "{searched}: {err}");
    }
    assert!(err.contains("--host-python"), "{err}");
}
