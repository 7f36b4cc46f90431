//! Safe extraction of `.tar.bz2`, `.tar.gz` and `.zip` archives.
//!
//! Every entry must stay inside the destination: absolute paths, `..`,
//! symbolic links that resolve outside, hard links and device or FIFO
//! entries are refused with an error naming the entry. Links are resolved the
//! way the OS would (following links already unpacked), both before anything
//! is written through them and once more at the end, because a later entry
//! can change what an earlier link points to. Unpacking happens in a
//! temporary folder beside the destination, renamed into place when whole.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::lock::{self, lock_path_for, FileLock};

/// Symbolic links followed while resolving one path, as in Linux's limit.
const MAX_LINK_HOPS: u32 = 40;

/// Unpacks `archive` into `dest`, which must not exist yet. The archive type
/// comes from its name (`.tar.bz2`/`.tbz2`, `.tar.gz`/`.tgz`, `.zip`).
pub fn extract_archive(archive: &Path, dest: &Path) -> Result<()> {
    let _lock = lock_for(dest)?;
    if dest.exists() {
        bail!(
            "cannot extract {} into {}: it already exists; remove it or choose another folder",
            archive.display(),
            dest.display()
        );
    }
    unpack_into_place(archive, dest)
}

/// Like [`extract_archive`], for destinations named after the archive's
/// hash: an existing `dest` is a finished extraction (it only appears by
/// rename) and is kept. Returns whether this call unpacked it.
pub fn extract_once(archive: &Path, dest: &Path) -> Result<bool> {
    if dest.is_dir() {
        return Ok(false);
    }
    let _lock = lock_for(dest)?;
    // Another run may have finished while we waited for the lock.
    if dest.is_dir() {
        return Ok(false);
    }
    unpack_into_place(archive, dest)?;
    Ok(true)
}

fn lock_for(dest: &Path) -> Result<FileLock> {
    let parent = parent_of(dest)?;
    fs_err::create_dir_all(parent).context("creating the extraction folder")?;
    lock::acquire(&lock_path_for(dest))
}

fn parent_of(dest: &Path) -> Result<&Path> {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p),
        _ => Ok(Path::new(".")),
    }
}

fn unpack_into_place(archive: &Path, dest: &Path) -> Result<()> {
    let kind = Kind::of(archive)?;
    let name = dest
        .file_name()
        .with_context(|| format!("{} names no folder", dest.display()))?;
    let prefix = format!(".{}.tmp", name.to_string_lossy());
    remove_stale_temporaries(parent_of(dest)?, &prefix)?;
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .rand_bytes(TEMP_SUFFIX_LEN)
        .tempdir_in(parent_of(dest)?)
        .context("creating a temporary extraction folder")?;
    eprintln!(
        "fetch: extracting {} into {}",
        archive.display(),
        dest.display()
    );
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let root = tmp.path();
    match kind {
        Kind::TarBz2 => unpack_tar(
            bzip2::read::MultiBzDecoder::new(io::BufReader::new(file)),
            root,
        ),
        Kind::TarGz => unpack_tar(
            flate2::read::MultiGzDecoder::new(io::BufReader::new(file)),
            root,
        ),
        Kind::Zip => unpack_zip(file, root),
    }
    .with_context(|| format!("unsafe or broken archive {}", archive.display()))?;
    // tempfile makes the folder private (0700); the tree should read like any other.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))
            .context("opening up the extracted folder's permissions")?;
    }
    fs_err::rename(tmp.path(), dest).context("moving the extracted tree into place")?;
    // Renamed away: nothing is left for the guard to delete.
    let _ = tmp.keep();
    Ok(())
}

const TEMP_SUFFIX_LEN: usize = 6;

