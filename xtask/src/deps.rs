//! The dependency stage of portable Linux builds: the C libraries PyPy's
//! standard library needs, pinned in `recipes/deps.toml`, built static,
//! position-independent and with hidden symbols by the toolchain stage's
//! compiler, each into a cache entry keyed by every input.
//!
//! Sources come from Debian's source packages through apt's signed chain
//! (the suite's signed `Sources` index names each file's sha256), and are
//! checked once more against the pin before anything is built from them.
//! A library's build is a list of commands in the table; `--plan` prints the
//! same list that [`Library::commands`] gives the build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::apt;
use crate::manifest::BundledLibrary;
use crate::stage;
use crate::toolchain::Zig;

const TABLE: &str = include_str!("../../recipes/deps.toml");

/// Bumped when the layout of an entry or the meaning of the key changes.
const CACHE_FORMAT: u32 = 3;

/// Options of `cargo xtask deps`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Target triple [default: this machine's].
    #[arg(long)]
    pub target: Option<String>,
    /// Build only these libraries (repeatable) [default: every one of recipes/deps.toml].
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
    /// The cache folder [default: $PYPY_EMBED_CACHE or the user's cache folder].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// `cargo xtask deps`: the toolchain and dependency stages of `build-pypy`
/// alone; prints the combined prefix.
pub fn run(args: Args) -> Result<()> {
    let sh = Shell::new()?;
    let here = crate::targets::get(crate::targets::host_triple())?;
    let target = match &args.target {
        Some(triple) => crate::targets::get(triple)?,
        None => here.clone(),
    };
    let cache_root = args
        .cache_dir
        .clone()
        .unwrap_or_else(crate::paths::cache_root);
    let zig = crate::toolchain::ensure(&sh, &here, &target, &cache_root)?;
    let pin = &crate::toolchain::of(&here)?.zig_sha256;
    let only: Vec<&str> = args.only.iter().map(String::as_str).collect();
    let prefix = ensure(&sh, &zig, pin, &cache_root, &only)?;
    for lib in &prefix.libraries {
        eprintln!("deps: {} {} ({})", lib.name, lib.version, lib.license);
    }
    println!("{}", prefix.dir.display());
    Ok(())
}

/// The flags every library is compiled with: static objects that can go into
/// a shared library, whose symbols stay inside it, and no debug information
/// (zig adds it unless told not to, and it carries build paths).
pub const CFLAGS: &str = "-O2 -g0 -fPIC -fvisibility=hidden";

/// `recipes/deps.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub debian: DebianSource,
    pub library: Vec<Library>,
}

/// The Debian suite the sources come from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DebianSource {
    pub mirror: String,
    pub suite: String,
}

/// One pinned C library and how to build it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Library {
    pub name: String,
    /// Upstream's version.
    pub version: String,
    /// SPDX licence expression.
    pub license: String,
    /// Licence texts inside the unpacked source, shipped in the archive.
    pub license_files: Vec<String>,
    /// Debian's source package and its version in the suite.
    pub debian_package: String,
    pub debian_version: String,
    /// The upstream tarball (Debian's `.orig`), byte for byte upstream's, and its sha256.
    pub orig: String,
    pub sha256: String,
    /// Our patches (paths under `recipes/patches/`), applied in order to the
    /// unpacked source before the build.
    #[serde(default)]
    pub patches: Vec<String>,
    /// Commands run in the unpacked source: a string is split on spaces, a
    /// list is the arguments as they are. `{prefix}`, `{jobs}`, `{cc}`,
    /// `{ar}`, `{ranlib}` and `{cflags}` are filled in. The toolchain's `CC`,
    /// `AR`, `RANLIB` and [`CFLAGS`] are in the environment.
    pub build: Vec<Command>,
    /// What the install must leave in the prefix (checked).
    pub produces: Vec<String>,
    /// What differs for another architecture, keyed by its name as zig's
    /// target starts (`aarch64`): build commands or patches in place of the
    /// ones above. Resolved by [`Library::for_arch`] before anything else
    /// reads the library, so a library without an entry for the arch keeps
    /// its cache key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arch: BTreeMap<String, ArchBuild>,
}

