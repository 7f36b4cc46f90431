//! The portability policy of Linux archives, applied to one binary at a time:
//! the libraries it may need, the newest glibc symbol version, and the
//! bundled libraries' symbols it must not export.
//!
//! The rules are python-build-standalone's (its `validation.rs`) and
//! manylinux's: a binary that needs only the C library's own family, at
//! symbol versions no newer than the baseline, runs on every Linux with that
//! glibc or a newer one; one that exports `SSL_read` can take the place of a
//! host program's own OpenSSL.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::Result;

use crate::binary::{self, BinaryInfo};
use crate::manifest::{self, BundledLibrary, FileEntry};
use crate::targets::Portability;

/// One way a binary breaks the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// It needs a shared library outside the allowed family (and not the archive's own).
    Library(String),
    /// It imports a symbol at a glibc version newer than the baseline (or a private one).
    SymbolVersion { symbol: String, version: String },
    /// It exports a symbol of a bundled library.
    Export(String),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Library(lib) => write!(f, "needs {lib}, which is not part of glibc"),
            Violation::SymbolVersion { symbol, version } => {
                write!(f, "imports {symbol}@{version}, newer than the baseline")
            }
            Violation::Export(symbol) => {
                write!(f, "exports {symbol}, a bundled library's symbol")
            }
        }
    }
}

/// A glibc version as numbers, from `2.17` or `GLIBC_2.17`; `None` for
/// anything else (`GLIBC_PRIVATE`).
pub fn glibc_version(text: &str) -> Option<Vec<u32>> {
    let digits = text.strip_prefix("GLIBC_").unwrap_or(text);
    digits.split('.').map(|p| p.parse().ok()).collect()
}

/// The newest `GLIBC_x` version `info` imports, as written (`GLIBC_2.35`).
pub fn newest_glibc(info: &BinaryInfo) -> Option<&str> {
    info.versioned_imports
        .iter()
        .filter(|i| i.version.starts_with("GLIBC_"))
        .max_by_key(|i| glibc_version(&i.version).unwrap_or(vec![u32::MAX]))
        .map(|i| i.version.as_str())
}

/// Every way `info` breaks `policy`; `own` are the file names of the
/// libraries the archive itself carries (always allowed).
pub fn check(info: &BinaryInfo, policy: &Portability, own: &[&str]) -> Vec<Violation> {
    let mut out = Vec::new();
    for lib in &info.needed {
        if !policy.libraries.contains(lib) && !own.contains(&lib.as_str()) {
            out.push(Violation::Library(lib.clone()));
        }
    }
    let baseline = glibc_version(&policy.glibc).unwrap_or_default();
    for import in &info.versioned_imports {
        if !import.version.starts_with("GLIBC_") {
            continue;
        }
        // GLIBC_PRIVATE (no number) is never portable.
        let too_new = glibc_version(&import.version).is_none_or(|v| v > baseline);
        if too_new {
            out.push(Violation::SymbolVersion {
                symbol: import.symbol.clone(),
                version: import.version.clone(),
            });
        }
    }
    for symbol in &info.exports {
        let private = policy
            .private_symbol_prefixes
            .iter()
            .any(|p| symbol.starts_with(p.as_str()));
        if private && !policy.allowed_exports.contains(symbol) {
            out.push(Violation::Export(symbol.clone()));
        }
    }
    out
}

