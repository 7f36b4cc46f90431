//! Verified downloads and source fetches against a real HTTP server on 127.0.0.1
//! serving the real `rpython-0.2.1.tar.gz` sdist.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use sha2::{Digest, Sha256};
use xtask::fetch::{self, FetchOptions, Mirror};
use xtask::fixtures::{self, RPYTHON_SDIST, RPYTHON_SHA256};
use xtask::manifest::Source;
use xtask::recipe::Recipe;

use crate::common;

use common::server::{Reply, Request, Server};

fn sdist() -> Arc<Vec<u8>> {
    let path = fixtures::rpython_sdist().expect("fixture");
    Arc::new(std::fs::read(path).unwrap())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Options for a fresh cache, with test-sized backoff.
fn options(cache: &Path) -> FetchOptions {
    let mut opts = FetchOptions::new(cache);
    opts.retries = 3;
    opts.backoff = Duration::from_millis(10);
    opts
}

fn cached_path(cache: &Path) -> PathBuf {
    cache
        .join("downloads/sha256")
        .join(RPYTHON_SHA256)
        .join(RPYTHON_SDIST)
}

/// A loopback server whose reply comes from `reply`, given the sdist's
/// bytes, the request and how many requests came before it.
fn serve_sdist(
    reply: impl Fn(&Arc<Vec<u8>>, &Request, usize) -> Reply + Send + Sync + 'static,
) -> (Server, Arc<Vec<u8>>) {
    let body = sdist();
    let served = body.clone();
    let server = Server::start(move |req, earlier| reply(&served, req, earlier));
    (server, body)
}

/// A loopback server answering every request with the whole sdist.
fn serve_whole_sdist() -> (Server, Arc<Vec<u8>>) {
    serve_sdist(|body, _, _| Reply::file(body))
}

/// Downloads the sdist from `server` into `cache` and checks what arrived.
fn download_ok(server: &Server, cache: &Path) -> PathBuf {
    let path =
        fetch::download_verified(&server.url(PATH), RPYTHON_SHA256, &options(cache)).unwrap();
    assert_eq!(xtask::hash::sha256_file(&path).unwrap(), RPYTHON_SHA256);
    path
}

/// Leaves `bytes` where an interrupted download keeps its partial file.
fn leave_part(cache: &Path, bytes: &[u8]) -> PathBuf {
    let part = cached_path(cache).with_extension("gz.part");
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, bytes).unwrap();
    part
}

const PATH: &str = "/packages/rpython-0.2.1.tar.gz";
/// Nothing listens on port 9 (discard) here: any attempt to use upstream fails fast.
const DEAD_UPSTREAM: &str = "http://127.0.0.1:9/packages/rpython-0.2.1.tar.gz";

#[test]
fn download_success_lands_in_the_content_addressed_cache() {
    let (server, _) = serve_whole_sdist();
    let cache = tempfile::tempdir().unwrap();
    let opts = options(cache.path());
    let path = fetch::download_verified(&server.url(PATH), RPYTHON_SHA256, &opts).unwrap();
    assert_eq!(path, cached_path(cache.path()));
    assert_eq!(xtask::hash::sha256_file(&path).unwrap(), RPYTHON_SHA256);
    assert_eq!(
        common::files_except_locks(cache.path()),
        std::slice::from_ref(&path)
    );

    // A second call is a cache hit: no request.
    let again = fetch::download_verified(&server.url(PATH), RPYTHON_SHA256, &opts).unwrap();
    assert_eq!(again, path);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn wrong_checksum_names_both_hashes_and_caches_nothing() {
    let (server, _) = serve_whole_sdist();
    let cache = tempfile::tempdir().unwrap();
    let wrong = sha256_hex(b"not the rpython sdist");
    let url = server.url(PATH);
    let err = fetch::download_verified(&url, &wrong, &options(cache.path())).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(&wrong), "{msg}");
    assert!(msg.contains(RPYTHON_SHA256), "{msg}");
    assert!(msg.contains(&url), "{msg}");
    assert!(common::files_except_locks(cache.path()).is_empty());
    // A mismatch is not a network problem: one request, no retry.
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn connection_closed_mid_body_is_resumed_with_a_range_request() {
    let body = sdist();
    let cut = 1_000_000;
    let server = Server::start({
        let body = body.clone();
        move |_, earlier| Reply::File {
            body: body.clone(),
            ranges: true,
            cut_after: (earlier == 0).then_some(cut),
        }
    });
    let cache = tempfile::tempdir().unwrap();
    download_ok(&server, cache.path());
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range, None);
    assert_eq!(requests[1].range.as_deref(), Some("bytes=1000000-"));
}

