//! The one safe archive reader: `.tar.gz`, `.tar.bz2` and `.zip`, entry by entry.
//!
//! [`read_tar`] and [`read_zip`] parse an archive and hand each entry to a
//! callback, after refusing what no caller may create: absolute paths, `..`,
//! hard links, device files, FIFOs and unknown entry types. [`Unpacker`]
//! writes entries under a folder and refuses anything that would land
//! outside it: links are resolved the way the OS would (following links
//! already unpacked), both before anything is written through them and once
//! more at the end, because a later entry can change what an earlier link
//! points to. [`unpack`] puts the two together; [`unpack_top`] adds the
//! rules of our own archives (one top folder, links that stay inside it).
//! The runtime's cache reads with [`read_tar`] and writes with its own
//! parallel, hashing writer.
//!
//! `.tar.bz2` and `.zip` need the `release-formats` feature (the build tool
//! reads PyPy's upstream releases; the runtime reads only our `.tar.gz`).

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::entry::{check_link, safe_relative_path, EntryError};
use crate::manifest::{Manifest, ManifestError, MANIFEST_NAME, TOP_DIR};

/// Symbolic links followed while resolving one path, as in Linux's limit.
const MAX_LINK_HOPS: u32 = 40;

/// Why an archive was not (wholly) unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The file name does not say which kind of archive it is.
    #[error(
        "cannot tell the archive type of {0}: expected a name ending in .tar.bz2, .tbz2, \
         .tar.gz, .tgz, .zip or .whl"
    )]
    UnknownType(PathBuf),
    /// The archive is of a kind this build cannot read (see the module docs).
    #[error("{0} archives are not supported by this build of pypy-archive")]
    Unsupported(&'static str),
    /// An entry that could escape the destination, or of a kind we never create.
    #[error("{0}")]
    Refused(Refused),
    /// The archive cannot be parsed: truncated, corrupt, or not an archive.
    #[error("{what}")]
    Damaged {
        what: String,
        #[source]
        source: io::Error,
    },
    /// Writing into the destination failed.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The archive holds no `pypy/PYPY.json`.
    #[error("{}: no {TOP_DIR}/{MANIFEST_NAME} inside; is it one of our archives?", .0.display())]
    NoManifest(PathBuf),
    /// The archive's `PYPY.json` cannot be read.
    #[error("{}: {TOP_DIR}/{MANIFEST_NAME}", .archive.display())]
    BadManifest {
        archive: PathBuf,
        #[source]
        source: ManifestError,
    },
}

/// A refused entry: the archive (once known), the entry, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub archive: Option<PathBuf>,
    /// `None` when the archive as a whole is refused (it is empty).
    pub entry: Option<PathBuf>,
    pub reason: Refusal,
}

/// Why an entry (or the archive) is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    AbsolutePath,
    ParentDir,
    HardLink,
    Device,
    Fifo,
    /// A tar entry type we never create, by the tar crate's name.
    UnsupportedType(String),
    LinkWithoutTarget,
    /// A zip path written with `\`.
    Backslash,
    /// A zip entry of another file type (its `S_IFMT` bits).
    Special(u32),
    /// The path fails the entry rules of [`crate::entry`].
    Path(EntryError),
    /// A link whose target leaves the top folder, by the entry rules.
    LinkOutside {
        target: PathBuf,
        why: EntryError,
    },
    /// The entry would be written through a link that leaves the destination.
    ThroughLink(&'static str),
    /// A symbolic link whose target leaves the destination.
    LinkEscapes {
        target: PathBuf,
        why: &'static str,
    },
    /// The same, found once every entry is on disk.
    LinkEscapesLater {
        target: PathBuf,
        why: &'static str,
    },
    Empty,
}

