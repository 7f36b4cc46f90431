//! Checks an archive end to end: checksums, binary dependencies, and a run from a fresh folder.
//!
//! Static checks first (they name every bad file at once), then the archive
//! is unpacked into a new random folder and both the launcher and a small C
//! embedding program run from there, which is what proves relocation.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::manifest::{self, FileDifference, Manifest};
use crate::{binary, c_compiler, recipe, targets};
use pypy_archive::extract::unpack_top;

/// Options of `cargo xtask verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `.tar.gz` to check; its `.sha256` must sit beside it.
    pub archive: PathBuf,
    /// A recipe whose `[package] allowed_libraries` (and per-target ones) extend the allow-list.
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Only the static checks: do not run the launcher or the C program.
    #[arg(long)]
    pub no_run: bool,
    /// Fail unless every binary meets the target's portability policy
    /// (without it, a non-portable archive passes with a note).
    #[arg(long)]
    pub portable: bool,
    /// The cache folder where the emulator for an archive this machine
    /// cross-builds is prepared [default: $PYPY_EMBED_CACHE or the user's
    /// cache folder].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let mut extra_allowed = Vec::new();
    if let Some(path) = &args.recipe {
        let r = recipe::Recipe::load(path)?;
        extra_allowed.extend(r.package.allowed_libraries.iter().cloned());
        for t in r.targets.values() {
            extra_allowed.extend(t.allowed_libraries.iter().cloned());
        }
    }
    let report = verify_archive(
        &args.archive,
        &VerifyOptions {
            extra_allowed,
            no_run: args.no_run,
            require_portable: args.portable,
            cache_root: Some(
                args.cache_dir
                    .clone()
                    .unwrap_or_else(crate::paths::cache_root),
            ),
        },
    )?;
    println!(
        "{}: ok (PyPy {} for Python {}, {}, {} files){}",
        args.archive.display(),
        report.manifest.pypy_version,
        report.manifest.python_version,
        report.manifest.target,
        report.manifest.files.len(),
        match &report.ran {
            Some(r) => format!("; launcher and embedding ran from {}", r.top.display()),
            None => String::from("; not run (another target or --no-run)"),
        }
    );
    for line in report.ran.iter().flat_map(|r| &r.consumers) {
        println!("  {line}");
    }
    if let Some(p) = &report.manifest.portability {
        println!("  {}", portability_line(p));
        for reason in &p.reasons {
            println!("    {reason}");
        }
    }
    Ok(())
}

/// One line on what the portability policy found.
pub fn portability_line(p: &manifest::Portability) -> String {
    let newest = p.newest_glibc.as_deref().unwrap_or("no GLIBC symbol");
    if p.portable {
        format!(
            "portable: needs glibc {} or newer (newest symbol {newest}), no library outside it",
            p.glibc_baseline
        )
    } else {
        format!(
            "not portable (runs where it was built and on like systems): newest symbol \
             {newest} against a baseline of {}; needs {}",
            p.glibc_baseline,
            p.system_libraries.join(", ")
        )
    }
}

/// How [`verify_archive`] checks.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Libraries allowed beyond the target table's `allowed_libraries`.
    pub extra_allowed: Vec<String>,
    /// Skip running the launcher and the C embedding program.
    pub no_run: bool,
    /// Every binary must meet the target's portability policy.
    pub require_portable: bool,
    /// The cache where the emulator and compiler of a target this machine
    /// cross-builds are prepared, to run its archives here; `None` leaves
    /// archives of other targets unrun.
    pub cache_root: Option<PathBuf>,
}

/// What the run from a fresh folder printed.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The top folder the archive was unpacked to (deleted afterwards).
    pub top: PathBuf,
    /// `sys.prefix` as the relocated launcher printed it.
    pub launcher_prefix: Option<String>,
    /// The line the C embedding program printed from PyPy.
    pub embed_output: String,
    /// One line per other tool built against the tree (pkg-config, a cffi
    /// plugin, a C extension): see the `consumers` module.
    pub consumers: Vec<String>,
}