#[test]
fn a_partial_file_from_an_earlier_run_is_resumed() {
    let (server, body) = serve_whole_sdist();
    let cache = tempfile::tempdir().unwrap();
    let part = leave_part(cache.path(), &body[..123_456]);
    download_ok(&server, cache.path());
    assert!(!part.exists());
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].range.as_deref(), Some("bytes=123456-"));
}

#[test]
fn a_server_ignoring_range_makes_a_clean_restart() {
    let (server, body) = serve_sdist(move |body, _, _| Reply::File {
        body: body.clone(),
        ranges: false,
        cut_after: None,
    });
    let cache = tempfile::tempdir().unwrap();
    leave_part(cache.path(), &body[..500_000]);
    let path = fetch::download_verified(&server.url(PATH), RPYTHON_SHA256, &options(cache.path()))
        .unwrap();
    // Appending the full body to the old part would have broken the hash.
    assert_eq!(xtask::hash::sha256_file(&path).unwrap(), RPYTHON_SHA256);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_corrupt_partial_file_is_never_taken_for_the_real_one() {
    let (server, _) = serve_whole_sdist();
    let cache = tempfile::tempdir().unwrap();
    leave_part(cache.path(), &[0x55u8; 200_000]);
    download_ok(&server, cache.path());
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range.as_deref(), Some("bytes=200000-"));
    assert_eq!(requests[1].range, None, "the restart must fetch everything");
}

#[test]
fn a_partial_file_longer_than_the_real_one_is_discarded() {
    let (server, body) = serve_whole_sdist();
    let cache = tempfile::tempdir().unwrap();
    let part = cached_path(cache.path()).with_extension("gz.part");
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    let mut longer = body.to_vec();
    longer.extend_from_slice(b"trailing junk");
    std::fs::write(&part, &longer).unwrap();
    download_ok(&server, cache.path());
    let ranges: Vec<Option<String>> = server.requests().into_iter().map(|r| r.range).collect();
    // The server answers 416 to the resume; the next attempt starts over.
    assert_eq!(ranges, [Some(format!("bytes={}-", longer.len())), None]);
}

#[test]
fn a_partial_answer_at_the_wrong_offset_is_not_appended() {
    let (server, body) = serve_sdist(move |body, _, earlier| {
        if earlier == 0 {
            // 206, but from byte 0 instead of the requested offset.
            Reply::Raw {
                status: "206 Partial Content".into(),
                headers: format!(
                    "Content-Range: bytes 0-{}/{}\r\n",
                    body.len() - 1,
                    body.len()
                ),
                body: body.to_vec(),
            }
        } else {
            Reply::file(body)
        }
    });
    let cache = tempfile::tempdir().unwrap();
    leave_part(cache.path(), &body[..100_000]);
    download_ok(&server, cache.path());
    let ranges: Vec<Option<String>> = server.requests().into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, [Some("bytes=100000-".to_string()), None]);
}

