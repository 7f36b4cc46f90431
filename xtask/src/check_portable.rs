//! `cargo xtask check-portable ARCHIVE`: runs an archive's standard library
//! in minimal installations of older and newer Debian releases, as a user
//! who unpacks it on another machine would.
//!
//! Each release is a `debootstrap --variant=minbase` chroot (glibc and the
//! base system, nothing else), made once into the cache. The archive is
//! unpacked into it afresh, and its own interpreter runs
//! `assets/check_portable.py`: every native module with a real use (a TLS
//! handshake on loopback, a database, a terminal description), then a venv
//! that installs a local wheel with pip. Needs root (chroot) and debootstrap;
//! it is not part of the default test-suite.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::manifest::{self, Manifest};

const CHECK_SCRIPT: &str = include_str!("../assets/check_portable.py");
/// The Debian releases checked by default: glibc 2.31, 2.36 and 2.41.
pub const DEFAULT_SUITES: [&str; 3] = ["bullseye", "bookworm", "trixie"];
/// Modules that may be missing from an archive on purpose (with an ImportError).
const OPTIONAL: [&str; 1] = ["tkinter"];

/// Options of `cargo xtask check-portable`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The archive to check (its `.sha256` beside it).
    pub archive: PathBuf,
    /// A Debian release to check in (repeatable) [default: bullseye, bookworm, trixie].
    #[arg(long = "suite", value_name = "NAME")]
    pub suites: Vec<String>,
    /// Where the chroots are kept [default: `chroots/` in $PYPY_EMBED_CACHE or
    /// the user's cache folder].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// One check's result in one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub detail: String,
}

pub fn run(args: Args) -> Result<()> {
    let suites: Vec<String> = if args.suites.is_empty() {
        DEFAULT_SUITES.iter().map(|s| s.to_string()).collect()
    } else {
        args.suites.clone()
    };
    let sh = Shell::new()?;
    crate::verify::check_sha256_file(&args.archive)?;
    let manifest = pypy_archive::extract::read_manifest(&args.archive)
        .with_context(|| format!("reading the manifest of {}", args.archive.display()))?;
    let launcher = manifest.paths.launcher.clone().with_context(|| {
        format!(
            "{} has no launcher to run the checks with",
            args.archive.display()
        )
    })?;
    if cmd!(sh, "id -u").quiet().read()?.trim() != "0" {
        bail!("check-portable needs root: it makes and enters chroots (run it with sudo)");
    }
    if crate::host::which("debootstrap").is_none() {
        bail!("check-portable needs debootstrap (`apt-get install debootstrap`)");
    }
    let inputs = tempfile::tempdir()?;
    write_inputs(&sh, inputs.path())?;
    let mirror = crate::deps::table()?.debian.mirror;
    let mut table: BTreeMap<String, BTreeMap<String, Outcome>> = BTreeMap::new();
    let cache_root = args
        .cache_dir
        .clone()
        .unwrap_or_else(crate::paths::cache_root);
    for suite in &suites {
        let root = chroot(&sh, &cache_root, &mirror, suite)?;
        let outcomes = check_in(&sh, &root, &args.archive, &launcher, inputs.path())
            .with_context(|| format!("checking {} in Debian {suite}", args.archive.display()))?;
        for (name, outcome) in outcomes {
            table
                .entry(name)
                .or_default()
                .insert(suite.clone(), outcome);
        }
    }
    let failures = report(&manifest, &suites, &table);
    if failures > 0 {
        bail!("{failures} check(s) failed (see above)");
    }
    Ok(())
}

/// Prints one line per check and release; returns how many failed.
fn report(
    manifest: &Manifest,
    suites: &[String],
    table: &BTreeMap<String, BTreeMap<String, Outcome>>,
) -> usize {
    println!(
        "PyPy {} for Python {} ({}) in Debian {}",
        manifest.pypy_version,
        manifest.python_version,
        manifest.target,
        suites.join(", ")
    );
    let mut failures = 0;
    for (name, by_suite) in table {
        for suite in suites {
            let Some(outcome) = by_suite.get(suite) else {
                println!("  FAIL {name} [{suite}]: did not report (the interpreter stopped?)");
                failures += 1;
                continue;
            };
            // ModuleNotFoundError is an ImportError, and says so.
            let optional =
                OPTIONAL.contains(&name.as_str()) && outcome.detail.contains("Error: No module");
            let mark = match (outcome.ok, optional) {
                (true, _) => "ok",
                (false, true) => "not bundled",
                (false, false) => {
                    failures += 1;
                    "FAIL"
                }
            };
            println!("  {mark} {name} [{suite}]: {}", outcome.detail);
        }
    }
    failures
}

/// Reads the check script's lines (`ok NAME: detail`, `FAIL NAME: error`).
pub fn parse(output: &str) -> BTreeMap<String, Outcome> {
    let mut out = BTreeMap::new();
    for line in output.lines() {
        let (ok, rest) = if let Some(rest) = line.strip_prefix("ok ") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("FAIL ") {
            (false, rest)
        } else {
            continue;
        };
        if let Some((name, detail)) = rest.split_once(": ") {
            out.insert(
                name.to_string(),
                Outcome {
                    ok,
                    detail: detail.to_string(),
                },
            );
        }
    }
    out
}