/// The parts of a library's build that one architecture does differently.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArchBuild {
    pub build: Option<Vec<Command>>,
    pub patches: Option<Vec<String>>,
}

/// One build command of the table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Command {
    Words(String),
    Argv(Vec<String>),
}

impl Command {
    fn argv(&self) -> Vec<String> {
        match self {
            Command::Words(line) => line.split_whitespace().map(str::to_string).collect(),
            Command::Argv(argv) => argv.clone(),
        }
    }
}

/// The pinned libraries.
pub fn table() -> Result<Table> {
    let table: Table = toml::from_str(TABLE).context("recipes/deps.toml is invalid")?;
    for lib in &table.library {
        if crate::recipe::normalize_sha256(&lib.sha256).as_deref() != Some(lib.sha256.as_str()) {
            bail!(
                "recipes/deps.toml: {}'s sha256 is not 64 lower-case hex digits",
                lib.name
            );
        }
    }
    Ok(table)
}

/// The pinned libraries as they are built for `zig_target` (see [`Library::for_arch`]).
pub fn table_for(zig_target: &str) -> Result<Table> {
    let mut table = table()?;
    for lib in &mut table.library {
        *lib = lib.for_arch(zig_target);
    }
    Ok(table)
}

/// What fills a build command's placeholders.
#[derive(Debug, Clone)]
pub struct BuildVars {
    pub prefix: PathBuf,
    pub jobs: usize,
    pub cflags: String,
    /// The GNU triple of the target (`aarch64-linux-gnu`), for `--host`.
    pub host: String,
    pub zig: Zig,
}

impl BuildVars {
    /// The values for building `lib` from `src` into `prefix`.
    pub fn new(lib: &Library, zig: &Zig, src: &Path, prefix: &Path, jobs: usize) -> BuildVars {
        BuildVars {
            prefix: prefix.to_path_buf(),
            jobs,
            // Assertions carry `__FILE__`: the build folder must not reach the binaries.
            cflags: format!(
                "{CFLAGS} -ffile-prefix-map={}=/usr/src/{}-{}",
                src.display(),
                lib.name,
                lib.version
            ),
            host: gnu_triple(&zig.target).to_string(),
            zig: zig.clone(),
        }
    }
}

/// The GNU triple of a zig target: `aarch64-linux-gnu.2.17` is `aarch64-linux-gnu`.
pub fn gnu_triple(zig_target: &str) -> &str {
    zig_target.split('.').next().unwrap_or(zig_target)
}

impl Library {
    /// The library as it is built for `zig_target`'s architecture: that
    /// architecture's commands and patches in place of the default ones.
    pub fn for_arch(&self, zig_target: &str) -> Library {
        let arch = zig_target.split('-').next().unwrap_or_default();
        let mut lib = self.clone();
        if let Some(over) = lib.arch.remove(arch) {
            lib.build = over.build.unwrap_or(lib.build);
            lib.patches = over.patches.unwrap_or(lib.patches);
        }
        lib.arch.clear();
        lib
    }

    /// The build's commands with the placeholders filled in, as argument lists.
    pub fn commands(&self, vars: &BuildVars) -> Vec<Vec<String>> {
        let fill = |word: &str| {
            word.replace("{prefix}", &vars.prefix.display().to_string())
                .replace("{jobs}", &vars.jobs.to_string())
                .replace("{cflags}", &vars.cflags)
                .replace("{host}", &vars.host)
                // The wrappers are first on the build's PATH (Zig::build_env).
                .replace("{cc}", "cc")
                .replace("{ar}", "ar")
                .replace("{ranlib}", "ranlib")
        };
        let patches = self
            .patch_paths()
            .into_iter()
            .map(|p| crate::patch::apply_command(&p));
        patches
            .chain(
                self.build
                    .iter()
                    .map(|c| c.argv().iter().map(|w| fill(w)).collect()),
            )
            .collect()
    }

    /// The library's patches, in `recipes/patches/`.
    pub fn patch_paths(&self) -> Vec<PathBuf> {
        let dir = crate::paths::recipes_dir().join("patches");
        self.patches.iter().map(|p| dir.join(p)).collect()
    }

