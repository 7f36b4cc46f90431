//! The pipeline shared by `package` and `repackage`: find the parts of a
//! PyPy in some tree, lay them out as PyPy's POSIX/Windows release tree,
//! make the binaries relocatable, write `PYPY.json`, then the archive, its
//! `.sha256` and `dist/SHA256SUMS`, verifying before anything reaches `dist/`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::writer::{self, EntryKind, WriteOptions};
use crate::binary;
use crate::manifest::{self, Manifest, Origin, Paths};
use crate::targets::{Os, Target};

/// The C header we add to `include/`.
pub const HEADER: &str = include_str!("../../assets/pypy_embed.h");

/// PyPy's version and the Python language version, as the interpreter reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// `3.11`
    pub python: String,
    /// `7.3.20`
    pub pypy: String,
}

/// The parts of a PyPy found in a tree of any layout.
#[derive(Debug, Clone)]
pub struct Found {
    pub libpypy: PathBuf,
    pub launcher: Option<PathBuf>,
    pub stdlib: PathBuf,
    pub include: Option<PathBuf>,
    pub license: Option<PathBuf>,
    /// Upstream's `README.rst` at the top of a release tree.
    pub readme: Option<PathBuf>,
    pub versions: Versions,
}

/// Splits a table pattern like `libpypy{py}-c.so` around its `{py}`.
fn pattern_parts(pattern: String) -> (String, String) {
    match pattern.split_once("{py}") {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (pattern, String::new()),
    }
}

/// `3.11` in `libpypy3.11-c.so`; only used to find the other parts, the
/// versions themselves come from the interpreter.
fn py_in_name(name: &str, prefix: &str, suffix: &str) -> Option<String> {
    let mid = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    let (major, minor) = mid.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor)).then(|| mid.to_string())
}

fn walk(tree: &Path) -> impl Iterator<Item = walkdir::DirEntry> {
    walkdir::WalkDir::new(tree)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
}

