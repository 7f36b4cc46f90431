//! Step 4: the reproducible `.tar.gz` writer (reading is `pypy_archive::extract`'s).
//!
//! Entries in the format's order (`pypy_archive::tree`: depth first, names
//! sorted bytewise, each folder before its contents), mtime from `SOURCE_DATE_EPOCH` or a
//! fixed default, owner 0 with empty user and group names, modes 0o755 or
//! 0o644, and a fixed gzip header (mtime 0, OS 255). The tar stream is cut
//! into chunks that threads compress as separate gzip members; RFC 1952
//! lets members follow each other, so the result is still one valid
//! `.tar.gz` (GNU tar, Python's tarfile and flate2's `MultiGzDecoder` read it).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{mpsc, Mutex};

use anyhow::{bail, Context, Result};
use flate2::{Compression, GzBuilder};
use pypy_archive::tree::{list_tree, EntryKind};

/// The mtime used when `SOURCE_DATE_EPOCH` is not set: 2000-01-01T00:00:00Z
/// (not 0, which some tools treat as "no date").
pub const DEFAULT_MTIME: u64 = 946_684_800;

/// Size of the tar chunks compressed independently. Each member restarts
/// the 32 KiB deflate window, so the size cost is about 32 KiB per member
/// of poorer compression at worst: negligible at 2 MiB.
const CHUNK: usize = 2 << 20;

/// How the archive is written.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Modification time of every entry (seconds since the epoch).
    pub mtime: u64,
    /// gzip level 0-9; 6 is gzip's default and what `tar -czf` uses.
    pub level: u32,
    /// Compression threads; 0 means one per available core.
    pub threads: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            mtime: DEFAULT_MTIME,
            level: 6,
            threads: 0,
        }
    }
}

impl WriteOptions {
    /// Defaults, with the mtime taken from `SOURCE_DATE_EPOCH` when set.
    pub fn from_env() -> Result<WriteOptions> {
        Ok(WriteOptions {
            mtime: mtime_from_env()?,
            ..WriteOptions::default()
        })
    }
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org) or [`DEFAULT_MTIME`].
pub fn mtime_from_env() -> Result<u64> {
    Ok(crate::source_date::from_env()?.unwrap_or(DEFAULT_MTIME))
}

/// Sizes of what was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteStats {
    pub entries: usize,
    pub tar_bytes: u64,
    pub gz_bytes: u64,
    pub members: usize,
}

/// Collects the tar stream and hands off full chunks for compression.
struct ChunkSink {
    buf: Vec<u8>,
    next_index: usize,
    total: u64,
    tx: mpsc::SyncSender<(usize, Vec<u8>)>,
}

impl ChunkSink {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + 8192));
        self.tx
            .send((self.next_index, chunk))
            .map_err(|_| std::io::Error::other("compression threads stopped"))?;
        self.next_index += 1;
        Ok(())
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.total += data.len() as u64;
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn gzip_member(data: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let mut enc = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::with_capacity(data.len() / 3), Compression::new(level));
    enc.write_all(data)?;
    enc.finish()
}