impl Refused {
    fn entry(entry: &Path, reason: Refusal) -> ExtractError {
        ExtractError::Refused(Refused {
            archive: None,
            entry: Some(entry.to_path_buf()),
            reason,
        })
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(archive) = &self.archive {
            write!(f, "{}: ", archive.display())?;
        }
        let entry = self
            .entry
            .as_deref()
            .map(|e| e.display().to_string())
            .unwrap_or_default();
        match &self.reason {
            Refusal::AbsolutePath => write!(f, "entry `{entry}` has an absolute path"),
            Refusal::ParentDir => write!(f, "entry `{entry}` contains `..`"),
            Refusal::HardLink => write!(
                f,
                "entry `{entry}` is a hard link; hard links are not allowed in archives"
            ),
            Refusal::Device => {
                write!(
                    f,
                    "entry `{entry}` is a device file; device files are not allowed"
                )
            }
            Refusal::Fifo => write!(f, "entry `{entry}` is a FIFO; FIFOs are not allowed"),
            Refusal::UnsupportedType(kind) => {
                write!(f, "entry `{entry}` has an unsupported type ({kind})")
            }
            Refusal::LinkWithoutTarget => write!(f, "link `{entry}` has no target"),
            Refusal::Backslash => write!(
                f,
                "entry `{entry}` uses `\\` in its path; zip paths must use `/`"
            ),
            Refusal::Special(kind) => write!(
                f,
                "entry `{entry}` is a special file (type {kind:o}); only files, folders and \
                 links are allowed"
            ),
            Refusal::Path(why) => write!(f, "entry {entry}: {why}"),
            Refusal::LinkOutside { target, why } => write!(
                f,
                "link {entry} points outside the archive ({}): {why}",
                target.display()
            ),
            Refusal::ThroughLink(why) => {
                write!(
                    f,
                    "entry `{entry}` would be written through a link that {why}"
                )
            }
            Refusal::LinkEscapes { target, why } => {
                write!(f, "symbolic link `{entry}` -> `{}` {why}", target.display())
            }
            Refusal::LinkEscapesLater { target, why } => write!(
                f,
                "symbolic link `{entry}` -> `{}` {why} once the archive is unpacked",
                target.display()
            ),
            Refusal::Empty => write!(f, "the archive is empty"),
        }
    }
}

impl ExtractError {
    fn damaged(what: impl Into<String>) -> impl FnOnce(io::Error) -> ExtractError {
        let what = what.into();
        move |source| ExtractError::Damaged { what, source }
    }

    fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> ExtractError {
        let what = what.into();
        move |source| ExtractError::Io { what, source }
    }

    /// The message with its cause, on one line (for callers without `anyhow`).
    pub fn full_message(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

type Result<T, E = ExtractError> = std::result::Result<T, E>;

/// The kinds of archive we read, told by the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    TarBz2,
    TarGz,
    Zip,
}

/// Every archive name ending this crate reads, with its format; the one
/// list both the xtask and the runtime go by. A wheel is a zip archive by
/// definition (PEP 427).
pub const SUFFIXES: [(&str, Format); 6] = [
    (".tar.bz2", Format::TarBz2),
    (".tbz2", Format::TarBz2),
    (".tar.gz", Format::TarGz),
    (".tgz", Format::TarGz),
    (".zip", Format::Zip),
    (".whl", Format::Zip),
];

/// `name` without its archive suffix (any case), when it has one of [`SUFFIXES`].
pub fn strip_suffix(name: &str) -> Option<&str> {
    let lower = name.to_ascii_lowercase();
    SUFFIXES
        .iter()
        .find(|(suffix, _)| lower.ends_with(suffix) && lower.len() > suffix.len())
        .map(|(suffix, _)| &name[..name.len() - suffix.len()])
}

impl Format {
    pub fn of(archive: &Path) -> Result<Format> {
        let name = archive
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        SUFFIXES
            .iter()
            .find(|(suffix, _)| name.ends_with(suffix))
            .map(|(_, format)| *format)
            .ok_or_else(|| ExtractError::UnknownType(archive.to_path_buf()))
    }
}

/// What an entry is, reduced to what we are willing to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// Permission bits, the modification time in seconds since 1970 when
    /// known, and the size the archive states (to size buffers; not trusted).
    File {
        mode: u32,
        mtime: Option<u64>,
        size: u64,
    },
    Dir,
    Symlink(PathBuf),
}

/// Checks an entry's path: relative, without `..`.
fn check_relative(entry: &Path) -> Result<()> {
    relative_components(entry).map(|_| ())
}

/// The path of an entry as relative components; absolute paths and `..` are refused.
fn relative_components(entry: &Path) -> Result<Vec<OsString>> {
    let mut parts = Vec::new();
    for component in entry.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => {
                return Err(Refused::entry(entry, Refusal::AbsolutePath))
            }
            Component::ParentDir => return Err(Refused::entry(entry, Refusal::ParentDir)),
            Component::CurDir => {}
            Component::Normal(name) => parts.push(name.to_os_string()),
        }
    }
    Ok(parts)
}

