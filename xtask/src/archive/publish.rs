//! Step 5 (after `writer` packs the tree): verify the archive, move it
//! into `dist/` with its `.sha256` (and `.build.json` for a translation),
//! and update `dist/SHA256SUMS`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::stage::Staged;
use super::writer::{self, WriteOptions};
use crate::manifest::{self, Manifest};

/// What [`publish`] wrote.
#[derive(Debug, Clone)]
pub struct Published {
    pub archive: PathBuf,
    pub sha256: String,
    pub manifest: Manifest,
    pub stats: writer::WriteStats,
    /// What `verify` found before the archive was moved into place
    /// (`None` only with `skip_verify`).
    pub verified: Option<crate::verify::VerifyReport>,
}

impl Published {
    /// What `package` and `repackage` print: path, size and checksum, then
    /// one line per tool `verify` built against the archive.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} ({} bytes, sha256 {})",
            self.archive.display(),
            self.stats.gz_bytes,
            self.sha256
        );
        for line in self
            .verified
            .iter()
            .flat_map(|v| &v.ran)
            .flat_map(|r| &r.consumers)
        {
            text.push_str(&format!("\n  verify: {line}"));
        }
        text
    }
}

/// How [`publish`] checks its result before moving it into place.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Libraries allowed beyond the target table (a recipe's extras).
    pub extra_allowed: Vec<String>,
    /// Skip `verify` (only for callers that verify themselves).
    pub skip_verify: bool,
    /// Folders of the building machine (besides the tree being archived,
    /// e.g. the translated source tree) that no text file may name.
    pub build_paths: Vec<PathBuf>,
    /// Pack a tree without its C headers on purpose; the manifest says so.
    pub no_headers: bool,
    /// The C libraries built into the binaries (a portable build's dependency
    /// stage): the manifest records them, and their licence texts go into
    /// `licenses/`.
    pub bundled: Option<crate::deps::Prefix>,
    /// Verification fails unless every binary meets the portability policy.
    pub require_portable: bool,
    /// Where verification prepares the emulator of a cross-built archive
    /// to run it (see [`crate::verify::VerifyOptions::cache_root`]).
    pub cache_root: Option<PathBuf>,
}

/// Writes the manifest into the staged tree, archives it, verifies the
/// archive, and only then moves the archive and its `.sha256` into
/// `out_dir` and updates `out_dir/SHA256SUMS`.
pub fn publish(
    staged: &Staged,
    manifest: &Manifest,
    out_dir: &Path,
    opts: &PublishOptions,
) -> Result<Published> {
    fs_err::write(staged.top.join(manifest::MANIFEST_NAME), manifest.to_json())?;
    let name = staged
        .target
        .archive_name(&staged.versions.python, &staged.versions.pypy);
    fs_err::create_dir_all(out_dir)?;
    // Everything is built in a hidden folder of `out_dir` (same file system,
    // so the final renames are atomic) that vanishes on any error.
    let pending = tempfile::Builder::new()
        .prefix(".pypy-archive-")
        .tempdir_in(out_dir)
        .with_context(|| format!("creating a temporary folder in {}", out_dir.display()))?;
    let tmp_archive = pending.path().join(&name);
    let (stats, sha256) = writer::write_tar_gz_file(
        &staged.top,
        manifest::TOP_DIR,
        &tmp_archive,
        &WriteOptions::from_env()?,
    )?;
    let sha_name = format!("{name}.sha256");
    fs_err::write(
        pending.path().join(&sha_name),
        format!("{sha256}  {name}\n"),
    )?;
    let verified = if opts.skip_verify {
        None
    } else {
        Some(
            crate::verify::verify_archive(
                &tmp_archive,
                &crate::verify::VerifyOptions {
                    extra_allowed: opts.extra_allowed.clone(),
                    require_portable: opts.require_portable,
                    cache_root: opts.cache_root.clone(),
                    ..Default::default()
                },
            )
            .with_context(|| format!("the new archive {name} failed verification"))?,
        )
    };
    if let Some(record) = build_record_json(manifest, &name, &sha256)? {
        let record_name = build_record_name(&name);
        fs_err::write(pending.path().join(&record_name), record)?;
        writer::make_world_readable(&pending.path().join(&record_name))?;
        fs_err::rename(
            pending.path().join(&record_name),
            out_dir.join(&record_name),
        )?;
    }
    let archive = out_dir.join(&name);
    fs_err::rename(pending.path().join(&sha_name), out_dir.join(&sha_name))?;
    fs_err::rename(&tmp_archive, &archive)?;
    update_sha256sums(out_dir, &name, &sha256)?;
    Ok(Published {
        archive,
        sha256,
        manifest: manifest.clone(),
        stats,
        verified,
    })
}

