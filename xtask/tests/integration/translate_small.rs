//! Real translations of a small RPython target with the fixtures' RPython and Python 2.7 host.

use std::path::{Path, PathBuf};
use std::process::Command;

use xshell::Shell;
use xtask::build_cache::BuildCache;
use xtask::translate::{self, Spec};
use xtask::{c_compiler, fixtures, host, targets};

use crate::common;

fn fixture_target(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn spec(target: &str, opt: &str) -> Spec {
    let rpython = fixtures::translation_rpython().expect("RPython fixture");
    Spec {
        source_id: rpython.source_id,
        source_root: rpython.tree,
        target_file: fixture_target(target),
        opt: opt.into(),
        rpython_options: vec!["--shared".into()],
        target_options: vec![],
        jobs: 2,
        triple: targets::host_triple().into(),
        source_date_epoch: None,
        portable: None,
        cross: None,
    }
}

fn host27(sh: &Shell) -> host::HostPython {
    let h = fixtures::host27().expect("Python 2.7 host fixture");
    let cache = xtask::paths::cache_root();
    let mut host = host::find(sh, Some(&h.python), &[], &cache).expect("CPython 2.7 is a host");
    host.site = Some(h.site);
    host
}

#[test]
fn small_target_translates_caches_and_runs() {
    let _turn = common::rpython_turn();
    let sh = Shell::new().unwrap();
    let host = host27(&sh);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = BuildCache::new(cache_dir.path().to_path_buf());
    // A tree with headers in `include/`, as PyPy's translation leaves them:
    // the entry keeps them for builds that take it from the cache.
    let tree = tempfile::tempdir().unwrap();
    let small = || {
        let mut s = spec("targetembedsmall.py", "2");
        pypy_archive::fs::copy_tree(&s.source_root, tree.path()).unwrap();
        s.source_root = tree.path().to_path_buf();
        s
    };
    let include = tree.path().join(translate::INCLUDE_DIR);
    fs_err::create_dir_all(&include).unwrap();
    fs_err::write(include.join("translated.h"), "/* from the translation */\n").unwrap();

    let first = translate::translate(&sh, &small(), &host, &cache, false)
        .expect("the small target translates");
    assert!(!first.cached);
    let kept = first.include.clone().expect("the entry keeps include/");
    assert!(kept.starts_with(&first.dir), "{kept:?}");
    assert_eq!(
        fs_err::read_to_string(kept.join("translated.h")).unwrap(),
        "/* from the translation */\n"
    );
    let lib = &first.library;
    // The same kind of file as the table's libpypy for this OS (`-c.so`, `-c.dylib`, `-c.dll`).
    let this_os = targets::get(targets::host_triple()).unwrap();
    let libpypy = this_os.libpypy_name("3.11");
    let suffix = &libpypy[libpypy.rfind("-c.").unwrap()..];
    assert!(
        lib.file_name().unwrap().to_string_lossy().ends_with(suffix),
        "{lib:?} does not end with {suffix}"
    );
    let exports = binary_exports(lib);
    assert!(
        exports.iter().any(|s| s == "rpython_startup_code"),
        "{exports:?}"
    );

    // Load the library and call its entry point, as an embedder would.
    let code = call_startup(lib);
    assert_eq!(code, 0, "rpython_startup_code returns 0 the first time");

    let launcher = first.launcher.clone().expect("a launcher");
    let out = Command::new(&launcher).args(["a", "b"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "embedsmall: hello from RPython with 2 arguments"
    );

    let timings: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(&first.timings).unwrap()).unwrap();
    let phases = timings["phases"].as_array().unwrap();
    assert!(phases.iter().any(|p| p[0] == "annotate"), "{timings}");

    // Same inputs: a cache hit with the same files, headers included.
    let second = translate::translate(&sh, &small(), &host, &cache, false).unwrap();
    assert!(second.cached);
    assert_eq!(second.library, first.library);
    assert_eq!(second.include, first.include);

    // A changed option: a miss, so RPython runs again. The option is one
    // RPython rejects at once, which a cache hit could never report, and
    // which spares the test a third full translation.
    let mut changed = small();
    changed
        .rpython_options
        .push("--gcrootfinder=no-such-rootfinder".into());
    let err = translate::translate(&sh, &changed, &host, &cache, false)
        .expect_err("a changed option must not be served from the cache");
    let msg = format!("{err:#}");
    assert!(msg.contains("no-such-rootfinder"), "{msg}");
}

#[test]
fn an_rpython_error_comes_back_with_its_lines() {
    let _turn = common::rpython_turn();
    let sh = Shell::new().unwrap();
    let host = host27(&sh);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = BuildCache::new(cache_dir.path().to_path_buf());
    let err = translate::translate(&sh, &spec("targetbroken.py", "2"), &host, &cache, false)
        .expect_err("the broken target must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("[translation:ERROR]"), "{msg}");
    assert!(msg.contains("Full log:"), "{msg}");
    // Nothing that looks like a finished entry.
    let entries: Vec<_> = std::fs::read_dir(cache_dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.contains(".partial-") && !n.ends_with(".lock"))
        .collect();
    assert!(entries.is_empty(), "{entries:?}");
}

#[test]
fn a_known_upstream_failure_names_its_issue_and_fix() {
    let _turn = common::rpython_turn();
    let sh = Shell::new().unwrap();
    let host = host27(&sh);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = BuildCache::new(cache_dir.path().to_path_buf());
    let err = translate::translate(
        &sh,
        &spec("targetprebuiltlock.py", "2"),
        &host,
        &cache,
        false,
    )
    .expect_err("a prebuilt lock must fail the annotation");
    let msg = format!("{err:#}");
    for needle in [
        "seeing a prebuilt rpython.rlib.rthread.Lock instance",
        "This is a known upstream failure: https://github.com/pypy/pypy/issues/5527",
        "lazy-thread-locks.patch",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing from:\n{msg}");
    }
}

/// Loads the library at run time and calls its entry point, as an embedder
/// would; a child process, so the library's one-time start-up does not touch
/// the test runner.
fn call_startup(lib: &Path) -> i32 {
    let sh = Shell::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("load.c");
    fs_err::write(&source, LOAD_C).unwrap();
    let exe = c_compiler::compile(
        &sh,
        &targets::get(targets::host_triple()).unwrap(),
        &c_compiler::Program {
            source,
            exe: dir.path().join("load"),
            include_dirs: vec![],
            link: c_compiler::Link::Dl,
        },
    )
    .unwrap();
    Command::new(&exe)
        .arg(lib)
        .status()
        .unwrap()
        .code()
        .unwrap()
}

const LOAD_C: &str = r#"#include <stdio.h>
#ifdef _WIN32
#include <windows.h>
#define OPEN(p) LoadLibraryA(p)
#define SYM(h, n) ((void *)GetProcAddress(h, n))
typedef HMODULE handle;
#else
#include <dlfcn.h>
#define OPEN(p) dlopen(p, RTLD_NOW)
#define SYM(h, n) dlsym(h, n)
typedef void *handle;
#endif
int main(int argc, char **argv) {
    if (argc != 2) return 99;
    handle h = OPEN(argv[1]);
    if (!h) { fprintf(stderr, "cannot load %s\n", argv[1]); return 100; }
    int (*startup)(void) = (int (*)(void))SYM(h, "rpython_startup_code");
    if (!startup) return 101;
    return startup();
}
"#;

fn binary_exports(lib: &Path) -> Vec<String> {
    xtask::binary::read(lib)
        .unwrap()
        .expect("the library is an ELF, Mach-O or PE file")
        .exports
}

/// Reproducible builds: the small target translated twice, each time from
/// its own copy of the RPython tree with our reproducibility patch, in
/// folders of different names, at different times, gives the same library
/// and launcher, byte for byte.
#[test]
fn two_translations_in_different_folders_are_identical() {
    let _turn = common::rpython_turn();
    let sh = Shell::new().unwrap();
    let host = host27(&sh);
    let rpython = fixtures::translation_rpython().expect("RPython fixture");
    let path = xtask::paths::recipes_dir().join("patches/rpython-0.2.1-reproducible.patch");
    let patch = xtask::patch::Ready {
        record: xtask::manifest::PatchRecord {
            name: "rpython-0.2.1-reproducible.patch".into(),
            sha256: xtask::hash::sha256_file(&path).unwrap(),
            url: None,
        },
        path,
    };
    let scratch = tempfile::tempdir().unwrap();
    let mut builds = Vec::new();
    for folder in ["one", "a-second-folder-with-a-longer-name"] {
        let root = scratch.path().join(folder);
        let tree = root.join("rpython");
        xtask::patch::apply_into(&sh, &rpython.tree, std::slice::from_ref(&patch), &tree)
            .expect("the reproducibility patch applies to the RPython fixture");
        let mut spec = spec("targetembedsmall.py", "2");
        spec.source_root = tree;
        spec.source_id = format!("{}+reproducible", rpython.source_id);
        let cache = BuildCache::new(root.join("cache"));
        let out = translate::translate(&sh, &spec, &host, &cache, false)
            .expect("the patched tree translates");
        assert!(!out.cached, "each folder has a cache of its own");
        let launcher = out.launcher.expect("a launcher");
        builds.push((
            std::fs::read(&out.library).unwrap(),
            std::fs::read(&launcher).unwrap(),
        ));
    }
    let differing = |a: &[u8], b: &[u8]| {
        a.iter().zip(b).filter(|(x, y)| x != y).count() + a.len().abs_diff(b.len())
    };
    let (first, second) = (&builds[0], &builds[1]);
    let sha = pypy_archive::hash::sha256_bytes;
    assert!(
        first.0 == second.0,
        "the libraries differ in {} bytes (sha256 {} against {})",
        differing(&first.0, &second.0),
        sha(&first.0),
        sha(&second.0)
    );
    assert!(
        first.1 == second.1,
        "the launchers differ in {} bytes (sha256 {} against {})",
        differing(&first.1, &second.1),
        sha(&first.1),
        sha(&second.1)
    );
}

/// A cross-translation for real: the small target, translated on this
/// machine for the table's emulated target (aarch64 here) with zig for that
/// target and our RPython patch, which runs RPython's configure programs
/// under the emulator. Without the patch they fail with "Exec format error".
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn small_target_cross_translates_and_runs_under_the_emulator() {
    /// ELF's machine field: 183 is aarch64.
    fn elf_machine(path: &Path) -> u16 {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF", "{path:?} is not an ELF file");
        u16::from_le_bytes([bytes[18], bytes[19]])
    }

    let _turn = common::rpython_turn();
    let sh = Shell::new().unwrap();
    let (target, cross) = test_support::cross_toolchain(&sh)
        .unwrap()
        .expect("the table emulates a target on x86-64 Linux");
    let host = host27(&sh);

    // The fixture's RPython with our patch, in a copy.
    let rpython = fixtures::translation_rpython().expect("RPython fixture");
    let patch = xtask::paths::workspace_root().join("recipes/patches/rpython-target-runner.patch");
    let work = tempfile::tempdir().unwrap();
    let patched = work.path().join("rpython");
    let ready = xtask::patch::Ready {
        record: xtask::manifest::PatchRecord {
            name: "rpython-target-runner.patch".into(),
            sha256: xtask::hash::sha256_file(&patch).unwrap(),
            url: None,
        },
        path: patch,
    };
    xtask::patch::apply_into(&sh, &rpython.tree, std::slice::from_ref(&ready), &patched).unwrap();

    let mut cross_spec = spec("targetembedsmall.py", "2");
    cross_spec.source_root = patched;
    cross_spec.source_id = format!("{}+{}", rpython.source_id, ready.record.sha256);
    cross_spec.triple = target.triple.clone();
    cross_spec.cross = Some(cross.clone());
    let cache = BuildCache::new(work.path().join("cache"));
    let out = translate::translate(&sh, &cross_spec, &host, &cache, false)
        .expect("the small target cross-translates");

    const AARCH64: u16 = 183;
    assert_eq!(target.triple, "aarch64-unknown-linux-gnu");
    assert_eq!(elf_machine(&out.library), AARCH64, "{:?}", out.library);
    let launcher = out.launcher.expect("a launcher");
    assert_eq!(elf_machine(&launcher), AARCH64, "{launcher:?}");
    let printed = cross
        .emulator
        .command(&launcher, &["a", "b"])
        .cmd(&sh)
        .unwrap()
        .read()
        .unwrap();
    assert_eq!(printed, "embedsmall: hello from RPython with 2 arguments");
}
