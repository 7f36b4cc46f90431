//! The record of a complete extraction (the stamp) and the checks a start
//! makes against it, so that a changed or missing file of a cached tree is
//! noticed without paying a `stat` per file at every start.
//!
//! A check of all 2,858 files of a PyPy 3.11 tree costs about 5 ms, a fifth
//! of PyPy's whole start-up. So the work is split by when a file is read:
//!
//! - **Before loading PyPy**, a start checks what PyPy reads while it
//!   starts (libpypy's folder, the stdlib's top-level modules, `encodings/`,
//!   the `.pth` files of `site-packages/`) file by file, and every folder of
//!   the tree by its mtime. Deleting, adding or renaming a file anywhere
//!   changes its folder's mtime; only then are all files checked, and the
//!   tree is extracted again if one of them differs.
//! - **Everything else is checked when Python imports it**: the runtime
//!   hooks the import system's file loaders (see [`Watch`]); a module that
//!   changed since extraction fails to import with an error that says so,
//!   and the entry is marked damaged so that the next start extracts it again.
//!
//! What escapes: a file read as data rather than imported (a grammar file, a
//! bundled wheel) that is rewritten in place, keeping its name; and, as
//! before, a change that keeps size and mtime (restored mtimes, bit rot).
//!
//! The stamp is two files in the entry: `files.json`, every file's size,
//! mode and mtime (read only when a full check or an import needs it), and
//! `stamp.json`, written last as the sign of a complete extraction, with the
//! start files and the folders' mtimes. `__pycache__` folders are made at
//! extraction where PyPy will write bytecode, so that writing it leaves the
//! folders' mtimes alone; bytecode itself is never checked, since PyPy
//! checks each `.pyc` against its source.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::manifest::{Paths, TOP_DIR};

/// The sign of a complete, checked extraction.
pub(crate) const STAMP_NAME: &str = "stamp.json";
/// Every file of the extraction, for full checks and checks at import.
const FILES_NAME: &str = "files.json";
/// Why the entry must be extracted again, written by a process that found a
/// changed file when it was imported.
const DAMAGED_NAME: &str = "damaged";
const STAMP_FORMAT: u32 = 2;
const BYTECODE_FOLDER: &str = "__pycache__";

/// The small record a start reads.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stamp {
    format: u32,
    archive_sha256: String,
    /// The files PyPy reads while starting; paths relative to the entry.
    start: BTreeMap<String, StampEntry>,
    /// Every folder of the tree but `__pycache__`, with its mtime.
    folders: BTreeMap<String, FolderTime>,
}

/// A folder's mtime: seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct FolderTime(i64, u32);

/// One file as extracted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct StampEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub mode: u32,
    /// Seconds since the epoch, as set from the archive.
    #[serde(default)]
    pub mtime: u64,
}

/// What a start's check found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every file as extracted.
    Intact,
    /// Every file as extracted, but folders changed (files added, bytecode
    /// folders made): the stamp's folder times should be brought up to date.
    IntactFoldersChanged,
}

/// Which files PyPy reads while it starts, before the runtime can watch
/// imports: from the manifest's layout, so it holds for any PyPy version.
pub(crate) struct StartFiles {
    /// Folders whose own files are read (not their subfolders').
    shallow: Vec<String>,
    /// Folders read whole.
    deep: Vec<String>,
}

impl StartFiles {
    pub(crate) fn new(paths: &Paths) -> Self {
        let top = |rel: &str| format!("{TOP_DIR}/{rel}");
        let libpypy_dir = Path::new(&paths.libpypy)
            .parent()
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .filter(|p| !p.is_empty())
            .map(|p| top(&p))
            .unwrap_or_else(|| TOP_DIR.to_string());
        StartFiles {
            shallow: vec![
                TOP_DIR.to_string(),
                libpypy_dir,
                top(&paths.stdlib),
                top(&format!("{}/site-packages", paths.stdlib)),
            ],
            deep: vec![top(&format!("{}/encodings/", paths.stdlib))],
        }
    }

    fn contains(&self, rel: &str) -> bool {
        let folder = rel.rsplit_once('/').map_or("", |(dir, _)| dir);
        self.shallow.iter().any(|s| s == folder) || self.deep.iter().any(|d| rel.starts_with(d))
    }
}