/// Writes the tree below `root` as a tar.gz to `out`, every entry under the
/// top folder `top` (whose own entry comes first). Returns what was written.
pub fn write_tar_gz(
    root: &Path,
    top: &str,
    out: &mut dyn Write,
    opts: &WriteOptions,
) -> Result<WriteStats> {
    let entries = list_tree(root)?;
    let entry_count = entries.len();
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    };
    let (chunk_tx, chunk_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(threads * 2);
    let chunk_rx = Mutex::new(chunk_rx);
    let (done_tx, done_rx) = mpsc::sync_channel::<(usize, std::io::Result<Vec<u8>>)>(threads * 2);

    std::thread::scope(|scope| -> Result<WriteStats> {
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let chunk_rx = &chunk_rx;
            scope.spawn(move || loop {
                let next = chunk_rx.lock().expect("no panics while locked").recv();
                let Ok((index, chunk)) = next else { break };
                if done_tx
                    .send((index, gzip_member(&chunk, opts.level)))
                    .is_err()
                {
                    break;
                }
            });
        }
        drop(done_tx);

        let producer = scope.spawn(move || -> Result<u64> {
            let sink = ChunkSink {
                buf: Vec::with_capacity(CHUNK + 8192),
                next_index: 0,
                total: 0,
                tx: chunk_tx,
            };
            let mut builder = tar::Builder::new(sink);
            builder.append_data(
                &mut dir_header(opts.mtime),
                format!("{top}/"),
                std::io::empty(),
            )?;
            for entry in &entries {
                let name = format!("{top}/{}", entry.rel);
                match &entry.kind {
                    EntryKind::Dir => {
                        builder.append_data(
                            &mut dir_header(opts.mtime),
                            format!("{name}/"),
                            std::io::empty(),
                        )?;
                    }
                    EntryKind::File { mode } => {
                        let data = fs_err::read(&entry.path)?;
                        let mut h = base_header(opts.mtime, tar::EntryType::Regular, *mode);
                        h.set_size(data.len() as u64);
                        builder
                            .append_data(&mut h, &name, data.as_slice())
                            .with_context(|| format!("archiving {}", entry.path.display()))?;
                    }
                    EntryKind::Symlink { target } => {
                        let mut h = base_header(opts.mtime, tar::EntryType::Symlink, 0o777);
                        builder.append_link(&mut h, &name, target)?;
                    }
                }
            }
            let mut sink = builder.into_inner()?;
            if !sink.buf.is_empty() {
                sink.send()?;
            }
            Ok(sink.total)
        });

        // Members arrive out of order; write them in order as they complete.
        let mut pending: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut next = 0usize;
        let mut gz_bytes = 0u64;
        for (index, member) in done_rx {
            pending.insert(index, member.context("gzip compression failed")?);
            while let Some(m) = pending.remove(&next) {
                out.write_all(&m).context("writing the archive")?;
                gz_bytes += m.len() as u64;
                next += 1;
            }
        }
        let tar_bytes = producer
            .join()
            .map_err(|_| anyhow::anyhow!("the tar writer thread panicked"))??;
        if !pending.is_empty() {
            bail!("internal error: gzip members missing before {next}");
        }
        Ok(WriteStats {
            entries: entry_count + 1,
            tar_bytes,
            gz_bytes,
            members: next,
        })
    })
}

fn base_header(mtime: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    // new_gnu leaves them zeroed; set explicitly so the intent is visible.
    h.set_username("").expect("empty name fits");
    h.set_groupname("").expect("empty name fits");
    h
}

fn dir_header(mtime: u64) -> tar::Header {
    base_header(mtime, tar::EntryType::Directory, 0o755)
}

/// Writes the archive to `dest` through a temporary file in the same folder,
/// renamed into place only when complete. Returns the stats and the sha256.
pub fn write_tar_gz_file(
    root: &Path,
    top: &str,
    dest: &Path,
    opts: &WriteOptions,
) -> Result<(WriteStats, String)> {
    let dir = dest
        .parent()
        .with_context(|| format!("{} has no parent folder", dest.display()))?;
    fs_err::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let (stats, sha) = {
        let mut hashing = HashingWriter {
            inner: std::io::BufWriter::with_capacity(1 << 20, tmp.as_file()),
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
        };
        let stats = write_tar_gz(root, top, &mut hashing, opts)
            .with_context(|| format!("writing {}", dest.display()))?;
        hashing.inner.flush()?;
        (stats, hex::encode(sha2::Digest::finalize(hashing.hasher)))
    };
    tmp.as_file().sync_all()?;
    make_world_readable(tmp.path())?;
    tmp.persist(dest)
        .with_context(|| format!("moving the finished archive to {}", dest.display()))?;
    Ok((stats, sha))
}

