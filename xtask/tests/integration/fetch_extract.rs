//! Safe extraction: well-formed archives unpack whole; hostile ones, built
//! here byte by byte, are refused with the entry named and nothing written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use xtask::fetch::{extract_archive, extract_once};

/// One tar entry, written as is (no path cleaning, unlike `tar::Builder`'s helpers).
enum Entry<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    CharDevice(&'a str),
    Fifo(&'a str),
}

fn tar_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let (name, kind, data, mode, link): (&str, tar::EntryType, &[u8], u32, Option<&str>) =
            match *entry {
                Entry::File(n, d, m) => (n, tar::EntryType::Regular, d, m, None),
                Entry::Dir(n) => (n, tar::EntryType::Directory, b"", 0o755, None),
                Entry::Symlink(n, t) => (n, tar::EntryType::Symlink, b"", 0o777, Some(t)),
                Entry::Hardlink(n, t) => (n, tar::EntryType::Link, b"", 0o644, Some(t)),
                Entry::CharDevice(n) => (n, tar::EntryType::Char, b"", 0o644, None),
                Entry::Fifo(n) => (n, tar::EntryType::Fifo, b"", 0o644, None),
            };
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(1_600_000_000);
        if let Some(target) = link {
            header.set_link_name_literal(target).unwrap();
        }
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn write_tar_gz(dir: &Path, entries: &[Entry]) -> PathBuf {
    let path = dir.join("test.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&tar_bytes(entries)).unwrap();
    gz.finish().unwrap();
    path
}

fn write_tar_bz2(dir: &Path, entries: &[Entry]) -> PathBuf {
    let path = dir.join("test.tar.bz2");
    let mut bz = bzip2::write::BzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        bzip2::Compression::fast(),
    );
    bz.write_all(&tar_bytes(entries)).unwrap();
    bz.finish().unwrap();
    path
}

/// Zip entries: (name, contents, unix mode, is a symlink).
fn write_zip(dir: &Path, entries: &[(&str, &[u8], u32, bool)]) -> PathBuf {
    let path = dir.join("test.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for &(name, data, mode, link) in entries {
        let options = zip::write::SimpleFileOptions::default().unix_permissions(mode);
        if link {
            zip.add_symlink(name, std::str::from_utf8(data).unwrap(), options)
                .unwrap();
        } else if name.ends_with('/') {
            zip.add_directory(name, options).unwrap();
        } else {
            zip.start_file(name, options).unwrap();
            zip.write_all(data).unwrap();
        }
    }
    zip.finish().unwrap();
    path
}

/// A sandbox: `archives/` for the archive, `out/dest` as destination; the
/// escapes the hostile archives aim at all land in `out/` or the sandbox.
struct Sandbox {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("archives")).unwrap();
        std::fs::create_dir_all(root.join("out")).unwrap();
        Sandbox { _tmp: tmp, root }
    }
    fn archives(&self) -> PathBuf {
        self.root.join("archives")
    }
    fn dest(&self) -> PathBuf {
        self.root.join("out").join("dest")
    }

    /// Extraction fails with `expected` in the message; nothing is left behind
    /// but the lock file, and nothing was written outside.
    fn assert_refused(&self, archive: &Path, expected: &[&str]) {
        let err = extract_archive(archive, &self.dest()).unwrap_err();
        let msg = format!("{err:#}");
        eprintln!("refused as expected: {msg}");
        for e in expected {
            assert!(msg.contains(e), "`{e}` not in: {msg}");
        }
        assert!(!self.dest().exists(), "{msg}");
        let left: Vec<String> = std::fs::read_dir(self.root.join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["dest.lock"], "leftovers after: {msg}");
        for escaped in ["x", "pwned", "archives/x"] {
            assert!(!self.root.join(escaped).exists(), "{escaped} was written");
        }
    }
}

const GOOD_TAR: &[Entry] = &[
    Entry::Dir("top/"),
    Entry::File("top/bin/tool", b"#!/bin/sh\necho hi\n", 0o755),
    Entry::File("top/lib/a.txt", b"alpha", 0o644),
    Entry::Dir("top/empty/"),
    Entry::Symlink("top/lib/link.txt", "a.txt"),
    Entry::Symlink("top/current", "lib"),
    Entry::File("./top/./lib/b.txt", b"beta", 0o4755),
];

