//! Reads ELF, Mach-O and PE files: their needed libraries, runtime search paths and exported symbols.
//!
//! Also decides, as pure data per target, how a binary in the release tree
//! must find its neighbours at run time ([`plan_search_path`]), and applies
//! that plan on the host ([`apply_search_path`]).

use std::path::Path;

use anyhow::{bail, Context, Result};
use goblin::Object;
use xshell::{cmd, Shell};

use crate::targets::{SearchPath, Target};

/// Which object format a binary is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Elf,
    MachO,
    Pe,
}

/// What the dynamic loader needs to know about one binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryInfo {
    pub format: Format,
    /// ELF `DT_NEEDED`, Mach-O `LC_LOAD_DYLIB` names, PE import DLLs, in file order.
    pub needed: Vec<String>,
    /// ELF `DT_RUNPATH` and `DT_RPATH` entries (split on `:`), Mach-O `LC_RPATH`.
    pub search_paths: Vec<String>,
    /// ELF SONAME or Mach-O install name (`LC_ID_DYLIB`).
    pub own_name: Option<String>,
    /// Names of the defined, exported functions and data (ELF dynamic symbols,
    /// Mach-O export trie, PE export table), sorted.
    pub exports: Vec<String>,
    /// ELF only: the imported symbols bound to a version of a needed library
    /// (`hypot@GLIBC_2.35`), sorted; what decides the oldest C library it runs on.
    pub versioned_imports: Vec<VersionedImport>,
}

/// One imported symbol and the version of the library it needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionedImport {
    pub symbol: String,
    /// The version name, e.g. `GLIBC_2.35`.
    pub version: String,
    /// The needed library the version belongs to, e.g. `libm.so.6`.
    pub library: String,
}

/// The magic numbers of the three formats, so that a text file is never parsed.
fn looks_binary(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
        || head.starts_with(b"MZ")
        || [
            [0xfe, 0xed, 0xfa, 0xce],
            [0xfe, 0xed, 0xfa, 0xcf],
            [0xce, 0xfa, 0xed, 0xfe],
            [0xcf, 0xfa, 0xed, 0xfe],
            [0xca, 0xfe, 0xba, 0xbe],
        ]
        .iter()
        .any(|m| head.starts_with(m))
}

/// Reads `path` if it is an ELF, Mach-O or PE file; `Ok(None)` for anything else.
pub fn read(path: &Path) -> Result<Option<BinaryInfo>> {
    let bytes = fs_err::read(path)?;
    parse(&bytes).with_context(|| format!("{}: cannot parse this binary", path.display()))
}

