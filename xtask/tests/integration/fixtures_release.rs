//! The fixtures in `official-release` mode (how CI's macOS and Windows runners
//! get their real libpypy): a PyPy release in upstream's layout, served by a
//! real HTTP server on 127.0.0.1, is downloaded, checked and repackaged.
//!
//! The release is this machine's own test archive turned back into the file
//! PyPy publishes (`pypy<py>-v<pypy>-<platform>.tar.bz2`, one top folder,
//! no `PYPY.json`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use xtask::fetch::{FetchOptions, Mirror};
use xtask::fixtures::{self, TestPypySource};
use xtask::manifest::{self, Source};
use xtask::{targets, verify};

use crate::common;

use common::server::{Reply, Server};

/// Nothing listens on port 9 (discard) here: any attempt to use it fails fast.
const DEAD_UPSTREAM: &str = "http://127.0.0.1:9/pypy";

fn host() -> targets::Target {
    targets::get(targets::host_triple()).unwrap()
}

/// Writes the test archive's tree as PyPy's release file for `target` into `dir`.
fn upstream_release(dir: &Path, target: &targets::Target) -> PathBuf {
    let ours = fixtures::test_archive().unwrap();
    let m = pypy_archive::extract::read_manifest(&ours).unwrap();
    let top_name = format!(
        "pypy{}-v{}-{}",
        m.python_version, m.pypy_version, target.upstream_platform
    );
    let unpacked = dir.join("unpacked");
    fs_err::create_dir(&unpacked).unwrap();
    pypy_archive::extract::unpack_top(&ours, manifest::TOP_DIR, &unpacked).unwrap();
    let top = unpacked.join(&top_name);
    fs_err::rename(unpacked.join(manifest::TOP_DIR), &top).unwrap();
    // Upstream's releases carry no manifest of ours.
    fs_err::remove_file(top.join(manifest::MANIFEST_NAME)).unwrap();

    let release = dir.join(format!("{top_name}.{}", target.upstream_archive));
    match target.upstream_archive.as_str() {
        "tar.bz2" => write_tar_bz2(&release, &top_name, &top),
        "zip" => write_zip(&release, &top_name, &top),
        other => panic!("PyPy publishes no `.{other}` releases"),
    }
    release
}

/// PyPy's POSIX release format.
fn write_tar_bz2(release: &Path, top_name: &str, top: &Path) {
    let file = fs_err::File::create(release).unwrap();
    let bz = bzip2::write::BzEncoder::new(file, bzip2::Compression::fast());
    let mut tar = tar::Builder::new(bz);
    // The release keeps its aliases (`bin/pypy3` -> `pypy3.9`) as links.
    tar.follow_symlinks(false);
    tar.append_dir_all(top_name, top).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
}

/// PyPy's Windows release format (which has no links).
fn write_zip(release: &Path, top_name: &str, top: &Path) {
    let mut zip = zip::ZipWriter::new(fs_err::File::create(release).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for entry in walkdir::WalkDir::new(top).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(top).unwrap();
        let name = Path::new(top_name).join(rel);
        let name = name.to_str().unwrap().replace('\\', "/");
        if entry.file_type().is_dir() {
            zip.add_directory(name, options).unwrap();
        } else {
            zip.start_file(name, options).unwrap();
            std::io::copy(&mut fs_err::File::open(entry.path()).unwrap(), &mut zip).unwrap();
        }
    }
    zip.finish().unwrap();
}

/// A loopback server publishing the release of the test archive for `target`,
/// as `<server>/pypy/<file name>`; the release file is written into `work`.
fn serve_release(work: &Path, target: &targets::Target) -> (Server, PathBuf, String) {
    let release = upstream_release(work, target);
    let body = Arc::new(fs_err::read(&release).unwrap());
    let server = Server::start(move |_, _| Reply::file(&body));
    let file_name = release.file_name().unwrap().to_str().unwrap();
    let url = server.url(&format!("/pypy/{file_name}"));
    (server, release, url)
}

/// Download options for a fresh cache, with test-sized retries.
fn options(cache: &Path) -> FetchOptions {
    let mut opts = FetchOptions::new(cache);
    opts.retries = 1;
    opts.backoff = Duration::from_millis(10);
    opts
}