/// What a successful verification found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub manifest: Manifest,
    /// `None` when the archive is for another target than this machine, or `no_run`.
    pub ran: Option<RunReport>,
}

/// Checks `archive` completely; the error lists every problem, each naming its file.
pub fn verify_archive(archive: &Path, opts: &VerifyOptions) -> Result<VerifyReport> {
    check_sha256_file(archive)?;

    let scratch = tempfile::Builder::new()
        .prefix("pypy-verify-")
        .tempdir()
        .context("creating a temporary folder to unpack into")?;
    unpack_top(archive, manifest::TOP_DIR, scratch.path())?;
    let top = scratch.path().join(manifest::TOP_DIR);
    let manifest_path = top.join(manifest::MANIFEST_NAME);
    let text = fs_err::read_to_string(&manifest_path).with_context(|| {
        format!(
            "{}: no {}/{} inside",
            archive.display(),
            manifest::TOP_DIR,
            manifest::MANIFEST_NAME
        )
    })?;
    let manifest = Manifest::from_json(&text)
        .with_context(|| format!("{}: {}", archive.display(), manifest::MANIFEST_NAME))?;
    let target = targets::get(&manifest.target)
        .with_context(|| format!("{}: manifest names an unknown target", archive.display()))?;

    let mut problems = check_files(&top, &manifest)?;
    problems.extend(crate::consumers::missing_headers(&top, &manifest));
    problems.extend(check_binaries(
        &top,
        &manifest,
        &target,
        &opts.extra_allowed,
    )?);
    // The binaries are judged only against a manifest that matches the tree.
    if problems.is_empty() {
        problems.extend(check_portability(
            &top,
            &manifest,
            &target,
            opts.require_portable,
        )?);
    }
    if !problems.is_empty() {
        bail!(
            "{} failed verification:\n  {}",
            archive.display(),
            problems.join("\n  ")
        );
    }

    let here = targets::host_triple();
    let cross = match &opts.cache_root {
        Some(cache_root) if !opts.no_run && manifest.target != here => {
            crate::emulator::cross_for_if_emulated(&target, cache_root)?
        }
        _ => None,
    };
    let ran = if opts.no_run || (manifest.target != here && cross.is_none()) {
        None
    } else {
        Some(
            run_relocated(&top, &manifest, &target, cross.as_ref()).with_context(|| {
                format!("{}: the relocated PyPy does not run", archive.display())
            })?,
        )
    };
    Ok(VerifyReport { manifest, ran })
}

/// The `.sha256` beside the archive must name it and match its bytes.
pub fn check_sha256_file(archive: &Path) -> Result<()> {
    let name = archive
        .file_name()
        .with_context(|| format!("{} is not a file name", archive.display()))?
        .to_string_lossy();
    let sha_path = archive.with_file_name(format!("{name}.sha256"));
    let text = fs_err::read_to_string(&sha_path).with_context(|| {
        format!(
            "{} has no checksum file beside it ({}); every archive ships with one",
            archive.display(),
            sha_path.display()
        )
    })?;
    let expected = text
        .split_whitespace()
        .next()
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| format!("{} does not start with a sha256", sha_path.display()))?
        .to_ascii_lowercase();
    let got = crate::hash::sha256_file(archive)?;
    if got != expected {
        bail!(
            "{}: sha256 is {got}, but {} says {expected}; the archive is damaged or was changed",
            archive.display(),
            sha_path.display()
        );
    }
    Ok(())
}

