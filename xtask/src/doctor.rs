//! Preflight: checks that this machine can translate PyPy before an hour is spent on it.
//!
//! Each missing piece is reported with the package that provides it, so that a
//! missing header costs a minute now instead of a failed build an hour later.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use xshell::{cmd, Shell};

use crate::recipe::Recipe;
use crate::targets::{self, CompilerKind, PackageManager, Target};
use crate::{host, paths};

/// Options of `cargo xtask doctor`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Recipe whose needs to check (the newest when omitted).
    #[arg(long)]
    pub recipe: Option<String>,
    /// The host interpreter to check, like build-pypy's.
    #[arg(long, env = host::HOST_ENV)]
    pub host_python: Option<PathBuf>,
    /// The cache folder whose free space is checked and where missing host
    /// packages would go [default: $PYPY_EMBED_CACHE or the user's cache folder].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// A C library a translation or the stdlib's cffi modules need, and who provides it.
struct Library {
    what: &'static str,
    /// Any of these headers will do (distributions put some in subfolders).
    headers: &'static [&'static str],
    debian: &'static str,
    homebrew: &'static str,
    /// Include folders the library's own build adds (tk.h needs tcl.h beside it).
    cflags: &'static [&'static str],
}

/// From PyPy's `pypy/doc/build.rst`: what translation and the cffi modules include.
const LIBRARIES: &[Library] = &[
    Library {
        what: "libffi",
        headers: &["ffi.h"],
        debian: "libffi-dev",
        homebrew: "libffi",
        cflags: &[],
    },
    Library {
        what: "zlib",
        headers: &["zlib.h"],
        debian: "zlib1g-dev",
        homebrew: "zlib",
        cflags: &[],
    },
    Library {
        what: "bz2",
        headers: &["bzlib.h"],
        debian: "libbz2-dev",
        homebrew: "bzip2",
        cflags: &[],
    },
    Library {
        what: "expat",
        headers: &["expat.h"],
        debian: "libexpat1-dev",
        homebrew: "expat",
        cflags: &[],
    },
    Library {
        what: "sqlite3",
        headers: &["sqlite3.h"],
        debian: "libsqlite3-dev",
        homebrew: "sqlite",
        cflags: &[],
    },
    Library {
        what: "openssl",
        headers: &["openssl/ssl.h"],
        debian: "libssl-dev",
        homebrew: "openssl@3",
        cflags: &[],
    },
    Library {
        what: "ncursesw",
        headers: &["ncursesw/curses.h", "curses.h"],
        debian: "libncurses-dev",
        homebrew: "ncurses",
        cflags: &[],
    },
    Library {
        what: "gdbm",
        headers: &["gdbm.h"],
        debian: "libgdbm-dev",
        homebrew: "gdbm",
        cflags: &[],
    },
    Library {
        what: "lzma",
        headers: &["lzma.h"],
        debian: "liblzma-dev",
        homebrew: "xz",
        cflags: &[],
    },
    Library {
        what: "tk",
        headers: &["tk.h", "tcl8.6/tk.h", "tk8.6/tk.h"],
        debian: "tk-dev",
        homebrew: "tcl-tk",
        cflags: &["-I/usr/include/tcl8.6", "-I/usr/local/include/tcl8.6"],
    },
];

/// One line of the report.
#[derive(Debug)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    /// What to do when not ok, e.g. `apt-get install libffi-dev`.
    pub fix: Option<String>,
}