/// Writes the stamp of the complete extraction in `entry` (still in its
/// temporary place): `files.json`, the bytecode folders, then `stamp.json`.
pub(crate) fn write(
    entry: &Path,
    sha256: &str,
    files: BTreeMap<String, StampEntry>,
    start: &StartFiles,
) -> Result<(), Error> {
    let files_path = entry.join(FILES_NAME);
    let files_json = serde_json::to_vec(&files).expect("a file list always serialises");
    fs::write(&files_path, files_json).map_err(|e| Error::io("writing", &files_path, e))?;
    make_bytecode_folders(entry, &files)?;
    let folders = folders(entry)?;
    // The folders get the archive's time, as its files did: left at the
    // time of extraction, a file deleted within the same clock tick (a few
    // milliseconds, or a second on some file systems) would leave its
    // folder's mtime as recorded.
    let archive_time = files.values().map(|f| f.mtime).max().unwrap_or(0);
    for rel in &folders {
        set_mtime(&entry.join(rel), archive_time)?;
    }
    let stamp = Stamp {
        format: STAMP_FORMAT,
        archive_sha256: sha256.to_string(),
        start: files
            .into_iter()
            .filter(|(rel, _)| start.contains(rel) && !is_bytecode_cache(rel))
            .collect(),
        folders: folder_times(entry, &folders)?,
    };
    let stamp_path = entry.join(STAMP_NAME);
    let stamp_json = serde_json::to_vec(&stamp).expect("a stamp always serialises");
    fs::write(&stamp_path, stamp_json).map_err(|e| Error::io("writing", &stamp_path, e))
}

/// PyPy makes `__pycache__` beside a module the first time it imports it,
/// which would change that folder's mtime; made now, it changes nothing.
fn make_bytecode_folders(entry: &Path, files: &BTreeMap<String, StampEntry>) -> Result<(), Error> {
    let folders: BTreeSet<&str> = files
        .iter()
        .filter(|(rel, e)| e.link.is_none() && rel.ends_with(".py"))
        .filter_map(|(rel, _)| rel.rsplit_once('/').map(|(dir, _)| dir))
        .collect();
    for folder in folders {
        let path = entry.join(folder).join(BYTECODE_FOLDER);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("creating", &path, e)),
        }
    }
    Ok(())
}

/// Every folder of the tree but the bytecode folders, relative to the entry.
fn folders(entry: &Path) -> Result<Vec<String>, Error> {
    let mut found = Vec::new();
    let mut pending = vec![TOP_DIR.to_string()];
    while let Some(rel) = pending.pop() {
        let path = entry.join(&rel);
        let children = fs::read_dir(&path).map_err(|e| Error::io("reading", &path, e))?;
        for child in children {
            let child = child.map_err(|e| Error::io("reading", &path, e))?;
            let kind = child
                .file_type()
                .map_err(|e| Error::io("reading", child.path(), e))?;
            let name = child.file_name().to_string_lossy().into_owned();
            if kind.is_dir() && name != BYTECODE_FOLDER {
                pending.push(format!("{rel}/{name}"));
            }
        }
        found.push(rel);
    }
    Ok(found)
}

fn folder_times(entry: &Path, folders: &[String]) -> Result<BTreeMap<String, FolderTime>, Error> {
    folders
        .iter()
        .map(|rel| {
            let path = entry.join(rel);
            let meta = fs::symlink_metadata(&path).map_err(|e| Error::io("reading", &path, e))?;
            Ok((rel.clone(), folder_time(&meta)))
        })
        .collect()
}

#[cfg(unix)]
fn set_mtime(folder: &Path, seconds: u64) -> Result<(), Error> {
    let time = UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    fs::File::open(folder)
        .and_then(|f| f.set_times(fs::FileTimes::new().set_modified(time).set_accessed(time)))
        .map_err(|e| Error::io("setting the time of", folder, e))
}

/// Windows opens no folder as a file; its folder times stay as extracted.
#[cfg(not(unix))]
fn set_mtime(_folder: &Path, _seconds: u64) -> Result<(), Error> {
    Ok(())
}

fn folder_time(meta: &fs::Metadata) -> FolderTime {
    let since = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    FolderTime(since.as_secs() as i64, since.subsec_nanos())
}

/// The check a start makes (see the module docs). `Err` says which file
/// differs, or that the stamp is missing or for another archive.
pub(crate) fn check(entry: &Path, sha256: &str) -> Result<Verdict, String> {
    let stamp = read_stamp(entry, sha256)?;
    if let Ok(reason) = fs::read_to_string(entry.join(DAMAGED_NAME)) {
        return Err(reason);
    }
    if !check_folders(entry, &stamp.folders) {
        // Something was deleted, added or renamed: only all files can tell what.
        let files = read_files(entry)?;
        check_files(
            entry,
            files.iter().filter(|(rel, _)| !is_bytecode_cache(rel)),
        )?;
        return Ok(Verdict::IntactFoldersChanged);
    }
    check_files(entry, stamp.start.iter())?;
    Ok(Verdict::Intact)
}