    /// The cache key: everything that shapes the built library, its patches' bytes too.
    pub fn key(&self, zig_pin: &str, zig_target: &str) -> String {
        let mut h = Sha256::new();
        h.update(CACHE_FORMAT.to_le_bytes());
        h.update(serde_json::to_vec(self).expect("a library serialises"));
        for patch in self.patch_paths() {
            // A missing patch makes the build fail, with its name; the key only needs to differ.
            h.update(fs_err::read(&patch).unwrap_or_default());
        }
        for part in [zig_pin, zig_target, CFLAGS] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }

    /// The manifest's record of this library; its licence texts go to `licenses/<name>/`.
    pub fn record(&self, suite: &str) -> BundledLibrary {
        BundledLibrary {
            name: self.name.clone(),
            version: self.version.clone(),
            source: format!(
                "Debian {suite} source package {} {} ({})",
                self.debian_package, self.debian_version, self.orig
            ),
            source_sha256: self.sha256.clone(),
            license: self.license.clone(),
            license_file: format!("{LICENSES_DIR}/{}", self.name),
        }
    }
}

/// Where in the archive (and in a combined prefix) the licence texts go.
pub const LICENSES_DIR: &str = "licenses";

/// A prefix with every library of the table: `include/`, `lib/` (static
/// archives and pkg-config files) and `licenses/<name>/`.
#[derive(Debug, Clone)]
pub struct Prefix {
    pub dir: PathBuf,
    pub libraries: Vec<BundledLibrary>,
}

/// A portable build's compiler and C libraries, as the translation and
/// package.py are given them.
#[derive(Debug, Clone)]
pub struct Portable {
    pub zig: Zig,
    pub prefix: Prefix,
}

impl Portable {
    /// The environment of the translation and of package.py, over the caller's.
    pub fn env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        let prefix = &self.prefix.dir;
        let mut env = self.zig.env();
        env.extend([
            // distutils links the stdlib's cffi modules with this, not with `CC`.
            // zig links its own runtime (compiler_rt, and UBSan's) in the
            // mode the link's `-O` names: without one it builds them for
            // debugging and puts UBSan's runtime in every cffi module. The
            // parts of glibc zig compiles itself (atexit, the stat calls)
            // carry debug info naming its folders and the folder of the
            // first build that needed them, so links drop debug info.
            (
                "LDSHARED",
                format!("{} -shared -O2 -Wl,--strip-debug", self.zig.cc().display()).into(),
            ),
            // RPython searches `$PYPY_LOCALBASE/include` and `/lib` first.
            ("PYPY_LOCALBASE", prefix.clone().into_os_string()),
            // pkg-config sees our libraries only, never the machine's.
            (
                "PKG_CONFIG_LIBDIR",
                prefix.join("lib/pkgconfig").into_os_string(),
            ),
            // A compile without an `-O` of its own (RPython compiles some
            // helpers so) is a debug build to zig, with UBSan's checks, whose
            // runtime the release-mode links below do not bring.
            // zig hands clang `-O2` whatever `-O` it is given; RPython asks
            // for `-O3` (and gcc builds get it), so clang's own front end
            // is told the same, after zig's flag.
            (
                "CFLAGS",
                format!(
                    "-I{} -g0 -fno-sanitize=undefined -Xclang -O3",
                    prefix.join("include").display()
                )
                .into(),
            ),
            // vmprof needs `_Unwind_Backtrace`: zig links no libgcc_s, so its
            // own libunwind. PyPy's `_curses_build.py` links ncursesw and panelw
            // only (a shared ncursesw brings tinfo by itself, a static one
            // cannot). lld takes an archive's members only where a symbol is
            // missing, wherever the archive stands, so both cost nothing elsewhere.
            (
                "LDFLAGS",
                format!(
                    "-O2 -Wl,--strip-debug -L{} -lunwind -ltinfo",
                    prefix.join("lib").display()
                )
                .into(),
            ),
        ]);
        env
    }

    /// The environment of package.py: [`Portable::env`], with an `-O` of
    /// the compile's own. In the build tree PyPy's `sysconfig` gives the
    /// stdlib's cffi modules no optimisation flag, which zig takes for a
    /// debug build with UBSan's checks in every function.
    pub fn package_env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        let mut env = self.env();
        for (var, value) in &mut env {
            if *var == "CFLAGS" {
                let mut flags = std::ffi::OsString::from("-O2 ");
                flags.push(&*value);
                *value = flags;
            }
        }
        env
    }
}