#[test]
fn too_many_requests_is_retried() {
    let (server, _) = serve_sdist(move |body, _, earlier| {
        if earlier == 0 {
            Reply::Status(429)
        } else {
            Reply::file(body)
        }
    });
    let cache = tempfile::tempdir().unwrap();
    download_ok(&server, cache.path());
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_damaged_cache_entry_is_downloaded_again() {
    let (server, body) = serve_whole_sdist();
    let cache = tempfile::tempdir().unwrap();
    let cached = cached_path(cache.path());
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    std::fs::write(&cached, &body[..1000]).unwrap();
    let path = fetch::download_verified(&server.url(PATH), RPYTHON_SHA256, &options(cache.path()))
        .unwrap();
    assert_eq!(path, cached);
    assert_eq!(xtask::hash::sha256_file(&path).unwrap(), RPYTHON_SHA256);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn not_found_is_not_retried_and_names_the_url() {
    let server = Server::start(|_, _| Reply::Status(404));
    let cache = tempfile::tempdir().unwrap();
    let url = server.url(PATH);
    let err = fetch::download_verified(&url, RPYTHON_SHA256, &options(cache.path())).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains("404"), "{msg}");
    assert_eq!(server.requests().len(), 1, "a 404 must not be retried");
    assert!(common::files_except_locks(cache.path()).is_empty());
}

#[test]
fn server_errors_are_retried_until_success() {
    let (server, _) = serve_sdist(move |body, _, earlier| {
        if earlier < 2 {
            Reply::Status(500)
        } else {
            Reply::file(body)
        }
    });
    let cache = tempfile::tempdir().unwrap();
    download_ok(&server, cache.path());
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn persistent_server_errors_give_up_after_the_retries() {
    let server = Server::start(|_, _| Reply::Status(503));
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(cache.path());
    opts.retries = 2;
    let err = fetch::download_verified(&server.url(PATH), RPYTHON_SHA256, &opts).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("failed 3 times"), "{msg}");
    assert!(msg.contains("503"), "{msg}");
    assert_eq!(server.requests().len(), 3);
    assert!(!cached_path(cache.path()).exists());
}

#[test]
fn connection_refused_is_retried_then_reported() {
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(cache.path());
    opts.retries = 1;
    let err = fetch::download_verified(DEAD_UPSTREAM, RPYTHON_SHA256, &opts).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("failed 2 times"), "{msg}");
    assert!(msg.contains(DEAD_UPSTREAM), "{msg}");
}