/// Every file on disk against the manifest, both ways.
fn check_files(top: &Path, manifest: &Manifest) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let on_disk = pypy_archive::tree::hash_tree(top)?;
    for difference in manifest::compare_files(&manifest.files, &on_disk) {
        let path = format!("{}/{}", manifest::TOP_DIR, difference.path());
        problems.push(match difference {
            FileDifference::Missing(_) => format!("{path}: listed in the manifest but missing"),
            FileDifference::Unlisted(_) => {
                format!("{path}: in the archive but not in the manifest")
            }
            FileDifference::Link { listed, found, .. } => {
                format!("{path}: link to {found:?} but the manifest says {listed:?}")
            }
            FileDifference::Content { listed, found, .. } => format!(
                "{path}: sha256 {} but the manifest says {} (file was changed)",
                found.sha256, listed.sha256
            ),
            FileDifference::Mode { listed, found, .. } => {
                format!("{path}: mode {found:o} but the manifest says {listed:o}")
            }
        });
    }
    let p = &manifest.paths;
    for (what, rel) in [
        ("libpypy", Some(&p.libpypy)),
        ("launcher", p.launcher.as_ref()),
    ] {
        if let Some(rel) = rel {
            if !manifest.files.contains_key(rel) {
                problems.push(format!(
                    "manifest: {what} path {rel} is not a file of the archive"
                ));
            }
        }
    }
    for (what, rel) in [("stdlib", &p.stdlib), ("include", &p.include)] {
        if !top.join(rel).is_dir() {
            problems.push(format!(
                "manifest: {what} folder {rel} is not in the archive"
            ));
        }
    }
    if !top.join(&p.stdlib).join("site.py").is_file() {
        problems.push(format!(
            "{}/{}/site.py: missing",
            manifest::TOP_DIR,
            p.stdlib
        ));
    }
    let header = format!("{}/{}", p.include, manifest::HEADER_NAME);
    if !manifest.files.contains_key(&header) {
        problems.push(format!(
            "{}/{header}: our C header is missing",
            manifest::TOP_DIR
        ));
    }
    Ok(problems)
}

/// Dependencies in the allow-list, no absolute search path, the embedding API exported.
fn check_binaries(
    top: &Path,
    manifest: &Manifest,
    target: &targets::Target,
    extra_allowed: &[String],
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    // Libraries the archive itself provides are always allowed.
    let own: Vec<&str> = manifest
        .files
        .keys()
        .map(|rel| rel.rsplit('/').next().unwrap_or(rel))
        .collect();
    let allowed = |lib: &str| dependency_allowed(target, extra_allowed, &own, lib);
    for (rel, entry) in &manifest.files {
        if entry.link.is_some() {
            continue;
        }
        let path = top.join(rel);
        let shown = format!("{}/{rel}", manifest::TOP_DIR);
        let info = match binary::read(&path) {
            Ok(Some(info)) => info,
            Ok(None) => continue,
            Err(e) => {
                problems.push(format!("{shown}: {e:#}"));
                continue;
            }
        };
        for lib in &info.needed {
            if !allowed(lib) {
                problems.push(format!(
                    "{shown}: needs {lib}, which is not in the allow-list of {} \
                     (recipes/targets.toml or the recipe's [package] allowed_libraries)",
                    target.triple
                ));
            }
        }
        for sp in &info.search_paths {
            if !binary::is_relative_search_path(sp) {
                problems.push(format!(
                    "{shown}: runtime search path {sp} is not relative to the binary \
                     (only $ORIGIN / @loader_path paths are relocatable)"
                ));
            }
        }
        if *rel == manifest.paths.libpypy {
            let missing: Vec<&str> = manifest::EMBEDDING_API
                .iter()
                .copied()
                .filter(|s| !info.exports.iter().any(|e| e == s))
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "{shown}: does not export {}; was PyPy translated with --shared?",
                    missing.join(", ")
                ));
            }
            if info.needed != manifest.needed_libraries {
                problems.push(format!(
                    "{shown}: needs {:?} but the manifest says {:?}",
                    info.needed, manifest.needed_libraries
                ));
            }
        }
    }
    Ok(problems)
}

