//! Lays out a translated tree the way PyPy's release script does and archives it.
//!
//! Third stage of `build-pypy`. PyPy's own `pypy/tool/release/package.py`
//! builds the standard library's cffi modules and lays out the release
//! tree; we run it (see [`package_py_args`] for why) and then send its tree
//! through the same pipeline as `repackage` (relocate, manifest, archive,
//! verify, publish), so that the repackage tests cover everything after
//! the layout step.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::archive::{PublishOptions, Published};
use crate::manifest::Origin;
use crate::recipe::Recipe;
use crate::stage::Command;
use crate::{paths, targets};

/// Options of `cargo xtask package`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The translated PyPy source tree (its `pypy/goal` holds `pypy3.x-c` and libpypy).
    pub source_tree: PathBuf,
    /// The recipe it was built from (origin in the manifest, extra allowed libraries).
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Target triple of the translation.
    #[arg(long, default_value = targets::host_triple())]
    pub target: String,
    /// Where the archive, its `.sha256` and `SHA256SUMS` go.
    #[arg(long, default_value_os_t = paths::dist_dir())]
    pub out: PathBuf,
    /// The Python that runs `package.py` (default: the translated launcher itself).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Build the cffi modules with the portable toolchain and libraries (Linux;
    /// for a tree translated by them) and require the portability policy.
    #[arg(long)]
    pub portable: bool,
    /// The cache folder [default: $PYPY_EMBED_CACHE or the user's cache folder].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let target = targets::get(&args.target)?;
    let recipe = args.recipe.as_deref().map(Recipe::load).transpose()?;
    let portable = if args.portable {
        let sh = Shell::new()?;
        let cache_root = args.cache_dir.clone().unwrap_or_else(paths::cache_root);
        Some(crate::deps::portable_for(&sh, &target, &cache_root)?)
    } else {
        None
    };
    let published = package_translated(&PackageInput {
        portable,
        cross: None,
        cache_root: args.cache_dir.clone(),
        source_tree: args.source_tree,
        target,
        recipe,
        out_dir: args.out,
        python: args.python,
        origin: None,
    })?;
    println!("{}", published.summary());
    Ok(())
}

/// Everything `package` needs; what `build-pypy` fills in after translating.
#[derive(Debug, Clone)]
pub struct PackageInput {
    /// The source tree the translation ran in.
    pub source_tree: PathBuf,
    pub target: targets::Target,
    /// The recipe, for the manifest's origin and the extra allowed libraries.
    pub recipe: Option<Recipe>,
    pub out_dir: PathBuf,
    /// Python for `package.py`; `None` uses the translated launcher.
    pub python: Option<PathBuf>,
    /// Where the build really came from and with which options (`build-pypy`
    /// knows: a `--source-dir` checkout, command-line overrides); `None`
    /// derives it from the recipe with [`origin_for`].
    pub origin: Option<Origin>,
    /// A portable build's compiler and libraries (`None`: the machine's own).
    pub portable: Option<crate::deps::Portable>,
    /// A cross-build's emulator, which runs the translated interpreter
    /// (`None`: the tree was translated for this machine).
    pub cross: Option<crate::emulator::Cross>,
    /// The cache the emulator lives in, for the archive's verification.
    pub cache_root: Option<PathBuf>,
}

/// The two outputs of a `--shared` translation in `pypy/goal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub launcher: PathBuf,
    pub libpypy: PathBuf,
    /// The Python version in the outputs' names (`3.11`); the archive's
    /// versions are asked from the interpreter later.
    pub py: String,
}

