//! Verified downloads into the content-addressed cache
//! (`<cache>/downloads/sha256/<hash>/<file name>`).
//!
//! Bytes go to `<file>.part` beside the final path and are hashed as they
//! arrive; only a file whose sha256 matches is renamed into place, so the
//! final path never holds anything unverified. A cut-off download is resumed
//! with an HTTP Range request (or restarted when the server ignores it).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{StatusCode, Url};
use sha2::{Digest, Sha256};

use super::progress::Progress;
use super::{FetchOptions, Mirror};
use crate::lock::{self, lock_path_for};
use crate::recipe::normalize_sha256;

/// Downloads `url` (or the same file name from `opts.mirror`) into the cache,
/// checks it against `sha256` and returns the cached path. A file already in
/// the cache is returned once its hash is checked again.
/// Where [`download_verified`] keeps the file of `url` with `sha256`
/// (lowercase): `<cache>/downloads/sha256/<sha256>/<file name>`.
pub fn cached_path(url: &str, sha256: &str, opts: &FetchOptions) -> Result<PathBuf> {
    Ok(opts
        .cache_dir
        .join("downloads")
        .join("sha256")
        .join(sha256)
        .join(file_name_of(url)?))
}

pub fn download_verified(url: &str, sha256: &str, opts: &FetchOptions) -> Result<PathBuf> {
    let expected = normalize_sha256(sha256).with_context(|| {
        format!("`{sha256}` is not a sha256 (64 hex digits); cannot verify {url}")
    })?;
    let file_name = file_name_of(url)?;
    let final_path = cached_path(url, &expected, opts)?;
    let dir = final_path
        .parent()
        .context("a cached download has a folder")?
        .to_path_buf();
    if is_cached(&final_path, &expected) {
        return Ok(final_path);
    }
    fs_err::create_dir_all(&dir).context("creating the download cache")?;
    let _lock = lock::acquire(&lock_path_for(&final_path), "the same download")?;
    // Another run may have finished the file while we waited for the lock.
    if is_cached(&final_path, &expected) {
        return Ok(final_path);
    }
    if final_path.exists() {
        // Only a verified file is ever renamed here, so this is damage from outside.
        eprintln!(
            "fetch: the cached {} no longer matches its sha256; downloading it again",
            final_path.display()
        );
        fs_err::remove_file(&final_path).context("removing a damaged cache entry")?;
    }

    let part = part_path(&final_path);
    match &opts.mirror {
        Some(Mirror::Dir(mirror)) => copy_verified(&mirror.join(&file_name), &part, &expected)?,
        Some(Mirror::Url(base)) => {
            let url = mirror_url(base, &file_name)?;
            http_verified(&url, &part, &expected, opts)?;
        }
        None => {
            let url = Url::parse(url).with_context(|| format!("`{url}` is not a valid URL"))?;
            http_verified(&url, &part, &expected, opts)?;
        }
    }
    fs_err::rename(&part, &final_path).context("moving the verified download into the cache")?;
    Ok(final_path)
}

/// Whether the cache holds the file, checked again: hashing a source release
/// takes a fraction of a second and catches a cache damaged from outside.
/// A file that cannot be read counts as absent; the caller then replaces it under the lock.
fn is_cached(path: &Path, expected: &str) -> bool {
    path.is_file() && crate::hash::sha256_file(path).is_ok_and(|h| h == expected)
}

/// The last path segment of a URL: the name the file has upstream, on mirrors and in the cache.
fn file_name_of(url: &str) -> Result<String> {
    let parsed = Url::parse(url).with_context(|| format!("`{url}` is not a valid URL"))?;
    let name = parsed
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    if name.is_empty() || name == "." || name == ".." || name.contains('\\') {
        bail!("`{url}` does not end in a file name");
    }
    Ok(name.to_string())
}

/// `<base>/<file name>`, whether or not the base URL ends in `/`.
fn mirror_url(base: &Url, file_name: &str) -> Result<Url> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join(file_name)
        .with_context(|| format!("building the mirror URL for {file_name} from {base}"))
}

fn part_path(final_path: &Path) -> PathBuf {
    let mut name = final_path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    final_path.with_file_name(name)
}

fn mismatch(source: &str, expected: &str, actual: &str) -> anyhow::Error {
    anyhow!(
        "sha256 mismatch for {source}: expected {expected}, got {actual}. \
         The file was not cached. If the source is a mirror, replace its copy with \
         upstream's file; never change a recipe's checksum without checking the \
         one upstream publishes"
    )
}