/// The toolchain stage and then the dependency stage for `target`, run on
/// this machine: the compiler and every library of the table.
pub fn portable_for(
    sh: &Shell,
    target: &crate::targets::Target,
    cache_root: &Path,
) -> Result<Portable> {
    let here = crate::targets::get(crate::targets::host_triple())?;
    let zig = crate::toolchain::ensure(sh, &here, target, cache_root)
        .context("preparing the portable toolchain")?;
    let pin = &crate::toolchain::of(&here)?.zig_sha256;
    let prefix = ensure(sh, &zig, pin, cache_root, &[])
        .context("building the C libraries for the portable build")?;
    Ok(Portable { zig, prefix })
}

/// Builds (or finds in the cache) each named library, or every library of the
/// table when `only` is empty, and combines them into one prefix.
pub fn ensure(
    sh: &Shell,
    zig: &Zig,
    zig_pin: &str,
    cache_root: &Path,
    only: &[&str],
) -> Result<Prefix> {
    let table = table_for(&zig.target)?;
    let chosen: Vec<&Library> = table
        .library
        .iter()
        .filter(|l| only.is_empty() || only.contains(&l.name.as_str()))
        .collect();
    for name in only {
        if !chosen.iter().any(|l| l.name == *name) {
            bail!("recipes/deps.toml has no library `{name}`");
        }
    }
    let root = cache_root.join("deps");
    let mut entries = BTreeMap::new();
    for lib in &chosen {
        let entry = ensure_one(sh, &table.debian, lib, zig, zig_pin, &root)
            .with_context(|| format!("building {} {} for {}", lib.name, lib.version, zig.target))?;
        entries.insert(lib.name.clone(), entry);
    }
    let combined = combined_dir(&root, &chosen, zig_pin, &zig.target);
    if !combined.join(".complete").is_file() {
        let tmp = tempfile::tempdir_in(&root)?;
        for entry in entries.values() {
            pypy_archive::fs::copy_tree(entry, tmp.path())
                .with_context(|| format!("combining {} into one prefix", entry.display()))?;
        }
        pypy_archive::fs::write_atomic(&tmp.path().join(".complete"), b"")?;
        pypy_archive::fs::place_dir(&tmp.keep(), &combined)
            .with_context(|| format!("placing the combined prefix at {}", combined.display()))?;
    }
    Ok(Prefix {
        dir: combined,
        libraries: chosen
            .iter()
            .map(|l| l.record(&table.debian.suite))
            .collect(),
    })
}

/// One library as `build-pypy --plan` shows it: where it goes and what runs.
pub struct PlannedBuild {
    pub library: Library,
    pub entry: PathBuf,
    /// The source folder and the commands, as [`ensure`] would run them
    /// (in a fresh folder, shown as `<work>`).
    pub src: PathBuf,
    pub commands: Vec<Vec<String>>,
}

/// What [`ensure`] would build for every library, and the prefix it would
/// combine them into; nothing is run.
pub fn plan(
    zig: &Zig,
    zig_pin: &str,
    cache_root: &Path,
    jobs: usize,
) -> Result<(Prefix, Vec<PlannedBuild>)> {
    let table = table_for(&zig.target)?;
    let root = cache_root.join("deps");
    let work = root.join("<work>");
    let (src, prefix) = (work.join("src"), work.join("prefix"));
    let chosen: Vec<&Library> = table.library.iter().collect();
    let builds = chosen
        .iter()
        .map(|lib| PlannedBuild {
            library: (*lib).clone(),
            entry: entry_dir(&root, lib, zig_pin, &zig.target),
            src: src.clone(),
            commands: lib.commands(&BuildVars::new(lib, zig, &src, &prefix, jobs)),
        })
        .collect();
    let prefix = Prefix {
        dir: combined_dir(&root, &chosen, zig_pin, &zig.target),
        libraries: chosen
            .iter()
            .map(|l| l.record(&table.debian.suite))
            .collect(),
    };
    Ok((prefix, builds))
}

