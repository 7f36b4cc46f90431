//! The runtime against a real libpypy, one PyPy per process: by default
//! Debian's pypy3 7.3.11 repackaged into our archive format, or any archive
//! of that format named by `$PYPY_EMBED_TEST_ARCHIVE` (e.g. our own PyPy
//! 3.11 build). What a scenario expects (Python version, libpypy and stdlib
//! paths) comes from the archive's `PYPY.json`, never from constants.
//!
//! PyPy cannot be started twice in one process, so every test runs this
//! binary again as a child with `EMBED_SCENARIO=<name>`; the child runs one
//! scenario, prints `RESULT key=value` lines, and panics on failure. The
//! parent prepares the environment (discovery variables, a private cache,
//! a copy of the binary beside a tree or archive) and checks what came back.
//! This file has its own `main` (harness = false) for that reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use embed_runtime::manifest::{Manifest, MANIFEST_NAME, TOP_DIR};
use embed_runtime::{Builder, Error, Source};

const SCENARIO_ENV: &str = "EMBED_SCENARIO";
/// Path for the scenarios that take an explicit home.
const EXPLICIT_ENV: &str = "EMBED_TEST_EXPLICIT";

const FIXTURES_ENV: &str = "PYPY_EMBED_FIXTURES";
/// The archive under test; default: the repackaged Debian fixture.
const TEST_ARCHIVE_ENV: &str = "PYPY_EMBED_TEST_ARCHIVE";
const DEBIAN_ARCHIVE: &str = "pypy3.9-v7.3.11-x86_64-unknown-linux-gnu.tar.gz";
const FIX: &str = "run `cargo xtask test --prepare-only` to prepare the fixtures";

fn main() {
    if let Ok(name) = std::env::var(SCENARIO_ENV) {
        child(&name);
        return;
    }
    parent();
}

// ---------------------------------------------------------------- fixtures

