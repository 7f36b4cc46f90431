//! The per-user cache of extracted archives: `<cache>/<archive sha256>/pypy/…`.
//!
//! An archive is extracted once, into a temporary folder beside its final
//! place, checked file by file against its `PYPY.json` (sha256, size, mode,
//! link target), then renamed into place, all under a file lock so that many
//! processes starting at once extract it once and all succeed.
//!
//! Checking a cached copy must be cheap, since it happens at every start.
//! Hashing 100 MB would cost more than starting PyPy, so full hashes are
//! checked once, while extracting, and recorded in the stamp with each
//! file's size, mode and mtime (the archive's, which we set); `stamp` says
//! what a start compares and what is left to the moment Python imports a file.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pypy_archive::entry::{check_link, safe_relative_path};
use pypy_archive::extract::{read_tar, EntryKind, ExtractError};
use pypy_archive::fs::write_atomic;
use pypy_archive::hash::{sha256_bytes, sha256_file};
use pypy_archive::lock::FileLock;
use pypy_archive::manifest::{compare_files, FileDifference, FileEntry};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::manifest::{Manifest, Paths, MANIFEST_NAME, TOP_DIR};
use crate::stamp::{self, StampEntry, StartFiles, Verdict};

/// An archive to extract: a file, or bytes built into the binary with their sha256.
pub(crate) enum ArchiveRef<'a> {
    File(&'a Path),
    #[allow(dead_code)] // only with the `embedded-archive` feature
    Embedded {
        bytes: &'static [u8],
        sha256: &'static str,
    },
}

impl ArchiveRef<'_> {
    fn describe(&self) -> String {
        match self {
            ArchiveRef::File(p) => p.display().to_string(),
            ArchiveRef::Embedded { .. } => "the archive embedded in the binary".to_string(),
        }
    }
}

/// A checked extraction in the cache.
#[derive(Debug)]
pub(crate) struct Extracted {
    /// The `pypy/` folder.
    pub top: PathBuf,
    pub sha256: String,
    pub extracted_now: bool,
    /// Why an existing copy was replaced, if it was.
    pub repaired: Option<String>,
}

/// The extracted copy of `archive`, extracting it first if the cache has
/// none or a damaged one.
pub(crate) fn ensure(cache: &Path, archive: &ArchiveRef<'_>) -> Result<Extracted, Error> {
    let sha256 = match archive {
        ArchiveRef::File(path) => file_sha256(cache, path)?,
        ArchiveRef::Embedded { sha256, .. } => sha256.to_string(),
    };
    let entry = cache.join(&sha256);
    let done = |extracted_now, repaired| Extracted {
        top: entry.join(TOP_DIR),
        sha256: sha256.clone(),
        extracted_now,
        repaired,
    };
    // A complete entry's files are never modified in place, so checking it
    // needs no lock; bringing its folder times up to date does.
    match stamp::check(&entry, &sha256) {
        Ok(Verdict::Intact) => return Ok(done(false, None)),
        Ok(Verdict::IntactFoldersChanged) => {
            refresh_folders(cache, &entry, &sha256);
            return Ok(done(false, None));
        }
        Err(_) => {}
    }

    fs::create_dir_all(cache).map_err(|e| Error::io("creating the cache folder", cache, e))?;
    let lock_path = cache.join(format!("{sha256}.lock"));
    // Blocks while another process extracts; the OS releases the lock if that
    // process dies, so a crash cannot wedge later starts.
    let lock =
        FileLock::acquire(&lock_path, |_| {}).map_err(|e| Error::io("locking", &lock_path, e))?;

    // Whoever held the lock before us may have done the work.
    let repaired = match stamp::check(&entry, &sha256) {
        Ok(verdict) => {
            if verdict == Verdict::IntactFoldersChanged {
                // Best effort: a stamp left as it was costs the next start a full check.
                let _ = stamp::refresh_folders(&entry, &sha256);
            }
            return Ok(done(false, None));
        }
        Err(reason) => entry.exists().then_some(reason),
    };
    remove_leftovers(cache, &sha256);

    let tmp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{sha256}-"))
        .tempdir_in(cache)
        .map_err(|e| Error::io("creating a temporary folder in", cache, e))?;
    let (files, paths) = extract(archive, tmp.path())?;
    stamp::write(tmp.path(), &sha256, files, &StartFiles::new(&paths))?;

    // A damaged copy goes aside first: processes still running from it keep their open files.
    pypy_archive::fs::replace_dir(&tmp.keep(), &entry)
        .map_err(|e| Error::io("renaming into place", &entry, e))?;
    drop(lock);
    Ok(done(true, repaired))
}

