//! The portable toolchain end to end, without docker: a small host program
//! and a shared library of its own, built by the target's zig against zlib
//! and bzip2 from the dependency stage, run with Debian 11's glibc (2.31)
//! in place of this machine's; the same source built by the machine's gcc
//! is refused there, which shows the test catches what it should.

use std::path::{Path, PathBuf};

use xshell::{cmd, Shell};
use xtask::{binary, fixtures, portability, targets};

/// A library that compresses with both dependencies and checks the round
/// trip; the program calls it and prints what the library says.
const LIBRARY: &str = r#"
#include <string.h>
#include <stdio.h>
#include <zlib.h>
#include <bzlib.h>

__attribute__((visibility("default")))
int roundtrip(char *out, int size) {
    char text[4096], packed[8192], back[4096];
    for (int i = 0; i < (int)sizeof text; i++) text[i] = "portable "[i % 9];
    uLongf zlen = sizeof packed, zback = sizeof back;
    if (compress2((Bytef *)packed, &zlen, (Bytef *)text, sizeof text, 9) != Z_OK) return 1;
    if (uncompress((Bytef *)back, &zback, (Bytef *)packed, zlen) != Z_OK) return 2;
    if (zback != sizeof text || memcmp(back, text, sizeof text)) return 3;
    unsigned int blen = sizeof packed, bback = sizeof back;
    if (BZ2_bzBuffToBuffCompress(packed, &blen, text, sizeof text, 9, 0, 0) != BZ_OK) return 4;
    if (BZ2_bzBuffToBuffDecompress(back, &bback, packed, blen, 0, 0) != BZ_OK) return 5;
    if (bback != sizeof text || memcmp(back, text, sizeof text)) return 6;
    snprintf(out, size, "zlib %s %lu bytes, bzip2 %u bytes", zlibVersion(), (unsigned long)zlen, blen);
    return 0;
}
"#;

const PROGRAM: &str = r#"
#include <stdio.h>
int roundtrip(char *out, int size);
int main(void) {
    char line[200];
    int rc = roundtrip(line, sizeof line);
    if (rc) { printf("roundtrip failed: %d\n", rc); return rc; }
    printf("ok: %s\n", line);
    return 0;
}
"#;

/// Builds `libroundtrip.so` and `prog` in `dir` with the compiler `cc`
/// (a path or `cc`), linking the static libraries of `prefix`.
fn build(sh: &Shell, cc: &Path, dir: &Path, prefix: &Path) -> PathBuf {
    fs_err::create_dir_all(dir).unwrap();
    fs_err::write(dir.join("roundtrip.c"), LIBRARY).unwrap();
    fs_err::write(dir.join("prog.c"), PROGRAM).unwrap();
    let (include, lib) = (prefix.join("include"), prefix.join("lib"));
    let _dir = sh.push_dir(dir);
    cmd!(
        sh,
        "{cc} -O2 -fPIC -shared -o libroundtrip.so roundtrip.c -I{include} -L{lib} -l:libz.a -l:libbz2.a -Wl,-soname,libroundtrip.so"
    )
    .run()
    .unwrap();
    cmd!(
        sh,
        "{cc} -O2 -o prog prog.c -L. -lroundtrip -Wl,-rpath,$ORIGIN"
    )
    .run()
    .unwrap();
    dir.join("prog")
}

/// Runs `prog` with Debian 11's loader and C library.
fn run_on_debian11(sh: &Shell, prog: &Path) -> std::process::Output {
    let old = test_support::old_glibc().unwrap();
    let (loader, libs) = (&old.loader, &old.lib_dir);
    let here = prog.parent().unwrap();
    let path = format!("{}:{}", libs.display(), here.display());
    cmd!(sh, "{loader} --library-path {path} {prog}")
        .ignore_status()
        .output()
        .unwrap()
}

