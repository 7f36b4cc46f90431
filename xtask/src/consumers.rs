//! Other people's tools against an unpacked archive, run by `verify` from a
//! fresh folder: the headers they need, a C program built with the flags of
//! the archive's pkg-config file, a cffi embedding plugin with a C program
//! calling it, and a C extension module built with setuptools/distutils.
//!
//! The sources are in `xtask/assets/`; `docs/embedding-c.md` shows the same
//! steps by hand, and a test runs its commands.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::c_compiler::{self, Link, Program};
use crate::manifest::{self, Manifest};
use crate::targets::{Os, Target};

pub const PLUGIN_BUILD: &str = include_str!("../assets/cffi_plugin_build.py");
pub const PLUGIN_HOST: &str = include_str!("../assets/cffi_plugin_host.c");
pub const EXT_MODULE: &str = include_str!("../assets/ext_module.c");
pub const EXT_SETUP: &str = include_str!("../assets/ext_setup.py");
pub const EMBED_CHECK: &str = include_str!("../assets/embed_check.c");
pub const NO_CLASH: &str = include_str!("../assets/no_clash.c");

/// The headers a C extension or a cffi plugin cannot build without.
pub const REQUIRED_HEADERS: [&str; 2] = ["Python.h", "pyconfig.h"];

/// The problems of the archive's `include/` folder, each naming a missing
/// file; none when the archive says it was packed without headers.
pub fn missing_headers(top: &Path, manifest: &Manifest) -> Vec<String> {
    let mut wanted = vec![manifest::HEADER_NAME];
    if !manifest.no_headers {
        wanted.extend(REQUIRED_HEADERS);
    }
    wanted
        .into_iter()
        .map(|h| format!("{}/{h}", manifest.paths.include))
        .filter(|rel| !top.join(rel).is_file())
        .map(|rel| {
            format!(
                "{rel}: missing; C extensions and cffi plugins cannot build against this \
                 archive (repackage a tree with its headers, e.g. Debian's pypy3-dev, or \
                 pass --no-headers to say they are left out on purpose)"
            )
        })
        .collect()
}

/// Runs every consumer against `top`, the unpacked `pypy/` folder, in
/// `work`; returns one line per consumer saying what it printed.
pub fn run_all(
    sh: &Shell,
    top: &Path,
    manifest: &Manifest,
    target: &Target,
    work: &Path,
) -> Result<Vec<String>> {
    if target.os == Os::Windows {
        // cffi and distutils drive MSVC there; verify does not yet.
        return Ok(vec![
            "other tools: not run on Windows (cffi plugin, C extension and pkg-config \
             are checked on Linux and macOS)"
                .into(),
        ]);
    }
    let mut lines = vec![pkg_config_build(sh, top, manifest, target, work)
        .context("building the C embedding program with pkg-config's flags")?];
    let Some(launcher) = &manifest.paths.launcher else {
        lines.push("cffi plugin and C extension: not built (the archive has no launcher)".into());
        return Ok(lines);
    };
    if manifest.no_headers {
        lines.push(
            "cffi plugin and C extension: not built (the archive was packed with --no-headers)"
                .into(),
        );
        return Ok(lines);
    }
    let launcher = top.join(launcher);
    lines.push(
        cffi_plugin(sh, top, &launcher, target, &work.join("cffi-plugin"))
            .context("cffi's embedding workflow with the archive's launcher")?,
    );
    lines.push(
        c_extension(sh, &launcher, &work.join("c-extension"))
            .context("building a C extension with the archive's launcher")?,
    );
    Ok(lines)
}