/// The folder of one library's cache entry.
pub fn entry_dir(root: &Path, lib: &Library, zig_pin: &str, zig_target: &str) -> PathBuf {
    let key = lib.key(zig_pin, zig_target);
    root.join(format!("{}-{}-{}", lib.name, lib.version, &key[..16]))
}

/// The folder that combines `chosen`: its name is a hash of their keys.
pub fn combined_dir(root: &Path, chosen: &[&Library], zig_pin: &str, zig_target: &str) -> PathBuf {
    let keys: Vec<String> = chosen.iter().map(|l| l.key(zig_pin, zig_target)).collect();
    let hash = hex::encode(Sha256::digest(keys.join(" ")));
    root.join(format!("prefix-{}", &hash[..16]))
}

/// One library's cache entry (its prefix), built under the entry's lock if missing.
fn ensure_one(
    sh: &Shell,
    debian: &DebianSource,
    lib: &Library,
    zig: &Zig,
    zig_pin: &str,
    root: &Path,
) -> Result<PathBuf> {
    let entry = entry_dir(root, lib, zig_pin, &zig.target);
    let what = format!("another run building {}", lib.name);
    let Some(_lock) = crate::lock::to_make(&entry, &what, || entry.join(".complete").is_file())?
    else {
        return Ok(entry);
    };
    let orig = source(sh, debian, lib, root)?;
    let work = tempfile::Builder::new()
        .prefix(&format!(".{}-build-", lib.name))
        .tempdir_in(root)?;
    let src = work.path().join("src");
    let prefix = work.path().join("prefix");
    fs_err::create_dir_all(&src)?;
    cmd!(sh, "tar -xf {orig} -C {src} --strip-components=1")
        .quiet()
        .run()
        .with_context(|| format!("unpacking {}", orig.display()))?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let vars = BuildVars::new(lib, zig, &src, &prefix, jobs);
    eprintln!(
        "deps: building {} {} ({})",
        lib.name, lib.version, zig.target
    );
    let started = std::time::Instant::now();
    let _dir = sh.push_dir(&src);
    let env: Vec<(&str, std::ffi::OsString)> = zig
        .build_env(crate::env::var_os("PATH"))
        .into_iter()
        .chain([("CFLAGS", vars.cflags.clone().into())])
        .chain([("SOURCE_DATE_EPOCH", "0".into())])
        // `git apply` of the patches must not find a repository above the work folder.
        .chain([(
            "GIT_CEILING_DIRECTORIES",
            work.path().as_os_str().to_owned(),
        )])
        .collect();
    let mut log = String::new();
    for patch in lib.patch_paths() {
        if !patch.is_file() {
            bail!("{}'s patch {} is missing", lib.name, patch.display());
        }
    }
    for command in lib.commands(&vars) {
        let output = stage::Command::new(command.clone())
            .envs(env.iter().cloned())
            .cmd(sh)?
            .quiet()
            .ignore_status()
            .output()
            .with_context(|| format!("starting `{}`", command.join(" ")))?;
        log.push_str(&format!("$ {}\n", command.join(" ")));
        log.push_str(&String::from_utf8_lossy(&output.stdout));
        log.push_str(&String::from_utf8_lossy(&output.stderr));
        if !output.status.success() {
            let kept = root.join(format!("{}-failed.log", lib.name));
            fs_err::write(&kept, &log)?;
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            bail!(
                "`{}` failed ({}); the whole log is in {}; its end:\n{}",
                command.join(" "),
                output.status,
                kept.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    for produced in &lib.produces {
        if !prefix.join(produced).exists() {
            bail!(
                "the build of {} finished without {produced} in its prefix \
                 (recipes/deps.toml `produces`)",
                lib.name
            );
        }
    }
    let licenses = prefix.join(LICENSES_DIR).join(&lib.name);
    fs_err::create_dir_all(&licenses)?;
    for file in &lib.license_files {
        let name = Path::new(file).file_name().context("a licence file name")?;
        fs_err::copy(src.join(file), licenses.join(name))
            .with_context(|| format!("{} has no licence file {file}", lib.name))?;
    }
    // Only what a later build links with; the rest (programs, manuals,
    // libtool and CMake files that name the work folder) is left out.
    for extra in ["bin", "share", "sbin", "etc", "var", "lib/cmake"] {
        let dir = prefix.join(extra);
        if dir.exists() {
            fs_err::remove_dir_all(&dir)?;
        }
    }
    relocate_prefix(&prefix)?;
    for folder in [work.path(), root] {
        if let Some((file, _)) = records_folder(&prefix.join("lib"), folder)? {
            bail!(
                "the build of {} recorded the folder {} in {}: the library would differ \
                 between machines and caches; its build commands in recipes/deps.toml must \
                 give that path another way (a fixed value, -ffile-prefix-map)",
                lib.name,
                folder.display(),
                file.display()
            );
        }
    }
    fs_err::write(prefix.join(format!("build-{}.log", lib.name)), &log)?;
    pypy_archive::fs::write_atomic(&prefix.join(".complete"), b"")?;
    drop(_dir);
    pypy_archive::fs::replace_dir(&prefix, &entry)
        .with_context(|| format!("placing {} in the cache", entry.display()))?;
    eprintln!(
        "deps: {} built in {:.0} s",
        lib.name,
        started.elapsed().as_secs_f64()
    );
    Ok(entry)
}

/// The first file under `dir` whose bytes contain the path `folder`, with
/// the offset: a build folder or cache path in a library makes its bytes
/// depend on where it was built.
pub fn records_folder(dir: &Path, folder: &Path) -> Result<Option<(PathBuf, usize)>> {
    let needle = folder.as_os_str().as_encoded_bytes();
    if needle.is_empty() || !dir.is_dir() {
        return Ok(None);
    }
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry?;
        if !entry.file_type().is_file() {
            continue;
        }
        let bytes = fs_err::read(entry.path())?;
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            return Ok(Some((entry.path().to_path_buf(), at)));
        }
    }
    Ok(None)
}

/// Makes the installed prefix usable from wherever the cache entry ends up:
/// pkg-config files find it relative to themselves, libtool archives go.
fn relocate_prefix(prefix: &Path) -> Result<()> {
    let lib = prefix.join("lib");
    if let Ok(entries) = fs_err::read_dir(&lib) {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "la") {
                fs_err::remove_file(entry.path())?;
            }
        }
    }
    let pkgconfig = lib.join("pkgconfig");
    if let Ok(entries) = fs_err::read_dir(&pkgconfig) {
        let from = prefix.display().to_string();
        for entry in entries.flatten() {
            let path = entry.path();
            let text = fs_err::read_to_string(&path)?;
            fs_err::write(&path, text.replace(&from, "${pcfiledir}/../.."))?;
        }
    }
    Ok(())
}