/// Records the folders' mtimes as they are now, after a full check found
/// every file intact; the caller holds the entry's lock.
pub(crate) fn refresh_folders(entry: &Path, sha256: &str) -> Result<(), String> {
    let mut stamp = read_stamp(entry, sha256)?;
    let now = folders(entry).map_err(|e| e.to_string())?;
    stamp.folders = folder_times(entry, &now).map_err(|e| e.to_string())?;
    let json = serde_json::to_vec(&stamp).expect("a stamp always serialises");
    pypy_archive::fs::write_atomic(&entry.join(STAMP_NAME), &json)
        .map_err(|e| format!("{STAMP_NAME}: {e}"))
}

fn read_stamp(entry: &Path, sha256: &str) -> Result<Stamp, String> {
    let text = fs::read(entry.join(STAMP_NAME)).map_err(|e| format!("{STAMP_NAME}: {e}"))?;
    let stamp: Stamp = serde_json::from_slice(&text).map_err(|e| format!("{STAMP_NAME}: {e}"))?;
    if stamp.format != STAMP_FORMAT || stamp.archive_sha256 != sha256 {
        return Err(format!("{STAMP_NAME} is for another archive or format"));
    }
    Ok(stamp)
}

fn read_files(entry: &Path) -> Result<BTreeMap<String, StampEntry>, String> {
    let text = fs::read(entry.join(FILES_NAME)).map_err(|e| format!("{FILES_NAME}: {e}"))?;
    serde_json::from_slice(&text).map_err(|e| format!("{FILES_NAME}: {e}"))
}

/// Compiled bytecode that PyPy itself rewrites whenever it finds it stale:
/// a cache, not part of the interpreter, and Python checks each one against
/// its source before use. Hashed at extraction like every file, but not
/// compared afterwards.
fn is_bytecode_cache(rel: &str) -> bool {
    rel.contains("/__pycache__/") && rel.ends_with(".pyc")
}

/// Whether every folder still has the mtime recorded.
#[cfg(unix)]
fn check_folders(entry: &Path, folders: &BTreeMap<String, FolderTime>) -> bool {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    // Relative to the open entry, as for files (see `check_files`).
    let Ok(fd) = rustix::fs::open(
        entry,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    folders.iter().all(|(rel, want)| {
        rustix::fs::statat(&fd, rel.as_str(), AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
            FileType::from_raw_mode(st.st_mode as _) == FileType::Directory
                && st.st_mtime as i128 == i128::from(want.0)
                && st.st_mtime_nsec as u32 == want.1
        })
    })
}

#[cfg(not(unix))]
fn check_folders(entry: &Path, folders: &BTreeMap<String, FolderTime>) -> bool {
    folders.iter().all(|(rel, want)| {
        fs::symlink_metadata(entry.join(rel)).is_ok_and(|m| m.is_dir() && folder_time(&m) == *want)
    })
}

/// One `stat` per file is the whole cost. By absolute path, the kernel walks
/// every folder of the path again for each file (most of the time, for a
/// 2,800-file tree in a cache folder 8 levels deep); relative to the open
/// folder it looks up one name.
#[cfg(unix)]
fn check_files<'a>(
    entry: &Path,
    files: impl Iterator<Item = (&'a String, &'a StampEntry)>,
) -> Result<(), String> {
    use rustix::fs::{Mode, OFlags};
    let mut folder: Option<(&str, rustix::fd::OwnedFd)> = None;
    for (rel, want) in files {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
        let fd = match &folder {
            Some((open, fd)) if *open == dir => fd,
            _ => {
                let path = entry.join(dir);
                let fd = rustix::fs::open(
                    &path,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| format!("{rel}: {}", std::io::Error::from(e)))?;
                &folder.insert((dir, fd)).1
            }
        };
        check_at(fd, name, rel, want)?;
    }
    Ok(())
}