/// Judges every binary of the tree at `top` (whose files `files` lists) by
/// `policy`: the manifest's portability record. `bundled` is recorded as given.
pub fn describe_tree(
    top: &Path,
    files: &BTreeMap<String, FileEntry>,
    policy: &Portability,
    bundled: Vec<BundledLibrary>,
) -> Result<manifest::Portability> {
    let own: Vec<&str> = files
        .keys()
        .map(|rel| rel.rsplit('/').next().unwrap_or(rel))
        .collect();
    let mut reasons = Vec::new();
    let mut system_libraries = std::collections::BTreeSet::new();
    let mut newest: Option<String> = None;
    for (rel, entry) in files {
        if entry.link.is_some() {
            continue;
        }
        let Some(info) = binary::read(&top.join(rel))? else {
            continue;
        };
        if info.format != binary::Format::Elf {
            continue;
        }
        system_libraries.extend(
            info.needed
                .iter()
                .filter(|lib| !own.contains(&lib.as_str()))
                .cloned(),
        );
        if let Some(v) = newest_glibc(&info) {
            if newest
                .as_deref()
                .is_none_or(|n| glibc_version(v) > glibc_version(n))
            {
                newest = Some(v.to_string());
            }
        }
        let violations = check(&info, policy, &own);
        if !violations.is_empty() {
            reasons.push(format!("{rel}: {}", summarize(&violations)));
        }
    }
    Ok(manifest::Portability {
        glibc_baseline: policy.glibc.clone(),
        newest_glibc: newest,
        portable: reasons.is_empty(),
        reasons,
        system_libraries: system_libraries.into_iter().collect(),
        bundled,
    })
}

impl Violation {
    /// The group a summary puts it in, and its name there.
    fn group_and_name(&self) -> (&'static str, String) {
        match self {
            Violation::Library(lib) => ("needs", lib.clone()),
            Violation::SymbolVersion { symbol, version } => (
                "imports past the glibc baseline",
                format!("{symbol}@{version}"),
            ),
            Violation::Export(symbol) => ("exports bundled symbols", symbol.clone()),
        }
    }
}