/// The whole preflight report.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, name: &str, ok: bool, detail: String, fix: Option<String>) {
        self.checks.push(Check {
            name: name.to_string(),
            ok,
            detail,
            fix,
        });
    }

    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.ok).collect()
    }

    pub fn print(&self) {
        for c in &self.checks {
            let mark = if c.ok { "ok     " } else { "MISSING" };
            eprintln!("doctor: {mark} {:<12} {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                eprintln!("doctor:         fix: {fix}");
            }
        }
    }

    /// An error naming every missing piece and its fix, or Ok.
    pub fn into_result(self) -> Result<()> {
        let failures = self.failures();
        if failures.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = failures
            .iter()
            .map(|c| {
                format!(
                    "  - {}: {}{}",
                    c.name,
                    c.detail,
                    c.fix
                        .as_ref()
                        .map(|f| format!(" (fix: {f})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        bail!(
            "this machine cannot translate PyPy yet:\n{}",
            lines.join("\n")
        )
    }
}

pub fn run(args: Args) -> Result<()> {
    let sh = Shell::new()?;
    let recipe = match &args.recipe {
        Some(name) => crate::recipe::find(name)?,
        None => crate::recipe::newest()?,
    };
    let target = targets::get(targets::host_triple())?;
    let cache_root = args.cache_dir.clone().unwrap_or_else(paths::cache_root);
    let report = check(
        &sh,
        &recipe,
        &target,
        args.host_python.as_deref(),
        &cache_root,
    );
    report.print();
    report.into_result()
}

/// One check of the doctor. [`checks`] lists them in order; [`check`] runs
/// them and [`planned_checks`] describes them, so the plan cannot list
/// another set than the one that runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Compiler,
    Make,
    RelocationTool,
    Git,
    Xcode,
    BrewPackages,
    Headers,
    PortableTools,
    HostPython,
    Resources,
}

/// The checks for translating `recipe` for `target`, in the order they run.
fn checks(recipe: &Recipe, target: &Target) -> Vec<Step> {
    let tools = &target.tools;
    let mut list = vec![Step::Compiler, Step::Make];
    if tools.relocation_tool.is_some() {
        list.push(Step::RelocationTool);
    }
    if needs_git(recipe, target) {
        list.push(Step::Git);
    }
    if tools.xcode {
        list.push(Step::Xcode);
    }
    if target.package_manager == PackageManager::Brew {
        list.push(Step::BrewPackages);
    }
    if tools.headers {
        list.push(Step::Headers);
    }
    if target.toolchain.is_some() {
        list.push(Step::PortableTools);
    }
    list.extend([Step::HostPython, Step::Resources]);
    list
}

impl Step {
    /// What the check looks at, for `build-pypy --plan`.
    fn describe(self, recipe: &Recipe, target: &Target) -> String {
        match self {
            Step::Compiler => match target.tools.compiler {
                CompilerKind::Msvc => "C compiler: MSVC (cl.exe) from the Visual Studio \
                                       installation, found as the cc crate finds it"
                    .into(),
                CompilerKind::Cc => "C compiler: $CC, else cc".into(),
            },
            Step::Make if target.tools.make == NMAKE => "make: nmake.exe beside cl.exe".into(),
            Step::Make => format!("make: `{}` runs", target.tools.make),
            Step::RelocationTool => format!(
                "{} runs",
                target
                    .tools
                    .relocation_tool
                    .as_ref()
                    .map_or("", |t| t.program.as_str())
            ),
            Step::Git => format!("git runs ({})", git_uses(recipe, target)),
            Step::Xcode => "xcode: `xcode-select -p` names the command line tools".into(),
            Step::BrewPackages => format!(
                "homebrew: `brew list --versions` finds {}",
                target.system_packages.join(", ")
            ),
            Step::Headers => {
                let headers: Vec<&str> = LIBRARIES.iter().map(|l| l.headers[0]).collect();
                format!(
                    "headers, found by the compiler with the build environment: {}",
                    headers.join(", ")
                )
            }
            Step::PortableTools => {
                let tools: Vec<&str> = PORTABLE_TOOLS.iter().map(|(tool, _)| *tool).collect();
                format!(
                    "the portable build's tools: {} and Debian's archive keyring",
                    tools.join(", ")
                )
            }
            Step::HostPython => {
                "host python: a Python 2.7 (PyPy's preferred; CPython gets a note on speed)".into()
            }
            Step::Resources => format!(
                "memory >= {} GiB, free disk >= {} GiB for the cache",
                recipe.translate.min_memory_gib, recipe.translate.min_disk_gib
            ),
        }
    }
}

/// Every check for translating `recipe` for `target` on this machine.
pub fn check(
    sh: &Shell,
    recipe: &Recipe,
    target: &Target,
    host_python: Option<&Path>,
    cache_root: &Path,
) -> Report {
    let mut report = Report::default();
    let mut compiler_ok = false;
    for step in checks(recipe, target) {
        match step {
            Step::Compiler => compiler_ok = check_compiler(sh, target, &mut report),
            Step::Make => check_make(sh, target, &mut report),
            Step::RelocationTool => check_relocation_tool(sh, target, &mut report),
            Step::Git => check_git(sh, recipe, target, &mut report),
            Step::Xcode => check_xcode(sh, &mut report),
            Step::BrewPackages => check_brew_packages(sh, target, &mut report),
            // Headers are looked for by the compiler, so they wait for one.
            Step::Headers if compiler_ok => check_headers(sh, target, &mut report),
            Step::Headers => {}
            Step::PortableTools => check_portable_tools(target, &mut report),
            Step::HostPython => check_host(sh, target, host_python, cache_root, &mut report),
            Step::Resources => check_resources(sh, recipe, cache_root, &mut report),
        }
    }
    report
}

fn check_host(
    sh: &Shell,
    target: &Target,
    host_python: Option<&Path>,
    cache_root: &Path,
    report: &mut Report,
) {
    match host::find(sh, host_python, &[], cache_root) {
        Ok(h) => {
            report.push(
                "host python",
                true,
                format!(
                    "{} {} at {}",
                    h.implementation,
                    h.version,
                    h.program.display()
                ),
                None,
            );
            if let Some(note) = host::slow_host_note(&h, &bootstrap_name(target)) {
                report.push("host speed", true, note, None);
            }
        }
        Err(e) => report.push(
            "host python",
            false,
            format!("{e:#}"),
            Some("pass --host-python, or use --bootstrap-host".into()),
        ),
    }
}

/// The programs the toolchain and dependency stages run, and the Debian
/// package of each.
const PORTABLE_TOOLS: [(&str, &str); 6] = [
    ("apt-get", "apt"),
    ("autoreconf", "autoconf automake libtool"),
    ("tclsh", "tcl"),
    ("perl", "perl"),
    ("xz", "xz-utils"),
    ("python3", "python3-pip"),
];

/// What the portable build's stages need besides a compiler: apt (and the
/// keyring it checks Debian's signatures with), the tools some libraries'
/// builds run, and pip for the toolchain.
fn check_portable_tools(target: &Target, report: &mut Report) {
    let missing: Vec<&(&str, &str)> = PORTABLE_TOOLS
        .iter()
        .filter(|(tool, _)| host::which(tool).is_none())
        .collect();
    let keyring = Path::new(crate::apt::DEBIAN_KEYRING).is_file();
    let mut packages: Vec<&str> = missing.iter().map(|(_, package)| *package).collect();
    if !keyring {
        packages.push("debian-archive-keyring");
    }
    let names: Vec<&str> = missing.iter().map(|(tool, _)| *tool).collect();
    report.push(
        "portable tools",
        packages.is_empty(),
        if packages.is_empty() {
            "apt-get, autoreconf, tclsh, perl, xz, python3 and Debian's keyring found".into()
        } else {
            format!(
                "missing: {}{} (the toolchain and dependency stages need them; \
                 or build with --system-compiler)",
                names.join(", "),
                if keyring {
                    ""
                } else {
                    " and Debian's archive keyring"
                }
            )
        },
        (!packages.is_empty()).then(|| install_hint(target, &packages.join(" "), "")),
    );
}

/// The file name of the PyPy 2.7 that `--bootstrap-host` downloads for `target`.
fn bootstrap_name(target: &Target) -> String {
    target
        .bootstrap
        .url
        .rsplit('/')
        .next()
        .unwrap_or(&target.bootstrap.url)
        .to_string()
}

/// `$CC` split into program and arguments, `cc` by default (as RPython does;
/// `cl` for MSVC).
fn compiler(target: &Target) -> (String, Vec<String>) {
    let default = match target.tools.compiler {
        CompilerKind::Msvc => "cl",
        CompilerKind::Cc => "cc",
    };
    let cc = crate::env::var("CC")
        .ok()
        .flatten()
        .unwrap_or_else(|| default.into());
    let mut parts = cc.split_whitespace().map(str::to_string);
    let program = parts.next().unwrap_or_else(|| default.into());
    (program, parts.collect())
}

/// The command that installs a library's headers on `target`'s OS.
pub fn install_hint(target: &Target, debian: &str, homebrew: &str) -> String {
    match target.package_manager {
        PackageManager::Apt => format!("apt-get install {debian}"),
        PackageManager::Brew => format!("brew install {homebrew}"),
        PackageManager::None => "install Visual Studio Build Tools (C++ workload)".into(),
    }
}

/// What installs a C compiler on `target`'s OS.
pub fn compiler_hint(target: &Target) -> String {
    target.tools.compiler_install.clone()
}

fn check_compiler(sh: &Shell, target: &Target, report: &mut Report) -> bool {
    if target.tools.compiler == CompilerKind::Msvc && crate::env::var_os("CC").is_none() {
        return check_msvc(target, report);
    }
    let (program, args) = compiler(target);
    match cmd!(sh, "{program} {args...} --version")
        .quiet()
        .ignore_stderr()
        .read()
    {
        Ok(v) => {
            report.push(
                "C compiler",
                true,
                v.lines().next().unwrap_or_default().into(),
                None,
            );
            true
        }
        Err(_) => {
            report.push(
                "C compiler",
                false,
                format!("`{program}` does not run"),
                Some(compiler_hint(target)),
            );
            false
        }
    }
}

/// MSVC has no `--version` and is usually not on PATH: the `cc` crate finds
/// it the way Cargo build scripts do (through the Visual Studio installer).
fn check_msvc(target: &Target, report: &mut Report) -> bool {
    let found = cc::Build::new()
        .target(&target.triple)
        .host(&target.triple)
        .opt_level(0)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .try_get_compiler();
    match found {
        Ok(tool) => {
            report.push(
                "C compiler",
                true,
                format!("{}", tool.path().display()),
                None,
            );
            true
        }
        Err(e) => {
            report.push(
                "C compiler",
                false,
                format!("no MSVC found: {e}"),
                Some(compiler_hint(target)),
            );
            false
        }
    }
}

/// git applies the recipe's patches and clones PyPy's externals (Windows).
fn needs_git(recipe: &Recipe, target: &Target) -> bool {
    !recipe.patches.is_empty() || target.externals.is_some()
}

/// What git is needed for on `target` with `recipe`.
fn git_uses(recipe: &Recipe, target: &Target) -> String {
    let mut uses = Vec::new();
    if !recipe.patches.is_empty() {
        uses.push(format!(
            "applies the recipe's patches ({})",
            recipe.patches.len()
        ));
    }
    if let Some(pin) = &target.externals {
        uses.push(format!("clones PyPy's externals ({})", pin.branch));
    }
    uses.join("; ")
}

fn check_git(sh: &Shell, recipe: &Recipe, target: &Target, report: &mut Report) {
    let version = cmd!(sh, "git --version").quiet().ignore_stderr().read();
    let uses = git_uses(recipe, target);
    report.push(
        "git",
        version.is_ok(),
        match &version {
            Ok(v) => format!("{} ({uses})", v.trim()),
            Err(_) => format!("`git` does not run; it {uses}"),
        },
        version.is_err().then(|| target.tools.git_install.clone()),
    );
}

/// The Xcode command line tools: clang, make, install_name_tool, the SDK.
fn check_xcode(sh: &Shell, report: &mut Report) {
    let path = cmd!(sh, "xcode-select -p").quiet().ignore_stderr().read();
    report.push(
        "xcode",
        path.is_ok(),
        match &path {
            Ok(p) => format!("command line tools at {}", p.trim()),
            Err(_) => "no Xcode command line tools (`xcode-select -p` failed)".into(),
        },
        path.is_err().then(|| "xcode-select --install".into()),
    );
}

/// The Homebrew formulae of the target table, each installed.
fn check_brew_packages(sh: &Shell, target: &Target, report: &mut Report) {
    let packages = &target.system_packages;
    let missing: Vec<&str> = packages
        .iter()
        .map(String::as_str)
        .filter(|p| {
            cmd!(sh, "brew list --versions {p}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()
                .is_err()
        })
        .collect();
    report.push(
        "homebrew",
        missing.is_empty(),
        if missing.is_empty() {
            format!("installed: {}", packages.join(", "))
        } else {
            format!("not installed: {}", missing.join(", "))
        },
        (!missing.is_empty()).then(|| format!("brew install {}", missing.join(" "))),
    );
}

/// What [`check`] looks at for `recipe` on `target`, as `build-pypy --plan` shows it.
pub fn planned_checks(recipe: &Recipe, target: &Target) -> Vec<String> {
    checks(recipe, target)
        .into_iter()
        .map(|step| step.describe(recipe, target))
        .collect()
}

/// The make of MSVC builds, which sits beside cl.exe.
const NMAKE: &str = "nmake";

fn check_make(sh: &Shell, target: &Target, report: &mut Report) {
    if target.tools.make == NMAKE {
        // nmake sits beside cl.exe in Visual Studio, off PATH; RPython finds
        // both through the Visual Studio installer, and so does the cc crate.
        let nmake = cc::windows_registry::find_tool(&target.triple, "nmake.exe");
        report.push(
            "make",
            nmake.is_some(),
            match &nmake {
                Some(tool) => format!("{}", tool.path().display()),
                None => "no nmake.exe in Visual Studio".into(),
            },
            nmake.is_none().then(|| compiler_hint(target)),
        );
        return;
    }
    let make = &target.tools.make;
    let ok = cmd!(sh, "{make} --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok();
    report.push(
        "make",
        ok,
        if ok {
            format!("`{make}` runs")
        } else {
            format!("`{make}` not found")
        },
        (!ok).then(|| compiler_hint(target)),
    );
}

/// The tool the package stage rewrites runtime search paths with.
fn check_relocation_tool(sh: &Shell, target: &Target, report: &mut Report) {
    let Some(found) = &target.tools.relocation_tool else {
        return;
    };
    let (tool, probe) = (&found.program, &found.probe);
    // Running at all is enough: install_name_tool exits non-zero for its usage.
    let ok = cmd!(sh, "{tool} {probe}")
        .quiet()
        .ignore_status()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok();
    report.push(
        tool,
        ok,
        if ok {
            format!("`{tool}` runs")
        } else {
            format!("`{tool}` not found")
        },
        (!ok).then(|| found.install.clone()),
    );
}

/// Each library's header, found by the compiler itself (so its include paths count).
fn check_headers(sh: &Shell, target: &Target, report: &mut Report) {
    // Where a build will look too (Homebrew's keg-only formulae on macOS).
    let _env = target.push_build_env(sh).unwrap_or_default();
    let (program, args) = compiler(target);
    for lib in LIBRARIES {
        let found = lib.headers.iter().find(|h| {
            let source = format!("#include <{h}>\n");
            let args = &args;
            let cflags = lib.cflags;
            cmd!(sh, "{program} {args...} {cflags...} -E -x c -")
                .stdin(source)
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()
                .is_ok()
        });
        report.push(
            lib.what,
            found.is_some(),
            match found {
                Some(h) => format!("<{h}> found"),
                None => format!("no <{}> header", lib.headers.join("> or <")),
            },
            found
                .is_none()
                .then(|| install_hint(target, lib.debian, lib.homebrew)),
        );
    }
}

fn check_resources(sh: &Shell, recipe: &Recipe, cache_root: &Path, report: &mut Report) {
    let gib = 1024 * 1024 * 1024;
    let need_mem = recipe.translate.min_memory_gib;
    match total_memory() {
        Some(bytes) => report.push(
            "memory",
            bytes >= need_mem * gib,
            format!(
                "{:.1} GiB, the recipe needs {need_mem} GiB",
                bytes as f64 / gib as f64
            ),
            (bytes < need_mem * gib).then(|| "use a bigger machine".to_string()),
        ),
        None => report.push(
            "memory",
            true,
            "unknown on this system; not checked".into(),
            None,
        ),
    }
    let cache = cache_root;
    let need_disk = recipe.translate.min_disk_gib;
    match free_disk(sh, cache) {
        Some(bytes) => report.push(
            "disk",
            bytes >= need_disk * gib,
            format!(
                "{:.1} GiB free for {}, the recipe needs {need_disk} GiB",
                bytes as f64 / gib as f64,
                cache.display()
            ),
            (bytes < need_disk * gib)
                .then(|| format!("free space or set {} to a bigger disk", paths::CACHE_ENV)),
        ),
        None => report.push(
            "disk",
            true,
            "unknown on this system; not checked".into(),
            None,
        ),
    }
}

fn total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Free bytes on the file system that holds `path` (or its nearest existing parent).
fn free_disk(sh: &Shell, path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let out = cmd!(sh, "df -Pk {existing}").quiet().read().ok()?;
    let kib: u64 = out
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_names_its_packages() {
        for lib in LIBRARIES {
            assert!(!lib.headers.is_empty());
            assert!(
                !lib.debian.is_empty() && !lib.homebrew.is_empty(),
                "{}",
                lib.what
            );
        }
    }

    /// Libraries whose headers come with macOS's own SDK, so no Homebrew
    /// formula of theirs is installed.
    const MACOS_SDK_PROVIDES: &[&str] = &["zlib", "bzip2", "expat", "ncurses"];

    #[test]
    fn doctor_and_the_target_table_name_the_same_packages() {
        for t in targets::all().unwrap() {
            for lib in LIBRARIES {
                let listed = |name: &str| t.system_packages.iter().any(|p| p == name);
                match t.package_manager {
                    targets::PackageManager::Apt => assert!(
                        listed(lib.debian),
                        "{}: doctor suggests `{}` for {}, which system_packages lacks",
                        t.triple,
                        lib.debian,
                        lib.what
                    ),
                    targets::PackageManager::Brew => assert!(
                        listed(lib.homebrew) || MACOS_SDK_PROVIDES.contains(&lib.homebrew),
                        "{}: doctor suggests `{}` for {}, which system_packages lacks",
                        t.triple,
                        lib.homebrew,
                        lib.what
                    ),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn hints_follow_the_targets_package_manager() {
        let linux = targets::get("x86_64-unknown-linux-gnu").unwrap();
        let mac = targets::get("aarch64-apple-darwin").unwrap();
        assert_eq!(
            install_hint(&linux, "libffi-dev", "libffi"),
            "apt-get install libffi-dev"
        );
        assert_eq!(
            install_hint(&mac, "libffi-dev", "libffi"),
            "brew install libffi"
        );
    }
}
