//! The toolchain stage of portable Linux builds: zig's C compiler, pinned in the
//! target table, behind wrapper scripts that build for the target's glibc baseline.
//!
//! zig ships its own headers and stub libraries for every glibc version, so
//! `zig cc -target x86_64-linux-gnu.2.17` on a new Debian links against
//! glibc 2.17's symbols: what gcc with a sysroot cannot do below the
//! sysroot's own version. The compiler comes as PyPI's `ziglang` wheel, which
//! `pip download` fetches from the registry we reach; its sha256 is checked
//! before anything runs from it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::stage::Command;
use crate::targets::{Target, Toolchain};

/// The programs a build is given, one wrapper script each.
const TOOLS: [(&str, &str); 4] = [
    ("cc", "cc -target {target}"),
    ("c++", "c++ -target {target}"),
    ("ar", "ar"),
    ("ranlib", "ranlib"),
];

/// How a portable build's recorded compiler starts
/// (`crate::translate::portable_compiler_line`), which tells it apart.
pub const VERSION_PREFIX: &str = "zig ";

/// An unpacked, checked zig with wrappers for one target.
#[derive(Debug, Clone)]
pub struct Zig {
    /// The zig executable.
    pub zig: PathBuf,
    /// The folder of the wrappers (`cc`, `c++`, `ar`, `ranlib`).
    pub bin: PathBuf,
    /// zig's `-target`, e.g. `x86_64-linux-gnu.2.17`.
    pub target: String,
}

impl Zig {
    pub fn cc(&self) -> PathBuf {
        self.bin.join("cc")
    }

    /// `CC`, `CXX`, `AR` and `RANLIB` for configure scripts and Makefiles.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        [
            ("CC", "cc"),
            ("CXX", "c++"),
            ("AR", "ar"),
            ("RANLIB", "ranlib"),
        ]
        .into_iter()
        .map(|(var, tool)| (var, self.bin.join(tool).into_os_string()))
        .collect()
    }

    /// The environment the C libraries are built in: the wrappers first on
    /// `PATH` and named by their short names, so that no library records
    /// where the cache is (OpenSSL keeps its compiler's command line).
    pub fn build_env(&self, path: Option<OsString>) -> Vec<(&'static str, OsString)> {
        let mut dirs = vec![self.bin.clone()];
        dirs.extend(path.iter().flat_map(std::env::split_paths));
        let path = std::env::join_paths(dirs).unwrap_or_else(|_| self.bin.clone().into());
        let mut env: Vec<(&'static str, OsString)> = vec![("PATH", path)];
        env.extend(
            [
                ("CC", "cc"),
                ("CXX", "c++"),
                ("AR", "ar"),
                ("RANLIB", "ranlib"),
            ]
            .map(|(var, tool)| (var, OsString::from(tool))),
        );
        env
    }

    /// What `zig version` prints, e.g. `0.17.1`.
    pub fn version(&self, sh: &Shell) -> Result<String> {
        let zig = &self.zig;
        let out = cmd!(sh, "{zig} version")
            .quiet()
            .read()
            .with_context(|| format!("running {} version", zig.display()))?;
        Ok(out.trim().to_string())
    }
}

/// The target's toolchain entry, or an error saying that only Linux targets have one.
pub fn of(target: &Target) -> Result<&Toolchain> {
    target.toolchain.as_ref().with_context(|| {
        format!(
            "{} has no portable toolchain in recipes/targets.toml (only Linux targets do)",
            target.triple
        )
    })
}

/// Where the zig that runs on `host` and its wrappers for `target` are (or
/// will be) in the cache; nothing is checked or made.
pub fn locate(host: &Target, target: &Target, cache_root: &Path) -> Result<Zig> {
    let pin = of(host)?;
    let zig_target = of(target)?.zig_target.clone();
    let dir = cache_root
        .join("toolchains")
        .join(format!("zig-{}", &pin.zig_sha256[..16]));
    Ok(Zig {
        zig: dir.join("ziglang").join("zig"),
        bin: dir.join(format!("bin-{zig_target}")),
        target: zig_target,
    })
}

/// Makes sure the zig that runs on `host` is unpacked in the cache, with
/// wrappers for `target`; downloads and checks it the first time.
pub fn ensure(sh: &Shell, host: &Target, target: &Target, cache_root: &Path) -> Result<Zig> {
    let pin = of(host)?;
    let located = locate(host, target, cache_root)?;
    let zig = located.zig.clone();
    let dir = zig
        .parent()
        .and_then(Path::parent)
        .context("zig sits two folders down")?
        .to_path_buf();
    if !zig.is_file() {
        let lock_path = pypy_archive::lock::lock_path_for(&dir);
        fs_err::create_dir_all(cache_root.join("toolchains"))?;
        let started = std::time::Instant::now();
        let _lock = pypy_archive::lock::FileLock::acquire(&lock_path, |holder| {
            eprintln!(
                "toolchain: waiting for another run that is unpacking zig ({}; lock {})",
                holder.describe(),
                lock_path.display()
            )
        })
        .with_context(|| format!("locking {}", lock_path.display()))?;
        if started.elapsed().as_secs() > 1 {
            eprintln!("toolchain: waited {:.0} s", started.elapsed().as_secs_f64());
        }
        if !zig.is_file() {
            install(sh, pin, cache_root, &dir)?;
        }
    }
    write_wrappers(
        &zig,
        &located.bin,
        &located.target,
        &cache_root.join("zig-cache"),
    )?;
    Ok(located)
}