/// Finds `pypy<py>-c` and `libpypy<py>-c.so` (names from the target table)
/// in `<tree>/pypy/goal`.
pub fn find_translated(tree: &Path, target: &targets::Target) -> Result<Translated> {
    let goal = tree.join("pypy").join("goal");
    if !goal.is_dir() {
        bail!(
            "{} has no pypy/goal folder; pass the PyPy source tree the translation ran in",
            tree.display()
        );
    }
    let pattern = target.translated_launcher_name("{py}");
    let (prefix, suffix) = pattern.split_once("{py}").unwrap_or((&pattern, ""));
    let mut launchers: Vec<(PathBuf, String)> = fs_err::read_dir(&goal)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let py = name.strip_prefix(prefix)?.strip_suffix(suffix)?.to_string();
            let (a, b) = py.split_once('.')?;
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
            (digits(a) && digits(b) && e.path().is_file()).then(|| (e.path(), py))
        })
        .collect();
    launchers.sort();
    let (launcher, py) = match launchers.as_slice() {
        [] => bail!(
            "no translated launcher ({prefix}<version>{suffix}) in {}; did the translation \
             finish (`cargo xtask translate`)?",
            goal.display()
        ),
        [one] => one.clone(),
        many => bail!(
            "several translated launchers in {}: {}; remove the stale ones",
            goal.display(),
            many.iter()
                .map(|(p, _)| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let libpypy = goal.join(target.libpypy_name(&py));
    if !libpypy.is_file() {
        bail!(
            "{} is missing beside {}; translate with --shared",
            libpypy.display(),
            launcher.display()
        );
    }
    Ok(Translated {
        launcher,
        libpypy,
        py,
    })
}

/// The arguments for `package.py`, which writes the release tree to
/// `<builddir>/<name>`.
///
/// Why PyPy's own script rather than our own layout code: it knows, for
/// the PyPy version at hand, which cffi modules of the standard library to
/// build (`lib_pypy/pypy_tools/build_cffi_imports.py`) and how, how
/// `lib-python/3` and `lib_pypy` merge into `lib/pypy<py>`, which files it
/// leaves out, and the platform quirks (Windows DLLs, stripping). These
/// change between releases; re-implementing them would drift.
/// `--no-embedded-dependencies`: otherwise it downloads and builds OpenSSL,
/// xz… from the network; we link the system libraries the target table
/// lists (and allows). `--no-make-portable`: we relocate ourselves and keep
/// system libraries out of the archive (they are in the allow-list).
/// `--no-keep-debug`: strip, as PyPy's releases are stripped.
///
/// A portable build leaves `_tkinter` out (`--without-_tkinter`): Tcl/Tk
/// and the X11 libraries it needs are not bundled (docs/portability.md).
pub fn package_py_args(tree: &Path, name: &str, builddir: &Path, portable: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        tree.join("pypy/tool/release/package.py").into(),
        format!("--archive-name={name}").into(),
    ];
    let mut builddir_arg = OsString::from("--builddir=");
    builddir_arg.push(builddir);
    args.push(builddir_arg);
    for flag in [
        "--no-embedded-dependencies",
        "--no-make-portable",
        "--no-keep-debug",
    ] {
        args.push(flag.into());
    }
    if portable {
        args.push("--without-_tkinter".into());
    }
    args
}

/// How a build's compilers and programs run: a portable build's compiler
/// and libraries, and a cross-build's emulator (`None`: the machine's own).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tools<'a> {
    pub portable: Option<&'a crate::deps::Portable>,
    pub emulator: Option<&'a crate::emulator::Emulator>,
}

/// package.py run by `python` in `tree`, with the environment its cffi
/// builds need: the target table's libraries and, for a portable build,
/// the same compiler and libraries as the translation; for a cross-build,
/// where the emulator finds the target's C library.
pub fn package_py_command(
    python: &Path,
    tree: &Path,
    (name, builddir): (&str, &Path),
    target: &targets::Target,
    tools: Tools<'_>,
    current: impl Fn(&str) -> Option<OsString>,
) -> Result<Command> {
    let Tools { portable, emulator } = tools;
    let mut argv = vec![python.display().to_string()];
    argv.extend(
        package_py_args(tree, name, builddir, portable.is_some())
            .iter()
            .map(|a| a.to_string_lossy().into_owned()),
    );
    Ok(Command::new(argv)
        .envs(target.build_env(current)?)
        .envs(portable.iter().flat_map(|p| p.package_env()))
        .envs(emulator.map(|e| e.env())))
}

/// The manifest's origin for a translation from `recipe` (or from a local
/// checkout when there is no recipe: its git commit, when it is one).
pub fn origin_for(tree: &Path, recipe: Option<&Recipe>, target: &targets::Target) -> Origin {
    match recipe {
        Some(r) => {
            // What `translate` records for the same recipe and target.
            let options = crate::translate::Spec::planned(
                r,
                tree,
                String::new(),
                &target.triple,
                &crate::translate::RunOptions::default(),
            )
            .recorded_options();
            Origin::recipe(&r.name, &r.source.url, &r.source.sha256, options)
        }
        None => Origin::checkout(git_commit(tree)),
    }
}

fn git_commit(tree: &Path) -> Option<String> {
    crate::git::head_if_checkout(&Shell::new().ok()?, tree)
}

/// Libraries the recipe allows beyond the target table.
pub fn extra_allowed(recipe: Option<&Recipe>, target: &targets::Target) -> Vec<String> {
    recipe
        .map(|r| r.allowed_libraries(&target.triple))
        .unwrap_or_default()
}