/// A local mirror: copies while hashing into `part`, which is kept only if it matches.
fn copy_verified(source: &Path, part: &Path, expected: &str) -> Result<()> {
    let input = match File::open(source) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "the mirror folder {} has no {}; put upstream's file there under that name",
            source.parent().unwrap_or(source).display(),
            source.file_name().unwrap_or_default().to_string_lossy()
        ),
        Err(e) => return Err(e).with_context(|| format!("opening {}", source.display())),
    };
    eprintln!("fetch: copying {}", source.display());
    let mut output = File::create(part).with_context(|| format!("creating {}", part.display()))?;
    let mut hashing = pypy_archive::hash::HashingReader::new(input);
    std::io::copy(&mut hashing, &mut output)
        .with_context(|| format!("copying {} to {}", source.display(), part.display()))?;
    output
        .sync_all()
        .with_context(|| format!("writing {}", part.display()))?;
    let actual = hashing.hex_digest();
    if actual != expected {
        drop(output);
        let _ = std::fs::remove_file(part);
        return Err(mismatch(&source.display().to_string(), expected, &actual));
    }
    Ok(())
}

/// What one HTTP attempt came to.
enum Attempt {
    /// `part` is whole and matches.
    Verified,
    /// `part` is whole but does not match; `resumed` says whether it started from an old part.
    Mismatch { actual: String, resumed: bool },
}

/// Why an attempt failed: worth another try, or not.
enum Failure {
    Transient(anyhow::Error),
    Fatal(anyhow::Error),
}

/// Downloads `url` into `part` with retries, leaving a verified `part` behind.
fn http_verified(url: &Url, part: &Path, expected: &str, opts: &FetchOptions) -> Result<()> {
    let client = Client::builder()
        .user_agent(concat!("pypy-embed-xtask/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        // In the blocking client this bounds each read, not the whole download.
        .timeout(Duration::from_secs(120))
        .build()
        .context("creating the HTTP client")?;
    let mut progress = Progress::new(url.as_str());
    let mut failures = 0u32;
    let mut restarted_after_mismatch = false;
    loop {
        match attempt(&client, url, part, expected, &mut progress) {
            Ok(Attempt::Verified) => {
                progress.finish();
                return Ok(());
            }
            Ok(Attempt::Mismatch { actual, resumed }) => {
                remove_part(part)?;
                // An old part may hold bytes of another file or a corrupted
                // tail; one clean download from the start settles it.
                if resumed && !restarted_after_mismatch {
                    restarted_after_mismatch = true;
                    progress.note(&format!(
                        "the resumed download of {url} does not match its sha256; \
                         downloading it again from the start"
                    ));
                    continue;
                }
                return Err(mismatch(url.as_str(), expected, &actual));
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient(e)) => {
                failures += 1;
                if failures > opts.retries {
                    return Err(e.context(format!(
                        "downloading {url} failed {failures} times; giving up (the partial \
                         file {} is kept and a later run resumes it)",
                        part.display()
                    )));
                }
                let delay = opts.backoff.saturating_mul(1 << (failures - 1).min(16));
                progress.note(&format!(
                    "{e:#}; retry {failures} of {} in {delay:?}",
                    opts.retries
                ));
                std::thread::sleep(delay);
            }
        }
    }
}

fn remove_part(part: &Path) -> Result<()> {
    match std::fs::remove_file(part) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", part.display())),
    }
}

/// Hashes what an earlier attempt left in `part`.
fn hash_existing(part: &Path) -> Result<(Sha256, u64)> {
    let mut hasher = Sha256::new();
    let mut have = 0u64;
    let mut file = match File::open(part) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((hasher, 0)),
        Err(e) => return Err(e).with_context(|| format!("opening {}", part.display())),
    };
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", part.display()))?;
        if n == 0 {
            return Ok((hasher, have));
        }
        hasher.update(&buf[..n]);
        have += n as u64;
    }
}