/// Reads a tar stream (already decompressed) and passes every entry to
/// `visit` as (path, kind, contents). Refused entries stop the walk, and so
/// does an error of `visit` (of the caller's own type `E`).
pub fn read_tar<E: From<ExtractError>>(
    reader: impl Read,
    mut visit: impl FnMut(&Path, EntryKind, &mut dyn Read) -> Result<(), E>,
) -> Result<(), E> {
    use tar::EntryType;
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(ExtractError::damaged("reading the tar stream"))?;
    for entry in entries {
        let mut entry = entry.map_err(ExtractError::damaged("reading a tar entry"))?;
        let name = entry
            .path()
            .map_err(ExtractError::damaged("reading the name of a tar entry"))?
            .into_owned();
        let shown = name.display().to_string();
        let refuse = |reason| Err(Refused::entry(&name, reason).into());
        let kind = match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => EntryKind::File {
                mode: entry.header().mode().unwrap_or(0o644),
                mtime: entry.header().mtime().ok(),
                size: entry.size(),
            },
            EntryType::Directory => EntryKind::Dir,
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(ExtractError::damaged(format!(
                        "reading the target of link `{shown}`"
                    )))?
                    .ok_or_else(|| Refused::entry(&name, Refusal::LinkWithoutTarget))?
                    .into_owned();
                EntryKind::Symlink(target)
            }
            EntryType::Link => return refuse(Refusal::HardLink),
            EntryType::Char | EntryType::Block => return refuse(Refusal::Device),
            EntryType::Fifo => return refuse(Refusal::Fifo),
            // Metadata for the following entries, already applied by the tar reader.
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => continue,
            other => return refuse(Refusal::UnsupportedType(format!("{other:?}"))),
        };
        check_relative(&name)?;
        visit(&name, kind, &mut entry)?;
    }
    // Drain anything after the end-of-archive blocks, so that a damaged
    // compressed trailer (a truncated last member) is noticed too.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(ExtractError::damaged(
        "reading past the end of the tar stream",
    ))?;
    Ok(())
}

/// Reads a zip archive and passes every entry to `visit`, like [`read_tar`].
#[cfg(feature = "release-formats")]
pub fn read_zip<E: From<ExtractError>>(
    reader: impl Read + io::Seek,
    mut visit: impl FnMut(&Path, EntryKind, &mut dyn Read) -> Result<(), E>,
) -> Result<(), E> {
    // Unix file-type bits of a zip entry's external attributes.
    const S_IFMT: u32 = 0o170000;
    const S_IFREG: u32 = 0o100000;
    const S_IFDIR: u32 = 0o040000;
    const S_IFLNK: u32 = 0o120000;

    let mut archive =
        zip::ZipArchive::new(io::BufReader::new(reader)).map_err(|e| ExtractError::Damaged {
            what: "reading the zip index".into(),
            source: io::Error::other(e),
        })?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| ExtractError::Damaged {
            what: format!("reading zip entry {i}"),
            source: io::Error::other(e),
        })?;
        let name = entry
            .name()
            .map_err(|e| ExtractError::Damaged {
                what: format!("reading the name of zip entry {i}"),
                source: io::Error::other(e),
            })?
            .into_owned();
        if name.contains('\\') {
            return Err(Refused::entry(Path::new(&name), Refusal::Backslash).into());
        }
        let mode = entry.unix_mode();
        let file_type = mode.map(|m| m & S_IFMT).filter(|t| *t != 0);
        let kind = if entry.is_dir() {
            EntryKind::Dir
        } else if entry.is_symlink() {
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .map_err(ExtractError::damaged(format!(
                    "reading the target of link `{name}`"
                )))?;
            EntryKind::Symlink(PathBuf::from(target))
        } else {
            match file_type {
                None | Some(S_IFREG) => EntryKind::File {
                    mode: mode.unwrap_or(0o644),
                    mtime: None,
                    size: entry.size(),
                },
                Some(S_IFDIR) => EntryKind::Dir,
                Some(S_IFLNK) => unreachable!("is_symlink covers S_IFLNK"),
                Some(other) => {
                    return Err(Refused::entry(Path::new(&name), Refusal::Special(other)).into())
                }
            }
        };
        let path = PathBuf::from(&name);
        check_relative(&path)?;
        visit(&path, kind, &mut entry)?;
    }
    Ok(())
}