/// One file, looked up by name in its open folder.
#[cfg(unix)]
fn check_at(
    folder: &rustix::fd::OwnedFd,
    name: &str,
    rel: &str,
    want: &StampEntry,
) -> Result<(), String> {
    use rustix::fs::{AtFlags, FileType};
    let st = rustix::fs::statat(folder, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| format!("{rel}: {}", std::io::Error::from(e)))?;
    let kind = FileType::from_raw_mode(st.st_mode as _);
    if let Some(target) = &want.link {
        if kind != FileType::Symlink {
            return Err(format!("{rel}: not a link"));
        }
        let got = rustix::fs::readlinkat(folder, name, Vec::new())
            .map_err(|e| format!("{rel}: {}", std::io::Error::from(e)))?;
        if got.as_bytes() != target.as_bytes() {
            return Err(format!(
                "{rel}: links to {}, expected {target}",
                got.to_string_lossy()
            ));
        }
        return Ok(());
    }
    if kind != FileType::RegularFile {
        return Err(format!("{rel}: not a regular file"));
    }
    let size = st.st_size as u64;
    if size != want.size {
        return Err(format!("{rel}: {size} bytes, expected {}", want.size));
    }
    if st.st_mtime as i128 != i128::from(want.mtime) || st.st_mtime_nsec != 0 {
        return Err(format!("{rel}: modified since extraction"));
    }
    if (st.st_mode as u32) & 0o777 != want.mode {
        return Err(format!("{rel}: mode changed"));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_files<'a>(
    entry: &Path,
    mut files: impl Iterator<Item = (&'a String, &'a StampEntry)>,
) -> Result<(), String> {
    files.try_for_each(|(rel, want)| check_one(entry, rel, want))
}

/// One file of a cached entry against its stamp, by path.
#[cfg(not(unix))]
fn check_one(entry: &Path, rel: &str, want: &StampEntry) -> Result<(), String> {
    use std::time::Duration;
    let path = entry.join(rel);
    let meta = fs::symlink_metadata(&path).map_err(|e| format!("{rel}: {e}"))?;
    if let Some(target) = &want.link {
        let got = fs::read_link(&path).map_err(|e| format!("{rel}: not a link ({e})"))?;
        if got != Path::new(target) {
            return Err(format!(
                "{rel}: links to {}, expected {target}",
                got.display()
            ));
        }
        return Ok(());
    }
    if !meta.is_file() {
        return Err(format!("{rel}: not a regular file"));
    }
    if meta.len() != want.size {
        return Err(format!(
            "{rel}: {} bytes, expected {}",
            meta.len(),
            want.size
        ));
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
    if mtime != Some(Duration::from_secs(want.mtime)) {
        return Err(format!("{rel}: modified since extraction"));
    }
    Ok(())
}

/// The check of files as Python imports them, for a tree extracted from an
/// archive. The start checked the start files; the rest is checked here, on
/// first import, against `files.json`, read on the first call.
#[derive(Debug)]
pub(crate) struct Watch {
    /// The cache entry (the folder holding `pypy/` and the stamp).
    entry: PathBuf,
    files: OnceLock<Result<BTreeMap<String, StampEntry>, String>>,
}

impl Watch {
    pub(crate) fn new(entry: PathBuf) -> Self {
        Watch {
            entry,
            files: OnceLock::new(),
        }
    }

    /// Checks `rel` (relative to the `pypy/` folder, `/`-separated) before
    /// Python imports it. A file the archive did not hold (installed later)
    /// passes. A changed file marks the entry damaged, so that the next
    /// start extracts the archive again, and the error says so.
    pub(crate) fn check(&self, rel: &str) -> Result<(), String> {
        let files = self
            .files
            .get_or_init(|| read_files(&self.entry))
            .as_ref()
            .map_err(|e| self.damaged(e))?;
        let key = format!("{TOP_DIR}/{}", rel.replace('\\', "/"));
        let Some(want) = files.get(&key) else {
            return Ok(());
        };
        check_files(&self.entry, std::iter::once((&key, want))).map_err(|e| self.damaged(&e))
    }

    fn damaged(&self, reason: &str) -> String {
        // Best effort: if the mark cannot be written, the error still tells.
        let _ = pypy_archive::fs::write_atomic(&self.entry.join(DAMAGED_NAME), reason.as_bytes());
        format!(
            "{reason}: this file of the PyPy extracted in {} changed since it was extracted; \
             the next start extracts the archive again",
            self.entry.display()
        )
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    const SHA: &str = "0123";

    fn paths() -> Paths {
        Paths {
            libpypy: "bin/libpypy3.11-c.so".into(),
            launcher: Some("bin/pypy3.11".into()),
            stdlib: "lib/pypy3.11".into(),
            include: "include/pypy3.11".into(),
        }
    }

    /// An extracted tree as the cache writes it: files with the archive's
    /// mtime, then the stamp.
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("entry");
        let mut files = BTreeMap::new();
        for (rel, data) in [
            ("pypy/bin/libpypy3.11-c.so", "lib"),
            ("pypy/lib/pypy3.11/os.py", "# os"),
            ("pypy/lib/pypy3.11/encodings/utf_8.py", "# utf-8"),
            ("pypy/lib/pypy3.11/json/__init__.py", "# json"),
            ("pypy/lib/pypy3.11/json/decoder.py", "# decoder"),
        ] {
            let path = entry.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, data).unwrap();
            let file = File::options().write(true).open(&path).unwrap();
            file.set_modified(UNIX_EPOCH + std::time::Duration::from_secs(946_684_800))
                .unwrap();
            files.insert(
                rel.to_string(),
                StampEntry {
                    link: None,
                    size: data.len() as u64,
                    mode: fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                    mtime: 946_684_800,
                },
            );
        }
        write(&entry, SHA, files, &StartFiles::new(&paths())).unwrap();
        (dir, entry)
    }

    use std::fs::File;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_start_files_are_what_pypy_reads_while_starting() {
        let start = StartFiles::new(&paths());
        for rel in [
            "pypy/PYPY.json",
            "pypy/bin/libpypy3.11-c.so",
            "pypy/lib/pypy3.11/os.py",
            "pypy/lib/pypy3.11/site-packages/distutils-precedence.pth",
            "pypy/lib/pypy3.11/encodings/aliases.py",
        ] {
            assert!(start.contains(rel), "{rel}");
        }
        for rel in [
            "pypy/lib/pypy3.11/json/decoder.py",
            "pypy/lib/pypy3.11/site-packages/pip/__init__.py",
            "pypy/include/pypy3.11/Python.h",
        ] {
            assert!(!start.contains(rel), "{rel}");
        }
    }

    #[test]
    fn a_fresh_tree_is_intact_and_bytecode_does_not_change_that() {
        let (_dir, entry) = tree();
        assert_eq!(check(&entry, SHA), Ok(Verdict::Intact));
        // PyPy writes bytecode into the folders made at extraction.
        let cache = entry.join("pypy/lib/pypy3.11/json/__pycache__");
        assert!(cache.is_dir());
        fs::write(cache.join("decoder.pypy311.pyc"), "bytecode").unwrap();
        assert_eq!(check(&entry, SHA), Ok(Verdict::Intact));
        assert!(check(&entry, "other")
            .unwrap_err()
            .contains("another archive"));
    }

    #[test]
    fn a_file_deleted_anywhere_is_found_through_its_folder() {
        let (_dir, entry) = tree();
        fs::remove_file(entry.join("pypy/lib/pypy3.11/json/decoder.py")).unwrap();
        let err = check(&entry, SHA).unwrap_err();
        assert!(err.contains("json/decoder.py"), "{err}");
    }

    #[test]
    fn a_file_added_costs_one_full_check_then_none() {
        let (_dir, entry) = tree();
        fs::write(entry.join("pypy/lib/pypy3.11/json/mine.py"), "x").unwrap();
        assert_eq!(check(&entry, SHA), Ok(Verdict::IntactFoldersChanged));
        refresh_folders(&entry, SHA).unwrap();
        assert_eq!(check(&entry, SHA), Ok(Verdict::Intact));
    }

    #[test]
    fn a_start_file_changed_in_place_is_found_at_start() {
        let (_dir, entry) = tree();
        fs::write(entry.join("pypy/lib/pypy3.11/os.py"), "# xx").unwrap();
        let err = check(&entry, SHA).unwrap_err();
        assert!(err.contains("os.py: modified since extraction"), "{err}");
    }

    #[test]
    fn another_file_changed_in_place_is_found_when_imported() {
        let (_dir, entry) = tree();
        let decoder = entry.join("pypy/lib/pypy3.11/json/decoder.py");
        fs::write(&decoder, "# changed").unwrap();
        // The start does not look at it...
        assert_eq!(check(&entry, SHA), Ok(Verdict::Intact));
        // ...the import does, and marks the entry for the next start.
        let watch = Watch::new(entry.clone());
        assert_eq!(watch.check("lib/pypy3.11/json/__init__.py"), Ok(()));
        assert_eq!(
            watch.check("lib/pypy3.11/json/not_from_the_archive.py"),
            Ok(())
        );
        let err = watch.check("lib/pypy3.11/json/decoder.py").unwrap_err();
        assert!(
            err.contains("json/decoder.py: modified since extraction"),
            "{err}"
        );
        assert!(
            err.contains("the next start extracts the archive again"),
            "{err}"
        );
        let at_start = check(&entry, SHA).unwrap_err();
        assert!(at_start.contains("json/decoder.py"), "{at_start}");
    }
}