/// Brings the stamp's folder times up to date under the entry's lock, so
/// that later starts skip the full check; best effort, since a stamp left
/// as it was is still correct.
fn refresh_folders(cache: &Path, entry: &Path, sha256: &str) {
    let lock_path = cache.join(format!("{sha256}.lock"));
    if let Ok(_lock) = FileLock::acquire(&lock_path, |_| {}) {
        if let Ok(Verdict::IntactFoldersChanged) = stamp::check(entry, sha256) {
            let _ = stamp::refresh_folders(entry, sha256);
        }
    }
}

/// Removes half-made folders of processes that died while extracting; only
/// called under the lock, so no live process owns them.
fn remove_leftovers(cache: &Path, sha256: &str) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&format!(".tmp-{sha256}-"))
            || name.starts_with(&format!(".{sha256}.old-"))
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Writes `source` (the bootstrap) as a module in `<cache>/bootstrap/`, once
/// per content, and returns its folder and module name. Imported, its
/// bytecode is cached by PyPy: compiling it costs ~2 ms at every start,
/// loading the cached bytecode ~0.5 ms. `None` when the cache is not
/// writable; the caller then runs the source itself.
pub(crate) fn bootstrap_module(cache: &Path, source: &str) -> Option<(PathBuf, String)> {
    let digest = sha256_bytes(source.as_bytes());
    let name = format!("_embed_runtime_bootstrap_{}", &digest[..16]);
    let dir = cache.join("bootstrap");
    let path = dir.join(format!("{name}.py"));
    if fs::read(&path).ok().as_deref() != Some(source.as_bytes()) {
        fs::create_dir_all(&dir).ok()?;
        write_atomic(&path, source.as_bytes()).ok()?;
    }
    Some((dir, name))
}

/// The sha256 of an archive file, remembered per path by size, mtime and
/// (on Unix) inode and ctime, so that a start does not hash 30 MB again.
fn file_sha256(cache: &Path, path: &Path) -> Result<String, Error> {
    let meta = fs::metadata(path).map_err(|e| Error::io("reading", path, e))?;
    let identity = file_identity(&meta);
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let key = sha256_bytes(canonical.to_string_lossy().as_bytes());
    let memo_dir = cache.join("archives");
    let memo = memo_dir.join(format!("{key}.json"));
    if let Ok(text) = fs::read_to_string(&memo) {
        if let Ok(known) = serde_json::from_str::<ArchiveMemo>(&text) {
            if known.identity == identity && known.path == canonical {
                return Ok(known.sha256);
            }
        }
    }
    let sha256 = sha256_file(path).map_err(|e| Error::io("reading", path, e))?;
    // Remembering is an optimisation: a failure to write is not an error.
    let record = ArchiveMemo {
        path: canonical,
        identity,
        sha256: sha256.clone(),
    };
    if fs::create_dir_all(&memo_dir).is_ok() {
        let json = serde_json::to_vec(&record).expect("a memo always serialises");
        let _ = write_atomic(&memo, &json);
    }
    Ok(sha256)
}

#[derive(Debug, Serialize, Deserialize)]
struct ArchiveMemo {
    path: PathBuf,
    identity: Vec<u128>,
    sha256: String,
}

fn file_identity(meta: &fs::Metadata) -> Vec<u128> {
    let nanos = |t: std::io::Result<SystemTime>| {
        t.ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos())
    };
    #[allow(unused_mut)]
    let mut id = vec![u128::from(meta.len()), nanos(meta.modified())];
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        id.push(u128::from(meta.ino()));
        id.push(u128::from(meta.dev()));
        id.push((meta.ctime() as u128) * 1_000_000_000 + meta.ctime_nsec() as u128);
    }
    id
}