/// The library's upstream tarball, fetched through apt once and checked against the pin.
fn source(sh: &Shell, debian: &DebianSource, lib: &Library, root: &Path) -> Result<PathBuf> {
    let sources = root.join("sources");
    let path = sources.join(&lib.orig);
    if path.is_file() && crate::hash::sha256_file(&path)? == lib.sha256 {
        return Ok(path);
    }
    let cache_root = root.parent().context("the deps folder has a parent")?;
    let suite = apt::Suite::new(cache_root, &debian.mirror, &debian.suite, &["deb-src"]);
    fs_err::create_dir_all(&sources)?;
    let tmp = tempfile::tempdir_in(&sources)?;
    suite.source(sh, &lib.debian_package, &lib.debian_version, tmp.path())?;
    let got_path = tmp.path().join(&lib.orig);
    if !got_path.is_file() {
        bail!(
            "`apt-get source {}={}` gave no {}; the pin in recipes/deps.toml names another file",
            lib.debian_package,
            lib.debian_version,
            lib.orig
        );
    }
    let got = crate::hash::sha256_file(&got_path)?;
    if got != lib.sha256 {
        bail!(
            "{} has sha256 {got}, but recipes/deps.toml pins {}; nothing was cached",
            lib.orig,
            lib.sha256
        );
    }
    fs_err::rename(&got_path, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zig() -> Zig {
        Zig {
            zig: "/z/zig".into(),
            bin: "/z/bin".into(),
            target: "x86_64-linux-gnu.2.17".into(),
        }
    }

    #[test]
    fn the_table_pins_every_library_the_stdlib_needs() {
        let table = table().unwrap();
        let names: Vec<&str> = table.library.iter().map(|l| l.name.as_str()).collect();
        for needed in [
            "zlib", "bzip2", "xz", "libffi", "sqlite", "openssl", "ncurses", "gdbm",
        ] {
            assert!(names.contains(&needed), "{needed} is not pinned: {names:?}");
        }
        for lib in &table.library {
            assert!(
                !lib.license_files.is_empty(),
                "{} ships no licence",
                lib.name
            );
            assert!(!lib.produces.is_empty(), "{} checks nothing", lib.name);
            assert!(lib.orig.contains(".orig."), "{}: {}", lib.name, lib.orig);
        }
    }

    #[test]
    fn commands_fill_in_the_placeholders_word_by_word() {
        let lib = Library {
            build: vec![
                Command::Words("./configure --prefix={prefix} --static".into()),
                Command::Words("make -j{jobs} CC={cc} CFLAGS={cflags}".into()),
                Command::Argv(vec!["sh".into(), "-c".into(), "echo {prefix} a  b".into()]),
            ],
            patches: vec!["deps/x.patch".into()],
            ..table().unwrap().library[0].clone()
        };
        let vars = BuildVars {
            prefix: "/p".into(),
            jobs: 3,
            cflags: "-O2 -fPIC".into(),
            host: "aarch64-linux-gnu".into(),
            zig: zig(),
        };
        let patch = crate::paths::recipes_dir().join("patches/deps/x.patch");
        assert_eq!(
            lib.commands(&vars),
            vec![
                crate::patch::apply_command(&patch),
                ["./configure", "--prefix=/p", "--static"]
                    .map(String::from)
                    .to_vec(),
                ["make", "-j3", "CC=cc", "CFLAGS=-O2 -fPIC"]
                    .map(String::from)
                    .to_vec(),
                ["sh", "-c", "echo /p a  b"].map(String::from).to_vec(),
            ]
        );
    }

    #[test]
    fn a_library_recording_its_build_folder_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib");
        fs_err::create_dir_all(lib.join("pkgconfig")).unwrap();
        fs_err::write(lib.join("libz.a"), b"\x7fELF clean").unwrap();
        let work = Path::new("/cache/deps/.openssl-build-x1/prefix");
        assert_eq!(records_folder(&lib, work).unwrap(), None);
        let mut bytes = b"\0ENGINESDIR: \"".to_vec();
        bytes.extend(work.as_os_str().as_encoded_bytes());
        fs_err::write(lib.join("libcrypto.a"), &bytes).unwrap();
        assert_eq!(
            records_folder(&lib, work).unwrap(),
            Some((lib.join("libcrypto.a"), 14))
        );
    }

    #[test]
    fn portable_links_and_the_stdlibs_cffi_builds_are_not_debug_builds() {
        let portable = Portable {
            zig: zig(),
            prefix: Prefix {
                dir: "/c/deps/prefix-x".into(),
                libraries: Vec::new(),
            },
        };
        let get = |env: &[(&str, std::ffi::OsString)], var: &str| {
            env.iter()
                .find(|(v, _)| *v == var)
                .map(|(_, value)| value.to_string_lossy().into_owned())
                .unwrap()
        };
        let env = portable.env();
        assert!(get(&env, "LDFLAGS").starts_with("-O2 "), "{env:?}");
        assert!(
            get(&env, "LDSHARED").ends_with(" -shared -O2 -Wl,--strip-debug"),
            "{env:?}"
        );
        assert!(
            get(&env, "LDFLAGS").contains("-Wl,--strip-debug"),
            "{env:?}"
        );
        // The translation's own -O3 must not be overridden by ours.
        assert!(!get(&env, "CFLAGS").contains("-O2"), "{env:?}");
        let package = portable.package_env();
        assert!(get(&package, "CFLAGS").starts_with("-O2 -I/c/deps/prefix-x/include"));
        assert!(
            get(&env, "CFLAGS").contains("-fno-sanitize=undefined"),
            "{env:?}"
        );
    }

    #[test]
    fn the_wrappers_come_first_on_the_build_path_by_short_names() {
        let env = zig().build_env(Some("/usr/bin:/bin".into()));
        let get = |var: &str| env.iter().find(|(v, _)| *v == var).unwrap().1.clone();
        assert_eq!(get("PATH"), "/z/bin:/usr/bin:/bin");
        assert_eq!(get("CC"), "cc");
        assert_eq!(get("AR"), "ar");
    }

    #[test]
    fn an_architectures_entry_replaces_the_build_and_keeps_the_others_keys() {
        let table = table().unwrap();
        let openssl = table.library.iter().find(|l| l.name == "openssl").unwrap();
        let arm = openssl.for_arch("aarch64-linux-gnu.2.17");
        assert!(arm.arch.is_empty());
        assert_eq!(arm.patches, ["deps/openssl-hidden-asm-symbols-arm.patch"]);
        assert!(
            arm.build[0].argv().contains(&"linux-aarch64".to_string()),
            "{:?}",
            arm.build
        );
        // x86-64 has no entry: its library, and so its cache key, is the
        // table's own without the arch table, as before arch entries existed.
        let x86 = openssl.for_arch("x86_64-linux-gnu.2.17");
        let without = Library {
            arch: BTreeMap::new(),
            ..openssl.clone()
        };
        assert_eq!(
            serde_json::to_string(&x86).unwrap(),
            serde_json::to_string(&without).unwrap()
        );
        assert!(!serde_json::to_string(&x86).unwrap().contains("arch"));
        assert_ne!(
            arm.key("pin", "aarch64-linux-gnu.2.17"),
            without.key("pin", "aarch64-linux-gnu.2.17")
        );
        // Every patch an entry names exists.
        for lib in &table.library {
            for over in lib.arch.values() {
                for patch in over.patches.iter().flatten() {
                    let path = crate::paths::recipes_dir().join("patches").join(patch);
                    assert!(path.is_file(), "{}: {patch} is missing", lib.name);
                }
            }
        }
    }

    #[test]
    fn host_is_the_gnu_triple_of_zigs_target() {
        assert_eq!(gnu_triple("aarch64-linux-gnu.2.17"), "aarch64-linux-gnu");
        assert_eq!(gnu_triple("x86_64-linux-gnu"), "x86_64-linux-gnu");
        let lib = Library {
            build: vec![Command::Words("./configure --host={host}".into())],
            patches: Vec::new(),
            ..table().unwrap().library[0].clone()
        };
        let zig = Zig {
            target: "aarch64-linux-gnu.2.17".into(),
            ..zig()
        };
        let vars = BuildVars::new(&lib, &zig, Path::new("/s"), Path::new("/p"), 1);
        assert_eq!(
            lib.commands(&vars),
            vec![vec![
                "./configure".to_string(),
                "--host=aarch64-linux-gnu".into()
            ]]
        );
    }

    #[test]
    fn the_key_changes_with_every_input() {
        let lib = table().unwrap().library[0].clone();
        let base = lib.key("pin", "x86_64-linux-gnu.2.17");
        assert_eq!(base, lib.key("pin", "x86_64-linux-gnu.2.17"));
        assert_ne!(base, lib.key("other pin", "x86_64-linux-gnu.2.17"));
        assert_ne!(base, lib.key("pin", "aarch64-linux-gnu.2.17"));
        let changed = Library {
            sha256: "0".repeat(64),
            ..lib.clone()
        };
        assert_ne!(base, changed.key("pin", "x86_64-linux-gnu.2.17"));
    }
}