/// Reads any archive we support, by its file name, passing each entry to `visit`.
pub fn read_archive<E: From<ExtractError>>(
    archive: &Path,
    visit: impl FnMut(&Path, EntryKind, &mut dyn Read) -> Result<(), E>,
) -> Result<(), E> {
    let format = Format::of(archive)?;
    let file =
        File::open(archive).map_err(ExtractError::io(format!("opening {}", archive.display())))?;
    let buffered = io::BufReader::with_capacity(1 << 20, file);
    match format {
        // Multi-member decoders: our writer compresses chunks in parallel as
        // separate members, which a plain decoder would stop after the first of.
        Format::TarGz => read_tar(flate2::read::MultiGzDecoder::new(buffered), visit),
        #[cfg(feature = "release-formats")]
        Format::TarBz2 => read_tar(bzip2::read::MultiBzDecoder::new(buffered), visit),
        #[cfg(feature = "release-formats")]
        Format::Zip => read_zip(buffered.into_inner(), visit),
        #[cfg(not(feature = "release-formats"))]
        Format::TarBz2 => Err(ExtractError::Unsupported(".tar.bz2").into()),
        #[cfg(not(feature = "release-formats"))]
        Format::Zip => Err(ExtractError::Unsupported(".zip").into()),
    }
}

/// Unpacks `archive` (any supported kind) into the existing folder `root`,
/// refusing anything that would land outside it.
pub fn unpack(archive: &Path, root: &Path) -> Result<()> {
    let mut unpacker = Unpacker::new(root);
    read_archive(archive, |name, kind, contents| {
        unpacker.add(name, kind, contents)
    })
    .map_err(|e| name_archive(archive, e))?;
    unpacker
        .recheck_links()
        .map_err(|e| name_archive(archive, e))
}

/// Unpacks one of our archives (every entry under the one folder `top`, links
/// that stay inside it) into `dest`. An empty archive is an error.
pub fn unpack_top(archive: &Path, top: &str, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest).map_err(ExtractError::io(format!("creating {}", dest.display())))?;
    let mut unpacker = Unpacker::new(dest);
    let mut entries = 0usize;
    read_archive(archive, |name, kind, contents| {
        let rel = safe_relative_path(name, top)
            .map_err(|why| Refused::entry(name, Refusal::Path(why)))?;
        if let EntryKind::Symlink(target) = &kind {
            check_link(&rel, &target.to_string_lossy()).map_err(|why| {
                let target = target.clone();
                Refused::entry(name, Refusal::LinkOutside { target, why })
            })?;
        }
        entries += 1;
        unpacker.add(name, kind, contents)
    })
    .map_err(|e| name_archive(archive, e))?;
    if entries == 0 {
        return Err(ExtractError::Refused(Refused {
            archive: Some(archive.to_path_buf()),
            entry: None,
            reason: Refusal::Empty,
        }));
    }
    unpacker
        .recheck_links()
        .map_err(|e| name_archive(archive, e))
}

/// `PYPY.json` of one of our archives, read without unpacking the rest.
pub fn read_manifest(archive: &Path) -> Result<Manifest> {
    /// Stops the walk once the manifest is read.
    enum Walk {
        Found(String),
        Failed(ExtractError),
    }
    impl From<ExtractError> for Walk {
        fn from(error: ExtractError) -> Self {
            Walk::Failed(error)
        }
    }
    let wanted = format!("{TOP_DIR}/{MANIFEST_NAME}");
    let walk = read_archive(archive, |name, _kind, contents| {
        if name.to_str() != Some(wanted.as_str()) {
            return Ok(());
        }
        let mut text = String::new();
        contents
            .read_to_string(&mut text)
            .map_err(ExtractError::damaged(format!("reading {wanted}")))?;
        Err(Walk::Found(text))
    });
    match walk {
        Err(Walk::Found(text)) => {
            Manifest::from_json(&text).map_err(|source| ExtractError::BadManifest {
                archive: archive.to_path_buf(),
                source,
            })
        }
        Ok(()) => Err(ExtractError::NoManifest(archive.to_path_buf())),
        Err(Walk::Failed(e)) => Err(name_archive(archive, e)),
    }
}