#[test]
fn zig_builds_run_on_debian_11_and_gcc_builds_do_not() {
    let sh = Shell::new().unwrap();
    let target = targets::get(targets::host_triple()).unwrap();
    let Some(policy) = target.portability.clone() else {
        // Only Linux targets have a glibc baseline; `cargo xtask test` runs
        // this on Linux, where the table has one for every target.
        assert_ne!(
            target.os,
            targets::Os::Linux,
            "{} has no policy",
            target.triple
        );
        return;
    };
    let (zig, prefix) = test_support::portable_toolchain(&sh).unwrap();
    let out = tempfile::tempdir().unwrap();

    // The zig build: meets the policy and runs on the older glibc.
    let prog = build(&sh, &zig.cc(), &out.path().join("zig"), &prefix.dir);
    for file in [prog.clone(), prog.with_file_name("libroundtrip.so")] {
        let info = binary::read(&file).unwrap().unwrap();
        let violations = portability::check(&info, &policy, &["libroundtrip.so"]);
        assert_eq!(violations, vec![], "{}: {info:?}", file.display());
    }
    let lib = binary::read(&prog.with_file_name("libroundtrip.so"))
        .unwrap()
        .unwrap();
    assert!(
        lib.exports.contains(&"roundtrip".to_string()),
        "{:?}",
        lib.exports
    );
    assert!(
        !lib.exports
            .iter()
            .any(|e| e == "deflate" || e.starts_with("BZ2_")),
        "the dependencies' symbols stay hidden: {:?}",
        lib.exports
    );
    let ran = run_on_debian11(&sh, &prog);
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success() && stdout.starts_with("ok: zlib 1.3.1"),
        "status {}, stdout {stdout}, stderr {}",
        ran.status,
        String::from_utf8_lossy(&ran.stderr)
    );

    // The same source and libraries with the machine's own gcc: its
    // `__libc_start_main@GLIBC_2.34` (and more) are not in glibc 2.31.
    let prog = build(&sh, Path::new("cc"), &out.path().join("gcc"), &prefix.dir);
    let info = binary::read(&prog).unwrap().unwrap();
    assert!(
        !portability::check(&info, &policy, &["libroundtrip.so"]).is_empty(),
        "the policy must catch the gcc build: {info:?}"
    );
    let ran = run_on_debian11(&sh, &prog);
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(
        !ran.status.success() && stderr.contains("GLIBC_2.3") && stderr.contains("not found"),
        "status {}, stderr {stderr}",
        ran.status
    );
}

/// A host that uses the system's zlib and loads a library carrying its own
/// (static, hidden) copy: each keeps its own, as a program embedding our
/// libpypy keeps its OpenSSL (`verify` checks that on real archives).
const HOST_WITH_ITS_OWN_ZLIB: &str = r#"
#include <stdio.h>
#include <zlib.h>
int roundtrip(char *out, int size);
int main(void) {
    char line[200];
    printf("host: zlib %s\n", zlibVersion());
    if (roundtrip(line, sizeof line)) return 1;
    printf("library: %s\n", line);
    printf("host again: zlib %s\n", zlibVersion());
    return 0;
}
"#;

#[test]
fn a_host_with_the_systems_zlib_keeps_it_beside_the_bundled_one() {
    let sh = Shell::new().unwrap();
    let target = targets::get(targets::host_triple()).unwrap();
    if target.portability.is_none() {
        assert_ne!(target.os, targets::Os::Linux);
        return;
    }
    let (zig, prefix) = test_support::portable_toolchain(&sh).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("zig");
    build(&sh, &zig.cc(), &dir, &prefix.dir);
    fs_err::write(dir.join("host.c"), HOST_WITH_ITS_OWN_ZLIB).unwrap();
    let _dir = sh.push_dir(&dir);
    // The machine's compiler and shared zlib (zlib1g-dev), linked first.
    cmd!(
        sh,
        "cc -o host host.c -lz -L. -lroundtrip -Wl,-rpath,$ORIGIN"
    )
    .run()
    .unwrap();
    let ran = cmd!(sh, "./host").output().unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout).to_string();
    let line = |p: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(p))
            .unwrap_or_default()
            .to_string()
    };
    let (host, library, again) = (line("host: "), line("library: "), line("host again: "));
    assert!(ran.status.success(), "{stdout}");
    assert!(library.starts_with("zlib 1.3.1"), "{stdout}");
    assert!(host.starts_with("zlib ") && host == again, "{stdout}");
    assert!(
        !host.starts_with("zlib 1.3.1"),
        "the system's zlib must be another version for this test to show anything: {stdout}"
    );
}

