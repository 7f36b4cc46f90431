//! Recipe patches end to end with the real `cargo xtask fetch`: the rpython
//! sdist as the "source release" (from a mirror folder), one patch of ours
//! from the recipe's `patches/` folder, one fetched from a loopback server
//! by URL and sha256, one that does not apply, and `--no-patches`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use common::server::{Reply, Server};
use sha2::{Digest, Sha256};
use xtask::fixtures::{self, RPYTHON_SDIST};

const TARGET: &str = "rpython/translator/goal/targetnopstandalone.py";

/// Ours: changes a line of the translation target.
const OURS: &str = "\
A patch of ours, as recipes/patches/ holds them.

--- a/rpython/translator/goal/targetnopstandalone.py
+++ b/rpython/translator/goal/targetnopstandalone.py
@@ -9,4 +9,4 @@
 
 def debug(msg):
-    print \"debug:\", msg
+    print \"patched debug:\", msg
 
";

/// Upstream's, served by URL: adds a file.
const UPSTREAM: &str = "\
--- /dev/null
+++ b/rpython/patched_by_url.txt
@@ -0,0 +1 @@
+applied from a URL
";

/// Its second hunk's context is not in the file.
const BROKEN: &str = "\
--- a/rpython/translator/goal/targetnopstandalone.py
+++ b/rpython/translator/goal/targetnopstandalone.py
@@ -1,3 +1,3 @@
 \"\"\"
-A simple standalone target.
+A patched standalone target.
 
@@ -10,3 +10,3 @@
 def debug(msg):
-    print \"no such line\", msg
+    print \"never\", msg
 
";

struct Setup {
    tmp: tempfile::TempDir,
    recipe: PathBuf,
    mirror: PathBuf,
    cache: PathBuf,
    work: PathBuf,
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A recipe with `patches` (TOML `[[patches]]` tables), its `patches/`
/// folder holding `files`, and a mirror folder with the sdist.
fn setup(patches: &str, files: &[(&str, &str)]) -> Setup {
    let url = format!("https://files.pythonhosted.org/packages/source/r/rpython/{RPYTHON_SDIST}");
    setup_from(&url, patches, files)
}

/// [`setup`] with the source release at `url`.
fn setup_from(url: &str, patches: &str, files: &[(&str, &str)]) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("rpython-0.2.1.toml");
    std::fs::write(
        &recipe,
        format!("{}\n{patches}", common::rpython_recipe_text(url)),
    )
    .unwrap();
    std::fs::create_dir(tmp.path().join("patches")).unwrap();
    for (name, text) in files {
        std::fs::write(tmp.path().join("patches").join(name), text).unwrap();
    }
    let mirror = tmp.path().join("mirror");
    std::fs::create_dir(&mirror).unwrap();
    std::fs::copy(
        fixtures::rpython_sdist().unwrap(),
        mirror.join(RPYTHON_SDIST),
    )
    .unwrap();
    Setup {
        cache: tmp.path().join("cache"),
        work: tmp.path().join("work"),
        recipe,
        mirror,
        tmp,
    }
}

fn fetch(s: &Setup, extra: &[&str]) -> Output {
    fetch_with(s, Some(&s.mirror), extra)
}

fn fetch_with(s: &Setup, mirror: Option<&Path>, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("fetch")
        .arg("--recipe")
        .arg(&s.recipe)
        .arg("--cache-dir")
        .arg(&s.cache)
        .arg("--work-dir")
        .arg(&s.work)
        .env_remove(xtask::fetch::MIRROR_ENV)
        .args(extra);
    if let Some(mirror) = mirror {
        cmd.arg("--mirror").arg(mirror);
    }
    cmd.output().unwrap()
}

/// The tree `fetch` printed, after checking it succeeded.
fn fetched_tree(out: &Output) -> PathBuf {
    assert!(
        out.status.success(),
        "fetch failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The pristine unpacked release in the work folder.
fn pristine(s: &Setup) -> PathBuf {
    let top = std::fs::read_dir(&s.work)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("rpython-0.2.1"))
        })
        .expect("the unpacked release");
    top.join("rpython-0.2.1")
}