/// Names the archive in an error that does not yet.
fn name_archive(archive: &Path, error: ExtractError) -> ExtractError {
    let shown = archive.display().to_string();
    match error {
        ExtractError::Refused(mut refused) => {
            refused.archive.get_or_insert_with(|| archive.to_path_buf());
            ExtractError::Refused(refused)
        }
        ExtractError::Damaged { what, source } => ExtractError::Damaged {
            what: format!(
                "{shown}: the archive is truncated or corrupt ({what}); download or build it again"
            ),
            source,
        },
        other => other,
    }
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

/// Writes entries under `root`, refusing anything that would land outside it.
pub struct Unpacker<'a> {
    root: &'a Path,
    /// Every link created: (its folder, its name, its target), re-checked at the end.
    links: Vec<(Vec<OsString>, OsString, PathBuf)>,
}

impl<'a> Unpacker<'a> {
    pub fn new(root: &'a Path) -> Self {
        Unpacker {
            root,
            links: Vec::new(),
        }
    }

    /// Creates one entry; `contents` is read for files.
    pub fn add(&mut self, name: &Path, kind: EntryKind, contents: &mut dyn Read) -> Result<()> {
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
        .map_err(|why| Refused::entry(name, Refusal::ThroughLink(why)))?;
        let parent_path = join_all(self.root, &parent);
        fs::create_dir_all(&parent_path).map_err(ExtractError::io(format!(
            "creating the folder of entry `{}`",
            name.display()
        )))?;
        let path = parent_path.join(&last);
        match kind {
            EntryKind::Dir => {
                if !path.is_dir() {
                    fs::create_dir(&path).map_err(ExtractError::io(format!(
                        "creating folder `{}`",
                        name.display()
                    )))?;
                }
            }
            EntryKind::File { mode, mtime, .. } => {
                remove_non_dir(&path)?;
                let shown = name.display();
                let mut out =
                    File::create(&path).map_err(ExtractError::io(format!("creating `{shown}`")))?;
                io::copy(contents, &mut out)
                    .map_err(ExtractError::damaged(format!("unpacking `{shown}`")))?;
                set_mode(&out, mode)
                    .map_err(ExtractError::io(format!("setting the mode of `{shown}`")))?;
                // The archive's times, so that `make` sees a tree as shipped.
                if let Some(secs) = mtime {
                    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
                    out.set_modified(time)
                        .map_err(ExtractError::io(format!("setting the time of `{shown}`")))?;
                }
            }
            EntryKind::Symlink(target) => {
                let mut stack = parent.clone();
                let mut hops = 0;
                resolve_beneath(self.root, &mut stack, &target, &mut hops).map_err(|why| {
                    let target = target.clone();
                    Refused::entry(name, Refusal::LinkEscapes { target, why })
                })?;
                remove_non_dir(&path)?;
                make_symlink(&target, &path).map_err(ExtractError::io(format!(
                    "creating symbolic link `{}`",
                    name.display()
                )))?;
                self.links.push((parent, last, target));
            }
        }
        Ok(())
    }

    /// A later entry may have turned an earlier link's target into a way out;
    /// checks every link against the finished tree.
    pub fn recheck_links(&self) -> Result<()> {
        for (parent, name, target) in &self.links {
            let mut stack = parent.clone();
            let mut hops = 0;
            resolve_beneath(self.root, &mut stack, target, &mut hops).map_err(|why| {
                let entry = join_all(Path::new(""), parent).join(name);
                let target = target.clone();
                Refused::entry(&entry, Refusal::LinkEscapesLater { target, why })
            })?;
        }
        Ok(())
    }
}