/// `<archive>.build.json`, published beside an archive that `build-pypy`
/// translated: what a rebuild needs (`cargo xtask rebuild-check`), readable
/// without downloading the archive.
pub fn build_record_name(archive_name: &str) -> String {
    format!("{archive_name}.build.json")
}

/// The text of [`build_record_name`]: the archive's name and sha256, its
/// target and versions, and the manifest's whole `origin` (recipe, source,
/// patches, options and the build record). `None` for archives without a
/// build record (repackaged ones).
pub fn build_record_json(manifest: &Manifest, name: &str, sha256: &str) -> Result<Option<String>> {
    if manifest.origin.build.is_none() {
        return Ok(None);
    }
    let value = serde_json::json!({
        "archive": name,
        "sha256": sha256,
        "target": manifest.target,
        "pypy_version": manifest.pypy_version,
        "python_version": manifest.python_version,
        "origin": manifest.origin,
    });
    let mut text = serde_json::to_string_pretty(&value).context("writing the build record")?;
    text.push('\n');
    Ok(Some(text))
}

/// The lock file beside `SHA256SUMS` (left in place: removing a lock file
/// others may be waiting on would let two writers in).
pub const SUMS_LOCK: &str = ".SHA256SUMS.lock";

/// Replaces (or adds) the line for `name` in `dir/SHA256SUMS`, written
/// through a temporary file so a reader never sees half a file.
pub fn update_sha256sums(dir: &Path, name: &str, sha256: &str) -> Result<()> {
    let path = dir.join("SHA256SUMS");
    // Two runs publishing into one folder would otherwise lose a line.
    let _lock = crate::lock::acquire(&dir.join(SUMS_LOCK), "the SHA256SUMS file of this folder")?;
    let old = match fs_err::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| !l.is_empty())
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .map(|n| n.trim_start_matches('*'))
                != Some(name)
        })
        .map(str::to_string)
        .collect();
    lines.push(format!("{sha256}  {name}"));
    lines.sort_by(|a, b| {
        a.split_whitespace()
            .nth(1)
            .cmp(&b.split_whitespace().nth(1))
    });
    let mut text = lines.join("\n");
    text.push('\n');
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    fs_err::write(tmp.path(), text)?;
    writer::make_world_readable(tmp.path())?;
    tmp.persist(&path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256sums_replaces_its_line() {
        let dir = tempfile::tempdir().unwrap();
        update_sha256sums(dir.path(), "b.tar.gz", "22").unwrap();
        update_sha256sums(dir.path(), "a.tar.gz", "11").unwrap();
        update_sha256sums(dir.path(), "b.tar.gz", "33").unwrap();
        let text = fs_err::read_to_string(dir.path().join("SHA256SUMS")).unwrap();
        assert_eq!(text, "11  a.tar.gz\n33  b.tar.gz\n");
    }

    fn manifest(build: Option<manifest::BuildRecord>) -> Manifest {
        use manifest::{Origin, Paths};
        Manifest {
            format_version: manifest::FORMAT_VERSION,
            pypy_version: "7.3.23".into(),
            python_version: "3.11".into(),
            target: "x86_64-unknown-linux-gnu".into(),
            paths: Paths {
                libpypy: "bin/libpypy3.11-c.so".into(),
                launcher: None,
                stdlib: "lib/pypy3.11".into(),
                include: "include/pypy3.11".into(),
            },
            embedding_symbols: vec![],
            needed_libraries: vec![],
            origin: Origin {
                recipe: Some("pypy3.11-v7.3.23".into()),
                translation_options: vec!["--opt=jit".into(), "--shared".into()],
                build,
                ..Origin::checkout(None)
            },
            no_headers: false,
            portability: None,
            files: Default::default(),
        }
    }

    #[test]
    fn a_translated_archive_publishes_its_build_record() {
        assert!(build_record_json(&manifest(None), "a.tar.gz", "11")
            .unwrap()
            .is_none());
        let record = manifest::BuildRecord {
            host_python: "PyPy 2.7.18".into(),
            compiler: "cc (Debian 12.2.0-14) 12.2.0".into(),
            source_date_epoch: 1_779_734_355,
            source_date_from: "the newest file in the source release".into(),
            source_root: "/cache/sources/patched/x".into(),
            target_entry: serde_json::json!({"triple": "x86_64-unknown-linux-gnu"}),
        };
        let text = build_record_json(&manifest(Some(record.clone())), "a.tar.gz", "11")
            .unwrap()
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["archive"], "a.tar.gz");
        assert_eq!(value["sha256"], "11");
        assert_eq!(value["origin"]["translation_options"][1], "--shared");
        let back: manifest::BuildRecord =
            serde_json::from_value(value["origin"]["build"].clone()).unwrap();
        assert_eq!(back, record);
        assert_eq!(build_record_name("a.tar.gz"), "a.tar.gz.build.json");
    }
}