/// The manifest's portability record must be what the binaries show; an
/// archive that is not portable passes unless `required`.
fn check_portability(
    top: &Path,
    manifest: &Manifest,
    target: &targets::Target,
    required: bool,
) -> Result<Vec<String>> {
    let Some(policy) = &target.portability else {
        return Ok(Vec::new());
    };
    let bundled = manifest
        .portability
        .as_ref()
        .map(|p| p.bundled.clone())
        .unwrap_or_default();
    let found = crate::portability::describe_tree(top, &manifest.files, policy, bundled)?;
    let mut problems = Vec::new();
    match &manifest.portability {
        None => problems.push(format!(
            "manifest: no portability record; the binaries say: {}",
            portability_line(&found)
        )),
        Some(recorded) if *recorded != found => problems.push(format!(
            "manifest: the portability record does not match the binaries \
             (it says: {}; they say: {})",
            portability_line(recorded),
            portability_line(&found)
        )),
        Some(_) => {}
    }
    if required && !found.portable {
        problems.push(format!(
            "not portable under {}'s policy (glibc {}, docs/portability.md):",
            target.triple, policy.glibc
        ));
        problems.extend(
            found
                .reasons
                .iter()
                .map(|r| format!("  {}/{r}", manifest::TOP_DIR)),
        );
    }
    Ok(problems)
}