/// A file to write, handed from the reading thread to a writer.
struct Job {
    rel: String,
    path: PathBuf,
    data: Vec<u8>,
    mode: u32,
    mtime: u64,
}

/// A written file, with the hash computed while writing it.
struct Written {
    rel: String,
    sha256: String,
    size: u64,
    mode: u32,
    mtime: u64,
}

/// Extracts `archive` into `dest` and checks it against its manifest; returns the stamp's files.
///
/// One thread decompresses and parses the tar stream while writers hash and
/// write files, so that decompression, hashing and writing overlap.
fn extract(
    archive: &ArchiveRef<'_>,
    dest: &Path,
) -> Result<(BTreeMap<String, StampEntry>, Paths), Error> {
    let name = archive.describe();
    // Multi-member: a parallel writer compresses chunks as separate gzip
    // members, which a plain GzDecoder would stop after the first of.
    let reader: Box<dyn Read> = match archive {
        ArchiveRef::File(path) => {
            let file = File::open(path).map_err(|e| Error::io("reading", path, e))?;
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                1 << 20,
                file,
            )))
        }
        ArchiveRef::Embedded { bytes, .. } => Box::new(flate2::read::MultiGzDecoder::new(*bytes)),
    };
    let writers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    let (send, receive) = mpsc::sync_channel::<Job>(64);
    let receive = Arc::new(Mutex::new(receive));
    let handles: Vec<_> = (0..writers)
        .map(|_| {
            let receive = Arc::clone(&receive);
            std::thread::spawn(move || write_jobs(&receive))
        })
        .collect();

    let read = read_entries(reader, &name, dest, &send);
    drop(send);
    let mut written = Vec::new();
    let mut write_error = None;
    for handle in handles {
        match handle.join() {
            Ok((done, error)) => {
                written.extend(done);
                write_error = write_error.or(error);
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    let read = read?;
    if let Some(error) = write_error {
        return Err(error);
    }
    compare_with_manifest(&name, read, written)
}

/// What the reading thread saw besides regular files.
struct ReadResult {
    manifest: Option<Vec<u8>>,
    links: BTreeMap<String, String>,
}

/// Why reading stopped: the shared reader refused the archive, the cache
/// failed on its own, or every writer stopped (after an error they report).
enum ReadError {
    Archive(ExtractError),
    Cache(Error),
    WritersStopped,
}

impl From<ExtractError> for ReadError {
    fn from(error: ExtractError) -> Self {
        ReadError::Archive(error)
    }
}

/// Parses the archive with pypy-archive's one safe reader (which refuses
/// absolute paths, `..`, hard links and special files), applies the rules of
/// our format on top, creates folders and links, and hands files to the writers.
fn read_entries(
    reader: Box<dyn Read>,
    name: &str,
    dest: &Path,
    send: &mpsc::SyncSender<Job>,
) -> Result<ReadResult, Error> {
    let bad = |reason: String| ReadError::Cache(Error::archive(name, reason));
    let mut seen = HashSet::new();
    let mut made_dirs: HashSet<PathBuf> = HashSet::new();
    let mut result = ReadResult {
        manifest: None,
        links: BTreeMap::new(),
    };
    let read = read_tar(reader, |raw_path, kind, contents| {
        let rel = safe_relative_path(raw_path, TOP_DIR)
            .map_err(|r| bad(format!("{}: {r}", raw_path.display())))?;
        if let Some(link) = result
            .links
            .keys()
            .find(|l| rel.starts_with(&format!("{l}/")))
        {
            return Err(bad(format!("{rel} lies under the symbolic link {link}")));
        }
        if kind == EntryKind::Dir {
            let dir = dest.join(&rel);
            fs::create_dir_all(&dir)
                .map_err(|e| ReadError::Cache(Error::io("creating", &dir, e)))?;
            made_dirs.insert(dir);
            return Ok(());
        }
        if !seen.insert(rel.clone()) {
            return Err(bad(format!("{rel} appears twice")));
        }
        let path = dest.join(&rel);
        let parent = path
            .parent()
            .expect("a relative path under dest has a parent")
            .to_path_buf();
        if !made_dirs.contains(&parent) {
            fs::create_dir_all(&parent)
                .map_err(|e| ReadError::Cache(Error::io("creating", &parent, e)))?;
            made_dirs.insert(parent);
        }
        match kind {
            EntryKind::Dir => unreachable!("folders are handled above"),
            EntryKind::Symlink(target) => {
                let target = target.to_string_lossy().into_owned();
                check_link(&rel, &target).map_err(|r| bad(format!("{rel} -> {target}: {r}")))?;
                make_symlink(&target, &path).map_err(ReadError::Cache)?;
                result.links.insert(rel, target);
            }
            EntryKind::File { mode, mtime, size } => {
                let mtime =
                    mtime.ok_or_else(|| bad(format!("{rel}: the entry has no valid mtime")))?;
                // Capped: the stated size is only a hint until the bytes are read.
                let mut data = Vec::with_capacity(size.min(1 << 28) as usize);
                contents
                    .read_to_end(&mut data)
                    .map_err(|e| bad(format!("{rel}: damaged: {e}")))?;
                if rel == format!("{TOP_DIR}/{MANIFEST_NAME}") {
                    result.manifest = Some(data.clone());
                }
                let job = Job {
                    rel,
                    path,
                    data,
                    mode: mode & 0o777,
                    mtime,
                };
                if send.send(job).is_err() {
                    return Err(ReadError::WritersStopped);
                }
            }
        }
        Ok(())
    });
    match read {
        Ok(()) | Err(ReadError::WritersStopped) => Ok(result),
        Err(ReadError::Archive(e)) => Err(Error::archive(name, e.full_message())),
        Err(ReadError::Cache(e)) => Err(e),
    }
}

/// Writers take jobs until the channel closes; after an error they keep
/// draining so that the reader never blocks.
fn write_jobs(receive: &Mutex<mpsc::Receiver<Job>>) -> (Vec<Written>, Option<Error>) {
    let mut done = Vec::new();
    let mut error = None;
    loop {
        let job = match receive.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => break,
        };
        if error.is_some() {
            continue;
        }
        match write_one(&job) {
            Ok(()) => done.push(Written {
                sha256: sha256_bytes(&job.data),
                size: job.data.len() as u64,
                rel: job.rel,
                mode: job.mode,
                mtime: job.mtime,
            }),
            Err(e) => error = Some(e),
        }
    }
    (done, error)
}

fn write_one(job: &Job) -> Result<(), Error> {
    let io = |e| Error::io("writing", &job.path, e);
    let mut options = File::options();
    options.write(true).create_new(true);
    let mut file = options.open(&job.path).map_err(io)?;
    file.write_all(&job.data).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Set explicitly: the mode given at creation is reduced by the umask.
        file.set_permissions(fs::Permissions::from_mode(job.mode))
            .map_err(io)?;
    }
    file.set_modified(UNIX_EPOCH + Duration::from_secs(job.mtime))
        .map_err(io)?;
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &str, path: &Path) -> Result<(), Error> {
    std::os::unix::fs::symlink(target, path).map_err(|e| Error::io("creating the link", path, e))
}