#[cfg(unix)]
fn check_good_tree(dest: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let top = dest.join("top");
    assert_eq!(
        std::fs::read(top.join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    let mode = |p: &str| std::fs::metadata(top.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("bin/tool"), 0o755);
    let dest_mode = std::fs::metadata(dest).unwrap().permissions().mode() & 0o777;
    assert_eq!(dest_mode, 0o755, "the destination must not stay private");
    assert_eq!(mode("lib/a.txt"), 0o644);
    assert_eq!(mode("lib/b.txt"), 0o755, "setuid must be dropped");
    assert!(top.join("empty").is_dir());
    assert_eq!(
        std::fs::read_link(top.join("lib/link.txt")).unwrap(),
        Path::new("a.txt")
    );
    assert_eq!(
        std::fs::read(top.join("current/link.txt")).unwrap(),
        b"alpha"
    );
    let mtime = std::fs::metadata(top.join("lib/a.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000)
    );
}

#[cfg(unix)]
#[test]
fn well_formed_tar_gz_unpacks_whole() {
    let sb = Sandbox::new();
    let archive = write_tar_gz(&sb.archives(), GOOD_TAR);
    extract_archive(&archive, &sb.dest()).unwrap();
    check_good_tree(&sb.dest());
}

#[cfg(unix)]
#[test]
fn well_formed_tar_bz2_unpacks_whole() {
    let sb = Sandbox::new();
    let archive = write_tar_bz2(&sb.archives(), GOOD_TAR);
    extract_archive(&archive, &sb.dest()).unwrap();
    check_good_tree(&sb.dest());
}

#[cfg(unix)]
#[test]
fn well_formed_zip_unpacks_whole() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let archive = write_zip(
        &sb.archives(),
        &[
            ("top/", b"", 0o755, false),
            ("top/bin/tool", b"#!/bin/sh\n", 0o755, false),
            ("top/lib/a.txt", b"alpha", 0o644, false),
            ("top/lib/link.txt", b"a.txt", 0o777, true),
        ],
    );
    extract_archive(&archive, &sb.dest()).unwrap();
    let top = sb.dest().join("top");
    assert_eq!(std::fs::read(top.join("lib/a.txt")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(top.join("lib/link.txt")).unwrap(), b"alpha");
    let mode = std::fs::metadata(top.join("bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[test]
fn existing_destination_is_not_overwritten() {
    let sb = Sandbox::new();
    let archive = write_tar_gz(&sb.archives(), GOOD_TAR);
    std::fs::create_dir(sb.dest()).unwrap();
    std::fs::write(sb.dest().join("keep"), "mine").unwrap();
    let msg = format!("{:#}", extract_archive(&archive, &sb.dest()).unwrap_err());
    assert!(msg.contains("already exists"), "{msg}");
    assert_eq!(std::fs::read(sb.dest().join("keep")).unwrap(), b"mine");
}

#[test]
fn tar_entry_with_parent_dir_is_refused() {
    let sb = Sandbox::new();
    let archive = write_tar_gz(&sb.archives(), &[Entry::File("../x", b"evil", 0o644)]);
    sb.assert_refused(&archive, &["entry `../x`", "contains `..`"]);
    let archive = write_tar_gz(
        &sb.archives(),
        &[
            Entry::File("top/ok", b"fine", 0o644),
            Entry::File("top/../../x", b"evil", 0o644),
        ],
    );
    sb.assert_refused(&archive, &["entry `top/../../x`", "contains `..`"]);
}

#[test]
fn tar_entry_with_absolute_path_is_refused() {
    let sb = Sandbox::new();
    let target = sb.root.join("x");
    let archive = write_tar_gz(
        &sb.archives(),
        &[Entry::File(target.to_str().unwrap(), b"evil", 0o644)],
    );
    sb.assert_refused(&archive, &[target.to_str().unwrap(), "absolute path"]);
}

#[cfg(unix)]
#[test]
fn symlinks_leading_outside_are_refused() {
    let sb = Sandbox::new();
    let archive = write_tar_gz(
        &sb.archives(),
        &[Entry::Dir("top/"), Entry::Symlink("top/evil", "../../x")],
    );
    sb.assert_refused(&archive, &["symbolic link `top/evil`", "leads outside"]);

    let archive = write_tar_gz(&sb.archives(), &[Entry::Symlink("evil", "/etc")]);
    sb.assert_refused(&archive, &["symbolic link `evil` -> `/etc`", "absolute"]);

    // Lexically `self/..` stays inside; on disk `self` is the root itself.
    let archive = write_tar_gz(
        &sb.archives(),
        &[
            Entry::Symlink("self", "."),
            Entry::Symlink("esc", "self/.."),
        ],
    );
    sb.assert_refused(&archive, &["symbolic link `esc`", "leads outside"]);
}

#[cfg(unix)]
#[test]
fn a_later_link_cannot_turn_an_earlier_one_into_an_escape() {
    let sb = Sandbox::new();
    // When `hop` is created `sub` does not exist, so `sub/..` is the root;
    // the later `sub -> .` makes it the root's parent.
    let archive = write_tar_gz(
        &sb.archives(),
        &[Entry::Symlink("hop", "sub/.."), Entry::Symlink("sub", ".")],
    );
    sb.assert_refused(&archive, &["`hop`", "once the archive is unpacked"]);

    // Nor can a file be written through such a link before the final check.
    let archive = write_tar_gz(
        &sb.archives(),
        &[
            Entry::Symlink("hop", "sub/.."),
            Entry::Symlink("sub", "."),
            Entry::File("hop/pwned", b"evil", 0o644),
        ],
    );
    sb.assert_refused(&archive, &["entry `hop/pwned`", "through a link"]);
}

#[test]
fn hardlinks_are_refused() {
    let sb = Sandbox::new();
    let archive = write_tar_gz(
        &sb.archives(),
        &[
            Entry::File("top/a", b"alpha", 0o644),
            Entry::Hardlink("top/hard", "top/a"),
        ],
    );
    sb.assert_refused(&archive, &["entry `top/hard`", "hard link"]);
}

#[test]
fn device_and_fifo_entries_are_refused() {
    let sb = Sandbox::new();
    let archive = write_tar_gz(&sb.archives(), &[Entry::CharDevice("top/null")]);
    sb.assert_refused(&archive, &["entry `top/null`", "device file"]);
    let archive = write_tar_bz2(&sb.archives(), &[Entry::Fifo("top/pipe")]);
    sb.assert_refused(&archive, &["entry `top/pipe`", "FIFO"]);
}

#[test]
fn zip_entry_with_parent_dir_is_refused() {
    let sb = Sandbox::new();
    let archive = write_zip(
        &sb.archives(),
        &[
            ("top/ok", b"fine", 0o644, false),
            ("../x", b"evil", 0o644, false),
        ],
    );
    sb.assert_refused(&archive, &["entry `../x`", "contains `..`"]);
}

#[test]
fn zip_entry_with_absolute_path_is_refused() {
    let sb = Sandbox::new();
    let target = sb.root.join("x");
    let archive = write_zip(
        &sb.archives(),
        &[(target.to_str().unwrap(), b"evil", 0o644, false)],
    );
    sb.assert_refused(&archive, &["absolute path"]);
}

#[cfg(unix)]
#[test]
fn zip_symlink_leading_outside_is_refused() {
    let sb = Sandbox::new();
    let archive = write_zip(&sb.archives(), &[("top/evil", b"../../x", 0o777, true)]);
    sb.assert_refused(&archive, &["symbolic link `top/evil`", "leads outside"]);
}

#[test]
fn corrupt_archive_leaves_nothing_behind() {
    let sb = Sandbox::new();
    let mut bytes = Vec::new();
    {
        let mut gz = flate2::write::GzEncoder::new(&mut bytes, flate2::Compression::fast());
        gz.write_all(&tar_bytes(GOOD_TAR)).unwrap();
        gz.finish().unwrap();
    }
    // Cut the compressed stream in half.
    let archive = sb.archives().join("cut.tar.gz");
    std::fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
    sb.assert_refused(&archive, &["cut.tar.gz"]);
}

#[test]
fn concurrent_extractions_into_one_folder_take_turns() {
    let sb = Arc::new(Sandbox::new());
    let archive = write_tar_gz(&sb.archives(), GOOD_TAR);
    let barrier = Arc::new(Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (sb, archive, barrier) = (sb.clone(), archive.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                extract_once(&archive, &sb.dest())
            })
        })
        .collect();
    let mut unpacked: Vec<bool> = runs
        .into_iter()
        .map(|r| r.join().unwrap().unwrap())
        .collect();
    unpacked.sort();
    assert_eq!(unpacked, [false, true], "exactly one run unpacks");
    assert_eq!(
        std::fs::read(sb.dest().join("top/lib/a.txt")).unwrap(),
        b"alpha"
    );
}

#[test]
fn temporaries_of_an_interrupted_run_are_removed() {
    let sb = Sandbox::new();
    let archive = write_tar_gz(&sb.archives(), GOOD_TAR);
    let stale = sb.root.join("out/.dest.tmpAb12Cd");
    std::fs::create_dir_all(stale.join("half/written")).unwrap();
    // Not ours: a longer suffix belongs to some other name.
    let other = sb.root.join("out/.dest.tmpAb12Cd-keep");
    std::fs::create_dir(&other).unwrap();
    assert!(extract_once(&archive, &sb.dest()).unwrap());
    assert!(!stale.exists());
    assert!(other.exists());
    assert!(sb.dest().join("top/lib/a.txt").is_file());
}
