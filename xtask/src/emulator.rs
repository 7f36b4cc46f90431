//! The emulator of a cross-build: Debian's qemu-user and a sysroot of the
//! target's own Debian packages (the C library and its loader), as the
//! target table's `[target.emulator]` pins them, unpacked into the cache.
//!
//! A cross-translation needs it three times: RPython runs the small
//! configure programs it compiles, package.py runs the translated
//! interpreter, and the tests run the archive's programs. Nothing is
//! installed on the machine: the packages come through our own apt
//! configuration (`apt`), checked along Debian's signed chain, and are
//! unpacked with `dpkg-deb -x`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::targets::{EmulatorPin, Target};
use crate::toolchain::Zig;

/// The variable our RPython patch (`recipes/patches/rpython-target-runner.patch`)
/// reads: the words that run a program RPython compiled for the target.
pub const RUNNER_VAR: &str = "RPYTHON_TARGET_RUNNER";

/// Our RPython patch, applied to the source of every cross-translation
/// after the recipe's own: without it RPython runs the configure programs
/// it compiles for the target directly, and fails with "Exec format error".
pub const RPYTHON_PATCH: &str = "rpython-target-runner.patch";

/// `recipe` with [`RPYTHON_PATCH`] after its own patches.
pub fn recipe_for_cross(recipe: &crate::recipe::Recipe) -> crate::recipe::Recipe {
    let mut recipe = recipe.clone();
    recipe.patches.push(crate::recipe::Patch {
        name: RPYTHON_PATCH.into(),
        from: crate::recipe::PatchFrom::File(
            crate::paths::recipes_dir()
                .join(crate::recipe::PATCHES_DIR)
                .join(RPYTHON_PATCH),
        ),
        reason: format!(
            "cross-translation: RPython runs the programs it compiles for the target \
             through ${RUNNER_VAR}, the emulator"
        ),
    });
    recipe
}

/// The variable the same patch reads for the compiler of what runs on this
/// machine while translating: ll2ctypes compiles parts of the source into
/// shared libraries and loads them into the translating Python.
pub const HOST_CC_VAR: &str = "RPYTHON_HOST_CC";

/// What a cross-translation adds: zig for the target, zig for this machine
/// (see [`HOST_CC_VAR`]), and the emulator.
#[derive(Debug, Clone)]
pub struct Cross {
    pub zig: Zig,
    pub host_zig: Zig,
    pub emulator: Emulator,
}

/// The toolchain and the emulator for translating `target` on this machine,
/// prepared the first time.
pub fn cross_for(sh: &Shell, target: &Target, cache_root: &Path) -> Result<Option<Cross>> {
    let here = crate::targets::host_triple();
    let Some(pin) = pin_for(target, here)? else {
        return Ok(None);
    };
    let host = crate::targets::get(here)?;
    let zig = crate::toolchain::ensure(sh, &host, target, cache_root)?;
    let host_zig = crate::toolchain::ensure(sh, &host, &host, cache_root)?;
    let emulator = ensure(sh, target, pin, cache_root)?;
    Ok(Some(Cross {
        zig,
        host_zig,
        emulator,
    }))
}

/// [`cross_for`] for a target this machine cross-builds; `None` for any
/// other target (its own, or one without an emulator for this machine).
pub fn cross_for_if_emulated(target: &Target, cache_root: &Path) -> Result<Option<Cross>> {
    let here = crate::targets::host_triple();
    if target.triple == here || pin_for(target, here).is_err() {
        return Ok(None);
    }
    cross_for(&Shell::new()?, target, cache_root)
}

/// What runs a program of the target on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    /// The emulator's executable.
    pub program: PathBuf,
    /// The root of the target's C library (`-L`).
    pub sysroot: PathBuf,
}

impl Emulator {
    /// A command that runs the target's `program` with `args` here.
    pub fn command(&self, program: &Path, args: &[&str]) -> crate::stage::Command {
        let mut argv = self.runner();
        argv.push(program.display().to_string());
        argv.extend(args.iter().map(|a| a.to_string()));
        crate::stage::Command::new(argv)
    }