fn official(target: &targets::Target, url: &str, sha256: &str) -> TestPypySource {
    TestPypySource::from_values(target, Some("official-release"), Some(url), Some(sha256)).unwrap()
}

/// Files in `<root>/dist` that are archives or checksums (lock files aside).
fn dist_entries(root: &Path) -> Vec<String> {
    let Ok(entries) = fs_err::read_dir(root.join("dist")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tar.gz") || n == "SHA256SUMS")
        .collect();
    names.sort();
    names
}

#[test]
fn official_release_is_downloaded_checked_and_repackaged() {
    let target = host();
    let work = tempfile::tempdir().unwrap();
    let (server, release, url) = serve_release(work.path(), &target);
    let sha = xtask::hash::sha256_file(&release).unwrap();
    let file_name = release.file_name().unwrap().to_str().unwrap();

    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let source = official(&target, &url, &sha);
    let sh = xshell::Shell::new().unwrap();
    let archive =
        test_support::prepare_test_pypy(&sh, root.path(), &source, &target, &options(cache.path()))
            .unwrap_or_else(|e| panic!("{e:#}"));

    let name = source.archive_name(&target).unwrap();
    assert_eq!(archive, root.path().join("dist").join(&name));
    assert_eq!(
        dist_entries(root.path()),
        vec![
            "SHA256SUMS".to_string(),
            name.clone(),
            format!("{name}.sha256")
        ]
    );
    let report = verify::verify_archive(&archive, &verify::VerifyOptions::default())
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        report.ran.is_some(),
        "the archive is for this machine: its launcher and C embedding must run"
    );
    match &report.manifest.origin.source {
        Source::Prebuilt {
            sha256,
            description,
        } => {
            assert_eq!(sha256.as_deref(), Some(sha.as_str()));
            assert!(description.contains(file_name), "{description}");
        }
        other => panic!("unexpected origin {other:?}"),
    }
    assert_eq!(server.requests().len(), 1);

    // Prepared again: the finished archive is kept, nothing is downloaded.
    let again =
        test_support::prepare_test_pypy(&sh, root.path(), &source, &target, &options(cache.path()))
            .unwrap();
    assert_eq!(again, archive);
    assert_eq!(server.requests().len(), 1);

    // The same release from a mirror folder (PYPY_EMBED_MIRROR), upstream unreachable.
    let mirrored_root = tempfile::tempdir().unwrap();
    let mirrored_cache = tempfile::tempdir().unwrap();
    let mut opts = options(mirrored_cache.path());
    opts.mirror = Some(Mirror::Dir(work.path().to_path_buf()));
    let dead = official(&target, &format!("{DEAD_UPSTREAM}/{file_name}"), &sha);
    let from_mirror =
        test_support::prepare_test_pypy(&sh, mirrored_root.path(), &dead, &target, &opts)
            .unwrap_or_else(|e| panic!("{e:#}"));
    let mirrored = pypy_archive::extract::read_manifest(&from_mirror).unwrap();
    assert_eq!(mirrored.origin, report.manifest.origin);
    assert!(
        mirrored.files == report.manifest.files,
        "the same release gives the same files, byte for byte"
    );
}

#[test]
fn wrong_sha256_is_refused_and_leaves_no_archive() {
    let target = host();
    let work = tempfile::tempdir().unwrap();
    let (_server, release, url) = serve_release(work.path(), &target);

    let root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    let source = official(&target, &url, &wrong);
    let sh = xshell::Shell::new().unwrap();
    let err =
        test_support::prepare_test_pypy(&sh, root.path(), &source, &target, &options(cache.path()))
            .unwrap_err();
    let text = format!("{err:#}");
    let got = xtask::hash::sha256_file(&release).unwrap();
    assert!(
        text.contains(&url) && text.contains(&wrong) && text.contains(&got),
        "the error must name the release and both checksums: {text}"
    );
    assert!(
        dist_entries(root.path()).is_empty(),
        "{:?}",
        dist_entries(root.path())
    );
    assert!(!root
        .path()
        .join("dist")
        .join(source.archive_name(&target).unwrap())
        .exists());
}