/// Runs `package.py` on a translated tree, then relocates, writes the
/// manifest and the archive, verifies it and publishes it to `out_dir`.
pub fn package_translated(input: &PackageInput) -> Result<Published> {
    let tree = &input.source_tree;
    let translated = find_translated(tree, &input.target)?;
    fs_err::create_dir_all(&input.out_dir)?;
    let build = tempfile::Builder::new()
        .prefix(".pypy-package-")
        .tempdir_in(&input.out_dir)
        .context("creating package.py's build folder")?;
    let name = format!("pypy{}-release-tree", translated.py);
    let python = input
        .python
        .clone()
        .unwrap_or_else(|| translated.launcher.clone());
    let command = package_py_command(
        &python,
        tree,
        (&name, build.path()),
        &input.target,
        Tools {
            portable: input.portable.as_ref(),
            emulator: input.cross.as_ref().map(|c| &c.emulator),
        },
        crate::env::lookup,
    )?;
    let sh = Shell::new()?;
    sh.change_dir(tree);
    // package.py starts the translated interpreter, which starts itself
    // again for each cffi module: a cross-build's runs under the emulator
    // through the kernel, registered for the time of the packaging.
    let _binfmt = match &input.cross {
        Some(cross) => Some(
            cross
                .emulator
                .register_for(&input.target, &sh)
                .context("package.py runs the translated interpreter under the emulator")?,
        ),
        None => None,
    };
    command.cmd(&sh)?.run().with_context(|| {
        format!(
            "PyPy's package.py failed for {} (building the cffi modules needs the \
                 -dev packages of the target table's system_packages)",
            tree.display()
        )
    })?;
    let laid_out = build.path().join(&name);
    if !laid_out.is_dir() {
        bail!(
            "package.py finished but left no release tree at {}",
            laid_out.display()
        );
    }
    let recipe = input.recipe.as_ref();
    crate::archive::pack_tree(
        &laid_out,
        &input.target,
        &input.out_dir,
        input
            .origin
            .clone()
            .unwrap_or_else(|| origin_for(tree, recipe, &input.target)),
        &PublishOptions {
            extra_allowed: extra_allowed(recipe, &input.target),
            skip_verify: false,
            build_paths: vec![tree.clone()],
            no_headers: false,
            bundled: input.portable.as_ref().map(|p| p.prefix.clone()),
            require_portable: input.portable.is_some(),
            cache_root: input.cache_root.clone(),
        },
    )
    .with_context(|| format!("archiving the release tree of {}", tree.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Source;

    fn linux() -> targets::Target {
        targets::get("x86_64-unknown-linux-gnu").unwrap()
    }

    /// A source tree whose `pypy/goal` holds a launcher and a libpypy under
    /// the names a translation gives them (only the names are looked at).
    fn goal_tree() -> tempfile::TempDir {
        let tree = tempfile::tempdir().unwrap();
        let goal = tree.path().join("pypy/goal");
        fs_err::create_dir_all(&goal).unwrap();
        fs_err::write(goal.join("pypy3.9-c"), "launcher").unwrap();
        fs_err::write(goal.join("libpypy3.9-c.so"), "library").unwrap();
        tree
    }

    #[test]
    fn finds_the_translation_outputs() {
        let tree = goal_tree();
        let t = find_translated(tree.path(), &linux()).unwrap();
        assert_eq!(t.py, "3.9");
        assert!(t.launcher.ends_with("pypy/goal/pypy3.9-c"));
        assert!(t.libpypy.ends_with("pypy/goal/libpypy3.9-c.so"));
    }

    #[test]
    fn missing_outputs_are_named() {
        let tree = goal_tree();
        let goal = tree.path().join("pypy/goal");
        fs_err::remove_file(goal.join("libpypy3.9-c.so")).unwrap();
        let err = find_translated(tree.path(), &linux())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("libpypy3.9-c.so") && err.contains("--shared"),
            "{err}"
        );

        fs_err::remove_file(goal.join("pypy3.9-c")).unwrap();
        let err = find_translated(tree.path(), &linux())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no translated launcher"), "{err}");

        let err = find_translated(&goal, &linux()).unwrap_err().to_string();
        assert!(err.contains("no pypy/goal folder"), "{err}");
    }

    #[test]
    fn package_py_is_told_not_to_download_or_bundle() {
        let strings = |portable| -> Vec<String> {
            package_py_args(Path::new("/src"), "n", Path::new("/b"), portable)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let args = strings(false);
        assert_eq!(args[0], "/src/pypy/tool/release/package.py");
        assert!(!args.iter().any(|a| a == "--without-_tkinter"));
        // Tcl/Tk is not bundled: a portable build leaves _tkinter out.
        assert!(strings(true).iter().any(|a| a == "--without-_tkinter"));
        for flag in [
            "--archive-name=n",
            "--builddir=/b",
            "--no-embedded-dependencies",
            "--no-make-portable",
            "--no-keep-debug",
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag} missing: {args:?}");
        }
    }

    #[test]
    fn origin_from_the_real_recipe() {
        let recipe = Recipe::load(&paths::recipes_dir().join("pypy3.11-v7.3.20.toml")).unwrap();
        let o = origin_for(Path::new("/nowhere"), Some(&recipe), &linux());
        assert_eq!(o.recipe.as_deref(), Some("pypy3.11-v7.3.20"));
        assert_eq!(o.translation_options[0], "--opt=jit");
        assert!(o.translation_options.iter().any(|x| x == "--shared"));
        match o.source {
            Source::Release { url, sha256 } => {
                assert_eq!(url, recipe.source.url);
                assert_eq!(sha256, recipe.source.sha256);
            }
            other => panic!("{other:?}"),
        }
        // A recipe's target options reach the manifest as `translate` records them.
        let mut with_target_options = recipe.clone();
        with_target_options.translate.target_options = vec!["--withoutmod-_cppyy".into()];
        let o = origin_for(Path::new("/nowhere"), Some(&with_target_options), &linux());
        assert_eq!(
            o.translation_options,
            ["--opt=jit", "--shared", "--withoutmod-_cppyy"]
        );
        let o = origin_for(Path::new("/nowhere"), None, &linux());
        assert_eq!(o.source, Source::Checkout { commit: None });
    }
}