/// pip, run by `python3`, fetching exactly the pinned wheel (no
/// dependencies, no build) into `dest`: what the build runs and the plan prints.
pub fn download_command(python3: &Path, pin: &Toolchain, dest: &Path) -> Result<Command> {
    let (name, version, platforms) = pin.wheel_requirement()?;
    let mut argv: Vec<String> = [
        &python3.display().to_string(),
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
    ]
    .map(str::to_string)
    .to_vec();
    for platform in platforms {
        argv.extend(["--platform".to_string(), platform]);
    }
    argv.extend([
        format!("{name}=={version}"),
        "-d".into(),
        dest.display().to_string(),
    ]);
    Ok(Command::new(argv))
}

/// Downloads the pinned wheel with pip, checks its sha256, and unpacks it into `dir`.
fn install(sh: &Shell, pin: &Toolchain, cache_root: &Path, dir: &Path) -> Result<()> {
    let (name, version, _) = pin.wheel_requirement()?;
    let parent = dir.parent().context("toolchain folder has a parent")?;
    let tmp = tempfile::tempdir_in(parent)?;
    let download = tmp.path().join("download");
    eprintln!("toolchain: downloading {} from PyPI", pin.zig_wheel);
    download_command(&crate::env::python3(), pin, &download)?
        .cmd(sh)?
        .run()
        .with_context(|| {
            format!(
                "`pip download {name}=={version}` failed; is PyPI reachable (or a pip mirror set)?"
            )
        })?;
    let wheel = download.join(&pin.zig_wheel);
    if !wheel.is_file() {
        let got: Vec<String> = fs_err::read_dir(&download)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        bail!(
            "pip downloaded {got:?}, not the pinned {} (recipes/targets.toml)",
            pin.zig_wheel
        );
    }
    let got = crate::hash::sha256_file(&wheel)?;
    if got != pin.zig_sha256 {
        bail!(
            "{} has sha256 {got}, but recipes/targets.toml pins {}; the download is \
             kept out of the cache ({})",
            pin.zig_wheel,
            pin.zig_sha256,
            cache_root.display()
        );
    }
    let unpacked = tmp.path().join("unpacked");
    pypy_archive::extract::unpack(&wheel, &unpacked)
        .with_context(|| format!("unpacking {}", wheel.display()))?;
    if !unpacked.join("ziglang").join("zig").is_file() {
        bail!("{} has no ziglang/zig inside", pin.zig_wheel);
    }
    pypy_archive::fs::replace_dir(&unpacked, dir)
        .with_context(|| format!("putting zig in {}", dir.display()))?;
    Ok(())
}

/// Writes one shell wrapper per tool, each replaced in one rename.
fn write_wrappers(zig: &Path, bin: &Path, zig_target: &str, zig_cache: &Path) -> Result<()> {
    fs_err::create_dir_all(bin)?;
    for (name, args) in TOOLS {
        let args = args.replace("{target}", zig_target);
        // zig keeps its compiled libc stubs in a cache of its own; ours keeps
        // it beside the toolchain rather than in the user's home.
        let text = format!(
            "#!/bin/sh\n\
             export ZIG_GLOBAL_CACHE_DIR=\"${{ZIG_GLOBAL_CACHE_DIR:-{cache}}}\"\n\
             exec '{zig}' {args} \"$@\"\n",
            cache = zig_cache.display(),
            zig = zig.display(),
        );
        let path = bin.join(name);
        if fs_err::read_to_string(&path).is_ok_and(|old| old == text) {
            continue;
        }
        pypy_archive::fs::write_atomic(&path, text.as_bytes())?;
        set_executable(&path)?;
    }
    Ok(())
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_names() {
        let pin = |wheel: &str| Toolchain {
            zig_target: "x86_64-linux-gnu.2.17".into(),
            zig_wheel: wheel.into(),
            zig_sha256: "0".repeat(64),
        };
        let (name, version, platforms) =
            pin("ziglang-0.17.1-py3-none-manylinux_2_12_x86_64.manylinux2010_x86_64.whl")
                .wheel_requirement()
                .unwrap();
        assert_eq!((name.as_str(), version.as_str()), ("ziglang", "0.17.1"));
        assert_eq!(platforms, ["manylinux_2_12_x86_64", "manylinux2010_x86_64"]);
        let err = pin("ziglang-0.17.1.tar.gz")
            .wheel_requirement()
            .unwrap_err();
        assert!(err.to_string().contains("no .whl"), "{err}");
        let err = pin("ziglang-0.17.1.whl").wheel_requirement().unwrap_err();
        assert!(err.to_string().contains("name-version"), "{err}");
    }

    #[test]
    fn every_linux_target_pins_a_toolchain() {
        for target in crate::targets::all().unwrap() {
            let linux = target.os == crate::targets::Os::Linux;
            assert_eq!(of(&target).is_ok(), linux, "{}", target.triple);
            if let Ok(pin) = of(&target) {
                let arch = target.triple.split('-').next().unwrap();
                assert!(pin.zig_target.starts_with(arch), "{}", target.triple);
                assert!(pin.zig_wheel.contains(arch), "{}", target.triple);
                let glibc = &target.portability.as_ref().unwrap().glibc;
                assert!(
                    pin.zig_target.ends_with(&format!("-gnu.{glibc}")),
                    "{}: zig must build for the baseline",
                    target.triple
                );
            }
        }
    }
}