/// Whether a binary of the archive may need `lib`: listed in the target
/// table or by the recipe, or one of the archive's own libraries (`own`:
/// their file names) referred to by name or through `@rpath`/`@loader_path`.
pub fn dependency_allowed(
    target: &targets::Target,
    extra_allowed: &[String],
    own: &[&str],
    lib: &str,
) -> bool {
    // Windows looks DLLs up without regard to case (`KERNEL32.dll`, `kernel32.dll`).
    let same = |a: &str, b: &str| {
        if target.os == targets::Os::Windows {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    let base = lib.rsplit('/').next().unwrap_or(lib);
    target.allowed_libraries.iter().any(|a| same(a, lib))
        || extra_allowed.iter().any(|a| same(a, lib))
        || own.iter().any(|o| same(o, base))
            && (lib == base || lib.starts_with("@rpath/") || lib.starts_with("@loader_path/"))
}

/// Python run by the relocated launcher; each import loads a cffi or
/// ctypes module that links system libraries.
const LAUNCHER_CHECK: &str = "import sys, sqlite3, ssl, ctypes, cffi; print(sys.prefix)";
/// Runs the launcher and the C embedding program from the unpacked tree,
/// with nothing in the environment that could point elsewhere.
/// A cross-built archive (`cross`) runs under the emulator; the tools that
/// build against it with the machine's compilers are then left out.
fn run_relocated(
    top: &Path,
    manifest: &Manifest,
    target: &targets::Target,
    cross: Option<&crate::emulator::Cross>,
) -> Result<RunReport> {
    let sh = Shell::new()?;
    // Run from an unrelated folder so that nothing is found through the cwd.
    let elsewhere = tempfile::tempdir()?;
    sh.change_dir(elsewhere.path());
    let real_top = top.canonicalize()?;

    let launcher_prefix = match &manifest.paths.launcher {
        Some(rel) => {
            let launcher = top.join(rel);
            let check = match cross {
                Some(cross) => cross
                    .emulator
                    .command(&launcher, &["-c", LAUNCHER_CHECK])
                    .cmd(&sh)?,
                None => cmd!(sh, "{launcher} -c {LAUNCHER_CHECK}"),
            };
            let out = crate::consumers::clean_env(check)
                .quiet()
                .output()
                .with_context(|| format!("running {}", launcher.display()))?;
            let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !out.status.success() {
                bail!(
                    "{}/{rel}: `{LAUNCHER_CHECK}` failed ({}):\n{}",
                    manifest::TOP_DIR,
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            if Path::new(&stdout).canonicalize().ok() != Some(real_top.clone()) {
                bail!(
                    "{}/{rel}: sys.prefix is {stdout:?}, expected the unpacked folder {}",
                    manifest::TOP_DIR,
                    real_top.display()
                );
            }
            Some(stdout)
        }
        None => None,
    };

    let embed_output =
        run_embed_program(&sh, &real_top, manifest, target, elsewhere.path(), cross)?;
    if cross.is_some() {
        return Ok(RunReport {
            top: real_top,
            launcher_prefix,
            embed_output,
            consumers: vec![
                "pkg-config, cffi plugin, C extension and no-clash checks: not run for a \
                 cross-built archive (they build with this machine's compilers and \
                 libraries); `cargo xtask test --emulated` runs the embedding scenarios \
                 under the emulator"
                    .into(),
            ],
        });
    }
    let mut consumers =
        crate::consumers::run_all(&sh, &real_top, manifest, target, elsewhere.path())?;
    let bundled_openssl = manifest
        .portability
        .iter()
        .flat_map(|p| &p.bundled)
        .find(|b| b.name == "openssl");
    if let Some(openssl) = bundled_openssl {
        consumers.push(run_no_clash(
            &sh,
            &real_top,
            manifest,
            target,
            elsewhere.path(),
            &openssl.version,
        )?);
    }
    Ok(RunReport {
        top: real_top,
        launcher_prefix,
        embed_output,
        consumers,
    })
}

/// Compiles `assets/no_clash.c` with the machine's compiler against the
/// system's OpenSSL and the archive's libpypy, runs it, and checks that the
/// host and Python each see their own OpenSSL.
fn run_no_clash(
    sh: &Shell,
    top: &Path,
    manifest: &Manifest,
    target: &targets::Target,
    work: &Path,
    bundled_version: &str,
) -> Result<String> {
    let src = work.join("no_clash.c");
    fs_err::write(&src, crate::consumers::NO_CLASH)?;
    let lib = top.join(&manifest.paths.libpypy);
    let lib_dir = lib.parent().context("libpypy has no folder")?;
    let lib_name = lib
        .file_name()
        .context("libpypy has a name")?
        .to_string_lossy();
    let exe = c_compiler::compile(
        sh,
        target,
        &c_compiler::Program {
            source: src,
            exe: work.join("no_clash"),
            include_dirs: vec![top.join(&manifest.paths.include)],
            // The system's OpenSSL first: its symbols are the ones a clash would pick.
            link: c_compiler::Link::Flags(vec![
                "-lssl".into(),
                "-lcrypto".into(),
                format!("-L{}", lib_dir.display()),
                format!("-l:{lib_name}"),
                format!("-Wl,-rpath,{}", lib_dir.display()),
            ]),
        },
    )
    .context("compiling the no-clash check (it needs the system's OpenSSL headers: libssl-dev)")?;
    let out = crate::consumers::clean_env(cmd!(sh, "{exe} {lib}"))
        .quiet()
        .output()
        .context("running the no-clash check")?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_default()
            .to_string()
    };
    let (host, pypy, host_again) = (line("host: "), line("pypy: "), line("host again: "));
    let expected = format!("OpenSSL {bundled_version}");
    if !out.status.success()
        || !pypy.starts_with(&expected)
        || host.is_empty()
        || host_again != host
    {
        bail!(
            "a host program that uses the system's OpenSSL and embeds libpypy: expected \
             the host to keep its own OpenSSL and Python to report {expected}; it \
             printed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if host.starts_with(&expected) {
        // The same version on both sides: nothing tells them apart here.
        return Ok(format!(
            "no clash: not shown, the system's OpenSSL is the bundled version ({host})"
        ));
    }
    Ok(format!(
        "no clash: the host uses {host}, Python's ssl {pypy} (both in one process)"
    ))
}

/// Compiles `assets/embed_check.c` against our header and the archive's
/// libpypy, then runs it: rpython_startup_code, pypy_setup_home,
/// pypy_init_threads, pypy_execute_source printing `sys.prefix`.
fn run_embed_program(
    sh: &Shell,
    top: &Path,
    manifest: &Manifest,
    target: &targets::Target,
    work: &Path,
    cross: Option<&crate::emulator::Cross>,
) -> Result<String> {
    let src = work.join("embed_check.c");
    fs_err::write(&src, crate::consumers::EMBED_CHECK)?;
    let lib = top.join(&manifest.paths.libpypy);
    let lib_dir = lib.parent().context("libpypy has no folder")?;
    // Windows links through the import library and finds the DLL on PATH at run time.
    let link_against = match target.import_library_path(&manifest.python_version) {
        Some(import_lib) => top.join(import_lib),
        None => lib.clone(),
    };
    let program = c_compiler::Program {
        source: src,
        exe: work.join("embed_check"),
        include_dirs: vec![top.join(&manifest.paths.include)],
        link: c_compiler::Link::Library(link_against),
    };
    let exe = match cross {
        Some(cross) => c_compiler::compile_cross(sh, target, &program, &cross.zig),
        None => c_compiler::compile(sh, target, &program),
    }
    .context("compiling the C embedding check")?;
    let lib_arg = lib.display().to_string();
    let mut run = crate::consumers::clean_env(match cross {
        Some(cross) => cross.emulator.command(&exe, &[&lib_arg]).cmd(sh)?,
        None => cmd!(sh, "{exe} {lib}"),
    });
    // Windows finds a DLL beside the executable or on its loader path, and
    // this executable is not beside libpypy.
    if target.os == targets::Os::Windows {
        let var = &target.loader_path_var;
        let path = crate::env::var_os(var).unwrap_or_default();
        let dirs = std::iter::once(lib_dir.to_path_buf()).chain(std::env::split_paths(&path));
        run = run.env(var, std::env::join_paths(dirs)?);
    }
    let out = run
        .quiet()
        .output()
        .context("running the C embedding check")?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        bail!(
            "{}/{}: the C embedding program failed ({}):\n{stdout}\n{}",
            manifest::TOP_DIR,
            manifest.paths.libpypy,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let expected = format!("pypy-embed-ok {}", top.display());
    if !stdout.lines().any(|l| l == expected) {
        bail!(
            "{}/{}: the C embedding program printed {stdout:?}, expected {expected:?}",
            manifest::TOP_DIR,
            manifest.paths.libpypy
        );
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pypy_archive::hash::sha256_bytes;

    #[test]
    fn dependency_rules_for_every_target() {
        for target in targets::all().unwrap() {
            let lib = target.libpypy_name("3.11");
            let own = [lib.as_str()];
            // The first allowed library of the table is allowed, a made-up one is not.
            let first = &target.allowed_libraries[0];
            assert!(
                dependency_allowed(&target, &[], &own, first),
                "{}",
                target.triple
            );
            assert!(!dependency_allowed(&target, &[], &own, "libbuildhost.so.1"));
            assert!(dependency_allowed(
                &target,
                &["libbuildhost.so.1".to_string()],
                &own,
                "libbuildhost.so.1"
            ));
            // The archive's own library, by name or through @rpath, never by a build path.
            assert!(dependency_allowed(&target, &[], &own, &lib));
            assert!(dependency_allowed(
                &target,
                &[],
                &own,
                &format!("@rpath/{lib}")
            ));
            assert!(!dependency_allowed(
                &target,
                &[],
                &own,
                &format!("/home/b/{lib}")
            ));
            match target.os {
                targets::Os::Windows => {
                    assert!(dependency_allowed(&target, &[], &own, "kernel32.DLL"))
                }
                _ => assert!(!dependency_allowed(
                    &target,
                    &[],
                    &own,
                    &first.to_ascii_uppercase()
                )),
            }
        }
    }

    #[test]
    fn sha256_file_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("x.tar.gz");
        fs_err::write(&a, b"data").unwrap();
        let err = check_sha256_file(&a).unwrap_err().to_string();
        assert!(err.contains("x.tar.gz.sha256"), "{err}");
        fs_err::write(
            dir.path().join("x.tar.gz.sha256"),
            format!("{}  x.tar.gz\n", sha256_bytes(b"other")),
        )
        .unwrap();
        let err = check_sha256_file(&a).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        fs_err::write(
            dir.path().join("x.tar.gz.sha256"),
            format!("{}  x.tar.gz\n", sha256_bytes(b"data")),
        )
        .unwrap();
        check_sha256_file(&a).unwrap();
    }
}