    /// The variable through which the emulator, when the kernel starts it
    /// (see [`Binfmt`]), finds the target's C library: `QEMU_LD_PREFIX`.
    pub fn env(&self) -> (&'static str, std::ffi::OsString) {
        ("QEMU_LD_PREFIX", self.sysroot.clone().into_os_string())
    }

    /// The words put before a target program to run it here:
    /// `qemu-aarch64-static -L <sysroot>`.
    pub fn runner(&self) -> Vec<String> {
        vec![
            self.program.display().to_string(),
            "-L".into(),
            self.sysroot.display().to_string(),
        ]
    }
}

/// The target's emulator pin when `target` is not this machine's own
/// architecture; `None` for a native build; an error when the table has no
/// way to run the target's programs here.
pub fn pin_for<'a>(target: &'a Target, build_machine: &str) -> Result<Option<&'a EmulatorPin>> {
    if target.triple == build_machine {
        return Ok(None);
    }
    match &target.emulator {
        Some(pin) if pin.build_machine == build_machine => Ok(Some(pin)),
        _ => bail!(
            "{} cannot be built on {build_machine}: recipes/targets.toml has no emulator \
             for it there. Build it on a {} runner (the CI matrix's), or add a \
             [target.emulator] for {build_machine}",
            target.triple,
            target.ci.runner
        ),
    }
}

/// Changed when what an entry holds changes, so that older entries are not taken.
const ENTRY_FORMAT: &str = "2";

/// Where the emulator for `pin` lives in the cache: keyed by every input.
pub fn entry_dir(cache_root: &Path, target: &Target, pin: &EmulatorPin, suite: &str) -> PathBuf {
    let mut hasher = Sha256::new();
    for part in [
        ENTRY_FORMAT,
        suite,
        &pin.build_machine,
        &pin.package,
        &pin.program,
        &pin.debian_arch,
    ] {
        hasher.update(part.as_bytes());
        hasher.update(b"\0");
    }
    for package in &pin.sysroot_packages {
        hasher.update(package.as_bytes());
        hasher.update(b"\0");
    }
    let key = hex::encode(hasher.finalize());
    cache_root
        .join("emulators")
        .join(format!("{}-{}", target.triple, &key[..16]))
}

/// Where [`ensure`] puts the emulator for `pin`: its program and sysroot.
pub fn located(target: &Target, pin: &EmulatorPin, cache_root: &Path) -> Result<Emulator> {
    let table = crate::deps::table()?;
    let dir = entry_dir(cache_root, target, pin, &table.debian.suite);
    Ok(Emulator {
        program: dir.join("emulator/usr/bin").join(&pin.program),
        sysroot: dir.join("sysroot"),
    })
}

/// The emulator for `pin`, downloaded and unpacked the first time.
pub fn ensure(
    sh: &Shell,
    target: &Target,
    pin: &EmulatorPin,
    cache_root: &Path,
) -> Result<Emulator> {
    let table = crate::deps::table()?;
    let dir = entry_dir(cache_root, target, pin, &table.debian.suite);
    let emulator = located(target, pin, cache_root)?;
    let what = format!("another run preparing the emulator for {}", target.triple);
    let Some(_lock) = crate::lock::to_make(&dir, &what, || dir.join(".complete").is_file())? else {
        return Ok(emulator);
    };
    let parent = dir.parent().context("the emulator's folder has a parent")?;
    eprintln!(
        "emulator: {} and a {} sysroot from Debian {}",
        pin.package, pin.debian_arch, table.debian.suite
    );
    let suite = crate::apt::Suite::new(
        cache_root,
        &table.debian.mirror,
        &table.debian.suite,
        &["deb"],
    )
    .with_architecture(&pin.debian_arch);
    let tmp = tempfile::Builder::new()
        .prefix(".emulator-")
        .tempdir_in(parent)?;
    let unpack = |packages: &[String], into: &str| -> Result<()> {
        let debs = tmp.path().join(format!("{into}-debs"));
        let names: Vec<&str> = packages.iter().map(String::as_str).collect();
        let root = tmp.path().join(into);
        fs_err::create_dir_all(&root)?;
        for deb in suite.download(sh, &names, &debs)? {
            cmd!(sh, "dpkg-deb -x {deb} {root}")
                .quiet()
                .run()
                .with_context(|| format!("unpacking {}", deb.display()))?;
        }
        Ok(())
    };
    unpack(std::slice::from_ref(&pin.package), "emulator")?;
    let foreign: Vec<String> = pin
        .sysroot_packages
        .iter()
        .map(|p| format!("{p}:{}", pin.debian_arch))
        .collect();
    unpack(&foreign, "sysroot")?;
    // Debian 13's packages put the loader in /usr/lib (merged /usr); the
    // `/lib -> usr/lib` link that programs name comes from base-files.
    let lib = tmp.path().join("sysroot/lib");
    if std::fs::symlink_metadata(&lib).is_err() {
        pypy_archive::fs::symlink("usr/lib", &lib)
            .with_context(|| format!("linking {} to usr/lib", lib.display()))?;
    }
    let program = tmp.path().join("emulator/usr/bin").join(&pin.program);
    if !program.is_file() {
        bail!(
            "{} has no usr/bin/{}; fix [target.emulator] of {} in recipes/targets.toml",
            pin.package,
            pin.program,
            target.triple
        );
    }
    fs_err::write(tmp.path().join(".complete"), b"")?;
    pypy_archive::fs::replace_dir(&tmp.keep(), &dir).context("moving the emulator into place")?;
    Ok(emulator)
}

