//! apt-get with a configuration of our own: one Debian suite's package lists
//! kept in our cache, never the machine's sources or state.
//!
//! Debian's archive is a registry every build machine of ours reaches, and apt
//! checks what it fetches along a signed chain (the suite's `InRelease`, then
//! the `Packages`/`Sources` index, then each file's sha256). Pointing apt at a
//! private sources list and private state folders lets us fetch from another
//! suite (bullseye's glibc for the portability test, trixie's C sources for the
//! dependency stage) without touching `/etc/apt` or the machine's own lists.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

/// The keyring that signs Debian's archive (package `debian-archive-keyring`).
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// One suite of a Debian mirror, with its own lists under `root`.
#[derive(Debug, Clone)]
pub struct Suite {
    root: PathBuf,
    /// `deb`, `deb-src` or both.
    kinds: Vec<&'static str>,
    mirror: String,
    suite: String,
    /// Architectures besides the machine's own whose packages may be fetched.
    foreign: Vec<String>,
}

impl Suite {
    /// A suite whose lists live in `cache_root/apt/<suite>-<kinds>`.
    pub fn new(cache_root: &Path, mirror: &str, suite: &str, kinds: &[&'static str]) -> Suite {
        Suite {
            root: cache_root
                .join("apt")
                .join(format!("{suite}-{}", kinds.join("-"))),
            kinds: kinds.to_vec(),
            mirror: mirror.trim_end_matches('/').to_string(),
            suite: suite.to_string(),
            foreign: Vec::new(),
        }
    }

    /// The same suite with the lists of `arch` too (Debian's name, `arm64`),
    /// so that `pkg:arch` can be downloaded; kept in lists of their own.
    pub fn with_architecture(mut self, arch: &str) -> Suite {
        let name = self.root.file_name().unwrap_or_default().to_string_lossy();
        self.root = self.root.with_file_name(format!("{name}-{arch}"));
        self.foreign.push(arch.to_string());
        self
    }

    fn sources_list(&self) -> String {
        self.kinds
            .iter()
            .map(|kind| {
                format!(
                    "{kind} [signed-by={DEBIAN_KEYRING}] {} {} main\n",
                    self.mirror, self.suite
                )
            })
            .collect()
    }

    /// The `-o` options that make apt-get read and write only our folders.
    fn options(&self) -> Vec<String> {
        let r = self.root.display();
        vec![
            format!("Dir::Etc::SourceList={r}/sources.list"),
            "Dir::Etc::SourceParts=/nonexistent".into(),
            format!("Dir::State::Lists={r}/lists"),
            format!("Dir::Cache={r}/cache"),
            "Dir::State::status=/dev/null".into(),
            "Acquire::Languages=none".into(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
            // Our folders are ours alone, and the caller holds its own lock.
            "Debug::NoLocking=1".into(),
            // Files land in our folders, which apt's unprivileged `_apt` user may not reach.
            "APT::Sandbox::User=root".into(),
        ]
        .into_iter()
        .chain(
            self.foreign
                .iter()
                .map(|arch| format!("APT::Architectures::={arch}")),
        )
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    /// Fetches the suite's signed lists unless they are already there.
    pub fn update(&self, sh: &Shell) -> Result<()> {
        if !Path::new(DEBIAN_KEYRING).is_file() {
            bail!(
                "{DEBIAN_KEYRING} is missing; apt needs it to check Debian's signatures \
                 (`apt-get install debian-archive-keyring`)"
            );
        }
        let list = self.sources_list();
        let list_path = self.root.join("sources.list");
        let fresh = fs_err::read_to_string(&list_path).is_ok_and(|old| old == list)
            && self.root.join("lists").join(".updated").is_file();
        if fresh {
            return Ok(());
        }
        for dir in ["lists/partial", "cache/archives/partial"] {
            fs_err::create_dir_all(self.root.join(dir))?;
        }
        pypy_archive::fs::write_atomic(&list_path, list.as_bytes())?;
        let options = self.options();
        eprintln!("apt: fetching the package lists of Debian {}", self.suite);
        cmd!(sh, "apt-get -q {options...} update")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| {
                format!(
                    "`apt-get update` of Debian {} from {} failed; is Debian's archive reachable?",
                    self.suite, self.mirror
                )
            })?;
        pypy_archive::fs::write_atomic(&self.root.join("lists").join(".updated"), b"")?;
        Ok(())
    }

    /// `apt-get download PACKAGES` into `dest`; returns the `.deb` files there.
    pub fn download(&self, sh: &Shell, packages: &[&str], dest: &Path) -> Result<Vec<PathBuf>> {
        self.update(sh)?;
        fs_err::create_dir_all(dest)?;
        let _dir = sh.push_dir(dest);
        let options = self.options();
        cmd!(sh, "apt-get -q {options...} download {packages...}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| {
                format!(
                    "`apt-get download {}` from Debian {} failed",
                    packages.join(" "),
                    self.suite
                )
            })?;
        files_ending(dest, ".deb")
    }

    /// `apt-get source --download-only PACKAGE=VERSION` into `dest`: the `.dsc`
    /// and the tarballs it names, each checked against the signed `Sources` index.
    pub fn source(&self, sh: &Shell, package: &str, version: &str, dest: &Path) -> Result<()> {
        self.update(sh)?;
        fs_err::create_dir_all(dest)?;
        let _dir = sh.push_dir(dest);
        let options = self.options();
        let spec = format!("{package}={version}");
        cmd!(sh, "apt-get -q {options...} source --download-only {spec}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| {
                format!(
                    "`apt-get source {spec}` from Debian {} failed; if the suite has moved \
                     on to a newer version, the pin in recipes/deps.toml needs updating",
                    self.suite
                )
            })?;
        Ok(())
    }
}

fn files_ending(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = fs_err::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sources_list_names_the_keyring_and_each_kind() {
        let suite = Suite::new(
            Path::new("/c"),
            "http://deb.debian.org/debian/",
            "trixie",
            &["deb", "deb-src"],
        );
        assert_eq!(
            suite.sources_list(),
            format!(
                "deb [signed-by={DEBIAN_KEYRING}] http://deb.debian.org/debian trixie main\n\
                 deb-src [signed-by={DEBIAN_KEYRING}] http://deb.debian.org/debian trixie main\n"
            )
        );
        let options = suite.options().join(" ");
        assert!(options.contains("Dir::State::Lists=/c/apt/trixie-deb-deb-src/lists"));
        // Nothing of the machine's own configuration or state is read.
        assert!(options.contains("Dir::Etc::SourceParts=/nonexistent"));
        assert!(options.contains("Dir::State::status=/dev/null"));
        let arm = suite.with_architecture("arm64");
        let options = arm.options().join(" ");
        assert!(options.contains("Dir::State::Lists=/c/apt/trixie-deb-deb-src-arm64/lists"));
        assert!(options.contains("APT::Architectures::=arm64"));
    }
}