/// Temporary files are created 0o600; a published file is 0o644 like any other.
pub fn make_world_readable(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        sha2::Digest::update(&mut self.hasher, &data[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sample_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join("bin")).unwrap();
        fs_err::create_dir_all(root.join("lib/deep")).unwrap();
        fs_err::write(root.join("bin/tool"), b"#!/bin/sh\n").unwrap();
        fs_err::write(root.join("lib/a.txt"), b"hello").unwrap();
        fs_err::write(root.join("lib.txt"), vec![7u8; 5 << 20]).unwrap();
        let long = "x".repeat(120);
        fs_err::write(root.join("lib/deep").join(&long), b"long name").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                root.join("bin/tool"),
                std::fs::Permissions::from_mode(0o700),
            )
            .unwrap();
            std::os::unix::fs::symlink("tool", root.join("bin/alias")).unwrap();
        }
        dir
    }

    #[test]
    fn order_is_depth_first_and_sorted() {
        let tree = sample_tree();
        let names: Vec<String> = list_tree(tree.path())
            .unwrap()
            .into_iter()
            .map(|e| e.rel)
            .collect();
        let bin = names.iter().position(|n| n == "bin").unwrap();
        let tool = names.iter().position(|n| n == "bin/tool").unwrap();
        assert!(bin < tool);
        let lib = names.iter().position(|n| n == "lib").unwrap();
        let lib_txt = names.iter().position(|n| n == "lib.txt").unwrap();
        assert!(lib < lib_txt, "folders sort by their own name: {names:?}");
    }

    #[test]
    fn same_tree_same_bytes_and_round_trip() {
        let tree = sample_tree();
        let opts = WriteOptions {
            threads: 3,
            ..WriteOptions::default()
        };
        let mut a = Vec::new();
        let stats = write_tar_gz(tree.path(), "top", &mut a, &opts).unwrap();
        assert!(stats.members >= 3, "5 MiB of data spans several members");
        let mut b = Vec::new();
        write_tar_gz(tree.path(), "top", &mut b, &WriteOptions::default()).unwrap();
        assert_eq!(a, b, "thread count must not change the bytes");

        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("t.tar.gz");
        fs_err::write(&file, &a).unwrap();
        let dest = out.path().join("x");
        fs_err::create_dir(&dest).unwrap();
        pypy_archive::extract::unpack_top(&file, "top", &dest).unwrap();
        assert_eq!(
            fs_err::read(dest.join("top/lib/deep").join("x".repeat(120))).unwrap(),
            b"long name"
        );
        assert_eq!(
            fs_err::read(dest.join("top/lib.txt")).unwrap().len(),
            5 << 20
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs_err::metadata(dest.join("top/bin/tool"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o755);
            assert_eq!(
                fs_err::read_link(dest.join("top/bin/alias")).unwrap(),
                Path::new("tool")
            );
        }

        // Every header is normalised: owner 0, empty names, fixed mtime.
        let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(a.as_slice()));
        for e in tar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.uid().unwrap(), 0);
            assert_eq!(h.gid().unwrap(), 0);
            assert_eq!(h.mtime().unwrap(), DEFAULT_MTIME);
            assert_eq!(h.username().unwrap(), Some(""));
            let mode = h.mode().unwrap();
            assert!([0o755, 0o644, 0o777].contains(&mode), "{mode:o}");
        }
    }

    #[test]
    fn truncated_archive_is_an_error_naming_it() {
        let tree = sample_tree();
        let mut a = Vec::new();
        write_tar_gz(tree.path(), "top", &mut a, &WriteOptions::default()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("cut.tar.gz");
        fs_err::write(&file, &a[..a.len() / 2]).unwrap();
        let err = pypy_archive::extract::unpack_top(&file, "top", out.path()).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("cut.tar.gz") && text.contains("truncated"),
            "{text}"
        );
    }

    /// A .tar.gz holding one file entry named `name`, as raw bytes, so that
    /// names the tar crate would refuse to write can be tested.
    fn one_entry_archive(dir: &Path, name: &str) -> PathBuf {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(1);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header, &b"x"[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        let file = dir.join("one.tar.gz");
        fs_err::write(&file, gzip_member(&tar, 1).unwrap()).unwrap();
        file
    }

    #[test]
    fn entries_outside_the_top_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (name, why) in [("top/../etc", ".."), ("other/x", "must lie under top/")] {
            let archive = one_entry_archive(dir.path(), name);
            let dest = dir.path().join("out");
            let err = format!(
                "{:#}",
                pypy_archive::extract::unpack_top(&archive, "top", &dest).unwrap_err()
            );
            assert!(err.contains(name) && err.contains(why), "{err}");
            assert!(!dest.join("etc").exists() && !dir.path().join("etc").exists());
        }
    }
}