/// Where Linux keeps its table of interpreters for foreign executables.
const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// A registration of the emulator with the kernel (`binfmt_misc`), so that
/// a target program started by another (a test that runs itself as a
/// child, a build script's output) runs under the emulator too. Removed
/// when dropped, unless it was there before.
#[derive(Debug)]
pub struct Binfmt {
    entry: PathBuf,
    owned: bool,
}

impl Drop for Binfmt {
    fn drop(&mut self) {
        if self.owned {
            // `-1` removes the entry; best effort on the way out.
            if let Ok(sh) = Shell::new() {
                let _ = write_as_root(&sh, &self.entry, "-1");
            }
        }
    }
}

/// Writes `text` into a file only root may write (`binfmt_misc`'s): directly
/// when running as root, else through `sudo -n` (CI runners allow it
/// without a password).
fn write_as_root(sh: &Shell, path: &Path, text: &str) -> Result<()> {
    match std::fs::write(path, text) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            cmd!(sh, "sudo -n tee {path}")
                .stdin(text)
                .quiet()
                .ignore_stdout()
                .run()
                .with_context(|| {
                    format!(
                        "writing {} needs root: run as root, or where `sudo -n` works",
                        path.display()
                    )
                })
        }
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

/// The line `binfmt_misc` takes: a 64-bit little-endian ELF executable or
/// shared object whose `e_machine` is `machine` runs under `emulator`. `F`
/// opens the emulator now, so it works in any mount namespace; the sysroot
/// comes from `QEMU_LD_PREFIX`.
pub fn binfmt_line(name: &str, machine: u16, emulator: &Path) -> String {
    let [lo, hi] = machine.to_le_bytes();
    let magic: Vec<u8> = [
        0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0,
    ]
    .into_iter()
    .chain([lo, hi])
    .collect();
    // The ABI version byte and the executable/shared-object bit of e_type are free.
    let mask: Vec<u8> = [0xff; 7]
        .into_iter()
        .chain([0x00])
        .chain([0xff; 8])
        .chain([0xfe, 0xff, 0xff, 0xff])
        .collect();
    let hex = |bytes: &[u8]| {
        bytes
            .iter()
            .map(|b| format!("\\x{b:02x}"))
            .collect::<String>()
    };
    format!(
        ":{name}:M::{}:{}:{}:F",
        hex(&magic),
        hex(&mask),
        emulator.display()
    )
}

impl Emulator {
    /// Registers the emulator for `target`'s programs (see [`Emulator::register`]).
    pub fn register_for(&self, target: &Target, sh: &Shell) -> Result<Binfmt> {
        let pin = target.emulator.as_ref().with_context(|| {
            format!(
                "{} has no [target.emulator] in recipes/targets.toml",
                target.triple
            )
        })?;
        self.register(pin, sh)
    }