#[cfg(not(unix))]
fn make_symlink(target: &str, path: &Path) -> Result<(), Error> {
    // Windows needs privileges for symbolic links; our Windows archives have none.
    Err(Error::archive(
        path.display(),
        format!("symbolic link to {target} cannot be created on this platform"),
    ))
}

/// Checks every file against the manifest and builds the stamp.
fn compare_with_manifest(
    name: &str,
    read: ReadResult,
    written: Vec<Written>,
) -> Result<(BTreeMap<String, StampEntry>, Paths), Error> {
    let bad = |reason: String| Error::archive(name, reason);
    let manifest_bytes = read
        .manifest
        .ok_or_else(|| bad(format!("it has no {TOP_DIR}/{MANIFEST_NAME}")))?;
    let text = String::from_utf8(manifest_bytes)
        .map_err(|_| bad(format!("{MANIFEST_NAME} is not UTF-8")))?;
    let manifest = Manifest::from_json(&text).map_err(|e| bad(format!("{MANIFEST_NAME}: {e}")))?;
    let prefix = format!("{TOP_DIR}/");
    let manifest_rel = format!("{TOP_DIR}/{MANIFEST_NAME}");

    // What the archive held, as the manifest records it (links by their target).
    let mut found = BTreeMap::new();
    let mut stamp = BTreeMap::new();
    for w in written {
        stamp.insert(
            w.rel.clone(),
            StampEntry {
                link: None,
                size: w.size,
                mode: w.mode,
                mtime: w.mtime,
            },
        );
        if w.rel == manifest_rel {
            continue;
        }
        let key = w.rel.strip_prefix(&prefix).unwrap_or(&w.rel).to_string();
        found.insert(
            key,
            FileEntry {
                sha256: w.sha256,
                size: w.size,
                mode: w.mode,
                link: None,
            },
        );
    }
    for (rel, target) in read.links {
        let key = rel.strip_prefix(&prefix).unwrap_or(&rel).to_string();
        found.insert(key, FileEntry::link(&target));
        stamp.insert(
            rel,
            StampEntry {
                link: Some(target),
                size: 0,
                mode: 0,
                mtime: 0,
            },
        );
    }
    let differences = compare_files(&manifest.files, &found);
    // The first wrong or unlisted file; else what is missing, counted.
    if let Some(difference) = differences
        .iter()
        .find(|d| !matches!(d, FileDifference::Missing(_)))
    {
        let key = difference.path();
        return Err(bad(match difference {
            FileDifference::Unlisted(_) => format!("{key} is not listed in {MANIFEST_NAME}"),
            FileDifference::Link {
                listed: Some(_),
                found: None,
                ..
            } => format!("{key} is a file, but {MANIFEST_NAME} lists a link"),
            FileDifference::Link { listed, found, .. } => format!(
                "{key} links to {}, but {MANIFEST_NAME} lists {listed:?}",
                found.as_deref().unwrap_or("nothing")
            ),
            FileDifference::Content { listed, found, .. } => format!(
                "{key} has sha256 {} ({} bytes), but {MANIFEST_NAME} lists {} ({} bytes)",
                found.sha256, found.size, listed.sha256, listed.size
            ),
            FileDifference::Mode { listed, found, .. } => {
                format!("{key} has mode {found:o}, but {MANIFEST_NAME} lists {listed:o}")
            }
            FileDifference::Missing(_) => unreachable!("missing files are counted below"),
        }));
    }
    if let Some(missing) = differences.first() {
        return Err(bad(format!(
            "{MANIFEST_NAME} lists {} (and {} more), which the archive lacks",
            missing.path(),
            differences.len() - 1
        )));
    }
    Ok((stamp, manifest.paths))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{FileEntry, Origin, Paths, FORMAT_VERSION};

    /// A real tar.gz archive with a manifest that matches its files, plus
    /// whatever extra entries a test adds.
    struct TestArchive {
        files: Vec<(String, Vec<u8>, u32)>,
        links: Vec<(String, String)>,
        manifest_files: BTreeMap<String, FileEntry>,
    }

    impl TestArchive {
        fn new() -> Self {
            let mut a = TestArchive {
                files: Vec::new(),
                links: Vec::new(),
                manifest_files: BTreeMap::new(),
            };
            a.file("bin/libpypy3.11-c.so", b"not really a library", 0o755);
            a.file("lib/pypy3.11/site.py", b"# site\n", 0o644);
            a.link("bin/pypy3", "pypy3.11");
            a.file("bin/pypy3.11", b"launcher", 0o755);
            a
        }

        fn file(&mut self, rel: &str, data: &[u8], mode: u32) {
            self.files.push((rel.into(), data.to_vec(), mode));
            self.manifest_files.insert(
                rel.into(),
                FileEntry {
                    sha256: sha256_bytes(data),
                    size: data.len() as u64,
                    mode,
                    link: None,
                },
            );
        }

        fn link(&mut self, rel: &str, target: &str) {
            self.links.push((rel.into(), target.into()));
            self.manifest_files.insert(
                rel.into(),
                FileEntry {
                    sha256: String::new(),
                    size: 0,
                    mode: 0o777,
                    link: Some(target.into()),
                },
            );
        }

        fn manifest(&self) -> Manifest {
            Manifest {
                format_version: FORMAT_VERSION,
                pypy_version: "7.3.20".into(),
                python_version: "3.11".into(),
                target: "x86_64-unknown-linux-gnu".into(),
                paths: Paths {
                    libpypy: "bin/libpypy3.11-c.so".into(),
                    launcher: Some("bin/pypy3.11".into()),
                    stdlib: "lib/pypy3.11".into(),
                    include: "include/pypy3.11".into(),
                },
                embedding_symbols: vec![],
                needed_libraries: vec![],
                no_headers: false,
                portability: None,
                origin: Origin::checkout(None),
                files: self.manifest_files.clone(),
            }
        }

        /// Writes the archive; `raw` entries are appended with their names unchecked.
        fn write(&self, path: &Path, raw: &[(&str, tar::EntryType, &str)]) {
            let file = File::create(path).unwrap();
            let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            let mut tar = tar::Builder::new(gz);
            let mut add = |name: &str, data: &[u8], mode: u32| {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(mode);
                h.set_mtime(1_700_000_000);
                h.set_entry_type(tar::EntryType::Regular);
                tar.append_data(&mut h, name, data).unwrap();
            };
            add(
                "pypy/PYPY.json",
                self.manifest().to_json().as_bytes(),
                0o644,
            );
            for (rel, data, mode) in &self.files {
                add(&format!("pypy/{rel}"), data, *mode);
            }
            for (rel, target) in &self.links {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                tar.append_link(&mut h, format!("pypy/{rel}"), target)
                    .unwrap();
            }
            for (name, kind, target) in raw {
                let mut h = tar::Header::new_old();
                h.set_entry_type(*kind);
                h.set_mode(0o644);
                h.set_size(0);
                // Bypass the tar crate's own path checks: the point is to feed bad names.
                let bytes = name.as_bytes();
                h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
                if !target.is_empty() {
                    let t = target.as_bytes();
                    h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
                }
                h.set_cksum();
                tar.append(&h, std::io::empty()).unwrap();
            }
            tar.into_inner().unwrap().finish().unwrap();
        }
    }

    #[test]
    fn extracts_checks_and_reuses_an_archive() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        TestArchive::new().write(&archive, &[]);
        let cache = dir.path().join("cache");
        let first = ensure(&cache, &ArchiveRef::File(&archive)).unwrap();
        assert!(first.extracted_now);
        assert_eq!(
            fs::read(first.top.join("lib/pypy3.11/site.py")).unwrap(),
            b"# site\n"
        );
        assert_eq!(
            fs::read_link(first.top.join("bin/pypy3")).unwrap(),
            Path::new("pypy3.11")
        );
        let again = ensure(&cache, &ArchiveRef::File(&archive)).unwrap();
        assert!(!again.extracted_now);
        assert_eq!(again.sha256, first.sha256);
        // The memo of the archive's hash was written and is used.
        assert_eq!(fs::read_dir(cache.join("archives")).unwrap().count(), 1);
    }

    #[test]
    fn reads_every_member_of_a_multi_member_gzip() {
        // Parallel writers compress chunks as separate gzip members.
        let dir = tempfile::tempdir().unwrap();
        let single = dir.path().join("single.tar.gz");
        TestArchive::new().write(&single, &[]);
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(File::open(&single).unwrap())
            .read_to_end(&mut tar_bytes)
            .unwrap();
        let (first, second) = tar_bytes.split_at(tar_bytes.len() / 2);
        let mut multi = Vec::new();
        for half in [first, second] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(half).unwrap();
            multi.extend(gz.finish().unwrap());
        }
        let archive = dir.path().join("multi.tar.gz");
        fs::write(&archive, multi).unwrap();
        let got = ensure(&dir.path().join("cache"), &ArchiveRef::File(&archive)).unwrap();
        assert_eq!(fs::read(got.top.join("bin/pypy3.11")).unwrap(), b"launcher");
    }

    #[test]
    fn extracts_an_archive_held_in_memory() {
        // The `embedded-archive` feature's path: bytes and a sha256 from the build script.
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        TestArchive::new().write(&archive, &[]);
        let bytes: &'static [u8] = Box::leak(fs::read(&archive).unwrap().into_boxed_slice());
        let sha256: &'static str = Box::leak(sha256_bytes(bytes).into_boxed_str());
        let cache = dir.path().join("cache");
        let got = ensure(&cache, &ArchiveRef::Embedded { bytes, sha256 }).unwrap();
        assert!(got.extracted_now);
        assert_eq!(got.sha256, sha256);
        assert_eq!(fs::read(got.top.join("bin/pypy3.11")).unwrap(), b"launcher");
        // The same archive as a file lands in the same entry.
        let again = ensure(&cache, &ArchiveRef::File(&archive)).unwrap();
        assert!(!again.extracted_now);
        assert_eq!(again.top, got.top);
    }

    #[test]
    fn a_damaged_entry_is_extracted_again() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        TestArchive::new().write(&archive, &[]);
        let cache = dir.path().join("cache");
        let first = ensure(&cache, &ArchiveRef::File(&archive)).unwrap();
        let site = first.top.join("lib/pypy3.11/site.py");
        fs::write(&site, b"# edited\n").unwrap();
        let second = ensure(&cache, &ArchiveRef::File(&archive)).unwrap();
        assert!(second.extracted_now);
        assert!(
            second.repaired.as_deref().unwrap().contains("site.py"),
            "{:?}",
            second.repaired
        );
        assert_eq!(fs::read(&site).unwrap(), b"# site\n");
        fs::remove_file(first.top.join("bin/pypy3")).unwrap();
        let third = ensure(&cache, &ArchiveRef::File(&archive)).unwrap();
        assert!(third.repaired.unwrap().contains("bin/pypy3"));
    }

    fn extract_error(archive: &TestArchive, raw: &[(&str, tar::EntryType, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        archive.write(&path, raw);
        let err = ensure(&dir.path().join("cache"), &ArchiveRef::File(&path)).unwrap_err();
        // Nothing half-made is left at the final place.
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock") && n != "archives")
            .collect();
        assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
        err.to_string()
    }

    #[test]
    fn unsafe_entries_are_refused() {
        let a = TestArchive::new();
        let err = extract_error(&a, &[("/etc/evil", tar::EntryType::Regular, "")]);
        assert!(err.contains("absolute"), "{err}");
        let err = extract_error(&a, &[("pypy/../../evil", tar::EntryType::Regular, "")]);
        assert!(err.contains(".."), "{err}");
        let err = extract_error(
            &a,
            &[("pypy/lib/escape", tar::EntryType::Symlink, "../../../etc")],
        );
        assert!(err.contains("outside"), "{err}");
        let err = extract_error(&a, &[("pypy/lib/abs", tar::EntryType::Symlink, "/etc")]);
        assert!(err.contains("absolute link"), "{err}");
        let err = extract_error(&a, &[("pypy/dev", tar::EntryType::Char, "")]);
        assert!(err.contains("device file"), "{err}");
        let err = extract_error(&a, &[("pypy/bin/pypy3/x", tar::EntryType::Regular, "")]);
        assert!(err.contains("under the symbolic link"), "{err}");
    }

    #[test]
    fn files_must_match_the_manifest() {
        let mut a = TestArchive::new();
        a.files[0].1 = b"changed after the manifest was written".to_vec();
        let err = extract_error(&a, &[]);
        assert!(err.contains("bin/libpypy3.11-c.so has sha256"), "{err}");

        let a = TestArchive::new();
        let err = extract_error(&a, &[("pypy/extra.txt", tar::EntryType::Regular, "")]);
        assert!(err.contains("extra.txt is not listed"), "{err}");

        let mut a = TestArchive::new();
        a.manifest_files.insert(
            "lib/pypy3.11/os.py".into(),
            FileEntry {
                sha256: "00".repeat(32),
                size: 1,
                mode: 0o644,
                link: None,
            },
        );
        let err = extract_error(&a, &[]);
        assert!(
            err.contains("lists lib/pypy3.11/os.py") && err.contains("lacks"),
            "{err}"
        );
    }
}
