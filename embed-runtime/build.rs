//! Finds the archive the runtime falls back to when nothing is configured at
//! run time: `$PYPY_EMBED_BUILD_ARCHIVE`, else the newest archive for the
//! build target in the workspace's `dist/`. With the `embedded-archive`
//! feature it also records the archive's sha256 for `include_bytes!`.

use std::env;
use std::path::{Path, PathBuf};

/// A path to an archive, given when building.
const BUILD_ARCHIVE_ENV: &str = "PYPY_EMBED_BUILD_ARCHIVE";

fn main() {
    let target = env::var("TARGET").expect("cargo sets TARGET");
    println!("cargo:rustc-env=EMBED_RUNTIME_TARGET={target}");
    println!("cargo:rerun-if-env-changed={BUILD_ARCHIVE_ENV}");
    println!("cargo:rerun-if-changed=build.rs");

    let mut searched = Vec::new();
    let found = match env::var_os(BUILD_ARCHIVE_ENV).filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.is_file() {
                panic!(
                    "{BUILD_ARCHIVE_ENV}={} is not a file; point it at a PyPy archive \
                     (pypy<py>-v<pypy>-<triple>.tar.gz) or unset it",
                    path.display()
                );
            }
            println!("cargo:rerun-if-changed={}", path.display());
            Some(path)
        }
        None => {
            searched.push(format!("{BUILD_ARCHIVE_ENV} not set"));
            let mut found = None;
            for dist in dist_dirs() {
                if dist.is_dir() {
                    // Cargo watches a folder's contents, so a new archive rebuilds.
                    println!("cargo:rerun-if-changed={}", dist.display());
                }
                if let Some(path) = pypy_archive::name::newest_for(&dist, &target) {
                    found = Some(path);
                    break;
                }
                searched.push(format!("no archive for {target} in {}", dist.display()));
            }
            found
        }
    };

    let found_text = found
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=EMBED_RUNTIME_BUILD_ARCHIVE={found_text}");
    println!(
        "cargo:rustc-env=EMBED_RUNTIME_BUILD_SEARCHED={}",
        searched.join("; ")
    );

    if env::var_os("CARGO_FEATURE_EMBEDDED_ARCHIVE").is_some() {
        let Some(path) = found else {
            panic!(
                "the `embedded-archive` feature needs an archive at build time, and none was \
                 found ({}); run `cargo xtask repackage` or set {BUILD_ARCHIVE_ENV}",
                searched.join("; ")
            );
        };
        let sha256 = sha256_file(&path);
        println!("cargo:rustc-env=EMBED_RUNTIME_EMBEDDED_SHA256={sha256}");
    }
}

/// This repository's `dist/`, then the `dist/` of the workspace being built
/// (the first folder above OUT_DIR with a Cargo.lock), for dependents.
fn dist_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    if let Some(parent) = manifest_dir.parent() {
        dirs.push(parent.join("dist"));
    }
    if let Some(out_dir) = env::var_os("OUT_DIR") {
        let workspace = Path::new(&out_dir)
            .ancestors()
            .find(|dir| dir.join("Cargo.lock").is_file());
        if let Some(dist) = workspace.map(|w| w.join("dist")) {
            if !dirs.contains(&dist) {
                dirs.push(dist);
            }
        }
    }
    dirs
}

fn sha256_file(path: &Path) -> String {
    pypy_archive::hash::sha256_file(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