    /// Registers the emulator for `pin`'s programs with the kernel (see
    /// [`Binfmt`]); needs root, as `binfmt_misc` does.
    pub fn register(&self, pin: &EmulatorPin, sh: &Shell) -> Result<Binfmt> {
        let dir = Path::new(BINFMT_DIR);
        if !dir.join("register").exists() {
            cmd!(sh, "mount -t binfmt_misc binfmt_misc {dir}")
                .quiet()
                .run()
                .context(
                    "mounting binfmt_misc (needed to run the emulated tests; as root:                      `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc`)",
                )?;
        }
        let name = format!("pypy-embed-{}", pin.debian_arch);
        let entry = dir.join(&name);
        if let Ok(existing) = std::fs::read_to_string(&entry) {
            let ours = format!("interpreter {}", self.program.display());
            if existing.lines().any(|l| l == ours) {
                return Ok(Binfmt {
                    entry,
                    owned: false,
                });
            }
            bail!(
                "{} is registered with another interpreter:\n{existing}\nremove it \
                 (`echo -1 > {}`) and run again",
                entry.display(),
                entry.display()
            );
        }
        let line = binfmt_line(&name, pin.elf_machine, &self.program).replace("\\\\", "\\");
        write_as_root(sh, &dir.join("register"), &line)
            .with_context(|| format!("registering {} with binfmt_misc", self.program.display()))?;
        Ok(Binfmt { entry, owned: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets;

    #[test]
    fn only_a_foreign_target_with_a_pin_for_this_machine_is_emulated() {
        let arm = targets::get("aarch64-unknown-linux-gnu").unwrap();
        let x86 = targets::get("x86_64-unknown-linux-gnu").unwrap();
        let pin = pin_for(&arm, "x86_64-unknown-linux-gnu").unwrap().unwrap();
        assert_eq!(pin.debian_arch, "arm64");
        assert!(pin_for(&x86, "x86_64-unknown-linux-gnu").unwrap().is_none());
        let err = pin_for(&x86, "aarch64-unknown-linux-gnu")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no emulator") && err.contains("ubuntu-24.04"),
            "{err}"
        );
    }

    #[test]
    fn the_binfmt_line_is_qemus_own_for_aarch64() {
        // qemu's scripts/qemu-binfmt-conf.sh, aarch64_magic and aarch64_mask.
        let line = binfmt_line("x", 183, Path::new("/q"));
        assert_eq!(
            line,
            ":x:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00\
             :\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff\
             :/q:F"
                .replace("\\x7fELF", "\\x7f\\x45\\x4c\\x46")
        );
    }

    #[test]
    fn a_cross_build_adds_our_rpython_patch_after_the_recipes() {
        let recipe = crate::recipe::newest().unwrap();
        let cross = recipe_for_cross(&recipe);
        assert_eq!(cross.patches.len(), recipe.patches.len() + 1);
        assert_eq!(cross.patches[..recipe.patches.len()], recipe.patches[..]);
        let ours = cross.patches.last().unwrap();
        assert_eq!(ours.name, RPYTHON_PATCH);
        match &ours.from {
            crate::recipe::PatchFrom::File(path) => assert!(path.is_file(), "{path:?}"),
            other => panic!("{other:?}"),
        }
        assert!(ours.reason.contains(RUNNER_VAR), "{}", ours.reason);
        // The patch reads both variables the translation sets.
        let text = std::fs::read_to_string(
            crate::paths::recipes_dir()
                .join(crate::recipe::PATCHES_DIR)
                .join(RPYTHON_PATCH),
        )
        .unwrap();
        assert!(text.contains(RUNNER_VAR) && text.contains(HOST_CC_VAR));
    }

    #[test]
    fn the_runner_names_the_sysroot() {
        let emulator = Emulator {
            program: "/c/q/qemu-aarch64-static".into(),
            sysroot: "/c/sysroot".into(),
        };
        assert_eq!(
            emulator.runner(),
            vec!["/c/q/qemu-aarch64-static", "-L", "/c/sysroot"]
        );
    }
}