fn fixtures() -> PathBuf {
    std::env::var_os(FIXTURES_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"))
}

/// Debian's pypy3 unpacked: `usr/` holds `lib/x86_64-linux-gnu/libpypy3.9-c.so`
/// and `lib/pypy3.9/`, a layout no upstream release has.
fn debian_tree() -> PathBuf {
    let usr = fixtures().join("debian-pypy3").join("usr");
    assert!(
        usr.join("lib/pypy3.9/site.py").is_file(),
        "missing fixture {}; {FIX}",
        usr.display()
    );
    usr
}

/// Debian's pypy3 repackaged by `cargo xtask repackage` into our archive format.
fn debian_archive() -> PathBuf {
    fixtures().join("dist").join(DEBIAN_ARCHIVE)
}

/// The archive under test and what the scenarios expect of it.
struct Subject {
    archive: PathBuf,
    /// `3.9`, `3.11`: what `sys.version_info[:2]` must say.
    python_version: String,
    /// libpypy's file name (`libpypy3.11-c.so`), for the fake homes.
    libpypy_name: String,
    /// The standard library, relative to the top folder (`lib/pypy3.11`).
    stdlib: String,
    /// An unpacked tree of the same PyPy, for the scenarios that take a tree.
    tree: PathBuf,
}

impl Subject {
    /// Reads the archive's manifest; `unpack` is a folder for its extracted tree.
    fn load(unpack: &Path) -> Subject {
        let archive = match std::env::var_os(TEST_ARCHIVE_ENV).filter(|v| !v.is_empty()) {
            Some(path) => std::path::absolute(PathBuf::from(path)).unwrap(),
            None => debian_archive(),
        };
        let fix = if archive == debian_archive() {
            FIX.to_string()
        } else {
            format!("point {TEST_ARCHIVE_ENV} at an archive of our format, or unset it")
        };
        assert!(
            archive.is_file(),
            "missing archive {}; {fix}",
            archive.display()
        );
        let manifest = archive_manifest(&archive);
        let libpypy_name = Path::new(&manifest.paths.libpypy)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // Debian's raw `usr/` is kept for its own archive: it is the only
        // scenario that starts a real PyPy from a non-upstream layout. Any
        // other archive is unpacked once, by the crate itself, and its
        // `pypy/` folder is the tree.
        let tree = if archive == debian_archive() {
            debian_tree()
        } else {
            Builder::new()
                .home(&archive)
                .cache_dir(unpack)
                .find()
                .unwrap_or_else(|e| panic!("unpacking {}: {e}", archive.display()))
                .root
        };
        Subject {
            archive,
            python_version: manifest.python_version,
            libpypy_name,
            stdlib: manifest.paths.stdlib,
            tree,
        }
    }

    /// What the `start` scenario prints for this PyPy.
    fn hello(&self) -> String {
        format!("hello {}", self.python_version)
    }

    fn archive_name(&self) -> &std::ffi::OsStr {
        self.archive.file_name().unwrap()
    }

    /// A tree without manifest that looks like a home of this PyPy:
    /// `bin/<libpypy>` holding `library`, and an empty `lib/pypy<py>/site.py`.
    fn fake_home(&self, dir: &Path, library: &[u8]) -> PathBuf {
        let stdlib = dir.join("lib").join(format!("pypy{}", self.python_version));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(&stdlib).unwrap();
        let libpypy = dir.join("bin").join(&self.libpypy_name);
        std::fs::write(&libpypy, library).unwrap();
        std::fs::write(stdlib.join("site.py"), b"").unwrap();
        libpypy
    }
}

/// `pypy/PYPY.json` read straight from the archive (a multi-member .tar.gz).
fn archive_manifest(archive: &Path) -> Manifest {
    let unreadable = |e: std::io::Error| -> ! {
        panic!(
            "{} is not an archive of our format (a pypy*.tar.gz): {e}; point {TEST_ARCHIVE_ENV} \
             at one built by `cargo xtask build-pypy` or `cargo xtask repackage`",
            archive.display()
        )
    };
    let file = std::fs::File::open(archive).unwrap_or_else(|e| unreadable(e));
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    let wanted = Path::new(TOP_DIR).join(MANIFEST_NAME);
    for entry in tar.entries().unwrap_or_else(|e| unreadable(e)) {
        let mut entry = entry.unwrap_or_else(|e| unreadable(e));
        if entry.path().unwrap_or_else(|e| unreadable(e)) == wanted {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap_or_else(|e| unreadable(e));
            return Manifest::from_json(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", archive.display()));
        }
    }
    unreadable(std::io::Error::other(format!(
        "it has no {}",
        wanted.display()
    )))
}

// ------------------------------------------------------------------ parent

struct Ctx {
    /// A cache shared by the tests that do not care about its state.
    shared_cache: PathBuf,
    scratch: PathBuf,
    subject: Subject,
}

type Test = (&'static str, fn(&Ctx));

const TESTS: &[Test] = &[
    ("discovery_home_env_tree", discovery_home_env_tree),
    ("discovery_explicit_tree", discovery_explicit_tree),
    ("discovery_explicit_archive", discovery_explicit_archive),
    ("discovery_archive_env", discovery_archive_env),
    (
        "discovery_tree_next_to_executable",
        discovery_tree_next_to_executable,
    ),
    (
        "discovery_archive_next_to_executable",
        discovery_archive_next_to_executable,
    ),
    ("discovery_build_time_archive", discovery_build_time_archive),
    (
        "discovery_nothing_found_lists_every_place",
        discovery_nothing_found,
    ),
    ("source_that_succeeds", source_that_succeeds),
    ("source_that_raises_gives_the_traceback", source_that_raises),
    (
        "fast_path_calls_keep_rss_flat_in_steady_state",
        fast_path_rss,
    ),
    (
        "leaking_function_fails_the_memory_test",
        leaking_function_fails_the_memory_test,
    ),
    ("gc_settings_apply_and_bad_ones_start_nothing", gc_settings),
    ("gc_environment_wins_over_the_builder", gc_environment_wins),
    ("four_threads_1000_calls_each", four_threads),
    ("typed_calls_handles_and_typed_rust_functions", typed_calls),
    ("handle_churn_keeps_rss_flat", handle_churn),
    ("rust_callbacks_errors_and_panics", rust_callbacks),
    ("same_home_again_other_home_error", same_and_other_home),
    ("unloadable_library_then_a_good_home", unloadable_then_good),
    (
        "damaged_cache_entry_is_extracted_again",
        damaged_cache_entry,
    ),
    ("eight_processes_extract_once", eight_processes_extract_once),
    (
        "a_binary_with_the_archive_inside_runs_after_the_archive_is_gone",
        embedded_archive_feature,
    ),
];

fn parent() {
    // `cargo test -- NAME` filters; flags such as --nocapture are accepted and ignored.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return;
    }
    let scratch = tempfile::Builder::new()
        .prefix("embed-runtime-scenarios-")
        .tempdir()
        .expect("a temporary folder");
    let ctx = Ctx {
        shared_cache: scratch.path().join("shared-cache"),
        scratch: scratch.path().to_path_buf(),
        subject: Subject::load(&scratch.path().join("unpacked")),
    };
    println!(
        "\ntesting {} (Python {}; trees from {})",
        ctx.subject.archive.display(),
        ctx.subject.python_version,
        ctx.subject.tree.display()
    );
    let selected: Vec<&Test> = TESTS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in selected {
        let start = Instant::now();
        let outcome = std::panic::catch_unwind(|| test(&ctx));
        let took = start.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => println!("test {name} ... ok ({took:.1}s)"),
            Err(_) => {
                println!("test {name} ... FAILED ({took:.1}s)");
                failed.push(*name);
            }
        }
    }
    if failed.is_empty() {
        println!("\ntest result: ok");
    } else {
        println!("\ntest result: FAILED: {}", failed.join(", "));
        std::process::exit(1);
    }
}

/// A child run of this binary (or of `exe`, a copy of it) for `scenario`.
fn child_command(exe: Option<&Path>, scenario: &str, cache: &Path) -> Command {
    let exe = exe
        .map(Path::to_path_buf)
        .unwrap_or_else(|| std::env::current_exe().unwrap());
    let mut cmd = Command::new(exe);
    cmd.env(SCENARIO_ENV, scenario)
        .env(embed_runtime::CACHE_ENV, cache)
        .env_remove(embed_runtime::HOME_ENV)
        .env_remove(embed_runtime::ARCHIVE_ENV)
        .env_remove(EXPLICIT_ENV);
    cmd
}

/// Runs a child, requires success, and returns its `RESULT` lines.
fn expect_success(cmd: &mut Command) -> BTreeMap<String, String> {
    let output = cmd.output().expect("the test binary runs");
    let results = results(&output);
    assert!(
        output.status.success(),
        "child failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    results
}

fn results(output: &Output) -> BTreeMap<String, String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn symlink(target: &Path, link: &Path) {
    #[cfg(unix)]
    std::os::unix::fs::symlink(target, link).unwrap();
    #[cfg(windows)]
    if target.is_dir() {
        std::os::windows::fs::symlink_dir(target, link).unwrap();
    } else {
        std::os::windows::fs::symlink_file(target, link).unwrap();
    }
}

/// A copy of this binary in a folder of its own, for "next to the executable".
fn exe_copy(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let copy = dir.join(exe.file_name().unwrap());
    if std::fs::hard_link(&exe, &copy).is_err() {
        std::fs::copy(&exe, &copy).unwrap();
    }
    copy
}

fn discovery_home_env_tree(ctx: &Ctx) {
    let r = expect_success(
        child_command(None, "start", &ctx.shared_cache)
            .env(embed_runtime::HOME_ENV, &ctx.subject.tree),
    );
    assert_eq!(r["source"], "PYPY_EMBED_HOME");
    assert_eq!(r["printed"], ctx.subject.hello());
    assert_eq!(Path::new(&r["root"]), ctx.subject.tree);
}

fn discovery_explicit_tree(ctx: &Ctx) {
    let r = expect_success(
        child_command(None, "start_explicit", &ctx.shared_cache)
            .env(EXPLICIT_ENV, &ctx.subject.tree)
            // The explicit home wins over the environment.
            .env(embed_runtime::ARCHIVE_ENV, "/nonexistent.tar.gz"),
    );
    assert_eq!(r["source"], "Builder::home");
    assert_eq!(Path::new(&r["root"]), ctx.subject.tree);
}

fn discovery_explicit_archive(ctx: &Ctx) {
    let r = expect_success(
        child_command(None, "start_explicit", &ctx.shared_cache)
            .env(EXPLICIT_ENV, &ctx.subject.archive),
    );
    assert_eq!(r["source"], "Builder::home");
    assert!(
        r["root"].starts_with(ctx.shared_cache.to_str().unwrap()),
        "{r:?}"
    );
    assert_eq!(r["archive"], ctx.subject.archive.display().to_string());
}

fn discovery_archive_env(ctx: &Ctx) {
    let r = expect_success(
        child_command(None, "start", &ctx.shared_cache)
            .env(embed_runtime::ARCHIVE_ENV, &ctx.subject.archive),
    );
    assert_eq!(r["source"], "PYPY_EMBED_ARCHIVE");
    assert_eq!(r["printed"], ctx.subject.hello());
}

fn discovery_tree_next_to_executable(ctx: &Ctx) {
    let dir = ctx.scratch.join("beside-tree");
    let exe = exe_copy(&dir);
    symlink(&ctx.subject.tree, &dir.join("pypy"));
    let r = expect_success(&mut child_command(Some(&exe), "start", &ctx.shared_cache));
    assert_eq!(r["source"], "next to the executable");
    assert_eq!(Path::new(&r["root"]), dir.join("pypy"));
}

fn discovery_archive_next_to_executable(ctx: &Ctx) {
    let dir = ctx.scratch.join("beside-archive");
    let exe = exe_copy(&dir);
    symlink(&ctx.subject.archive, &dir.join(ctx.subject.archive_name()));
    let r = expect_success(&mut child_command(Some(&exe), "start", &ctx.shared_cache));
    assert_eq!(r["source"], "next to the executable");
    assert_eq!(
        r["archive"],
        dir.join(ctx.subject.archive_name()).display().to_string()
    );
}

fn discovery_build_time_archive(ctx: &Ctx) {
    let archive = embed_runtime::build_time_archive().unwrap_or_else(|| {
        panic!(
            "the build script found no archive; run `cargo xtask repackage` (which writes dist/) \
             or build with PYPY_EMBED_BUILD_ARCHIVE={}",
            ctx.subject.archive.display()
        )
    });
    let r = expect_success(&mut child_command(None, "start", &ctx.shared_cache));
    assert_eq!(r["source"], "archive found at build time");
    assert_eq!(r["archive"], archive.display().to_string());
}

fn discovery_nothing_found(ctx: &Ctx) {
    let exe = exe_copy(&ctx.scratch.join("alone"));
    let r = expect_success(&mut child_command(
        Some(&exe),
        "nothing_found",
        &ctx.shared_cache,
    ));
    let message = &r["message"];
    for place in [
        "$PYPY_EMBED_HOME",
        "$PYPY_EMBED_ARCHIVE",
        &format!("{}/pypy", exe.parent().unwrap().display()),
        &format!("{}.tar.gz", env!("EMBED_RUNTIME_TARGET")),
        "archive found at build time",
        "embedded in the binary",
    ] {
        assert!(message.contains(place), "{place:?} missing from: {message}");
    }
}

fn source_that_succeeds(ctx: &Ctx) {
    let r = expect_success(
        child_command(None, "run_ok", &ctx.shared_cache)
            .env(embed_runtime::ARCHIVE_ENV, &ctx.subject.archive),
    );
    assert_eq!(r["sum"], "5050");
}

fn source_that_raises(ctx: &Ctx) {
    let r = expect_success(
        child_command(None, "raises", &ctx.shared_cache)
            .env(embed_runtime::ARCHIVE_ENV, &ctx.subject.archive),
    );
    assert_eq!(r["type"], "ZeroDivisionError");
}

/// Calls per measured batch of the steady-state memory test.
const BATCH: u32 = 100_000;
/// Most RSS the second of two equal batches may add. A Python function
/// that keeps a few hundred bytes per call adds tens of megabytes per batch;
/// one that keeps nothing adds nothing once the nursery has been cycled.
const STEADY_LIMIT_KB: i64 = 2 * 1024;

/// Runs the steady-state memory child on `function` and returns its figures.
fn steady_state(ctx: &Ctx, function: &str) -> BTreeMap<String, String> {
    expect_success(
        child_command(None, "steady_rss", &ctx.shared_cache)
            .env(embed_runtime::ARCHIVE_ENV, &ctx.subject.archive)
            .env("EMBED_TEST_FUNCTION", function)
            // The default nursery must hold whatever the machine's CPU reports.
            .env_remove("PYPY_GC_NURSERY"),
    )
}

/// The verdict on two equal batches measured after the nursery was cycled:
/// memory that keeps growing in the second is a leak, whatever the CPU.
fn assess_steady_state(r: &BTreeMap<String, String>) -> Result<(), String> {
    let first: i64 = r["rss_growth_first_kb"].parse().unwrap();
    let second: i64 = r["rss_growth_second_kb"].parse().unwrap();
    let figures = format!(
        "RSS grew by {first} kB over the first and {second} kB over the second batch of \
         {BATCH} calls (limit {STEADY_LIMIT_KB} kB), measured after {} warm-up calls \
         cycled the {} kB nursery {} times; GC: {}",
        r["warmup_calls"], r["nursery_kb"], r["minor_collections_warmup"], r["memory"]
    );
    if second > STEADY_LIMIT_KB {
        Err(figures)
    } else {
        Ok(())
    }
}

fn fast_path_rss(ctx: &Ctx) {
    let r = steady_state(ctx, "echo_upper");
    if let Err(figures) = assess_steady_state(&r) {
        panic!("memory grows in steady state: {figures}");
    }
    println!("  steady state: {}", assess_figures(&r));
    // The default nursery is ours, not the CPU's last-level cache.
    let nursery: u64 = r["nursery_kb"].parse().unwrap();
    let expected = embed_runtime::default_nursery_size(embed_runtime::l2_cache_size()) / 1024;
    assert_eq!(nursery, expected, "the default nursery, in kB");
    assert!(nursery * 1024 <= embed_runtime::DEFAULT_NURSERY_CAP);
}

fn assess_figures(r: &BTreeMap<String, String>) -> String {
    format!(
        "+{} kB then +{} kB per {BATCH} calls, nursery {} kB",
        r["rss_growth_first_kb"], r["rss_growth_second_kb"], r["nursery_kb"]
    )
}

/// The same measurement must catch a real leak.
fn leaking_function_fails_the_memory_test(ctx: &Ctx) {
    let r = steady_state(ctx, "leak");
    let figures = assess_steady_state(&r).expect_err(&format!(
        "a function that keeps every argument passed the steady-state test: {}",
        assess_figures(&r)
    ));
    assert!(figures.contains("second batch"), "{figures}");
    println!("  leak caught: {}", assess_figures(&r));
}

fn gc_settings(ctx: &Ctx) {
    let r = expect_success(
        child_command(None, "gc_settings", &ctx.shared_cache)
            .env(embed_runtime::ARCHIVE_ENV, &ctx.subject.archive)
            .env_remove("PYPY_GC_NURSERY")
            .env_remove("PYPY_GC_MAX"),
    );
    assert_eq!(r["nursery"], (2u64 << 20).to_string());
    assert_eq!(r["env_seen_by_python"], "None");
    assert_eq!(r["over_the_cap"], "MemoryError");
    for key in ["zero_nursery", "unit", "max_below_nursery"] {
        assert!(r[key].contains("Nothing was started"), "{key}: {}", r[key]);
    }
}

fn gc_environment_wins(ctx: &Ctx) {
    let r = expect_success(
        child_command(None, "gc_env_wins", &ctx.shared_cache)
            .env(embed_runtime::ARCHIVE_ENV, &ctx.subject.archive)
            .env("PYPY_GC_NURSERY", "3MB"),
    );
    assert_eq!(r["nursery"], (3u64 << 20).to_string());
    // A variable the host set itself stays, for its child processes too.
    assert_eq!(r["env_seen_by_python"], "3MB");

    let r = expect_success(
        child_command(None, "gc_env_bad", &ctx.shared_cache)
            .env(embed_runtime::ARCHIVE_ENV, &ctx.subject.archive)
            .env("PYPY_GC_MAX", "64MiB"),
    );
    assert!(
        r["error"].contains("PYPY_GC_MAX (from the environment)") && r["error"].contains("64MiB"),
        "{}",
        r["error"]
    );
}

fn typed_calls(ctx: &Ctx) {
    let r = expect_success(
        child_command(None, "typed", &ctx.shared_cache)
            .env(embed_runtime::ARCHIVE_ENV, &ctx.subject.archive),
    );
    assert_eq!(r["done"], "true");
}

fn handle_churn(ctx: &Ctx) {
    let r = expect_success(
        child_command(None, "handle_churn", &ctx.shared_cache)
            .env(embed_runtime::ARCHIVE_ENV, &ctx.subject.archive)
            .env_remove("PYPY_GC_NURSERY"),
    );
    let first: i64 = r["rss_growth_first_kb"].parse().unwrap();
    let second: i64 = r["rss_growth_second_kb"].parse().unwrap();
    assert!(
        second <= STEADY_LIMIT_KB,
        "RSS grew by {first} kB, then {second} kB over two batches of {} handles created \
         and dropped (limit {STEADY_LIMIT_KB} kB); GC: {}",
        r["batch"],
        r["memory"]
    );
    println!(
        "  handle churn: +{first} kB then +{second} kB per {} handles",
        r["batch"]
    );
}

fn four_threads(ctx: &Ctx) {
    let r = expect_success(
        child_command(None, "threads", &ctx.shared_cache)
            .env(embed_runtime::ARCHIVE_ENV, &ctx.subject.archive),
    );
    assert_eq!(r["calls"], "4000");
}

fn rust_callbacks(ctx: &Ctx) {
    let r = expect_success(
        child_command(None, "rust_callbacks", &ctx.shared_cache)
            .env(embed_runtime::ARCHIVE_ENV, &ctx.subject.archive),
    );
    assert!(
        r["panic"].contains("RustPanic") && r["panic"].contains("deliberate"),
        "{r:?}"
    );
    assert_eq!(r["alive"], "yes");
}

fn same_and_other_home(ctx: &Ctx) {
    let other = ctx.scratch.join("other-home");
    ctx.subject.fake_home(&other, b"");
    let r = expect_success(
        child_command(None, "same_and_other_home", &ctx.shared_cache)
            .env(EXPLICIT_ENV, &ctx.subject.tree)
            .env("EMBED_TEST_OTHER", &other),
    );
    assert_eq!(r["same"], "yes");
    assert!(r["other"].contains("already runs"), "{r:?}");
}

fn unloadable_then_good(ctx: &Ctx) {
    let broken = ctx.scratch.join("broken-home");
    let libpypy = ctx.subject.fake_home(&broken, b"not a library");
    let r = expect_success(
        child_command(None, "unloadable_then_good", &ctx.shared_cache)
            .env("EMBED_TEST_BROKEN", &broken)
            .env(EXPLICIT_ENV, &ctx.subject.tree),
    );
    assert!(r["load_error"].contains("cannot load libpypy"), "{r:?}");
    assert!(
        r["load_error"].contains(&libpypy.display().to_string()),
        "{r:?}"
    );
    assert_eq!(r["printed"], ctx.subject.hello());
}

fn damaged_cache_entry(ctx: &Ctx) {
    let cache = ctx.scratch.join("damaged-cache");
    let start = || {
        expect_success(
            child_command(None, "start", &cache)
                .env(embed_runtime::ARCHIVE_ENV, &ctx.subject.archive),
        )
    };
    let first = start();
    assert_eq!(first["extracted_now"], "true");
    let top = PathBuf::from(&first["root"]);
    // Rewrite one file (same size, new mtime) and delete another.
    let stdlib = top.join(&ctx.subject.stdlib);
    let os_py = stdlib.join("os.py");
    let text = std::fs::read(&os_py).unwrap();
    std::fs::write(&os_py, vec![b'#'; text.len()]).unwrap();
    std::fs::remove_file(stdlib.join("json/decoder.py")).unwrap();

    let second = start();
    assert_eq!(second["extracted_now"], "true", "{second:?}");
    assert!(second["repaired"].contains("json/decoder.py"), "{second:?}");
    assert_eq!(std::fs::read(&os_py).unwrap(), text);
    assert!(stdlib.join("json/decoder.py").is_file());

    let third = start();
    assert_eq!(third["extracted_now"], "false");

    // A start checks libpypy's folder before loading it: a touched libpypy
    // is extracted again first.
    let manifest_text = std::fs::read_to_string(top.join("PYPY.json")).unwrap();
    let manifest = embed_runtime::manifest::Manifest::from_json(&manifest_text).unwrap();
    let libpypy = top.join(&manifest.paths.libpypy);
    let bytes = std::fs::read(&libpypy).unwrap();
    std::fs::write(&libpypy, &bytes).unwrap();
    let name = libpypy.file_name().unwrap().to_string_lossy().into_owned();
    let fourth = start();
    assert_eq!(fourth["extracted_now"], "true", "{fourth:?}");
    assert!(fourth["repaired"].contains(&name), "{fourth:?}");
    assert_eq!(fourth["printed"], ctx.subject.hello());

    // A module PyPy does not read while starting is checked when imported:
    // the start does not look at it, its import fails and says why, and the
    // next start extracts the archive again.
    let import_json = || {
        expect_success(
            child_command(None, "import_json", &cache)
                .env(embed_runtime::ARCHIVE_ENV, &ctx.subject.archive),
        )
    };
    let decoder = stdlib.join("json/decoder.py");
    let text = std::fs::read(&decoder).unwrap();
    std::fs::write(&decoder, vec![b'#'; text.len()]).unwrap();
    let fifth = import_json();
    assert_eq!(fifth["extracted_now"], "false", "{fifth:?}");
    assert!(
        fifth["import_json"].contains("json/decoder.py")
            && fifth["import_json"].contains("the next start extracts the archive again"),
        "{fifth:?}"
    );
    let sixth = import_json();
    assert_eq!(sixth["extracted_now"], "true", "{sixth:?}");
    assert!(sixth["repaired"].contains("json/decoder.py"), "{sixth:?}");
    assert_eq!(sixth["import_json"], "ok", "{sixth:?}");
    assert_eq!(std::fs::read(&decoder).unwrap(), text);

    // A module installed into the tree is not damage, neither at the start
    // after it (a full check, as its folder changed) nor later.
    let added = stdlib.join("installed_later.py");
    std::fs::write(&added, "x = 1\n").unwrap();
    for _ in 0..2 {
        let again = import_json();
        assert_eq!(again["extracted_now"], "false", "{again:?}");
        assert_eq!(again["import_json"], "ok", "{again:?}");
    }
    assert!(added.is_file());
}

fn eight_processes_extract_once(ctx: &Ctx) {
    let cache = ctx.scratch.join("concurrent-cache");
    let children: Vec<_> = (0..8)
        .map(|_| {
            child_command(None, "start", &cache)
                .env(embed_runtime::ARCHIVE_ENV, &ctx.subject.archive)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut extracted = 0;
    let mut roots = Vec::new();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "a child failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let r = results(&output);
        assert_eq!(r["printed"], ctx.subject.hello());
        if r["extracted_now"] == "true" {
            extracted += 1;
        }
        roots.push(r["root"].clone());
    }
    assert_eq!(extracted, 1, "{extracted} processes extracted the archive");
    roots.dedup();
    assert_eq!(roots.len(), 1, "{roots:?}");
    let leftovers: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp") || n.starts_with(".trash"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ------------------------------------------------------------------- child

fn child(name: &str) {
    match name {
        "start" => report(embed_runtime::start().expect("start")),
        "import_json" => {
            let rt = embed_runtime::start().expect("start");
            report(rt);
            match rt.run("import json\nassert json.loads('[1]') == [1]") {
                Ok(()) => result("import_json", "ok"),
                Err(e) => result("import_json", e),
            }
        }
        "start_explicit" => {
            let path = std::env::var_os(EXPLICIT_ENV).expect("EMBED_TEST_EXPLICIT");
            report(Builder::new().home(path).start().expect("start"));
        }
        "nothing_found" => child_nothing_found(),
        "run_ok" => child_run_ok(),
        "raises" => child_raises(),
        "steady_rss" => child_steady_rss(),
        "gc_settings" => child_gc_settings(),
        "gc_env_wins" => {
            let rt = Builder::new().nursery("2MB").start().expect("start");
            result("nursery", rt.memory().expect("memory").nursery);
            result("env_seen_by_python", python_env(rt, "PYPY_GC_NURSERY"));
        }
        "gc_env_bad" => match Builder::new().start() {
            Err(e @ Error::GcSetting { .. }) => result("error", e),
            other => panic!("expected a GcSetting error, got {other:?}"),
        },
        "threads" => child_threads(),
        "typed" => child_typed(),
        "handle_churn" => child_handle_churn(),
        "rust_callbacks" => child_rust_callbacks(),
        "same_and_other_home" => child_same_and_other_home(),
        "unloadable_then_good" => {
            let broken = std::env::var_os("EMBED_TEST_BROKEN").unwrap();
            match Builder::new().home(broken).start() {
                Err(e @ Error::Load { .. }) => result("load_error", e),
                other => panic!("expected a load error, got {other:?}"),
            }
            // Nothing was initialised, so another home may still start.
            let good = std::env::var_os(EXPLICIT_ENV).unwrap();
            report(
                Builder::new()
                    .home(good)
                    .start()
                    .expect("start after a load error"),
            );
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn result(key: &str, value: impl std::fmt::Display) {
    let value = value.to_string().replace('\n', "\\n");
    println!("RESULT {key}={value}");
}

/// Prints where PyPy came from and what Python printed.
fn report(rt: &'static embed_runtime::Runtime) {
    let home = rt.home();
    result("source", home.source.describe());
    result("root", home.root.display());
    if let Some(archive) = &home.archive {
        result(
            "archive",
            archive
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        );
        result("extracted_now", archive.extracted_now);
        result("repaired", archive.repaired.as_deref().unwrap_or(""));
    }
    rt.run("import sys\ndef greeting(_):\n    return 'hello %d.%d' % sys.version_info[:2]")
        .expect("run");
    let greeting = rt.function("__main__", "greeting").expect("lookup");
    result("printed", greeting.call_str("").expect("call"));
}

fn child_nothing_found() {
    let mut builder = Builder::new();
    if embed_runtime::build_time_archive().is_some() {
        // An archive found at build time is a home; this scenario is about having none.
        builder = builder.skip(Source::BuildTime);
    }
    match builder.start() {
        Err(error @ Error::NotFound { .. }) => result("message", error),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

fn child_run_ok() {
    let rt = embed_runtime::start().expect("start");
    rt.run("total = sum(range(101))").expect("run");
    // Successive runs share __main__.
    rt.run("import embed_runtime\nembed_runtime.call('report', str(total))")
        .unwrap_err();
    embed_runtime::register_str("report", |s| {
        result("sum", s);
        Ok(String::new())
    });
    rt.run("embed_runtime.call('report', str(total))")
        .expect("run");
    // The raw call works too, and reports only a code.
    rt.execute_source_raw("x = 1").expect("raw");
    assert!(matches!(
        rt.execute_source_raw("1/0"),
        Err(Error::ExecuteSource(-1))
    ));
}

fn child_raises() {
    let rt = embed_runtime::start().expect("start");
    let source = "\
def inner(x):
    return 1 / x

def failing_function(data):
    return inner(0)
";
    rt.run(source).expect("definitions run");
    let error = rt.run("failing_function(b'')").unwrap_err();
    let py = error.python().expect("a Python error").clone();
    result("type", &py.type_name);
    assert_eq!(py.message, "division by zero");
    for needle in [
        "Traceback (most recent call last)",
        "line 5, in failing_function",
        "line 2, in inner",
        "return 1 / x",
        "ZeroDivisionError: division by zero",
    ] {
        assert!(
            py.traceback.contains(needle),
            "{needle:?} missing from:\n{}",
            py.traceback
        );
    }
    // The bridge's own frames are not shown.
    assert!(!py.traceback.contains("bootstrap"), "{}", py.traceback);

    // The same through the fast path.
    let f = rt.function("__main__", "failing_function").expect("lookup");
    let py = f
        .call_bytes(b"x")
        .unwrap_err()
        .python()
        .expect("a Python error")
        .clone();
    assert!(py.traceback.contains("in failing_function") && py.traceback.contains("in inner"));

    // Errors of other kinds come back the same way.
    let e = rt.run("def broken(:\n  pass").unwrap_err();
    assert_eq!(e.python().unwrap().type_name, "SyntaxError");
    let e = rt.function("no_such_module_here", "f").unwrap_err();
    assert_eq!(e.python().unwrap().type_name, "ModuleNotFoundError");
    let e = rt.function("json", "no_such_function").unwrap_err();
    assert_eq!(e.python().unwrap().type_name, "AttributeError");
    let e = rt.function("sys", "version").unwrap_err();
    assert!(
        e.python().unwrap().message.contains("not a function"),
        "{e}"
    );
    rt.run("def number(_): return 5").unwrap();
    let e = rt
        .function("__main__", "number")
        .unwrap()
        .call_bytes(b"")
        .unwrap_err();
    assert!(e.to_string().contains("return bytes, str or None"), "{e}");
    // sys.exit() is an exception like any other: the host decides.
    let e = rt.run("import sys; sys.exit(3)").unwrap_err();
    assert_eq!(e.python().unwrap().type_name, "SystemExit");
    // Non-builtin exception types carry their module.
    rt.run("import json").unwrap();
    let e = rt.run("json.loads('{')").unwrap_err();
    assert_eq!(
        e.python().unwrap().type_name,
        "json.decoder.JSONDecodeError"
    );
}

fn rss_kb() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Most warm-up calls before giving up on seeing the nursery cycled.
const MAX_WARMUP_CALLS: u32 = 5_000_000;

fn child_steady_rss() {
    let rt = embed_runtime::start().expect("start");
    rt.run(
        "kept = []\n\
         def echo_upper(data):\n    return data.upper()\n\
         def leak(data):\n    kept.append(data * 64)\n    return data.upper()\n",
    )
    .unwrap();
    let name = std::env::var("EMBED_TEST_FUNCTION").expect("EMBED_TEST_FUNCTION");
    let f = rt.function("__main__", &name).unwrap();
    let mut out = Vec::new();
    let mut call = |i: u32| {
        let arg = i.to_le_bytes();
        f.call_bytes_into(&arg, &mut out).unwrap();
        assert_eq!(out, arg.to_ascii_uppercase());
    };
    // Steady state: the JIT has compiled the call path and every page of the
    // nursery has been touched, which takes at least two minor collections.
    let mut warmup = 0;
    while warmup < 20_000 || rt.memory().unwrap().minor_collections < 2 {
        for _ in 0..1_000 {
            call(warmup);
            warmup += 1;
        }
        assert!(
            warmup < MAX_WARMUP_CALLS,
            "the nursery was not cycled after {warmup} calls: {}",
            rt.memory().unwrap()
        );
    }
    let stats = rt.memory().unwrap();
    result("warmup_calls", warmup);
    result("minor_collections_warmup", stats.minor_collections);
    result("nursery_kb", stats.nursery / 1024);
    let before = rss_kb();
    for i in 0..BATCH {
        call(i);
    }
    let middle = rss_kb();
    for i in 0..BATCH {
        call(i);
    }
    let after = rss_kb();
    result("rss_growth_first_kb", middle - before);
    result("rss_growth_second_kb", after - middle);
    result("memory", rt.memory().unwrap());
}

/// `os.environ.get(name)` as Python sees it, `None` when unset.
fn python_env(rt: &'static embed_runtime::Runtime, name: &str) -> String {
    rt.run(&format!(
        "import os\ndef env_value(_):\n    return str(os.environ.get({name:?}))"
    ))
    .unwrap();
    rt.function("__main__", "env_value")
        .unwrap()
        .call_str("")
        .unwrap()
}

fn child_gc_settings() {
    // Each bad setting is refused before anything starts ...
    let refused = |key: &str, builder: Builder| match builder.start() {
        Err(e @ Error::GcSetting { .. }) => {
            assert!(embed_runtime::running().is_none());
            result(key, e);
        }
        other => panic!("{key}: expected a GcSetting error, got {other:?}"),
    };
    refused("zero_nursery", Builder::new().nursery(0));
    refused("unit", Builder::new().nursery("4MiB"));
    refused(
        "max_below_nursery",
        Builder::new().nursery("8MB").max_heap("4MB"),
    );
    // ... so that a good start still works in the same process.
    let rt = Builder::new()
        .nursery("2MB")
        .max_heap("96MB")
        .start()
        .expect("start");
    let stats = rt.memory().unwrap();
    result("nursery", stats.nursery);
    result("env_seen_by_python", python_env(rt, "PYPY_GC_NURSERY"));
    // The cap holds: growing past it raises MemoryError, which Python can catch.
    rt.run(
        "def grow(_):\n\
         \x20   kept = []\n\
         \x20   try:\n\
         \x20       for i in range(50_000_000):\n\
         \x20           kept.append(b'%d' % i)\n\
         \x20   except MemoryError:\n\
         \x20       del kept[:]\n\
         \x20       return 'MemoryError'\n\
         \x20   return 'no error with %d objects' % len(kept)\n",
    )
    .unwrap();
    let grow = rt.function("__main__", "grow").unwrap();
    result("over_the_cap", grow.call_str("").unwrap());
    result("memory_after", rt.memory().unwrap());
}

fn child_typed() {
    use std::collections::{BTreeMap, HashMap};

    use serde::Deserialize;

    let rt = embed_runtime::start().expect("start");
    rt.run(
        "import traceback\n\
         def score(n, tag):\n    return {tag: n * 1.5, 'twice': float(n * 2), 'one': 1}\n\
         def echo(*args, **kwargs):\n    return [args, kwargs]\n\
         def kinds(x):\n    return type(x).__name__\n\
         def big():\n    return 2 ** 70\n\
         def odd():\n    return object()\n\
         def fails(x):\n    raise ValueError('bad %r' % (x,))\n\
         def shown(*args, **kwargs):\n    return repr((args, kwargs))\n\
         def record():\n    return {'name': 'r', 'scores': [1.0, 2.5], 'shape': {'Rect': {'w': 2, 'h': 3}}, 'data': b'\\x00\\xff', 'nested': (1, [2, {3: None}])}\n",
    )
    .unwrap();
    let f = |name: &str| rt.function("__main__", name).unwrap();

    // The issue's example.
    let s: HashMap<String, f64> = f("score").call((42, "x")).unwrap();
    assert_eq!(s["x"], 63.0);
    assert_eq!(s["twice"], 84.0);
    assert_eq!(s["one"], 1.0);

    // Every type, Rust to Python: what Python sees.
    let kind = |v: &dyn erased::Value| -> String { v.kind(&f("kinds")) };
    assert_eq!(kind(&()), "NoneType");
    assert_eq!(kind(&None::<i32>), "NoneType");
    assert_eq!(kind(&true), "bool");
    assert_eq!(kind(&7u8), "int");
    assert_eq!(kind(&(1u128 << 100)), "int");
    assert_eq!(kind(&1.5f32), "float");
    assert_eq!(kind(&"s"), "str");
    assert_eq!(kind(&'c'), "str");
    assert_eq!(kind(&serde_bytes::ByteBuf::from(vec![1])), "bytes");
    assert_eq!(kind(&vec![1, 2]), "list");
    assert_eq!(kind(&(1, 2)), "tuple");
    assert_eq!(kind(&BTreeMap::from([("a", 1)])), "dict");

    // And back: a Python structure read as Rust types.
    #[derive(Debug, Deserialize, PartialEq)]
    enum Shape {
        Rect { w: u32, h: u32 },
    }
    #[derive(Debug, Deserialize)]
    struct Record {
        name: String,
        scores: Vec<f64>,
        shape: Shape,
        data: serde_bytes::ByteBuf,
        nested: (i64, (u8, HashMap<i32, Option<String>>)),
    }
    let r: Record = f("record").call(()).unwrap();
    assert_eq!(
        (r.name.as_str(), r.scores.as_slice()),
        ("r", &[1.0, 2.5][..])
    );
    assert_eq!(r.shape, Shape::Rect { w: 2, h: 3 });
    assert_eq!(r.data.as_slice(), b"\x00\xff");
    assert_eq!(r.nested.1 .1[&3], None);
    let big: u128 = f("big").call(()).unwrap();
    assert_eq!(big, 1 << 70);

    // Arguments: one value, a tuple, keyword arguments.
    let echoed: (Vec<i32>, BTreeMap<String, String>) = f("echo")
        .call_kw((1, 2), Some(&BTreeMap::from([("sep", ",")])))
        .unwrap();
    assert_eq!(echoed.0, [1, 2]);
    assert_eq!(echoed.1["sep"], ",");
    let one: (Vec<Vec<i32>>, HashMap<String, i32>) = f("echo").call(vec![5]).unwrap();
    assert_eq!(one.0, [vec![5]]);

    // Arguments that are all ints, floats and strs are read in place by the
    // bootstrap, others by marshal.loads: both must give Python the same.
    let shown = f("shown");
    let show = |text: String, expected: &str| assert_eq!(text, expected);
    show(shown.call((1, 2.5, "é€")).unwrap(), "((1, 2.5, 'é€'), {})");
    show(shown.call(()).unwrap(), "((), {})");
    show(shown.call(("",)).unwrap(), "(('',), {})");
    show(
        shown.call((i32::MIN, i32::MAX, -0.0)).unwrap(),
        "((-2147483648, 2147483647, -0.0), {})",
    );
    show(shown.call((7, "x")).unwrap(), "((7, 'x'), {})");
    show(
        shown.call((1, 2.0, 3, 4, "five")).unwrap(),
        "((1, 2.0, 3, 4, 'five'), {})",
    );
    show(shown.call((1i64 << 40,)).unwrap(), "((1099511627776,), {})");
    show(
        shown.call((1, 2, 3, 1i64 << 40)).unwrap(),
        "((1, 2, 3, 1099511627776), {})",
    );
    show(shown.call((true, 1)).unwrap(), "((True, 1), {})");
    show(
        shown
            .call_kw((1, "a"), Some(&BTreeMap::from([("k", 2.0)])))
            .unwrap(),
        "((1, 'a'), {'k': 2.0})",
    );

    // Plain results (a flat dict with str keys, list or tuple of None, bool,
    // 32-bit int, float and str, or one such value) are written by the
    // bootstrap itself: byte for byte what marshal.dumps writes, and only
    // for those shapes.
    rt.run(
        r#"
import embed_runtime, marshal
plain = [None, True, False, 0, -1, 2**31 - 1, -2**31, 1.5, -0.0, float('inf'),
         '', 'é€\U0001f600', 'a\udc80b',
         {'a': 1.0, 'b': 'x', 'c': None, 'd': False, 'é': -7}, {}, [], (),
         [1, 2.5, 's', True], ('t', None)]
for v in plain:
    got = embed_runtime._plain_marshal(v)
    assert got == marshal.dumps(v, 2), (v, got, marshal.dumps(v, 2))
for v in [2**31, -2**31 - 1, b'b', [[1]], {1: 2}, {'a': [1]}, (1, (2,)),
          object(), 1j, {"a": object()}, 'x' * 5000, ['y' * 3000, 'z' * 3000]]:
    assert embed_runtime._plain_marshal(v) is None, v
def plain_result(i):
    return plain[i]
def too_long_for_the_buffer():
    return ['y' * 3000, 'z' * 3000]
"#,
    )
    .unwrap();
    let plain_result = f("plain_result");
    let m: HashMap<String, serde_json::Value> = plain_result.call((13,)).unwrap();
    assert_eq!(m["a"], 1.0);
    assert_eq!(m["b"], "x");
    assert_eq!(
        (m["c"].is_null(), &m["d"], &m["é"]),
        (true, &false.into(), &(-7).into())
    );
    let s: String = plain_result.call((11,)).unwrap();
    assert_eq!(s, "é€😀");
    let l: (i32, f64, String, bool) = plain_result.call((17,)).unwrap();
    assert_eq!(l, (1, 2.5, "s".to_string(), true));
    let t: (String, Option<i32>) = plain_result.call((18,)).unwrap();
    assert_eq!(t, ("t".to_string(), None));
    let n: i32 = plain_result.call((6,)).unwrap();
    assert_eq!(n, i32::MIN);
    let long: Vec<String> = f("too_long_for_the_buffer").call(()).unwrap();
    assert_eq!((long[0].len(), long[1].len()), (3000, 3000));

    // Bad results, named: Python type, Rust type, place.
    let e = f("big").call::<_, i64>(()).unwrap_err().to_string();
    assert!(
        e.contains("does not fit i64") && e.contains("__main__.big"),
        "{e}"
    );
    let e = f("record").call::<_, Record2>(()).unwrap_err().to_string();
    assert!(
        e.contains("scores[0]: expected i64, got Python float 1.0") && e.contains("Record2"),
        "{e}"
    );
    let e = f("odd").call::<_, ()>(()).unwrap_err();
    let py = e.python().expect("a Python TypeError").clone();
    assert_eq!(py.type_name, "TypeError");
    assert!(py.message.contains("builtins.object"), "{py:?}");
    // A NaN key never reaches Python.
    let e = f("kinds")
        .call::<_, String>((NanKeyed,))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("argument 1") && e.contains("NaN cannot be a dict key"),
        "{e}"
    );

    // Python exceptions keep type, message and traceback.
    let e = f("fails").call::<_, ()>(("x",)).unwrap_err();
    let py = e.python().unwrap();
    assert_eq!(py.type_name, "ValueError");
    assert_eq!(py.message, "bad 'x'");
    assert!(py.traceback.contains("in fails"), "{}", py.traceback);

    // Handles.
    let json = rt.import("json").unwrap();
    let dumps = json.getattr("dumps").unwrap();
    let text: String = dumps
        .call_kw(
            (BTreeMap::from([("b", 1), ("a", 2)]),),
            Some(&BTreeMap::from([("sort_keys", true)])),
        )
        .unwrap()
        .extract()
        .unwrap();
    assert_eq!(text, r#"{"a": 2, "b": 1}"#);
    let parsed = json.call_method("loads", ("[1, 2.5, null]",)).unwrap();
    let list: (i32, f64, Option<i32>) = parsed.extract().unwrap();
    assert_eq!(list, (1, 2.5, None));
    assert_eq!(parsed.repr().unwrap(), "[1, 2.5, None]");
    assert!(json.str().unwrap().contains("module 'json'"));
    let e = json.getattr("no_such_thing").unwrap_err();
    assert_eq!(e.python().unwrap().type_name, "AttributeError");
    let e = rt.import("no_such_module_here").unwrap_err();
    assert_eq!(e.python().unwrap().type_name, "ModuleNotFoundError");
    let as_object = f("score").object().unwrap();
    let via_handle: HashMap<String, f64> = as_object.call((2, "y")).unwrap().extract().unwrap();
    assert_eq!(via_handle["y"], 3.0);

    // Handles are Send + Sync and work from any thread.
    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(&json);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let dumps = &dumps;
            scope.spawn(move || {
                // Enough calls that two threads asking for a handle at
                // the same moment happen in every run.
                for i in 0..1000 {
                    let s: String = dumps.call((vec![t, i],)).unwrap().extract().unwrap();
                    assert_eq!(s, format!("[{t}, {i}]"));
                }
            });
        }
    });

    // Rust functions with typed signatures.
    embed_runtime::register_typed("add", |a: i64, b: i64| {
        Ok::<_, embed_runtime::BoxError>(a + b)
    });
    embed_runtime::register_typed("greet", |name: String, times: usize| {
        Ok::<_, embed_runtime::BoxError>(serde_bytes::ByteBuf::from(
            name.repeat(times).into_bytes(),
        ))
    });
    embed_runtime::register_typed("boom", |_: i32| -> Result<i32, embed_runtime::BoxError> {
        panic!("typed boom")
    });
    rt.run(
        "import embed_runtime\n\
         assert embed_runtime.call('add', 1, 2) == 3, embed_runtime.call('add', 1, 2)\n\
         assert embed_runtime.call('add', 2**40, -1) == 2**40 - 1\n\
         assert embed_runtime.call('greet', 'ab', 2) == b'abab'\n\
         try:\n    embed_runtime.call('add', 1, 'x')\nexcept embed_runtime.RustError as e:\n    err = str(e)\n\
         assert 'argument 2' in err and 'expected i64' in err and 'str' in err, err\n\
         try:\n    embed_runtime.call('add', 1)\nexcept embed_runtime.RustError as e:\n    err = str(e)\n\
         assert 'takes 2 argument' in err, err\n\
         try:\n    embed_runtime.call('boom', 1)\nexcept embed_runtime.RustPanic as e:\n    err = str(e)\n\
         assert 'typed boom' in err, err\n",
    )
    .unwrap();
    result("done", true);
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Record2 {
    scores: Vec<i64>,
}

/// A map whose one key is NaN.
struct NanKeyed;

impl serde::Serialize for NanKeyed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(&f64::NAN, &1)?;
        m.end()
    }
}

/// Calls `kinds` (which returns the Python type's name) on any value.
mod erased {
    pub trait Value {
        fn kind(&self, f: &embed_runtime::Function) -> String;
    }
    impl<T: serde::Serialize> Value for T {
        fn kind(&self, f: &embed_runtime::Function) -> String {
            f.call((self,)).unwrap()
        }
    }
}

fn child_handle_churn() {
    let rt = embed_runtime::start().expect("start");
    let json = rt.import("json").unwrap();
    let batch = 100_000;
    let churn = || {
        for _ in 0..batch {
            drop(json.getattr("dumps").unwrap());
        }
    };
    // Steady state first: the JIT and the nursery are warm.
    churn();
    let before = rss_kb();
    churn();
    let middle = rss_kb();
    churn();
    let after = rss_kb();
    result("batch", batch);
    result("rss_growth_first_kb", middle - before);
    result("rss_growth_second_kb", after - middle);
    result("memory", rt.memory().unwrap());
}

fn child_threads() {
    let rt = embed_runtime::start().expect("start");
    rt.run("def tag(data):\n    return data + b':' + str(len(data)).encode()")
        .unwrap();
    let f = rt.function("__main__", "tag").unwrap();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (f, calls) = (&f, &calls);
            s.spawn(move || {
                for i in 0..1_000 {
                    let arg = format!("thread{t}-call{i}");
                    let out = f.call_bytes(arg.as_bytes()).unwrap();
                    assert_eq!(out, format!("{arg}:{}", arg.len()).into_bytes());
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    result("calls", calls.load(Ordering::Relaxed));
}

fn child_rust_callbacks() {
    static CALLED: AtomicBool = AtomicBool::new(false);
    embed_runtime::register("double", |d: &[u8]| Ok([d, d].concat()));
    embed_runtime::register("fails", |_: &[u8]| Err("the Rust side said no".into()));
    embed_runtime::register(
        "panics",
        |_: &[u8]| -> Result<Vec<u8>, embed_runtime::BoxError> {
            CALLED.store(true, Ordering::SeqCst);
            panic!("deliberate panic in a Rust callback")
        },
    );
    let rt = embed_runtime::start().expect("start");
    // Registration after start works too, and Rust may call Python again.
    embed_runtime::register("nested", move |d: &[u8]| {
        let f = rt.function("__main__", "shout")?;
        Ok(f.call_bytes(d)?)
    });
    rt.run(
        r#"
import embed_runtime
def shout(data):
    return data.upper()
assert embed_runtime.call('double', b'ab') == b'abab'
assert embed_runtime.call('double', 'xy') == 'xyxy'
assert embed_runtime.call('nested', b'quiet') == b'QUIET'
# A thread started by Python calls Rust, which calls Python again.
import threading
from_thread = []
def worker():
    from_thread.append(embed_runtime.call('nested', b'from a python thread'))
threads = [threading.Thread(target=worker) for _ in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert from_thread == [b'FROM A PYTHON THREAD'] * 3, from_thread
try:
    embed_runtime.call('fails', b'')
except embed_runtime.RustError as e:
    assert str(e) == 'the Rust side said no', str(e)
else:
    raise AssertionError('no RustError')
try:
    embed_runtime.call('missing', b'')
except embed_runtime.RustFunctionNotFound as e:
    assert 'double' in str(e)
try:
    embed_runtime.call('double', 5)
except TypeError:
    pass
def call_panicking(_):
    try:
        embed_runtime.call('panics', b'')
    except embed_runtime.RustPanic as e:
        return '%s: %s' % (type(e).__name__, e)
    return 'no exception'
"#,
    )
    .expect("the callbacks behave");
    let panic = rt
        .function("__main__", "call_panicking")
        .unwrap()
        .call_str("")
        .unwrap();
    assert!(CALLED.load(Ordering::SeqCst));
    result("panic", panic);
    // An uncaught RustError reaches Rust as a Python error with the message.
    let e = rt.run("embed_runtime.call('fails', b'')").unwrap_err();
    assert_eq!(e.python().unwrap().type_name, "embed_runtime.RustError");
    assert!(e.to_string().contains("the Rust side said no"));
    rt.run("x = 1 + 1")
        .expect("PyPy still works after the panic");
    result("alive", "yes");
}

fn child_same_and_other_home() {
    let home = PathBuf::from(std::env::var_os(EXPLICIT_ENV).unwrap());
    let first = Builder::new().home(&home).start().expect("first start");
    let again = Builder::new()
        .home(&home)
        .start()
        .expect("second start, same home");
    let default = embed_runtime::start().expect("start without a home returns the running one");
    let same = std::ptr::eq(first, again) && std::ptr::eq(first, default);
    result("same", if same { "yes" } else { "no" });
    let other = std::env::var_os("EMBED_TEST_OTHER").unwrap();
    match Builder::new().home(other).start() {
        Err(e @ Error::OtherHome { .. }) => result("other", e),
        other => panic!("expected OtherHome, got {other:?}"),
    }
    first.run("assert 1 + 1 == 2").expect("still running");
}

/// The `embedded-archive` feature for real: a binary built with it keeps
/// working after the archive it was built from is gone.
fn embedded_archive_feature(ctx: &Ctx) {
    let scratch = tempfile::tempdir().unwrap();
    let archive = &ctx.subject.archive;
    // A copy that the build embeds and the test then deletes.
    let copy = scratch.path().join(archive.file_name().unwrap());
    std::fs::copy(archive, &copy).unwrap();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "embed-runtime",
            "--example",
            "hello",
        ])
        .args(["--features", "embedded-archive", "--message-format=json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PYPY_EMBED_BUILD_ARCHIVE", &copy)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let exe = String::from_utf8_lossy(&built.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["target"]["name"] == "hello")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the built example");
    // The binary moves away from the workspace, as a deployed program would.
    let deployed = scratch
        .path()
        .join(format!("hello{}", std::env::consts::EXE_SUFFIX));
    std::fs::copy(&exe, &deployed).unwrap();
    std::fs::remove_file(&copy).unwrap();

    let out = Command::new(&deployed)
        .env_remove(embed_runtime::HOME_ENV)
        .env_remove(embed_runtime::ARCHIVE_ENV)
        .env(embed_runtime::CACHE_ENV, scratch.path().join("cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("Hello from PyPy "), "{stdout}");
    assert!(
        stdout.contains("via archive embedded in the binary"),
        "{stdout}"
    );
}