/// One line for a binary's violations, grouped in the order met (as [`check`]
/// finds them), the first few of each kind named:
/// libpypy alone can import hundreds of symbols past the baseline.
pub fn summarize(violations: &[Violation]) -> String {
    const SHOWN: usize = 4;
    let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
    for (group, name) in violations.iter().map(Violation::group_and_name) {
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, names)) => names.push(name),
            None => groups.push((group, vec![name])),
        }
    }
    groups
        .into_iter()
        .map(|(group, names)| {
            let more = names.len().saturating_sub(SHOWN);
            let mut shown = names[..names.len().min(SHOWN)].join(", ");
            if more > 0 {
                shown.push_str(&format!(" and {more} more"));
            }
            format!("{group} {shown}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_compare_as_numbers() {
        assert!(glibc_version("GLIBC_2.9") < glibc_version("GLIBC_2.17"));
        assert!(glibc_version("GLIBC_2.2.5") < glibc_version("2.17"));
        assert!(glibc_version("GLIBC_2.35") > glibc_version("2.17"));
        assert_eq!(glibc_version("GLIBC_PRIVATE"), None);
    }

    #[test]
    fn summary_names_the_first_few() {
        let v: Vec<Violation> = [Violation::Library("libssl.so.3".into())]
            .into_iter()
            .chain((0..6).map(|i| Violation::SymbolVersion {
                symbol: format!("f{i}"),
                version: "GLIBC_2.34".into(),
            }))
            .collect();
        assert_eq!(
            summarize(&v),
            "needs libssl.so.3; imports past the glibc baseline f0@GLIBC_2.34, \
             f1@GLIBC_2.34, f2@GLIBC_2.34, f3@GLIBC_2.34 and 2 more"
        );
    }

    /// Real ELF files, compiled here with the machine's own C compiler.
    #[cfg(target_os = "linux")]
    mod elf {
        use super::*;
        use crate::binary;

        fn policy() -> Portability {
            crate::targets::get("x86_64-unknown-linux-gnu")
                .unwrap()
                .portability
                .unwrap()
        }
        use std::path::{Path, PathBuf};
        use xshell::{cmd, Shell};

        /// Compiles `source` into `dir/name` with `cc` and the given flags.
        fn build(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
            let sh = Shell::new().unwrap();
            sh.change_dir(dir);
            let c = dir.join(format!("{name}.c"));
            fs_err::write(&c, source).unwrap();
            let out = dir.join(name);
            cmd!(sh, "cc -O1 -fPIC {c} -o {out} {flags...}")
                .quiet()
                .run()
                .expect("the machine's C compiler builds the test's ELF file");
            out
        }

        fn info(path: &Path) -> BinaryInfo {
            binary::read(path).unwrap().expect("an ELF file")
        }

        #[test]
        fn an_old_enough_library_passes() {
            let dir = tempfile::tempdir().unwrap();
            let so = build(
                dir.path(),
                "libok.so",
                "#include <string.h>\nint ok(const char *s) { return (int)strlen(s); }\n",
                &["-shared"],
            );
            let info = info(&so);
            assert!(newest_glibc(&info).is_some(), "{info:?}");
            assert_eq!(check(&info, &policy(), &[]), vec![], "{info:?}");
        }

        #[test]
        fn a_symbol_past_the_baseline_is_named() {
            // glibc 2.35 gave `hypot` a new version on x86-64; a fresh gcc build
            // takes the newest. Any glibc newer than 2.17 has some such symbol:
            // `__libc_start_main@GLIBC_2.34` in every executable.
            let dir = tempfile::tempdir().unwrap();
            let exe = build(
                dir.path(),
                "prog",
                "#include <math.h>\n#include <stdio.h>\n\
                 int main(int c, char **v) { printf(\"%f\\n\", hypot(c, 2.0)); return v[0][0] == 0; }\n",
                &["-lm"],
            );
            let info = info(&exe);
            let newest = newest_glibc(&info).unwrap().to_string();
            let violations = check(&info, &policy(), &[]);
            assert!(
                violations.iter().any(|v| matches!(v,
                    Violation::SymbolVersion { version, .. } if *version == newest)),
                "newest {newest}, violations {violations:?}"
            );
            let mut relaxed = policy();
            relaxed.glibc = newest.trim_start_matches("GLIBC_").to_string();
            assert_eq!(check(&info, &relaxed, &[]), vec![]);
        }

        #[test]
        fn a_library_outside_glibc_is_named_unless_the_archive_has_it() {
            let dir = tempfile::tempdir().unwrap();
            build(
                dir.path(),
                "libdep.so",
                "int dep(void) { return 1; }\n",
                &["-shared", "-Wl,-soname,libdep.so"],
            );
            let d = dir.path().display().to_string();
            let exe = build(
                dir.path(),
                "user",
                "int dep(void);\nint main(void) { return dep(); }\n",
                &["-L", &d, "-ldep"],
            );
            let info = info(&exe);
            assert_eq!(
                check(&info, &policy(), &[])
                    .into_iter()
                    .filter(|v| matches!(v, Violation::Library(_)))
                    .collect::<Vec<_>>(),
                vec![Violation::Library("libdep.so".into())]
            );
            assert!(!check(&info, &policy(), &["libdep.so"])
                .iter()
                .any(|v| matches!(v, Violation::Library(_))));
        }

        #[test]
        fn an_exported_dependency_symbol_is_named_and_a_hidden_one_is_not() {
            let dir = tempfile::tempdir().unwrap();
            let source = "int SSL_read(void *s, void *b, int n) { return n; }\n\
                          int pypy_entry(void) { return SSL_read(0, 0, 1); }\n";
            let exported = build(dir.path(), "libexp.so", source, &["-shared"]);
            assert_eq!(
                check(&info(&exported), &policy(), &[]),
                vec![Violation::Export("SSL_read".into())]
            );
            // What a static OpenSSL built with -fvisibility=hidden gives.
            let hidden = build(
                dir.path(),
                "libhid.so",
                &format!("#pragma GCC visibility push(hidden)\n{source}"),
                &["-shared"],
            );
            assert_eq!(check(&info(&hidden), &policy(), &[]), vec![]);
        }
    }
}