/// Like [`read`], on bytes already in memory.
pub fn parse(bytes: &[u8]) -> Result<Option<BinaryInfo>> {
    if !looks_binary(&bytes[..bytes.len().min(4)]) {
        return Ok(None);
    }
    let object = match Object::parse(bytes) {
        Ok(o) => o,
        // `MZ` or a Java class file (`cafebabe`) can start ordinary data files.
        Err(_) if !bytes.starts_with(b"\x7fELF") => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let info = match object {
        Object::Elf(elf) => {
            let split = |v: &[&str]| -> Vec<String> {
                v.iter()
                    .flat_map(|s| s.split(':'))
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            };
            let mut search_paths = split(&elf.runpaths);
            search_paths.extend(split(&elf.rpaths));
            let mut exports: Vec<String> = elf
                .dynsyms
                .iter()
                .filter(|s| !s.is_import() && s.st_name != 0)
                .filter(|s| {
                    let bind = s.st_bind();
                    bind == goblin::elf::sym::STB_GLOBAL || bind == goblin::elf::sym::STB_WEAK
                })
                .filter_map(|s| elf.dynstrtab.get_at(s.st_name).map(str::to_string))
                .collect();
            exports.sort();
            exports.dedup();
            BinaryInfo {
                format: Format::Elf,
                needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
                search_paths,
                own_name: elf.soname.map(str::to_string),
                exports,
                versioned_imports: versioned_imports(&elf),
            }
        }
        Object::Mach(goblin::mach::Mach::Binary(macho)) => macho_info(&macho)?,
        Object::Mach(goblin::mach::Mach::Fat(fat)) => match fat.get(0)? {
            goblin::mach::SingleArch::MachO(macho) => macho_info(&macho)?,
            goblin::mach::SingleArch::Archive(_) => return Ok(None),
        },
        Object::PE(pe) => {
            let mut exports: Vec<String> = pe
                .exports
                .iter()
                .filter_map(|e| e.name.map(str::to_string))
                .collect();
            exports.sort();
            BinaryInfo {
                format: Format::Pe,
                needed: pe.libraries.iter().map(|s| s.to_string()).collect(),
                search_paths: Vec::new(),
                own_name: pe.name.map(str::to_string),
                exports,
                versioned_imports: Vec::new(),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(info))
}

fn macho_info(macho: &goblin::mach::MachO) -> Result<BinaryInfo> {
    let mut exports: Vec<String> = macho
        .exports()?
        .into_iter()
        // Mach-O prefixes C names with `_`; callers compare with C names.
        .map(|e| e.name.strip_prefix('_').unwrap_or(&e.name).to_string())
        .collect();
    exports.sort();
    Ok(BinaryInfo {
        format: Format::MachO,
        // `libs[0]` is goblin's placeholder for the binary itself.
        needed: macho.libs.iter().skip(1).map(|s| s.to_string()).collect(),
        search_paths: macho.rpaths.iter().map(|s| s.to_string()).collect(),
        own_name: macho.name.map(str::to_string),
        exports,
        versioned_imports: Vec::new(),
    })
}

/// The imports of an ELF file that carry a version: `.gnu.version` gives each
/// dynamic symbol an index, `.gnu.version_r` maps the index to a library and a
/// version name.
fn versioned_imports(elf: &goblin::elf::Elf) -> Vec<VersionedImport> {
    let (Some(versym), Some(verneed)) = (&elf.versym, &elf.verneed) else {
        return Vec::new();
    };
    let mut versions = std::collections::HashMap::new();
    for need in verneed.iter() {
        let library = elf.dynstrtab.get_at(need.vn_file).unwrap_or_default();
        for aux in need.iter() {
            let name = elf.dynstrtab.get_at(aux.vna_name).unwrap_or_default();
            versions.insert(aux.vna_other & 0x7fff, (library, name));
        }
    }
    let mut out: Vec<VersionedImport> = elf
        .dynsyms
        .iter()
        .zip(versym.iter())
        .filter(|(sym, _)| sym.is_import() && sym.st_name != 0)
        .filter_map(|(sym, ver)| {
            let (library, version) = versions.get(&ver.version())?;
            Some(VersionedImport {
                symbol: elf.dynstrtab.get_at(sym.st_name)?.to_string(),
                version: version.to_string(),
                library: library.to_string(),
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// How a relative search path starts on each platform.
fn origin_token(kind: SearchPath) -> Option<&'static str> {
    match kind {
        SearchPath::Origin => Some("$ORIGIN"),
        SearchPath::Rpath => Some("@loader_path"),
        SearchPath::DllDir => None,
    }
}

/// Whether a runtime search path entry is relative to the binary itself
/// (the only kind allowed in a relocatable tree).
pub fn is_relative_search_path(entry: &str) -> bool {
    ["$ORIGIN", "${ORIGIN}", "@loader_path", "@executable_path"]
        .iter()
        .any(|t| entry == *t || entry.starts_with(&format!("{t}/")))
}

/// The relative path from folder `from` to folder `to`, both relative to the
/// top folder with `/` separators ("" is the top itself).
pub fn relative_dir(from: &str, to: &str) -> String {
    let parts = |s: &str| -> Vec<String> {
        s.split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .map(str::to_string)
            .collect()
    };
    let (a, b) = (parts(from), parts(to));
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out: Vec<String> = vec!["..".into(); a.len() - common];
    out.extend(b[common..].iter().cloned());
    out.join("/")
}

fn parent_dir(rel: &str) -> &str {
    rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// What must change in one binary so that it finds the libraries it needs
/// inside the archive, from wherever the archive is unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPathPlan {
    /// The complete new list of search path entries (replaces the old one);
    /// empty means "remove the search path".
    pub search_paths: Vec<String>,
}

/// Decides the search path of the binary at `binary` (relative to the top
/// folder) that needs the in-archive libraries at `libraries` (relative
/// paths). Keeps entries already relative to the binary, drops absolute
/// ones (build or distribution folders), and adds one entry per folder of
/// a needed library. `None`: nothing to change (or, on Windows, nothing the
/// loader would read: DLLs are found next to the executable).
pub fn plan_search_path(
    target: &Target,
    binary: &str,
    current: &[String],
    libraries: &[String],
) -> Result<Option<SearchPathPlan>> {
    let Some(token) = origin_token(target.search_path) else {
        // Windows: the loader looks in the executable's own folder first.
        for lib in libraries {
            if parent_dir(lib) != parent_dir(binary) {
                bail!(
                    "{binary} needs {lib}, but Windows only finds DLLs beside the executable; \
                     put them in the same folder"
                );
            }
        }
        return Ok(None);
    };
    let mut wanted: Vec<String> = current
        .iter()
        .filter(|e| is_relative_search_path(e))
        .cloned()
        .collect();
    for lib in libraries {
        let rel = relative_dir(parent_dir(binary), parent_dir(lib));
        let entry = if rel.is_empty() {
            // `$ORIGIN/` is what RPython writes; keep its spelling when present.
            if current.iter().any(|c| c == &format!("{token}/")) {
                format!("{token}/")
            } else {
                token.to_string()
            }
        } else {
            format!("{token}/{rel}")
        };
        let same = |e: &String| e.trim_end_matches('/') == entry.trim_end_matches('/');
        if !wanted.iter().any(same) {
            wanted.push(entry);
        }
    }
    if wanted == current {
        Ok(None)
    } else {
        Ok(Some(SearchPathPlan {
            search_paths: wanted,
        }))
    }
}

/// Gives the ELF library at `path` the SONAME `name` with `patchelf`, so
/// that whatever links against it records that name, whichever alias the
/// linker was given (`-lpypy3-c`).
pub fn apply_soname(sh: &Shell, path: &Path, name: &str) -> Result<()> {
    cmd!(sh, "patchelf --set-soname {name} {path}")
        .run()
        .with_context(|| {
            format!(
                "patchelf could not set the SONAME of {}; is patchelf installed \
                 (`apt-get install patchelf`)?",
                path.display()
            )
        })
}

/// Rewrites the runtime search path of `path` on this machine: `patchelf`
/// for ELF (it sets `DT_RUNPATH`, growing the dynamic string table when the
/// new value is longer, which an in-place edit cannot), `install_name_tool`
/// for Mach-O.
pub fn apply_search_path(
    sh: &Shell,
    path: &Path,
    info: &BinaryInfo,
    plan: &SearchPathPlan,
) -> Result<()> {
    match info.format {
        Format::Elf => {
            if plan.search_paths.is_empty() {
                cmd!(sh, "patchelf --remove-rpath {path}").run()
            } else {
                let joined = plan.search_paths.join(":");
                cmd!(sh, "patchelf --set-rpath {joined} {path}").run()
            }
            .with_context(|| {
                format!(
                    "patchelf could not rewrite the RUNPATH of {}; is patchelf installed \
                     (`apt-get install patchelf`)?",
                    path.display()
                )
            })?;
        }
        Format::MachO => {
            for old in &info.search_paths {
                cmd!(sh, "install_name_tool -delete_rpath {old} {path}").run()?;
            }
            for new in &plan.search_paths {
                cmd!(sh, "install_name_tool -add_rpath {new} {path}").run()?;
            }
        }
        Format::Pe => {}
    }
    Ok(())
}

/// The Mach-O install name a library in the archive must carry so that
/// binaries linked against it look it up through their `LC_RPATH`.
pub fn install_name(target: &Target, library_file_name: &str) -> Option<String> {
    match target.search_path {
        SearchPath::Rpath => Some(format!("@rpath/{library_file_name}")),
        SearchPath::Origin | SearchPath::DllDir => None,
    }
}

/// Mach-O only: the install name a library of the archive must get
/// (`install_name_tool -id`) and the load commands that name a library of
/// the archive by a build path (`install_name_tool -change old new`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallNamePlan {
    pub id: Option<String>,
    pub changes: Vec<(String, String)>,
}

impl InstallNamePlan {
    pub fn is_empty(&self) -> bool {
        self.id.is_none() && self.changes.is_empty()
    }
}

/// Decides [`InstallNamePlan`] for the binary at `binary` (relative path)
/// given the file names of the libraries the archive holds. Empty on ELF
/// and PE targets, whose loaders look libraries up by file name.
pub fn plan_install_names(
    target: &Target,
    binary: &str,
    info: &BinaryInfo,
    archive_libraries: &[String],
) -> InstallNamePlan {
    let mut plan = InstallNamePlan::default();
    if target.search_path != SearchPath::Rpath {
        return plan;
    }
    let file_name = binary.rsplit('/').next().unwrap_or(binary);
    if let Some(own) = &info.own_name {
        let wanted = install_name(target, file_name).expect("rpath target");
        if *own != wanted {
            plan.id = Some(wanted);
        }
    }
    for needed in &info.needed {
        let base = needed.rsplit('/').next().unwrap_or(needed);
        if archive_libraries.iter().any(|l| l == base) {
            let wanted = install_name(target, base).expect("rpath target");
            if *needed != wanted {
                plan.changes.push((needed.clone(), wanted));
            }
        }
    }
    plan
}

/// Applies an [`InstallNamePlan`] with `install_name_tool` (macOS hosts).
pub fn apply_install_names(sh: &Shell, path: &Path, plan: &InstallNamePlan) -> Result<()> {
    let context = || {
        format!(
            "install_name_tool could not rewrite the install names of {} \
             (it comes with Xcode's command line tools)",
            path.display()
        )
    };
    if let Some(id) = &plan.id {
        cmd!(sh, "install_name_tool -id {id} {path}")
            .run()
            .with_context(context)?;
    }
    for (old, new) in &plan.changes {
        cmd!(sh, "install_name_tool -change {old} {new} {path}")
            .run()
            .with_context(context)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn relative_dirs() {
        assert_eq!(relative_dir("bin", "bin"), "");
        assert_eq!(relative_dir("lib/pypy3.11", "bin"), "../../bin");
        assert_eq!(relative_dir("", "bin"), "bin");
        assert_eq!(relative_dir("bin", ""), "..");
    }

    #[test]
    fn search_path_plan_for_every_target() {
        for target in targets::all().unwrap() {
            let py = "3.11";
            let lib = target.libpypy_path(py);
            let launcher = target.launcher_path(py);
            // A launcher beside libpypy that already says `$ORIGIN/` needs nothing.
            let current = match target.search_path {
                SearchPath::Origin => s(&["$ORIGIN/"]),
                SearchPath::Rpath => s(&["@loader_path/"]),
                SearchPath::DllDir => vec![],
            };
            let plan =
                plan_search_path(&target, &launcher, &current, std::slice::from_ref(&lib)).unwrap();
            assert_eq!(plan, None, "{}", target.triple);

            // An absolute build path is dropped and replaced by a relative one.
            let plan = plan_search_path(
                &target,
                &launcher,
                &s(&["/home/build/pypy/goal"]),
                std::slice::from_ref(&lib),
            )
            .unwrap();
            match target.search_path {
                SearchPath::Origin => assert_eq!(
                    plan.unwrap().search_paths,
                    s(&["$ORIGIN"]),
                    "{}",
                    target.triple
                ),
                SearchPath::Rpath => assert_eq!(
                    plan.unwrap().search_paths,
                    s(&["@loader_path"]),
                    "{}",
                    target.triple
                ),
                SearchPath::DllDir => assert_eq!(plan, None),
            }

            // A C extension in the stdlib that links libpypy points back to bin/.
            let ext = format!("{}/_ext.so", target.stdlib_dir(py));
            let plan = plan_search_path(&target, &ext, &[], std::slice::from_ref(&lib));
            match target.search_path {
                SearchPath::Origin => assert_eq!(
                    plan.unwrap().unwrap().search_paths,
                    s(&["$ORIGIN/../../bin"])
                ),
                SearchPath::Rpath => assert_eq!(
                    plan.unwrap().unwrap().search_paths,
                    s(&["@loader_path/../../bin"])
                ),
                // On Windows the stdlib is `Lib/` and libpypy sits at the top.
                SearchPath::DllDir => {
                    let err = plan.unwrap_err().to_string();
                    assert!(err.contains("beside the executable"), "{err}");
                }
            }
        }
    }

    #[test]
    fn install_names_only_on_macos() {
        for target in targets::all().unwrap() {
            let name = install_name(&target, "libpypy3.11-c.dylib");
            assert_eq!(
                name.is_some(),
                target.search_path == SearchPath::Rpath,
                "{}",
                target.triple
            );
        }
    }

    #[test]
    fn install_name_plan_for_every_target() {
        for target in targets::all().unwrap() {
            let lib = target.libpypy_name("3.11");
            let build = format!("/Users/build/pypy/goal/{lib}");
            let library = BinaryInfo {
                format: Format::MachO,
                needed: vec!["/usr/lib/libSystem.B.dylib".into()],
                search_paths: vec![],
                own_name: Some(build.clone()),
                exports: vec![],
                versioned_imports: vec![],
            };
            let launcher = BinaryInfo {
                needed: vec![build.clone(), "/usr/lib/libSystem.B.dylib".into()],
                own_name: None,
                ..library.clone()
            };
            let libs = vec![lib.clone()];
            let lib_plan =
                plan_install_names(&target, &target.libpypy_path("3.11"), &library, &libs);
            let exe_plan =
                plan_install_names(&target, &target.launcher_path("3.11"), &launcher, &libs);
            if target.search_path == SearchPath::Rpath {
                assert_eq!(
                    lib_plan.id,
                    Some(format!("@rpath/{lib}")),
                    "{}",
                    target.triple
                );
                assert!(lib_plan.changes.is_empty());
                assert_eq!(exe_plan.id, None);
                assert_eq!(
                    exe_plan.changes,
                    vec![(build.clone(), format!("@rpath/{lib}"))]
                );
                // Already right: nothing to do.
                let done = BinaryInfo {
                    own_name: Some(format!("@rpath/{lib}")),
                    ..library.clone()
                };
                assert!(
                    plan_install_names(&target, &target.libpypy_path("3.11"), &done, &libs)
                        .is_empty()
                );
            } else {
                assert!(
                    lib_plan.is_empty() && exe_plan.is_empty(),
                    "{}",
                    target.triple
                );
            }
        }
    }

    #[test]
    fn relative_search_paths() {
        assert!(is_relative_search_path("$ORIGIN/"));
        assert!(is_relative_search_path("$ORIGIN/../lib"));
        assert!(is_relative_search_path("@loader_path/../lib"));
        assert!(!is_relative_search_path("/usr/lib"));
        assert!(!is_relative_search_path("$ORIGINAL"));
        assert!(!is_relative_search_path("lib"));
    }

    #[test]
    fn text_is_not_a_binary() {
        assert_eq!(parse(b"#!/bin/sh\necho hi\n").unwrap(), None);
        assert_eq!(parse(b"MZ but not really a PE file").unwrap(), None);
        assert!(parse(b"\x7fELF broken").is_err());
    }

    #[test]
    fn reads_this_test_binary() {
        // The test executable itself is a real ELF/Mach-O/PE file of the host.
        let exe = std::env::current_exe().unwrap();
        let info = read(&exe).unwrap().expect("the test binary is a binary");
        assert!(!info.needed.is_empty());
    }
}