/// A certificate for localhost and a tiny wheel, for the ssl and pip checks.
fn write_inputs(sh: &Shell, dir: &Path) -> Result<()> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    cmd!(
        sh,
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout {key} -out {cert}"
    )
    .quiet()
    .ignore_stderr()
    .run()
    .context("making a test certificate with the openssl command")?;
    write_probe_wheel(&dir.join("probe-1.0-py3-none-any.whl"))
}

/// A pure-Python wheel (`probe`, `VALUE = 42`) with a valid RECORD.
pub fn write_probe_wheel(path: &Path) -> Result<()> {
    use sha2::{Digest, Sha256};
    let files: [(&str, &str); 3] = [
        ("probe/__init__.py", "VALUE = 42\n"),
        (
            "probe-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: probe\nVersion: 1.0\n",
        ),
        (
            "probe-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: pypy-embed\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
    ];
    let mut record = String::new();
    let mut zip = zip::ZipWriter::new(fs_err::File::create(path)?);
    let options = zip::write::SimpleFileOptions::default();
    for (name, text) in files {
        zip.start_file(name, options)?;
        zip.write_all(text.as_bytes())?;
        let digest = Sha256::digest(text.as_bytes());
        let b64 = base64_urlsafe_nopad(&digest);
        record.push_str(&format!("{name},sha256={b64},{}\n", text.len()));
    }
    record.push_str("probe-1.0.dist-info/RECORD,,\n");
    zip.start_file("probe-1.0.dist-info/RECORD", options)?;
    zip.write_all(record.as_bytes())?;
    zip.finish()?;
    Ok(())
}

/// RECORD's hash encoding (PEP 376/427): URL-safe base64 without padding.
fn base64_urlsafe_nopad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The minimal chroot of `suite`, made once with debootstrap under a lock.
fn chroot(sh: &Shell, cache_root: &Path, mirror: &str, suite: &str) -> Result<PathBuf> {
    let dir = cache_root.join("chroots").join(suite);
    let what = format!("another run making the {suite} chroot");
    let Some(_lock) =
        crate::lock::to_make(&dir, &what, || dir.join("etc/debian_version").is_file())?
    else {
        return Ok(dir);
    };
    let tmp = tempfile::tempdir_in(cache_root.join("chroots"))?;
    let staged = tmp.path().join(suite);
    eprintln!("check-portable: debootstrap --variant=minbase {suite} (once; a few minutes)");
    cmd!(
        sh,
        "debootstrap --variant=minbase {suite} {staged} {mirror}"
    )
    .quiet()
    .ignore_stdout()
    .run()
    .with_context(|| format!("debootstrap of Debian {suite} from {mirror} failed"))?;
    pypy_archive::fs::replace_dir(&staged, &dir)?;
    Ok(dir)
}

/// Unpacks the archive into the chroot and runs the checks there.
fn check_in(
    sh: &Shell,
    root: &Path,
    archive: &Path,
    launcher: &str,
    inputs: &Path,
) -> Result<BTreeMap<String, Outcome>> {
    let opt = root.join("opt");
    fs_err::create_dir_all(&opt)?;
    let run = tempfile::Builder::new().prefix("check-").tempdir_in(&opt)?;
    pypy_archive::extract::unpack_top(archive, manifest::TOP_DIR, run.path())?;
    fs_err::write(run.path().join("check.py"), CHECK_SCRIPT)?;
    pypy_archive::fs::copy_tree(inputs, run.path())?;
    let inside = Path::new("/opt").join(run.path().file_name().context("a run folder name")?);
    let python = inside.join(manifest::TOP_DIR).join(launcher);
    let script = inside.join("check.py");
    // /proc for the interpreter's own path and the venv; mounted for this run only.
    let proc_dir = root.join("proc");
    let mounted = cmd!(sh, "mount -t proc proc {proc_dir}")
        .quiet()
        .run()
        .is_ok();
    let output = cmd!(
        sh,
        "chroot {root} /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root TERM=xterm LANG=C.UTF-8 {python} {script} {inside}"
    )
    .quiet()
    .ignore_status()
    .output();
    if mounted {
        cmd!(sh, "umount {proc_dir}").quiet().run()?;
    }
    let output = output.context("running the checks in the chroot")?;
    let mut outcomes = parse(&String::from_utf8_lossy(&output.stdout));
    if outcomes.is_empty() {
        outcomes.insert(
            "interpreter".into(),
            Outcome {
                ok: false,
                detail: format!(
                    "did not start ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            },
        );
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_parsed_and_noise_ignored() {
        let out = parse(
            "ok ssl: OpenSSL 3.5.7 handshake\nsome warning\nFAIL curses: ImportError: x: y\n",
        );
        assert_eq!(out.len(), 2);
        assert!(out["ssl"].ok);
        assert_eq!(out["curses"].detail, "ImportError: x: y");
        assert!(!out["curses"].ok);
    }

    #[test]
    fn record_hashes_are_urlsafe_base64_without_padding() {
        // Python: base64.urlsafe_b64encode(hashlib.sha256(b"").digest()).rstrip(b"=")
        let digest = <sha2::Sha256 as sha2::Digest>::digest(b"");
        assert_eq!(
            base64_urlsafe_nopad(&digest),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert_eq!(base64_urlsafe_nopad(b"ab"), "YWI");
    }
}