/// The dependency stage gives the same bytes from two caches at different
/// paths (no build folder, date or owner gets into the library).
#[test]
fn the_dependency_stage_builds_the_same_bytes_in_two_places() {
    let sh = Shell::new().unwrap();
    let host = targets::get(targets::host_triple()).unwrap();
    if host.portability.is_none() {
        assert_ne!(host.os, targets::Os::Linux);
        return;
    }
    let (zig, _) = test_support::portable_toolchain(&sh).unwrap();
    let pin = xtask::toolchain::of(&host).unwrap().zig_sha256.clone();
    let sources = fixtures::root().join("cache/deps/sources");
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let two = two.path().join("a-longer-folder-name");
    let mut built = Vec::new();
    for root in [one.path().to_path_buf(), two] {
        // The source tarball as the fixture fetched it (checked again by sha256).
        pypy_archive::fs::copy_tree(&sources, &root.join("deps/sources")).unwrap();
        let prefix = xtask::deps::ensure(&sh, &zig, &pin, &root, &["bzip2"]).unwrap();
        built.push(fs_err::read(prefix.dir.join("lib/libbz2.a")).unwrap());
    }
    assert!(!built[0].is_empty());
    assert!(
        built[0] == built[1],
        "libbz2.a differs between the two builds ({} and {} bytes)",
        built[0].len(),
        built[1].len()
    );
}

/// The plan shows what the dependency stage runs: the commands each
/// library's build recorded in its log, as it ran them, are the plan's, in
/// order (the work folder's random name shown as the plan's `<work>`).
#[test]
fn the_dependency_stages_plan_is_what_its_build_ran() {
    let sh = Shell::new().unwrap();
    let host = targets::get(targets::host_triple()).unwrap();
    if host.portability.is_none() {
        assert_ne!(host.os, targets::Os::Linux);
        return;
    }
    let (zig, _) = test_support::portable_toolchain(&sh).unwrap();
    let pin = xtask::toolchain::of(&host).unwrap().zig_sha256.clone();
    let cache = fixtures::root().join("cache");
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (_, planned) = xtask::deps::plan(&zig, &pin, &cache, jobs).unwrap();
    for name in test_support::PORTABLE_TEST_LIBRARIES {
        let build = planned.iter().find(|b| b.library.name == name).unwrap();
        let log_path = build.entry.join(format!("build-{name}.log"));
        let log = fs_err::read_to_string(&log_path).unwrap();
        let work = work_folder_in_log(&log, &cache.join("deps"), name);
        let ran: Vec<String> = log
            .lines()
            .filter_map(|line| line.strip_prefix("$ "))
            .map(|line| line.replace(&work, &cache.join("deps/<work>").display().to_string()))
            .collect();
        let plan: Vec<String> = build.commands.iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            ran,
            plan,
            "{name}: the build ran (left, from {}) other commands than the plan shows (right)",
            log_path.display()
        );
    }
}

/// The work folder a build used, `<cache>/deps/.<name>-build-XXXXXX`, as its log names it.
fn work_folder_in_log(log: &str, deps: &std::path::Path, name: &str) -> String {
    let start = format!("{}/.{name}-build-", deps.display());
    let at = log.find(&start).expect("the log names its work folder");
    let rest = &log[at + start.len()..];
    let end = rest.find('/').expect("a path below the work folder");
    format!("{start}{}", &rest[..end])
}