fn remove_non_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => {
            fs::remove_file(path).map_err(ExtractError::io(format!("replacing {}", path.display())))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_suffix_table_names_the_format_and_the_stem() {
        assert_eq!(
            strip_suffix("pypy3.11-v7.3.23-src.tar.bz2"),
            Some("pypy3.11-v7.3.23-src")
        );
        assert_eq!(
            strip_suffix("pypy2.7-v7.3.20-win64.ZIP"),
            Some("pypy2.7-v7.3.20-win64")
        );
        assert_eq!(strip_suffix("x.whl"), Some("x"));
        assert_eq!(strip_suffix(".tgz"), None);
        assert_eq!(strip_suffix("notes.txt"), None);
        assert_eq!(Format::of(Path::new("a/b.tbz2")).unwrap(), Format::TarBz2);
        assert_eq!(Format::of(Path::new("b.whl")).unwrap(), Format::Zip);
        assert!(Format::of(Path::new("b.rar")).is_err());
    }

    #[test]
    fn relative_components_refuse_escapes() {
        assert!(relative_components(Path::new("a/./b")).is_ok());
        let err = relative_components(Path::new("/etc/passwd")).unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
        let err = relative_components(Path::new("a/../../x")).unwrap_err();
        assert!(err.to_string().contains("`..`"), "{err}");
        // The refusal is typed: callers match on it and get the entry's path,
        // and naming the archive afterwards does not touch the message's text.
        match name_archive(Path::new("x.tar.gz"), err) {
            ExtractError::Refused(Refused {
                archive,
                entry,
                reason: Refusal::ParentDir,
            }) => {
                assert_eq!(archive.as_deref(), Some(Path::new("x.tar.gz")));
                assert_eq!(entry.as_deref(), Some(Path::new("a/../../x")));
            }
            other => panic!("expected a typed refusal, got {other:?}"),
        }
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
        let err = Format::of(Path::new("x.rar")).unwrap_err();
        assert!(err.to_string().contains("x.rar"), "{err}");
    }

    /// A .tar.gz of (name, type, contents or link target), written raw.
    fn tar_gz(dir: &Path, entries: &[(&str, tar::EntryType, &str)]) -> PathBuf {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            if *kind == tar::EntryType::Symlink {
                header.set_link_name(data).unwrap();
                header.set_size(0);
                header.set_cksum();
                builder.append(&header, io::empty()).unwrap();
            } else {
                header.set_size(data.len() as u64);
                header.set_cksum();
                builder.append(&header, data.as_bytes()).unwrap();
            }
        }
        let tar = builder.into_inner().unwrap();
        let path = dir.join("t.tar.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        fs::write(&path, gz.finish().unwrap()).unwrap();
        path
    }

    #[test]
    fn our_archives_unpack_under_their_top_folder() {
        let dir = tempfile::tempdir().unwrap();
        let archive = tar_gz(
            dir.path(),
            &[
                ("pypy/", tar::EntryType::Directory, ""),
                ("pypy/bin/x", tar::EntryType::Regular, "hello"),
            ],
        );
        let dest = dir.path().join("out");
        unpack_top(&archive, "pypy", &dest).unwrap();
        assert_eq!(
            fs::read_to_string(dest.join("pypy/bin/x")).unwrap(),
            "hello"
        );
    }

    #[test]
    fn our_archives_refuse_what_the_format_forbids() {
        let dir = tempfile::tempdir().unwrap();
        for (entries, expected) in [
            (
                vec![("other/x", tar::EntryType::Regular, "x")],
                "must lie under pypy/",
            ),
            (
                vec![("pypy/l", tar::EntryType::Symlink, "../../etc")],
                "points outside the archive",
            ),
            (vec![("pypy/c", tar::EntryType::Char, "")], "device file"),
            (
                vec![("pypy/h", tar::EntryType::Link, "pypy/x")],
                "hard link",
            ),
            (vec![], "the archive is empty"),
        ] {
            let archive = tar_gz(dir.path(), &entries);
            let dest = dir.path().join("out");
            let err = unpack_top(&archive, "pypy", &dest)
                .unwrap_err()
                .full_message();
            assert!(err.contains(expected) && err.contains("t.tar.gz"), "{err}");
            let _ = fs::remove_dir_all(&dest);
        }
    }

    #[test]
    fn the_manifest_is_read_without_unpacking() {
        let dir = tempfile::tempdir().unwrap();
        let archive = tar_gz(dir.path(), &[("pypy/bin/x", tar::EntryType::Regular, "x")]);
        let err = read_manifest(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::NoManifest(_)), "{err:?}");
        let archive = tar_gz(
            dir.path(),
            &[(
                "pypy/PYPY.json",
                tar::EntryType::Regular,
                "{\"format_version\": 99}",
            )],
        );
        let err = read_manifest(&archive).unwrap_err().full_message();
        assert!(
            err.contains("t.tar.gz: pypy/PYPY.json") && err.contains("99"),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_archive_is_damaged_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let archive = tar_gz(
            dir.path(),
            &[("pypy/big", tar::EntryType::Regular, &"y".repeat(100_000))],
        );
        let bytes = fs::read(&archive).unwrap();
        fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
        let err = unpack_top(&archive, "pypy", &dir.path().join("out")).unwrap_err();
        assert!(matches!(err, ExtractError::Damaged { .. }), "{err:?}");
        let text = err.full_message();
        assert!(
            text.contains("t.tar.gz") && text.contains("truncated"),
            "{text}"
        );
    }
}