/// Temporary folders of runs that died mid-extraction (a source tree is
/// hundreds of MB). Called with the destination's lock held, so no live run
/// owns one of them.
fn remove_stale_temporaries(parent: &Path, prefix: &str) -> Result<()> {
    for entry in fs_err::read_dir(parent)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // tempfile's names: the prefix and six random letters or digits.
        let ours = name.strip_prefix(prefix).is_some_and(|rest| {
            rest.len() == TEMP_SUFFIX_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if ours {
            eprintln!(
                "fetch: removing {} left by an interrupted run",
                entry.path().display()
            );
            fs_err::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    TarBz2,
    TarGz,
    Zip,
}

impl Kind {
    fn of(archive: &Path) -> Result<Kind> {
        let name = archive
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.ends_with(".tar.bz2") || name.ends_with(".tbz2") {
            Ok(Kind::TarBz2)
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Ok(Kind::TarGz)
        } else if name.ends_with(".zip") {
            Ok(Kind::Zip)
        } else {
            bail!(
                "cannot tell the archive type of {}: expected a name ending in .tar.bz2, .tbz2, \
                 .tar.gz, .tgz or .zip",
                archive.display()
            )
        }
    }
}

/// The path of an entry as relative components; absolute paths and `..` are refused.
fn relative_components(entry: &Path) -> Result<Vec<OsString>> {
    let mut parts = Vec::new();
    for component in entry.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => {
                bail!("entry `{}` has an absolute path", entry.display())
            }
            Component::ParentDir => {
                bail!("entry `{}` contains `..`", entry.display())
            }
            Component::CurDir => {}
            Component::Normal(name) => parts.push(name.to_os_string()),
        }
    }
    Ok(parts)
}

/// Walks `path` from the folder `stack` (components under `root`, free of
/// links) as the OS would, following links already on disk, and leaves the
/// link-free result in `stack`. Fails if the walk leaves `root`.
/// Names that do not exist yet are taken as folders to be created.
fn resolve_beneath(
    root: &Path,
    stack: &mut Vec<OsString>,
    path: &Path,
    hops: &mut u32,
) -> Result<(), &'static str> {
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return Err("is an absolute path"),
            Component::CurDir => {}
            Component::ParentDir => {
                if stack.pop().is_none() {
                    return Err("leads outside the destination");
                }
            }
            Component::Normal(name) => {
                let here = join_all(root, stack).join(name);
                match fs::symlink_metadata(&here) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        *hops += 1;
                        if *hops > MAX_LINK_HOPS {
                            return Err("has too many levels of symbolic links");
                        }
                        let target = fs::read_link(&here).map_err(|_| "has an unreadable link")?;
                        resolve_beneath(root, stack, &target, hops)?;
                    }
                    _ => stack.push(name.to_os_string()),
                }
            }
        }
    }
    Ok(())
}

fn join_all(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut path = root.to_path_buf();
    path.extend(parts);
    path
}

/// What an entry is, reduced to what we are willing to create.
enum EntryKind {
    /// Permission bits, and the modification time in seconds since 1970 when known.
    File {
        mode: u32,
        mtime: Option<u64>,
    },
    Dir,
    Symlink(PathBuf),
}

/// Writes entries under `root`, refusing anything that would land outside it.
struct Unpacker<'a> {
    root: &'a Path,
    /// Every link created: (its folder, its name, its target), re-checked at the end.
    links: Vec<(Vec<OsString>, OsString, PathBuf)>,
}

impl<'a> Unpacker<'a> {
    fn new(root: &'a Path) -> Self {
        Unpacker {
            root,
            links: Vec::new(),
        }
    }

    /// Creates one entry; `contents` is read for files.
    fn add(&mut self, name: &Path, kind: EntryKind, contents: &mut dyn Read) -> Result<()> {
        let mut parts = relative_components(name)?;
        let Some(last) = parts.pop() else {
            // `./` or an empty name: the root itself.
            return Ok(());
        };
        let mut parent = Vec::new();
        let mut hops = 0;
        resolve_beneath(
            self.root,
            &mut parent,
            &join_all(Path::new(""), &parts),
            &mut hops,
        )
        .map_err(|why| {
            anyhow!(
                "entry `{}` would be written through a link that {why}",
                name.display()
            )
        })?;
        let parent_path = join_all(self.root, &parent);
        fs::create_dir_all(&parent_path)
            .with_context(|| format!("creating the folder of entry `{}`", name.display()))?;
        let path = parent_path.join(&last);
        match kind {
            EntryKind::Dir => {
                if !path.is_dir() {
                    fs::create_dir(&path)
                        .with_context(|| format!("creating folder `{}`", name.display()))?;
                }
            }
            EntryKind::File { mode, mtime } => {
                remove_non_dir(&path)?;
                let mut out = File::create(&path)
                    .with_context(|| format!("creating `{}`", name.display()))?;
                io::copy(contents, &mut out)
                    .with_context(|| format!("unpacking `{}`", name.display()))?;
                set_mode(&out, mode)
                    .with_context(|| format!("setting the mode of `{}`", name.display()))?;
                // Upstream's times, so that `make` sees the tree as shipped.
                if let Some(secs) = mtime {
                    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
                    out.set_modified(time)
                        .with_context(|| format!("setting the time of `{}`", name.display()))?;
                }
            }
            EntryKind::Symlink(target) => {
                let mut stack = parent.clone();
                let mut hops = 0;
                resolve_beneath(self.root, &mut stack, &target, &mut hops).map_err(|why| {
                    anyhow!(
                        "symbolic link `{}` -> `{}` {why}",
                        name.display(),
                        target.display()
                    )
                })?;
                remove_non_dir(&path)?;
                make_symlink(&target, &path)
                    .with_context(|| format!("creating symbolic link `{}`", name.display()))?;
                self.links.push((parent, last, target));
            }
        }
        Ok(())
    }

    /// A later entry may have turned an earlier link's target into a way out;
    /// checks every link against the finished tree.
    fn recheck_links(&self) -> Result<()> {
        for (parent, name, target) in &self.links {
            let mut stack = parent.clone();
            let mut hops = 0;
            resolve_beneath(self.root, &mut stack, target, &mut hops).map_err(|why| {
                anyhow!(
                    "symbolic link `{}` -> `{}` {why} once the archive is unpacked",
                    join_all(Path::new(""), parent).join(name).display(),
                    target.display()
                )
            })?;
        }
        Ok(())
    }
}