/// `embed_check.c` compiled with `pkg-config --cflags --libs` of the
/// archive's `.pc` file alone, then run with nothing on the loader path.
fn pkg_config_build(
    sh: &Shell,
    top: &Path,
    manifest: &Manifest,
    target: &Target,
    work: &Path,
) -> Result<String> {
    let py = &manifest.python_version;
    let pc_dir = top
        .join(target.pkgconfig_path(py))
        .parent()
        .context("the pkg-config file has a folder")?
        .to_path_buf();
    let package = format!("pypy{py}-embed");
    let flags = cmd!(sh, "pkg-config --cflags --libs {package}")
        .env("PKG_CONFIG_PATH", &pc_dir)
        .env_remove("PKG_CONFIG_LIBDIR")
        .quiet()
        .read()
        .context("running `pkg-config` on the archive's .pc file (is pkg-config installed?)")?;
    let dir = work.join("pkg-config");
    fs_err::create_dir_all(&dir)?;
    let source = dir.join("embed_check.c");
    fs_err::write(&source, EMBED_CHECK)?;
    let exe = c_compiler::compile(
        sh,
        target,
        &Program {
            source,
            exe: dir.join("embed_check"),
            include_dirs: vec![],
            link: Link::Flags(flags.split_whitespace().map(str::to_string).collect()),
        },
    )?;
    let lib = top.join(&manifest.paths.libpypy);
    let out = clean_env(cmd!(sh, "{exe} {lib}")).quiet().output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = format!("pypy-embed-ok {}", top.display());
    if !out.status.success() || !stdout.lines().any(|l| l == expected) {
        bail!(
            "the program built with `pkg-config --cflags --libs {package}` ({flags}) failed \
             ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(format!("pkg-config: ok (built with `{flags}`)"))
}

/// cffi's `embedding_api` + `ffi.compile(target="plugin-1.0.*")` with the
/// archive's launcher, then a C program linked against the plugin, run with
/// rpaths to the plugin's and the archive's library folder and nothing else.
fn cffi_plugin(
    sh: &Shell,
    top: &Path,
    launcher: &Path,
    target: &Target,
    dir: &Path,
) -> Result<String> {
    fs_err::create_dir_all(dir)?;
    fs_err::write(dir.join("plugin_build.py"), PLUGIN_BUILD)?;
    let _cwd = sh.push_dir(dir);
    run_checked(
        clean_env(cmd!(sh, "{launcher} plugin_build.py")),
        "building the cffi plugin",
    )?;
    let plugin = find_file(dir, "plugin-1.0.")?;
    let host = dir.join("host.c");
    fs_err::write(&host, PLUGIN_HOST)?;
    let lib_dir = launcher.parent().context("the launcher has a folder")?;
    let lib_dir = top.join(lib_dir.strip_prefix(top).unwrap_or(lib_dir));
    let exe = c_compiler::compile(
        sh,
        target,
        &Program {
            source: host,
            exe: dir.join("host"),
            include_dirs: vec![],
            link: Link::Flags(plugin_link_flags(&plugin, dir, &lib_dir, target)),
        },
    )?;
    let stdout = run_checked(
        clean_env(cmd!(sh, "{exe}")),
        "running the C program that calls the cffi plugin",
    )?;
    if !stdout.lines().any(|l| l == "pypy-plugin-ok 42") {
        bail!("the C program calling the cffi plugin printed {stdout:?}, expected `pypy-plugin-ok 42`");
    }
    Ok(format!(
        "cffi plugin: ok ({} built by cffi, called from C: 40 + 2 = 42)",
        plugin.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// Links the plugin, with rpaths to its folder and to libpypy's.
fn plugin_link_flags(plugin: &Path, dir: &Path, lib_dir: &Path, target: &Target) -> Vec<String> {
    let mut flags = vec![
        plugin.display().to_string(),
        format!("-Wl,-rpath,{}", dir.display()),
        format!("-Wl,-rpath,{}", lib_dir.display()),
    ];
    if target.os == Os::Linux {
        // GNU ld checks the plugin's own needs (libpypy) while linking.
        flags.push(format!("-Wl,-rpath-link,{}", lib_dir.display()));
        // A RUNPATH (the default) serves only the program's own needs; the
        // plugin's libpypy is found through an RPATH, which is inherited.
        flags.push("-Wl,--disable-new-dtags".into());
    }
    flags
}

/// `setup.py build_ext --inplace` of a minimal C extension with the
/// archive's launcher, then `import` of the result.
fn c_extension(sh: &Shell, launcher: &Path, dir: &Path) -> Result<String> {
    fs_err::create_dir_all(dir)?;
    fs_err::write(dir.join("setup.py"), EXT_SETUP)?;
    fs_err::write(dir.join("ext_module.c"), EXT_MODULE)?;
    let _cwd = sh.push_dir(dir);
    run_checked(
        clean_env(cmd!(sh, "{launcher} setup.py build_ext --inplace")),
        "building the C extension",
    )?;
    let check = "import pypy_embed_ext; print('pypy-ext-ok', pypy_embed_ext.add(40, 2))";
    let stdout = run_checked(
        clean_env(cmd!(sh, "{launcher} -c {check}")),
        "importing the C extension",
    )?;
    if !stdout.lines().any(|l| l == "pypy-ext-ok 42") {
        bail!("importing the C extension printed {stdout:?}, expected `pypy-ext-ok 42`");
    }
    let built = find_file(dir, "pypy_embed_ext.")?;
    Ok(format!(
        "C extension: ok ({} built and imported)",
        built.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// Runs `command`; its stdout, or an error with both outputs.
fn run_checked(command: xshell::Cmd<'_>, what: &str) -> Result<String> {
    let out = command
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| what.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// The file in `dir` whose name starts with `prefix` and is a shared library.
fn find_file(dir: &Path, prefix: &str) -> Result<PathBuf> {
    fs_err::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(prefix)
                    && [".so", ".dylib", ".pyd", ".dll"]
                        .iter()
                        .any(|ext| n.ends_with(ext))
            })
        })
        .with_context(|| format!("no {prefix}* library was built in {}", dir.display()))
}
/// Removes every variable that could make PyPy or the loader look outside
/// the tree: Python's own, and every loader variable of the target table
/// but `PATH`, which Windows programs cannot do without.
pub fn clean_env(c: xshell::Cmd<'_>) -> xshell::Cmd<'_> {
    let loader_vars: Vec<String> = crate::targets::all()
        .map(|all| all.into_iter().map(|t| t.loader_path_var).collect())
        .unwrap_or_default();
    ["PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP"]
        .into_iter()
        .chain(
            loader_vars
                .iter()
                .map(String::as_str)
                .filter(|v| *v != "PATH"),
        )
        .fold(c, |c, var| c.env_remove(var))
}