/// One request: resumes from `part` when it holds bytes, streams the body into it while hashing.
fn attempt(
    client: &Client,
    url: &Url,
    part: &Path,
    expected: &str,
    progress: &mut Progress,
) -> Result<Attempt, Failure> {
    let fatal = Failure::Fatal;
    let (mut hasher, have) = hash_existing(part).map_err(fatal)?;
    // A run that died between the last byte and the rename left a whole file.
    if have > 0 && hex::encode(hasher.clone().finalize()) == expected {
        return Ok(Attempt::Verified);
    }

    let mut request = client.get(url.clone());
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let response = request.send().map_err(|e| classify_send_error(url, e))?;
    let status = response.status();

    let (start, total) = match status {
        StatusCode::PARTIAL_CONTENT if have > 0 => match content_range(&response) {
            Some((first, total)) if first == have => (have, total),
            _ => {
                let got = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("no Content-Range")
                    .to_string();
                remove_part(part).map_err(fatal)?;
                return Err(Failure::Transient(anyhow!(
                    "{url} answered the request for bytes {have}- with `{got}`; \
                     restarting the download from the start"
                )));
            }
        },
        StatusCode::OK => {
            if have > 0 {
                progress.note(&format!(
                    "{url} ignored the Range request; restarting from the start"
                ));
                hasher = Sha256::new();
            }
            (0, response.content_length())
        }
        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
            // The part is longer than the file: it cannot be a prefix of it.
            remove_part(part).map_err(fatal)?;
            return Err(Failure::Transient(anyhow!(
                "{url} cannot resume at byte {have}; restarting the download from the start"
            )));
        }
        // "Try again later" answers, like 5xx, are worth the backoff.
        s if s.is_server_error()
            || s == StatusCode::REQUEST_TIMEOUT
            || s == StatusCode::TOO_MANY_REQUESTS =>
        {
            return Err(Failure::Transient(anyhow!("{url} answered {s}")));
        }
        s => {
            return Err(Failure::Fatal(anyhow!(
                "{url} answered {s}; check the URL (or the mirror) - not retrying"
            )));
        }
    };

    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(start > 0)
        .truncate(start == 0)
        .open(part)
        .with_context(|| format!("opening {}", part.display()))
        .map_err(fatal)?;
    progress.restart_at(start, total);
    let received = stream_body(response, &mut file, &mut hasher, progress);
    // Whatever arrived stays in the part so that the next attempt resumes after it.
    file.sync_all()
        .with_context(|| format!("writing {}", part.display()))
        .map_err(fatal)?;
    let received = received?;
    if let Some(total) = total {
        if start + received < total {
            return Err(Failure::Transient(anyhow!(
                "{url} ended after {} of {total} bytes",
                start + received
            )));
        }
    }
    let actual = hex::encode(hasher.finalize());
    if actual == expected {
        Ok(Attempt::Verified)
    } else {
        Ok(Attempt::Mismatch {
            actual,
            resumed: start > 0,
        })
    }
}

/// Copies the body into `file`, hashing it; a broken connection is transient, a disk error is not.
fn stream_body(
    mut response: Response,
    file: &mut File,
    hasher: &mut Sha256,
    progress: &mut Progress,
) -> Result<u64, Failure> {
    let url = response.url().clone();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => return Ok(received),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Failure::Transient(anyhow!(
                    "the download of {url} broke off after {received} bytes: {e}"
                )))
            }
        };
        file.write_all(&buf[..n])
            .context("writing the partial download")
            .map_err(Failure::Fatal)?;
        hasher.update(&buf[..n]);
        received += n as u64;
        progress.advance(n as u64);
    }
}

/// Connection problems are retried; a bad URL or a redirect loop is not.
fn classify_send_error(url: &Url, e: reqwest::Error) -> Failure {
    if e.is_builder() || e.is_redirect() {
        Failure::Fatal(anyhow!(e).context(format!("cannot download {url}")))
    } else {
        Failure::Transient(anyhow!(e).context(format!("requesting {url}")))
    }
}

/// `Content-Range: bytes <first>-<last>/<total|*>` as (first, total).
fn content_range(response: &Response) -> Option<(u64, Option<u64>)> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    parse_content_range(value)
}

fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, _last) = range.split_once('-')?;
    let first = first.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn mirror_url_appends_the_file_name() {
        let base = Url::parse("http://m.example/pypy").unwrap();
        assert_eq!(
            mirror_url(&base, "a.tar.bz2").unwrap().as_str(),
            "http://m.example/pypy/a.tar.bz2"
        );
        let base = Url::parse("http://m.example/pypy/").unwrap();
        assert_eq!(
            mirror_url(&base, "a.tar.bz2").unwrap().as_str(),
            "http://m.example/pypy/a.tar.bz2"
        );
    }

    #[test]
    fn file_name_comes_from_the_last_segment() {
        assert_eq!(
            file_name_of("https://downloads.python.org/pypy/pypy3.11-v7.3.20-src.tar.bz2").unwrap(),
            "pypy3.11-v7.3.20-src.tar.bz2"
        );
        assert!(file_name_of("https://downloads.python.org/pypy/").is_err());
    }

    #[test]
    fn malformed_checksum_is_refused_before_any_download() {
        let dir = tempfile::tempdir().unwrap();
        let opts = FetchOptions::new(dir.path());
        let err = download_verified("http://127.0.0.1:9/x.tar.gz", "abc", &opts).unwrap_err();
        assert!(format!("{err:#}").contains("not a sha256"), "{err:#}");
    }
}