/// Finds libpypy, the launcher, the standard library and the headers in an
/// installed tree (upstream's release layout, Debian's `usr/`, or any other
/// that keeps the usual folder names), and asks the interpreter its versions.
pub fn locate(tree: &Path, target: &Target) -> Result<Found> {
    if !tree.is_dir() {
        bail!("{} is not a folder", tree.display());
    }
    let (lib_prefix, lib_suffix) = pattern_parts(target.libpypy_name("{py}"));
    let libs: Vec<(PathBuf, String)> = walk(tree)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let py = py_in_name(&name, &lib_prefix, &lib_suffix)?;
            Some((e.into_path(), py))
        })
        .collect();
    let (libpypy, py) = match libs.as_slice() {
        [] => bail!(
            "no libpypy ({lib_prefix}<version>{lib_suffix}) in {}; repackage needs a PyPy \
             translated with --shared",
            tree.display()
        ),
        [one] => one.clone(),
        many => bail!(
            "two or more candidate libraries in {}: {}; pass a tree holding exactly one PyPy",
            tree.display(),
            many.iter()
                .map(|(p, _)| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let lib_name = libpypy.file_name().unwrap().to_string_lossy().into_owned();

    let launcher_names = [
        target.launcher_name(&py),
        target.translated_launcher_name(&py),
    ];
    let launcher = walk(tree)
        .filter(|e| e.file_type().is_file())
        .filter(|e| launcher_names.iter().any(|n| e.file_name() == n.as_str()))
        .map(|e| e.into_path())
        .find(|p| {
            binary::read(p)
                .ok()
                .flatten()
                .is_some_and(|info| info.needed.contains(&lib_name))
        });

    // The interpreter knows where its files are; folder names are only a
    // guess (a distribution may leave a second, empty `lib/pypy3.9` behind).
    let asked = interpreter_paths(launcher.as_deref(), &libpypy, tree);
    let stdlib_rel = target.stdlib_dir(&py);
    let stdlib = match asked.as_ref().and_then(|(stdlib, _)| stdlib.clone()) {
        Some(stdlib) => stdlib,
        None => {
            let stdlibs: Vec<PathBuf> = walk(tree)
                .filter(|e| e.file_type().is_dir() && e.path().ends_with(&stdlib_rel))
                .map(|e| e.into_path())
                .collect();
            match stdlibs.as_slice() {
                [] => bail!(
                    "no standard library folder `{stdlib_rel}` in {} (found libpypy at {})",
                    tree.display(),
                    libpypy.display()
                ),
                [one] => one.clone(),
                many => bail!(
                    "several standard library folders in {}: {}, and no launcher that could \
                     say which is its own",
                    tree.display(),
                    many.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };
    if !stdlib.join("site.py").is_file() {
        bail!(
            "the standard library at {} has no site.py, so PyPy could not start from it; \
             is the tree complete (Debian: install pypy3-lib too)?",
            stdlib.display()
        );
    }
    let include_rel = target.include_dir(&py);
    let include = match asked.and_then(|(_, include)| include) {
        Some(include) => Some(include),
        None => walk(tree)
            .filter(|e| e.file_type().is_dir() && e.path().ends_with(&include_rel))
            .map(|e| e.into_path())
            .next(),
    };
    let license = ["LICENSE", "usr/share/doc/pypy3/copyright"]
        .iter()
        .map(|rel| tree.join(rel))
        .find(|p| p.is_file());
    let readme = Some(tree.join("README.rst")).filter(|p| p.is_file());

    let versions = interpreter_versions(launcher.as_deref(), &libpypy)
        .with_context(|| format!("finding the versions of the PyPy in {}", tree.display()))?;
    if versions.python != py {
        bail!(
            "{} says it is Python {}, but its name says {py}; the tree is inconsistent",
            libpypy.display(),
            versions.python
        );
    }
    Ok(Found {
        libpypy,
        launcher,
        stdlib,
        include,
        license,
        readme,
        versions,
    })
}

/// Asks the launcher (with libpypy's folder on the loader path, since
/// layouts like Debian's keep them apart); when it cannot run (another
/// target, or no launcher), reads the version banner compiled into libpypy.
pub fn interpreter_versions(launcher: Option<&Path>, libpypy: &Path) -> Result<Versions> {
    if let Some(launcher) = launcher {
        let code = "import sys; v = sys.version_info; p = sys.pypy_version_info; \
                    print('%d.%d %d.%d.%d' % (v[0], v[1], p[0], p[1], p[2]))";
        if let Ok(out) = ask_launcher(launcher, libpypy, code) {
            if let Some((python, pypy)) = out.trim().split_once(' ') {
                return Ok(Versions {
                    python: python.into(),
                    pypy: pypy.into(),
                });
            }
        }
    }
    let bytes = fs_err::read(libpypy)?;
    versions_from_library(&bytes).with_context(|| {
        format!(
            "{} has no version banner (`3.x.y (` and `[PyPy x.y.z`) and no launcher could run",
            libpypy.display()
        )
    })
}

/// Asks the launcher (when it runs here) for its standard library and
/// header folders (`sysconfig`); each is kept only if it exists inside `tree`.
fn interpreter_paths(
    launcher: Option<&Path>,
    libpypy: &Path,
    tree: &Path,
) -> Option<(Option<PathBuf>, Option<PathBuf>)> {
    let code = "import sysconfig; print(sysconfig.get_path('stdlib')); \
                print(sysconfig.get_path('include'))";
    let out = ask_launcher(launcher?, libpypy, code).ok()?;
    let tree = tree.canonicalize().ok()?;
    let inside = |line: Option<&str>| {
        let path = PathBuf::from(line?.trim()).canonicalize().ok()?;
        (path.is_dir() && path.starts_with(&tree)).then_some(path)
    };
    let mut lines = out.lines();
    Some((inside(lines.next()), inside(lines.next())))
}

/// Runs `code` with the launcher (`-S`, no `PYTHONHOME`/`PYTHONPATH`), with
/// libpypy's folder on the loader path, since layouts like Debian's keep
/// the two apart; its stdout.
fn ask_launcher(launcher: &Path, libpypy: &Path, code: &str) -> Result<String> {
    let sh = Shell::new()?;
    let lib_dir = libpypy.parent().unwrap_or(Path::new("."));
    // The launcher runs here, so the loader is this machine's.
    let host = crate::targets::get(crate::targets::host_triple())?;
    let _env = sh.push_env(&host.loader_path_var, lib_dir);
    Ok(cmd!(sh, "{launcher} -S -c {code}")
        .env_remove("PYTHONHOME")
        .env_remove("PYTHONPATH")
        .quiet()
        .ignore_stderr()
        .read()?)
}

/// Reads the banner pieces PyPy compiles into libpypy for `sys.version`:
/// `3.9.16 (…` and `[PyPy 7.3.11 with …`.
pub fn versions_from_library(bytes: &[u8]) -> Option<Versions> {
    let pypy = find_after(bytes, b"[PyPy ", |b| b.is_ascii_digit() || b == b'.')?;
    let pypy = dotted(&pypy, 3)?;
    // The Python version starts a NUL-terminated string: "3.9.16 (".
    let python = bytes
        .split(|&b| b == 0)
        .filter_map(|s| std::str::from_utf8(s).ok())
        .find_map(|s| {
            let (ver, rest) = s.split_once(" (")?;
            (!rest.is_empty() && dotted(ver, 3).is_some() && ver.starts_with(['2', '3']))
                .then(|| ver.rsplit_once('.').unwrap().0.to_string())
        })?;
    Some(Versions { python, pypy })
}

fn find_after(bytes: &[u8], needle: &[u8], keep: impl Fn(u8) -> bool) -> Option<String> {
    let start = bytes.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let end = bytes[start..]
        .iter()
        .position(|&b| !keep(b))
        .map_or(bytes.len(), |n| start + n);
    String::from_utf8(bytes[start..end].to_vec()).ok()
}

fn dotted(s: &str, parts: usize) -> Option<String> {
    let ok = s.split('.').count() == parts
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| s.to_string())
}

/// A release tree being assembled in a temporary folder.
pub struct Staged {
    _work: tempfile::TempDir,
    /// The tree's root, i.e. the future top folder `pypy/`.
    pub top: PathBuf,
    pub target: Target,
    pub versions: Versions,
    /// The tree has no C headers, and the caller said that is fine.
    pub no_headers: bool,
}

/// Copies `found` into a fresh folder inside `work_parent` in the release
/// layout of `target`, and adds our C header.
pub fn stage(found: &Found, target: &Target, work_parent: &Path) -> Result<Staged> {
    fs_err::create_dir_all(work_parent)?;
    let work = tempfile::Builder::new()
        .prefix(".pypy-stage-")
        .tempdir_in(work_parent)
        .with_context(|| format!("creating a staging folder in {}", work_parent.display()))?;
    let top = work.path().join(manifest::TOP_DIR);
    let py = &found.versions.python;
    let put = |rel: &str, from: &Path| -> Result<()> {
        let dest = top.join(rel);
        fs_err::create_dir_all(dest.parent().unwrap())?;
        fs_err::copy(from, &dest)
            .with_context(|| format!("copying {} into the release tree", from.display()))?;
        Ok(())
    };
    put(&target.libpypy_path(py), &found.libpypy)?;
    // The names other tools link with (cffi's embedding mode: `-lpypy3-c`).
    for alias in target.link_alias_paths(py) {
        symlink(&target.libpypy_name(py), &top.join(alias))?;
    }
    if let Some(launcher) = &found.launcher {
        put(&target.launcher_path(py), launcher)?;
        if target.os != Os::Windows {
            // The aliases upstream's package.py creates beside the launcher.
            let major = py.split('.').next().unwrap_or(py);
            let name = target.launcher_name(py);
            let aliases = [
                "pypy".to_string(),
                format!("pypy{major}"),
                "python".to_string(),
                format!("python{major}"),
                format!("python{py}"),
            ];
            for alias in aliases.into_iter().filter(|a| *a != name) {
                let link = top.join(target.bin_dir()).join(alias);
                symlink(&name, &link)?;
            }
        }
    }
    copy_tree(&found.stdlib, &top.join(target.stdlib_dir(py)))?;
    let include = top.join(target.include_dir(py));
    if let Some(inc) = &found.include {
        copy_tree(inc, &include)?;
    }
    fs_err::create_dir_all(&include)?;
    fs_err::write(include.join(manifest::HEADER_NAME), HEADER)?;
    let pc = top.join(target.pkgconfig_path(py));
    fs_err::create_dir_all(pc.parent().context("the pkg-config file has a folder")?)?;
    fs_err::write(&pc, target.pkgconfig_text(py, &found.versions.pypy))?;
    if let Some(license) = &found.license {
        put("LICENSE", license)?;
    }
    if let Some(readme) = &found.readme {
        put("README.rst", readme)?;
    }
    Ok(Staged {
        _work: work,
        top,
        target: target.clone(),
        versions: found.versions.clone(),
        no_headers: false,
    })
}

#[cfg(unix)]
fn symlink(target: &str, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("creating the link {}", link.display()))
}

#[cfg(not(unix))]
fn symlink(_target: &str, _link: &Path) -> Result<()> {
    // Windows release trees have no aliases.
    Ok(())
}

/// Files a distribution adds to the stdlib that do not belong in our archive.
/// `EXTERNALLY-MANAGED` (PEP 668) would make pip refuse to install into the
/// relocated PyPy, which no distribution manages.
const DROPPED: [&str; 1] = ["EXTERNALLY-MANAGED"];

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    // Bytecode caches are left out: archiving fixes every mtime, which makes
    // mtime-checked `.pyc` files stale (PyPy would rewrite them at the first
    // start of each copy), and running the interpreter in the tree while
    // packaging may rewrite them, which would break reproducibility. PyPy
    // writes fresh ones wherever the extracted tree is writable.
    let walker = walkdir::WalkDir::new(from)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.file_name() != "__pycache__");
    for entry in walker {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        let rel = entry.path().strip_prefix(from)?;
        if entry.depth() == 1 && DROPPED.iter().any(|d| entry.file_name() == *d) {
            continue;
        }
        let dest = to.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            fs_err::create_dir_all(&dest)?;
        } else if ft.is_symlink() {
            let target = fs_err::read_link(entry.path())?;
            let inside = target.is_relative()
                && entry
                    .path()
                    .parent()
                    .unwrap()
                    .join(&target)
                    .canonicalize()
                    .is_ok_and(|t| t.starts_with(from.canonicalize().unwrap_or_default()));
            if inside {
                symlink(&target.to_string_lossy(), &dest)?;
            } else {
                // A link leaving the tree (e.g. to a distribution's shared
                // copy) would dangle after relocation: copy what it names.
                fs_err::copy(entry.path(), &dest).with_context(|| {
                    format!("copying the target of the link {}", entry.path().display())
                })?;
            }
        } else {
            fs_err::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Makes every binary in the staged tree find the libraries of the tree
/// relative to itself, and drops absolute search paths (build folders,
/// distribution paths).
pub fn relocate(staged: &Staged) -> Result<()> {
    let sh = Shell::new()?;
    let entries = writer::list_tree(&staged.top)?;
    let files: Vec<&writer::TreeEntry> = entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File { .. }))
        .collect();
    let mut binaries = Vec::new();
    for e in &files {
        if let Some(info) = binary::read(&e.path)? {
            binaries.push((*e, info));
        }
    }
    let library_names: Vec<String> = binaries
        .iter()
        .filter_map(|(e, _)| e.rel.rsplit('/').next().map(str::to_string))
        .collect();
    for (entry, info) in &binaries {
        // Libraries this binary needs that the archive itself provides.
        let in_tree: Vec<String> = info
            .needed
            .iter()
            .filter_map(|needed| {
                let base = needed.rsplit('/').next().unwrap_or(needed);
                binaries
                    .iter()
                    .find(|(other, _)| other.rel.rsplit('/').next() == Some(base))
                    .map(|(other, _)| other.rel.clone())
            })
            .collect();
        let plan =
            binary::plan_search_path(&staged.target, &entry.rel, &info.search_paths, &in_tree)
                .with_context(|| format!("relocating {}", entry.rel))?;
        if let Some(plan) = plan {
            binary::apply_search_path(&sh, &entry.path, info, &plan)
                .with_context(|| format!("relocating {}", entry.rel))?;
        }
        let names = binary::plan_install_names(&staged.target, &entry.rel, info, &library_names);
        if !names.is_empty() {
            binary::apply_install_names(&sh, &entry.path, &names)
                .with_context(|| format!("relocating {}", entry.rel))?;
        }
        let py = &staged.versions.python;
        if let Some(soname) = staged.target.soname(py) {
            if entry.rel == staged.target.libpypy_path(py)
                && info.own_name.as_ref() != Some(&soname)
            {
                binary::apply_soname(&sh, &entry.path, &soname)
                    .with_context(|| format!("relocating {}", entry.rel))?;
            }
        }
    }
    Ok(())
}

/// Refuses a staged tree whose text files (no NUL byte: `.py`, `.cfg`,
/// `.pth`, `.txt`…) name one of `build_paths` (the source tree, a build
/// folder): such a path would point nowhere once the archive is unpacked
/// on another machine. Binaries are checked separately (search paths only;
/// debug strings naming the build folder are harmless).
pub fn check_no_build_paths(staged: &Staged, build_paths: &[PathBuf]) -> Result<()> {
    let needles: Vec<String> = build_paths
        .iter()
        .flat_map(|p| [Some(p.clone()), p.canonicalize().ok()])
        .flatten()
        .map(|p| p.display().to_string())
        .filter(|p| p.len() > 1)
        .collect();
    let mut hits = Vec::new();
    for e in writer::list_tree(&staged.top)? {
        if !matches!(e.kind, EntryKind::File { .. }) {
            continue;
        }
        let bytes = fs_err::read(&e.path)?;
        if bytes.contains(&0) {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Some(n) = needles.iter().find(|n| text.contains(n.as_str())) {
            hits.push(format!(
                "{}/{}: names the build path {n}",
                manifest::TOP_DIR,
                e.rel
            ));
        }
    }
    if !hits.is_empty() {
        bail!(
            "text files would point to this machine after relocation:\n  {}",
            hits.join("\n  ")
        );
    }
    Ok(())
}

/// Builds `PYPY.json` for the staged tree (hashing every file).
pub fn build_manifest(staged: &Staged, origin: Origin) -> Result<Manifest> {
    let py = &staged.versions.python;
    let target = &staged.target;
    let lib_rel = target.libpypy_path(py);
    let lib = binary::read(&staged.top.join(&lib_rel))?
        .with_context(|| format!("{lib_rel} is not a shared library"))?;
    let launcher_rel = target.launcher_path(py);
    let files = writer::hash_tree(&staged.top)?;
    Ok(Manifest {
        format_version: manifest::FORMAT_VERSION,
        pypy_version: staged.versions.pypy.clone(),
        python_version: py.clone(),
        target: target.triple.clone(),
        no_headers: staged.no_headers,
        paths: Paths {
            libpypy: lib_rel,
            launcher: files.contains_key(&launcher_rel).then_some(launcher_rel),
            stdlib: target.stdlib_dir(py),
            include: target.include_dir(py),
        },
        embedding_symbols: manifest::EMBEDDING_API
            .iter()
            .filter(|s| lib.exports.iter().any(|e| e == *s))
            .map(|s| s.to_string())
            .collect(),
        needed_libraries: lib.needed.clone(),
        origin,
        files,
    })
}

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
                    ..Default::default()
                },
            )
            .with_context(|| format!("the new archive {name} failed verification"))?,
        )
    };
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