fn remove_non_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => {
            fs::remove_file(path).with_context(|| format!("replacing {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(unix)]
fn make_symlink(target: &Path, path: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

#[cfg(not(unix))]
fn make_symlink(target: &Path, _path: &Path) -> io::Result<()> {
    Err(io::Error::other(format!(
        "symbolic links (-> {}) are not unpacked on this platform",
        target.display()
    )))
}

/// Keeps the permission bits (executables stay executable) but never setuid
/// or setgid, and always lets the owner read and write.
#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode((mode & 0o777) | 0o600))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

fn unpack_tar(reader: impl Read, root: &Path) -> Result<()> {
    use tar::EntryType;
    let mut archive = tar::Archive::new(reader);
    let mut unpacker = Unpacker::new(root);
    for entry in archive.entries().context("reading the tar stream")? {
        let mut entry = entry.context("reading a tar entry")?;
        let name = entry
            .path()
            .context("reading the name of a tar entry")?
            .into_owned();
        let shown = name.display().to_string();
        let kind = match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => EntryKind::File {
                mode: entry.header().mode().unwrap_or(0o644),
                mtime: entry.header().mtime().ok(),
            },
            EntryType::Directory => EntryKind::Dir,
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .with_context(|| format!("reading the target of link `{shown}`"))?
                    .with_context(|| format!("link `{shown}` has no target"))?
                    .into_owned();
                EntryKind::Symlink(target)
            }
            EntryType::Link => bail!(
                "entry `{shown}` is a hard link; hard links are not allowed in source archives"
            ),
            EntryType::Char | EntryType::Block => {
                bail!("entry `{shown}` is a device file; device files are not allowed")
            }
            EntryType::Fifo => bail!("entry `{shown}` is a FIFO; FIFOs are not allowed"),
            // Metadata for the following entries, already applied by the tar reader.
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => continue,
            other => bail!("entry `{shown}` has an unsupported type ({other:?})"),
        };
        unpacker.add(&name, kind, &mut entry)?;
    }
    unpacker.recheck_links()
}

/// Unix file-type bits of a zip entry's external attributes.
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

fn unpack_zip(file: File, root: &Path) -> Result<()> {
    let mut archive =
        zip::ZipArchive::new(io::BufReader::new(file)).context("reading the zip index")?;
    let mut unpacker = Unpacker::new(root);
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .with_context(|| format!("reading zip entry {i}"))?;
        let name = entry
            .name()
            .with_context(|| format!("reading the name of zip entry {i}"))?
            .into_owned();
        if name.contains('\\') {
            bail!("entry `{name}` uses `\\` in its path; zip paths must use `/`");
        }
        let mode = entry.unix_mode();
        let file_type = mode.map(|m| m & S_IFMT).filter(|t| *t != 0);
        let kind = if entry.is_dir() {
            EntryKind::Dir
        } else if entry.is_symlink() {
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .with_context(|| format!("reading the target of link `{name}`"))?;
            EntryKind::Symlink(PathBuf::from(target))
        } else {
            match file_type {
                None | Some(S_IFREG) => EntryKind::File {
                    mode: mode.unwrap_or(0o644),
                    mtime: None,
                },
                Some(S_IFDIR) => EntryKind::Dir,
                Some(S_IFLNK) => unreachable!("is_symlink covers S_IFLNK"),
                Some(other) => bail!(
                    "entry `{name}` is a special file (type {other:o}); only files, folders \
                     and links are allowed"
                ),
            }
        };
        unpacker.add(Path::new(&name), kind, &mut entry)?;
    }
    unpacker.recheck_links()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_components_refuse_escapes() {
        assert!(relative_components(Path::new("a/./b")).is_ok());
        let err = relative_components(Path::new("/etc/passwd")).unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
        let err = relative_components(Path::new("a/../../x")).unwrap_err();
        assert!(err.to_string().contains("`..`"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn resolution_follows_links_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        std::os::unix::fs::symlink(".", root.join("self")).unwrap();
        std::os::unix::fs::symlink("a/b", root.join("deep")).unwrap();
        let resolve = |p: &str| {
            let mut stack = Vec::new();
            resolve_beneath(root, &mut stack, Path::new(p), &mut 0).map(|_| stack)
        };
        // Lexically `self/..` is the root; really it is the root's parent.
        assert!(resolve("self/..").is_err());
        assert_eq!(resolve("deep/..").unwrap(), [OsString::from("a")]);
        assert_eq!(resolve("deep/../../x").unwrap(), [OsString::from("x")]);
        assert!(resolve("deep/../../..").is_err());
    }

    #[test]
    fn unknown_archive_type_is_named() {
        let err = Kind::of(Path::new("x.rar")).unwrap_err();
        assert!(err.to_string().contains("x.rar"), "{err}");
    }
}