#[test]
fn redirects_are_followed() {
    let (server, _) = serve_sdist(move |body, req, _| {
        if req.path == "/old/rpython-0.2.1.tar.gz" {
            Reply::Redirect(PATH.to_string())
        } else {
            Reply::file(body)
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let path = fetch::download_verified(
        &server.url("/old/rpython-0.2.1.tar.gz"),
        RPYTHON_SHA256,
        &options(cache.path()),
    )
    .unwrap();
    assert_eq!(xtask::hash::sha256_file(&path).unwrap(), RPYTHON_SHA256);
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/old/rpython-0.2.1.tar.gz", PATH]);
}

#[test]
fn mirror_folder_replaces_upstream() {
    let mirror = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures::rpython_sdist().unwrap(),
        mirror.path().join(RPYTHON_SDIST),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(cache.path());
    opts.mirror = Some(Mirror::Dir(mirror.path().to_path_buf()));
    let path = fetch::download_verified(DEAD_UPSTREAM, RPYTHON_SHA256, &opts).unwrap();
    assert_eq!(path, cached_path(cache.path()));
    assert_eq!(xtask::hash::sha256_file(&path).unwrap(), RPYTHON_SHA256);
}

#[test]
fn tampered_file_in_a_mirror_folder_is_refused() {
    let mirror = tempfile::tempdir().unwrap();
    let mut bytes = sdist().to_vec();
    bytes[1000] ^= 0xff;
    std::fs::write(mirror.path().join(RPYTHON_SDIST), &bytes).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(cache.path());
    opts.mirror = Some(Mirror::Dir(mirror.path().to_path_buf()));
    let err = fetch::download_verified(DEAD_UPSTREAM, RPYTHON_SHA256, &opts).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(RPYTHON_SHA256), "{msg}");
    assert!(msg.contains(&sha256_hex(&bytes)), "{msg}");
    assert!(common::files_except_locks(cache.path()).is_empty());
}

#[test]
fn mirror_folder_without_the_file_says_what_to_put_there() {
    let mirror = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(cache.path());
    opts.mirror = Some(Mirror::Dir(mirror.path().to_path_buf()));
    let err = fetch::download_verified(DEAD_UPSTREAM, RPYTHON_SHA256, &opts).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("has no rpython-0.2.1.tar.gz"), "{msg}");
}

#[test]
fn mirror_url_serves_the_same_file_name() {
    let (server, _) = serve_sdist(move |body, req, _| {
        if req.path == "/mirror/pypy/rpython-0.2.1.tar.gz" {
            Reply::file(body)
        } else {
            Reply::Status(404)
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(cache.path());
    opts.mirror = Some(Mirror::parse(&server.url("/mirror/pypy")).unwrap());
    let path = fetch::download_verified(DEAD_UPSTREAM, RPYTHON_SHA256, &opts).unwrap();
    assert_eq!(xtask::hash::sha256_file(&path).unwrap(), RPYTHON_SHA256);
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/mirror/pypy/rpython-0.2.1.tar.gz"]);
}

/// A recipe whose "source release" is the rpython sdist.
fn rpython_recipe(dir: &Path, url: &str) -> Recipe {
    let path = dir.join("rpython-0.2.1.toml");
    std::fs::write(&path, common::rpython_recipe_text(url)).unwrap();
    Recipe::load(&path).unwrap()
}

#[test]
fn fetch_source_downloads_verifies_and_unpacks_once() {
    let (server, _) = serve_whole_sdist();
    let tmp = tempfile::tempdir().unwrap();
    let url = server.url(PATH);
    let recipe = rpython_recipe(tmp.path(), &url);
    let opts = options(&tmp.path().join("cache"));
    let tree = fetch::fetch_source(&recipe, &opts).unwrap();
    assert_eq!(tree.root.file_name().unwrap(), "rpython-0.2.1");
    assert!(tree.root.starts_with(&opts.work_dir));
    assert_eq!(
        tree.source,
        Source::Release {
            url: url.clone(),
            sha256: RPYTHON_SHA256.into()
        }
    );
    // The unpacked tree is the real sdist: compare a file with the fixture tree.
    let rel = "rpython/translator/goal/targetnopstandalone.py";
    assert_eq!(
        std::fs::read(tree.root.join(rel)).unwrap(),
        std::fs::read(fixtures::rpython_tree().unwrap().join(rel)).unwrap()
    );
    assert_matches_sdist(&tree.root);
    let again = fetch::fetch_source(&recipe, &opts).unwrap();
    assert_eq!(again, tree);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn two_concurrent_fetches_share_one_cache() {
    let (server, _) = serve_sdist(move |body, _, _| {
        // Slow enough that both runs are inside the fetch at once.
        std::thread::sleep(Duration::from_millis(300));
        Reply::file(body)
    });
    let tmp = tempfile::tempdir().unwrap();
    let recipe = rpython_recipe(tmp.path(), &server.url(PATH));
    let opts = options(&tmp.path().join("cache"));
    let barrier = Arc::new(Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (recipe, opts, barrier) = (recipe.clone(), opts.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                fetch::fetch_source(&recipe, &opts)
            })
        })
        .collect();
    let trees: Vec<_> = runs
        .into_iter()
        .map(|r| r.join().unwrap().unwrap())
        .collect();
    assert_eq!(trees[0], trees[1]);
    assert_eq!(
        server.requests().len(),
        1,
        "the second run waits for the first"
    );
    assert_eq!(
        xtask::hash::sha256_file(&cached_path(&opts.cache_dir)).unwrap(),
        RPYTHON_SHA256
    );
    // One tree, no leftover temporary folders or partial files.
    let sources: Vec<String> = std::fs::read_dir(&opts.work_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert_matches_sdist(&trees[0].root);
}

/// Every file of the sdist is in `root` (its top folder) with the archived size.
fn assert_matches_sdist(root: &Path) {
    let sdist = std::fs::File::open(fixtures::rpython_sdist().unwrap()).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(sdist));
    let mut files = 0;
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().unwrap().into_owned();
        let rel = path.strip_prefix("rpython-0.2.1").unwrap();
        let meta = std::fs::metadata(root.join(rel)).unwrap();
        assert_eq!(
            meta.len(),
            entry.header().size().unwrap(),
            "{}",
            rel.display()
        );
        files += 1;
    }
    assert!(files > 1000, "only {files} files in the sdist?");
}

#[test]
fn source_dir_records_the_git_commit_of_a_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = rpython_recipe(tmp.path(), DEAD_UPSTREAM);
    let checkout = tmp.path().join("checkout");
    let goal = checkout.join("rpython/translator/goal");
    std::fs::create_dir_all(&goal).unwrap();
    std::fs::write(goal.join("targetnopstandalone.py"), "# target\n").unwrap();
    let sh = xshell::Shell::new().unwrap();
    let git = |args: &[&str]| {
        xshell::cmd!(
            sh,
            "git -C {checkout} -c user.name=test -c user.email=test@example.invalid {args...}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "source"]);
    let head = xshell::cmd!(sh, "git -C {checkout} rev-parse HEAD")
        .read()
        .unwrap();

    let mut opts = options(&tmp.path().join("cache"));
    opts.source_dir = Some(checkout.clone());
    let tree = fetch::fetch_source(&recipe, &opts).unwrap();
    assert_eq!(tree.root, checkout.canonicalize().unwrap());
    assert_eq!(
        tree.source,
        Source::Checkout {
            commit: Some(head.trim().to_string())
        }
    );

    // A folder inside the checkout is not the checkout: its commit says nothing.
    let inner = checkout.join("rpython");
    let mut recipe_inner = recipe.clone();
    recipe_inner.translate.target = "translator/goal/targetnopstandalone.py".into();
    opts.source_dir = Some(inner);
    let tree = fetch::fetch_source(&recipe_inner, &opts).unwrap();
    assert_eq!(tree.source, Source::Checkout { commit: None });
}

#[test]
fn source_dir_that_is_not_a_checkout_has_no_commit_and_must_hold_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = rpython_recipe(tmp.path(), DEAD_UPSTREAM);
    let mut opts = options(&tmp.path().join("cache"));
    opts.source_dir = Some(fixtures::rpython_tree().unwrap());
    let tree = fetch::fetch_source(&recipe, &opts).unwrap();
    assert_eq!(tree.source, Source::Checkout { commit: None });

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    opts.source_dir = Some(empty);
    let msg = format!("{:#}", fetch::fetch_source(&recipe, &opts).unwrap_err());
    assert!(
        msg.contains("has no rpython/translator/goal/targetnopstandalone.py"),
        "{msg}"
    );
}

#[test]
fn source_release_rpython_is_fetched_once_and_recorded() {
    // What macOS and Windows runners do for their small translations, with the
    // rpython sdist standing in for PyPy's source release.
    let (server, _) = serve_whole_sdist();
    let tmp = tempfile::tempdir().unwrap();
    let url = server.url(PATH);
    let recipe = rpython_recipe(tmp.path(), &url);
    let opts = options(&tmp.path().join("cache"));
    let choice = fixtures::RpythonChoice::Table(xtask::targets::TestRpython::SourceRelease);
    let chosen =
        fixtures::resolve_translation_rpython(choice.clone(), || Ok(recipe.clone()), &opts)
            .unwrap();
    assert!(chosen.tree.join("rpython/__main__.py").is_file());
    assert!(chosen.tree.starts_with(&opts.work_dir));
    assert!(
        chosen.source_id.ends_with(RPYTHON_SHA256),
        "{}",
        chosen.source_id
    );

    let again =
        fixtures::resolve_translation_rpython(choice, || Ok(recipe.clone()), &opts).unwrap();
    assert_eq!(again.tree, chosen.tree);
    assert_eq!(server.requests().len(), 1, "the second run uses the cache");

    let root = tmp.path().join("fixtures");
    std::fs::create_dir_all(&root).unwrap();
    fixtures::record_translation_rpython(&root, &chosen).unwrap();
    let read = fixtures::read_translation_rpython(&root).unwrap();
    assert_eq!((read.tree, read.source_id), (chosen.tree, chosen.source_id));
}