/// The lock file beside `SHA256SUMS` (left in place: removing a lock file
/// others may be waiting on would let two writers in).
pub const SUMS_LOCK: &str = ".SHA256SUMS.lock";

/// Replaces (or adds) the line for `name` in `dir/SHA256SUMS`, written
/// through a temporary file so a reader never sees half a file.
pub fn update_sha256sums(dir: &Path, name: &str, sha256: &str) -> Result<()> {
    let path = dir.join("SHA256SUMS");
    // Two runs publishing into one folder would otherwise lose a line.
    let _lock = crate::fetch::lock(&dir.join(SUMS_LOCK))?;
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
    fn version_in_library_name() {
        assert_eq!(
            py_in_name("libpypy3.11-c.so", "libpypy", "-c.so").as_deref(),
            Some("3.11")
        );
        assert_eq!(py_in_name("libpypy-c.so", "libpypy", "-c.so"), None);
        assert_eq!(py_in_name("libpypy3.x-c.so", "libpypy", "-c.so"), None);
    }

    #[test]
    fn banner_versions() {
        let bytes =
            b"junk\x003.11.13 (7.3.20+dfsg-1, Jan 01 2025, 00:00:00)\x00[PyPy 7.3.20 with GCC]\x00";
        assert_eq!(
            versions_from_library(bytes),
            Some(Versions {
                python: "3.11".into(),
                pypy: "7.3.20".into()
            })
        );
        assert_eq!(versions_from_library(b"nothing here"), None);
    }

    #[test]
    fn sha256sums_replaces_its_line() {
        let dir = tempfile::tempdir().unwrap();
        update_sha256sums(dir.path(), "b.tar.gz", "22").unwrap();
        update_sha256sums(dir.path(), "a.tar.gz", "11").unwrap();
        update_sha256sums(dir.path(), "b.tar.gz", "33").unwrap();
        let text = fs_err::read_to_string(dir.path().join("SHA256SUMS")).unwrap();
        assert_eq!(text, "11  a.tar.gz\n33  b.tar.gz\n");
    }
}