fn patched_dirs(s: &Setup) -> Vec<String> {
    match std::fs::read_dir(s.work.join("patched")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn patches_of_ours_and_from_a_url_apply_in_order_onto_a_copy() {
    let body = Arc::new(UPSTREAM.as_bytes().to_vec());
    let sdist = Arc::new(std::fs::read(fixtures::rpython_sdist().unwrap()).unwrap());
    let (served, served_sdist) = (body.clone(), sdist.clone());
    // "Upstream": the source release and the patch, each under its own URL.
    let server = Server::start(move |req, _| match req.path.as_str() {
        "/commit/abc123.patch" => Reply::file(&served),
        "/packages/rpython-0.2.1.tar.gz" => Reply::file(&served_sdist),
        _ => Reply::Status(404),
    });
    let patches = format!(
        "[[patches]]\nfile = \"ours.patch\"\nreason = \"a test\"\n\n\
         [[patches]]\nurl = \"{}\"\nsha256 = \"{}\"\nreason = \"upstream's\"\n",
        server.url("/commit/abc123.patch"),
        sha256(&body)
    );
    let s = setup_from(
        &server.url("/packages/rpython-0.2.1.tar.gz"),
        &patches,
        &[("ours.patch", OURS)],
    );
    let out = fetch_with(&s, None, &[]);
    let tree = fetched_tree(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("applied ours.patch") && stderr.contains("applied abc123.patch"),
        "{stderr}"
    );
    assert!(tree.starts_with(s.work.join("patched").canonicalize().unwrap()));
    assert!(read(&tree.join(TARGET)).contains("print \"patched debug:\", msg"));
    assert_eq!(
        read(&tree.join("rpython/patched_by_url.txt")),
        "applied from a URL\n"
    );
    // The pristine tree is untouched.
    let original = pristine(&s);
    assert!(read(&original.join(TARGET)).contains("print \"debug:\", msg"));
    assert!(!original.join("rpython/patched_by_url.txt").exists());
    let patch_requests = || {
        server
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(".patch"))
            .count()
    };
    assert_eq!(patch_requests(), 1);

    // Again: the patched copy and the downloaded patch are reused.
    let again = fetched_tree(&fetch_with(&s, None, &[]));
    assert_eq!(again, tree);
    assert_eq!(patch_requests(), 1, "the patch comes from the cache");

    // A copy an older version built in (no marker beside it, products
    // inside) is patched afresh, not reused.
    let marker = tree.with_file_name(format!(
        "{}.pristine",
        tree.file_name().unwrap().to_string_lossy()
    ));
    assert!(marker.is_file(), "no marker beside {}", tree.display());
    std::fs::remove_file(&marker).unwrap();
    std::fs::write(tree.join("built-in-place.so"), "a product").unwrap();
    let out = fetch_with(&s, None, &[]);
    let refreshed = fetched_tree(&out);
    assert_eq!(refreshed, tree);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("patching a fresh copy"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!tree.join("built-in-place.so").exists());
    assert!(marker.is_file());
    assert!(read(&tree.join(TARGET)).contains("print \"patched debug:\", msg"));

    // A mirror serves patches by file name, like the source; a fresh cache
    // takes both from it and never asks upstream.
    std::fs::write(s.mirror.join("abc123.patch"), &*body).unwrap();
    let fresh = Setup {
        cache: s.tmp.path().join("cache2"),
        work: s.tmp.path().join("work2"),
        recipe: s.recipe.clone(),
        mirror: s.mirror.clone(),
        tmp: tempfile::tempdir().unwrap(),
    };
    std::fs::write(fresh.mirror.join(RPYTHON_SDIST), &*sdist).unwrap();
    let mirrored = fetched_tree(&fetch(&fresh, &[]));
    assert!(read(&mirrored.join("rpython/patched_by_url.txt")).contains("from a URL"));
    assert_eq!(patch_requests(), 1, "the mirror served the patch");

    // A changed patch gives another copy; the first one stays as it was.
    std::fs::write(
        s.tmp.path().join("patches/ours.patch"),
        OURS.replace("patched debug:", "patched again:"),
    )
    .unwrap();
    let changed = fetched_tree(&fetch_with(&s, None, &[]));
    assert_ne!(changed, tree);
    assert!(read(&changed.join(TARGET)).contains("patched again:"));
    assert!(read(&tree.join(TARGET)).contains("patched debug:"));

    // --no-patches: the release as published.
    let plain = fetched_tree(&fetch_with(&s, None, &["--no-patches"]));
    assert_eq!(plain, original.canonicalize().unwrap());
}

#[test]
fn a_url_patch_with_the_wrong_checksum_is_refused() {
    let server = Server::start(|_, _| Reply::file(&Arc::new(b"tampered".to_vec())));
    let patches = format!(
        "[[patches]]\nurl = \"{}\"\nsha256 = \"{}\"\nreason = \"upstream's\"\n",
        server.url("/x.patch"),
        sha256(UPSTREAM.as_bytes())
    );
    let s = setup_from(&server.url("/rpython-0.2.1.tar.gz"), &patches, &[]);
    std::fs::write(s.mirror.join("x.patch"), "tampered").unwrap();
    let out = fetch(&s, &["--retries", "0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("x.patch") && stderr.contains("sha256"),
        "{stderr}"
    );
    assert!(patched_dirs(&s).is_empty());
}

#[test]
fn a_patch_that_does_not_apply_names_the_hunk_and_leaves_nothing() {
    let patches = "[[patches]]\nfile = \"ours.patch\"\nreason = \"a test\"\n\n\
                   [[patches]]\nfile = \"broken.patch\"\nreason = \"stale\"\n";
    let s = setup(patches, &[("ours.patch", OURS), ("broken.patch", BROKEN)]);
    let out = fetch(&s, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "the patch broken.patch does not apply",
        "hunk `@@ -10,3 +10,3 @@`",
        TARGET,
        "--no-patches",
    ] {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing from:\n{stderr}"
        );
    }
    // No half-patched tree where a later run would take it, and no temporary left.
    assert!(patched_dirs(&s).is_empty(), "{:?}", patched_dirs(&s));
    assert!(read(&pristine(&s).join(TARGET)).contains("print \"debug:\", msg"));
}

#[test]
fn a_patch_file_the_recipe_names_must_exist() {
    let s = setup(
        "[[patches]]\nfile = \"missing.patch\"\nreason = \"x\"\n",
        &[],
    );
    let out = fetch(&s, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("patches.file `missing.patch`") && stderr.contains("rpython-0.2.1.toml:"),
        "{stderr}"
    );
}

/// The real patch stage, with its commands recorded, runs exactly what
/// `build-pypy --plan` prints for the same recipe and folders.
#[test]
fn the_patch_stage_runs_what_the_plan_prints() {
    let second = "\
--- /dev/null
+++ b/rpython/added_by_the_second_patch.txt
@@ -0,0 +1 @@
+second
";
    let s = setup(
        "[[patches]]\nfile = \"ours.patch\"\nreason = \"a test\"\n\n\
         [[patches]]\nfile = \"second.patch\"\nreason = \"another\"\n",
        &[("ours.patch", OURS), ("second.patch", second)],
    );
    let recipe = xtask::recipe::Recipe::load(&s.recipe).unwrap();
    let tree = fixtures::translation_rpython().unwrap().tree;
    let mut opts = xtask::fetch::FetchOptions::new(&s.cache);
    opts.work_dir = s.work.clone();
    opts.source_dir = Some(tree.clone());
    let sh = xshell::Shell::new().unwrap();

    let (patched, ran) = xtask::stage::record(|| {
        xtask::patch::apply_recipe_patches(&sh, &recipe, &tree, "a tree", &opts)
    });
    let patched = patched.expect("the patches apply");
    assert!(patched
        .root
        .join("rpython/added_by_the_second_patch.txt")
        .is_file());
    assert_eq!(ran.len(), 2, "one command per patch: {ran:?}");

    let target = xtask::targets::get(xtask::targets::host_triple()).unwrap();
    let run = xtask::translate::RunOptions {
        jobs: Some(2),
        ..Default::default()
    };
    let plan = xtask::plan::render(&xtask::plan::PlanInput {
        recipe: &recipe,
        target: &target,
        fetch: &opts,
        run: &run,
        dist: &s.tmp.path().join("dist"),
        portable: false,
        build_machine: xtask::targets::host_triple(),
    })
    .unwrap();
    let patch_step = plan
        .split("\n\n")
        .find(|step| step.contains("patches: the recipe's"))
        .expect("a patches step");
    // What ran, as the plan prints commands, is the step's command lines.
    let ran: Vec<String> = ran
        .iter()
        .flat_map(|command| command.plan_lines(xtask::plan::shown))
        .collect();
    let printed: Vec<String> = patch_step
        .lines()
        .filter(|line| line.starts_with("     "))
        .map(|line| line.trim().to_string())
        .collect();
    assert_eq!(ran, printed, "what ran (left) against the plan (right)");
}
