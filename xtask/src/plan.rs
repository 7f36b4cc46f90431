//! `cargo xtask build-pypy --target TRIPLE --plan`: every step `build-pypy`
//! takes for one target, in order, with its command lines and environment,
//! printed on any OS without running anything.
//!
//! Each line comes from the function the build itself calls for that step
//! (the download cache path, the patch command, the externals' git
//! commands, RPython's command line and environment, package.py's
//! arguments, the target table's relocation facts), so the plan cannot
//! drift from the build. Snapshots of the plan for every target are in
//! `xtask/tests/snapshots/` and checked by the test-suite.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::emulator::Cross;
use crate::fetch::{self, FetchOptions};
use crate::host::HostPython;
use crate::recipe::Recipe;
use crate::targets::{EmulatorPin, Os, SearchPath, Target};
use crate::translate::{RunOptions, Spec};
use crate::{externals, package, patch, paths, translate};

/// What the plan is for, and the folders it would use.
pub struct PlanInput<'a> {
    pub recipe: &'a Recipe,
    pub target: &'a Target,
    pub fetch: &'a FetchOptions,
    pub run: &'a RunOptions,
    pub dist: &'a Path,
    /// Linux: with the portable toolchain (`build-pypy` without `--system-compiler`).
    pub portable: bool,
    /// The machine the plan is printed for: a cross-build when the target's
    /// `[target.emulator]` names it, else a build on the target's own runner.
    pub build_machine: &'a str,
}

/// The plan as text, one numbered step after another.
pub fn render(input: &PlanInput<'_>) -> Result<String> {
    let cross = crate::emulator::pin_for(input.target, input.build_machine)
        .ok()
        .flatten();
    let where_ = match cross {
        Some(pin) => format!(
            "cross-built on {}, its programs run under {}",
            pin.build_machine, pin.program
        ),
        None => format!("on a `{}` runner", input.target.ci.runner),
    };
    let steps = match cross {
        // The cross-build patches RPython too (emulator::recipe_for_cross).
        Some(pin) => steps(
            &PlanInput {
                recipe: &crate::emulator::recipe_for_cross(input.recipe),
                ..*input
            },
            Some(pin),
        )?,
        None => steps(input, None)?,
    };
    let mut text = format!(
        "build-pypy plan: recipe {} (PyPy {}, Python {}) for {} {where_}\n",
        input.recipe.name, input.recipe.pypy.version, input.recipe.pypy.python, input.target.triple,
    );
    for (i, step) in steps.iter().enumerate() {
        text.push_str(&format!("\n{}. {}\n", i + 1, step.title));
        for line in &step.lines {
            text.push_str(&format!("   {line}\n"));
        }
    }
    Ok(text)
}

struct Step {
    title: String,
    lines: Vec<String>,
}

/// A path as printed: the workspace as `<workspace>`, `/` as the separator,
/// so that a plan reads the same on every machine and OS.
fn show(path: &Path) -> String {
    let root = paths::workspace_root();
    let text = match path.strip_prefix(&root) {
        Ok(rel) => format!("<workspace>/{}", rel.display()),
        Err(_) => path.display().to_string(),
    };
    text.replace('\\', "/")
}

/// [`show`] for the text of a value or an argument.
pub fn shown(text: &str) -> String {
    show(Path::new(text))
}

fn command(argv: &[String]) -> String {
    crate::stage::Command::new(argv.to_vec()).command_line(str::to_string)
}

/// Every step in the build's order. Each stage's function takes what the
/// stage before it gives (the source, the patched tree, the build folder,
/// the host), so the order cannot be changed by accident.
fn steps(input: &PlanInput<'_>, cross: Option<&EmulatorPin>) -> Result<Vec<Step>> {
    let mut steps = vec![doctor_step(input)];
    let (source, step) = fetch_step(input)?;
    steps.push(step);
    let (patched, step) = patch_step(input, &source)?;
    steps.push(step);
    steps.extend(externals_step(input, &patched));
    let (build, step) = build_folder_step(input, &patched);
    steps.push(step);
    // RPython runs on the build machine: a cross-build's host is its own.
    let builder = match cross {
        Some(pin) => crate::targets::get(&pin.build_machine)?,
        None => input.target.clone(),
    };
    let (host, step) = host_step(input, &builder);
    steps.push(step);
    let portable = match (&input.target.toolchain, input.portable) {
        (Some(_), true) => Some(portable_steps(input, cross, &mut steps)?),
        _ => None,
    };
    let cross = match cross {
        Some(pin) => Some(emulator_steps(input, pin, &mut steps)?),
        None => None,
    };
    steps.push(translate_step(
        input,
        &build,
        &source,
        &host,
        portable.as_ref(),
        cross.as_ref(),
    )?);
    steps.push(package_step(
        input,
        &build,
        portable.as_ref(),
        cross.as_ref(),
    )?);
    steps.push(relocate_step(input));
    steps.push(verify_step(input, portable.is_some(), cross.as_ref()));
    steps.push(publish_step(input));
    Ok(steps)
}

/// The source release as the plan sees it: where it is unpacked, and its identity.
struct PlannedSource {
    tree: PathBuf,
    id: String,
}

/// The tree the build folder is copied from, and the identity that names it.
struct PlannedPatched {
    tree: PathBuf,
    build_id: String,
}

/// The fixed folder the translation and package.py run in.
struct PlannedBuild {
    tree: PathBuf,
}

/// What doctor checks before an hour-long translation starts.
fn doctor_step(input: &PlanInput<'_>) -> Step {
    Step {
        title: "doctor: check the machine before anything starts".into(),
        lines: crate::doctor::planned_checks(input.recipe, input.target),
    }
}

fn fetch_step(input: &PlanInput<'_>) -> Result<(PlannedSource, Step)> {
    let (recipe, opts) = (input.recipe, input.fetch);
    let (source, mut lines) = match &opts.source_dir {
        Some(dir) => (
            PlannedSource {
                tree: dir.clone(),
                id: "<identity of the tree: its git commit, or a hash of its sources>".into(),
            },
            vec![format!("use the local tree {} (no checksum)", show(dir))],
        ),
        None => {
            let url = &recipe.source.url;
            let cached = fetch::cached_path(url, &recipe.source.sha256, opts)?;
            let unpacked = fetch::unpack_dir(recipe, opts);
            let file = recipe.source_file_name();
            let top = pypy_archive::extract::strip_suffix(file).unwrap_or(file);
            (
                PlannedSource {
                    tree: unpacked.join(top),
                    id: format!("sha256:{}", recipe.source.sha256),
                },
                vec![
                    format!("GET {url}"),
                    format!("check sha256 {} while downloading", recipe.source.sha256),
                    format!("keep it as {}", show(&cached)),
                    format!("unpack into {}", show(&unpacked)),
                ],
            )
        }
    };
    if let Some(mirror) = &opts.mirror {
        lines.push(format!("from the mirror {mirror:?} instead of upstream"));
    }
    let step = Step {
        title: "fetch: the source release".into(),
        lines,
    };
    Ok((source, step))
}

/// The recipe's patches, onto a copy.
fn patch_step(input: &PlanInput<'_>, source: &PlannedSource) -> Result<(PlannedPatched, Step)> {
    let (recipe, opts) = (input.recipe, input.fetch);
    if recipe.patches.is_empty() || opts.no_patches {
        let step = Step {
            title: "patches: none".into(),
            lines: vec![if opts.no_patches && !recipe.patches.is_empty() {
                "--no-patches: the release as published (the manifest says so)".into()
            } else {
                "the recipe lists none".into()
            }],
        };
        let unpatched = PlannedPatched {
            tree: source.tree.clone(),
            build_id: source.id.clone(),
        };
        return Ok((unpatched, step));
    }
    let ready = patch::planned_patches(recipe, opts)?;
    let identity = patch::identity(&source.id, &ready);
    let patched = patch::patched_dir(recipe, opts, &identity);
    let mut lines = vec![format!(
        "copy the tree to {} and, there, in order:",
        show(&patched)
    )];
    for (spec, r) in recipe.patches.iter().zip(&ready) {
        lines.push(format!(
            "{} (sha256 {}; {})",
            r.record.name, r.record.sha256, spec.reason
        ));
        if let Some(url) = &r.record.url {
            lines.push(format!("  GET {url}, checked and kept like the source"));
        }
        for line in patch::apply(&r.path, &patched).plan_lines(shown) {
            lines.push(format!("  {line}"));
        }
    }
    let step = Step {
        title: "patches: the recipe's, onto a copy".into(),
        lines,
    };
    let planned = PlannedPatched {
        tree: patched,
        build_id: format!("patched:{identity}"),
    };
    Ok((planned, step))
}

/// Windows: PyPy's prebuilt C dependencies.
fn externals_step(input: &PlanInput<'_>, patched: &PlannedPatched) -> Option<Step> {
    let pin = input.target.externals.as_ref()?;
    let cached = externals::cache_dir(&input.fetch.cache_dir, pin);
    let mut lines: Vec<String> = externals::commands(pin, &cached)
        .iter()
        .map(|c| command(c))
        .collect();
    lines.push(format!(
        "copy into {} (where PyPy's build looks; get_externals.py's place)",
        show(&externals::tree_dir(&patched.tree))
    ));
    lines.push(format!(
        "recorded in PYPY.json: origin.externals = {} {} {}",
        pin.url, pin.branch, pin.commit
    ));
    Some(Step {
        title: "externals: libffi, OpenSSL, sqlite, Tcl/Tk, bzip2, zlib, expat, xz".into(),
        lines,
    })
}

/// The fixed folder the source is translated in.
fn build_folder_step(input: &PlanInput<'_>, patched: &PlannedPatched) -> (PlannedBuild, Step) {
    let build = crate::build_dir::default_path(input.target, &input.recipe.name, &patched.build_id);
    let step = Step {
        title: "build folder: the same path on every machine".into(),
        lines: vec![
            format!("lock {}", show(&pypy_archive::lock::lock_path_for(&build))),
            format!(
                "copy {} to {}, anew (PyPy records this folder in libpypy)",
                show(&patched.tree),
                show(&build)
            ),
            "removed once the archive is made".into(),
        ],
    };
    (PlannedBuild { tree: build }, step)
}

/// The Python 2.7 that runs RPython.
fn host_step(input: &PlanInput<'_>, target: &Target) -> (HostPython, Step) {
    let (run, cache) = (input.run, &input.fetch.cache_dir);
    let (program, mut lines) = if run.bootstrap_host {
        let dir = translate::bootstrap_dir(cache, target);
        let program = translate::bootstrap_program_planned(cache, target);
        let lines = vec![
            format!("GET {}", target.bootstrap.url),
            format!("check sha256 {}", target.bootstrap.sha256),
            format!("unpack into {}; run {}", show(&dir), show(&program)),
        ];
        (program, lines)
    } else if let Some(explicit) = &run.host_python {
        (
            explicit.clone(),
            vec![format!("--host-python {}", show(explicit))],
        )
    } else {
        (
            PathBuf::from("<python2.7>"),
            vec![format!(
                "the first Python 2.7 of ${}, pyenv's 2.7, `pypy`/`python2.7` on PATH (PyPy preferred)",
                crate::host::HOST_ENV
            )],
        )
    };
    let packages = &input.recipe.host.packages;
    if !packages.is_empty() {
        lines.push(format!(
            "packages {} installed into {} unless the host has them",
            packages.join(", "),
            show(&cache.join("host-packages").join("<key>"))
        ));
    }
    let host = HostPython {
        program,
        implementation: String::new(),
        version: String::new(),
        site: None,
    };
    let step = Step {
        title: "host: the Python 2.7 that runs RPython".into(),
        lines,
    };
    (host, step)
}

/// RPython with `--shared`, in the build folder.
fn translate_step(
    input: &PlanInput<'_>,
    build: &PlannedBuild,
    source: &PlannedSource,
    host: &HostPython,
    portable: Option<&crate::deps::Portable>,
    cross: Option<&Cross>,
) -> Result<Step> {
    let (recipe, target, cache) = (input.recipe, input.target, &input.fetch.cache_dir);
    let mut spec = Spec::planned(
        recipe,
        &build.tree,
        source.id.clone(),
        &target.triple,
        input.run,
    );
    spec.portable = portable.cloned();
    spec.cross = cross.cloned();
    let work = cache.join("translations").join("<key>.partial-<pid>");
    let mut lines = vec![
        format!(
            "cached under {} (the key covers the source, patches, options, host and compiler)",
            show(&cache.join("translations").join("<key>"))
        ),
        format!("in {}", show(&work)),
        match portable {
            Some(p) => format!(
                "compiler: zig cc -target {} (the toolchain step), libraries from the deps step",
                p.zig.target
            ),
            None => compiler_line(target),
        },
    ];
    let usession = work.join("usession");
    lines.extend(
        translate::rpython_command(&spec, host, &usession, false, |_| None)?.plan_lines(shown),
    );
    Ok(Step {
        title: "translate: RPython with --shared".into(),
        lines,
    })
}

/// package.py lays out the release tree and builds the stdlib's cffi modules.
fn package_step(
    input: &PlanInput<'_>,
    build: &PlannedBuild,
    portable: Option<&crate::deps::Portable>,
    cross: Option<&Cross>,
) -> Result<Step> {
    let (target, py) = (input.target, &input.recipe.pypy.python);
    let tree = &build.tree;
    let goal = tree.join("pypy").join("goal");
    let launcher = goal.join(target.translated_launcher_name(py));
    let builddir = input.dist.join(".pypy-package-<random>");
    let name = format!("pypy{py}-release-tree");
    let mut lines = vec![
        format!(
            "copy the translated {}{} into {}",
            target.libpypy_name(py),
            target
                .import_library_name(py)
                .map(|l| format!(", {l}"))
                .unwrap_or_default(),
            show(&goal)
        ),
        format!("in {}", show(tree)),
    ];
    let emulator = cross.map(|c| &c.emulator);
    let command = package::package_py_command(
        &launcher,
        tree,
        (&name, &builddir),
        target,
        package::Tools { portable, emulator },
        |_| None,
    )?;
    lines.extend(command.plan_lines(shown));
    Ok(Step {
        title: "package: PyPy's package.py".into(),
        lines,
    })
}

/// Relocation, from the target table.
fn relocate_step(input: &PlanInput<'_>) -> Step {
    Step {
        title: "relocate: binaries find the tree's libraries relative to themselves".into(),
        lines: relocation_lines(input.target, &input.recipe.pypy.python),
    }
}

fn verify_step(input: &PlanInput<'_>, portable: bool, cross: Option<&Cross>) -> Step {
    let (target, py) = (input.target, &input.recipe.pypy.python);
    let run = match cross {
        Some(cross) => format!(
            "under the emulator ({} -L <sysroot>): the launcher, and a C embedding program \
             built with {}; the checks that build with this machine's compilers \
             (pkg-config, cffi plugin, C extension, no-clash) are left out",
            show(&cross.emulator.program),
            show(&cross.zig.cc())
        ),
        None if target.os == Os::Windows => {
            "on a machine of this target: the launcher and a C embedding program (MSVC)".into()
        }
        None => "on a machine of this target: the launcher, a C embedding program, a program \
                 built with pkg-config's flags, a cffi plugin with a C caller, a C extension"
            .into(),
    };
    Step {
        title: "verify: the archive from a fresh folder".into(),
        lines: vec![
            "every file's sha256, link and mode against PYPY.json".into(),
            format!(
                "every binary's libraries against the target table's allow-list ({} names)",
                target.allowed_libraries.len()
            ),
            format!("{}/Python.h and pyconfig.h present", target.include_dir(py)),
            match (&target.portability, portable) {
                (Some(policy), true) => format!(
                    "every ELF file meets the portability policy (required): glibc {} symbols \
                     at most, only {} libraries, no bundled library's symbols exported",
                    policy.glibc,
                    policy.libraries.len()
                ),
                (Some(policy), false) => format!(
                    "PYPY.json says whether every ELF file meets the portability policy \
                     (glibc {}); not required with --system-compiler",
                    policy.glibc
                ),
                (None, _) => "no portability policy for this OS".into(),
            },
            run,
        ],
    }
}

fn publish_step(input: &PlanInput<'_>) -> Step {
    let archive = input
        .target
        .archive_name(&input.recipe.pypy.python, &input.recipe.pypy.version);
    let dist = input.dist;
    Step {
        title: "publish".into(),
        lines: vec![
            format!("{} (reproducible tar.gz)", show(&dist.join(&archive))),
            format!(
                "{} and {}",
                show(&dist.join(format!("{archive}.sha256"))),
                show(&dist.join("SHA256SUMS"))
            ),
        ],
    }
}

/// The toolchain and dependency steps of a portable build, with the zig of
/// the build machine; returns what the translation and package.py are given.
fn portable_steps(
    input: &PlanInput<'_>,
    cross: Option<&EmulatorPin>,
    steps: &mut Vec<Step>,
) -> Result<crate::deps::Portable> {
    let (target, cache, run) = (input.target, &input.fetch.cache_dir, input.run);
    let builder = match cross {
        Some(pin) => crate::targets::get(&pin.build_machine)?,
        None => target.clone(),
    };
    let pin = crate::toolchain::of(&builder)?;
    let zig = crate::toolchain::locate(&builder, target, cache)?;
    let toolchains = cache.join("toolchains");
    let download = crate::toolchain::download_command(
        Path::new("python3"),
        pin,
        &toolchains.join(".tmp<random>").join("download"),
    )?;
    let mut lines = vec![
        format!("{} (PyPI)", download.command_line(shown)),
        format!("check {} against sha256 {}", pin.zig_wheel, pin.zig_sha256),
        format!("unpack into {}", show(zig.zig.parent().unwrap_or(&zig.zig))),
    ];
    for (var, value) in zig.env() {
        lines.push(format!("{var}={} (a wrapper)", show(Path::new(&value))));
    }
    lines.push(format!("cc and c++ run `zig cc -target {}`", zig.target));
    steps.push(Step {
        title: format!("toolchain: zig's C compiler for {}", zig.target),
        lines,
    });

    let jobs = run.jobs.unwrap_or_else(translate::default_jobs);
    let (prefix, builds) = crate::deps::plan(&zig, &pin.zig_sha256, cache, jobs)?;
    let table = crate::deps::table()?;
    let mut lines = vec![format!(
        "sources from Debian {} ({}) through a private apt configuration, each checked \
         against the signed Sources index and its pin",
        table.debian.suite, table.debian.mirror
    )];
    for build in &builds {
        let lib = &build.library;
        lines.push(format!(
            "{} {} ({}), cached as {}:",
            lib.name,
            lib.version,
            lib.license,
            show(&build.entry)
        ));
        lines.push(format!(
            "  apt-get source --download-only {}={}; {} sha256 {}",
            lib.debian_package, lib.debian_version, lib.orig, lib.sha256
        ));
        lines.push(format!(
            "  unpack into {}; CFLAGS='{}'",
            show(&build.src),
            crate::deps::CFLAGS
        ));
        for argv in &build.commands {
            // Our patches are in the workspace, which `show` names alike everywhere.
            let argv: Vec<String> = argv.iter().map(|a| show(Path::new(a))).collect();
            lines.push(format!("  {}", command(&argv)));
        }
    }
    lines.push(format!("combined into {}", show(&prefix.dir)));
    steps.push(Step {
        title: "deps: the C libraries, static with hidden symbols".into(),
        lines,
    });
    Ok(crate::deps::Portable { zig, prefix })
}

/// The emulator of a cross-build: Debian's qemu-user and the target's C
/// library, and the compiler of what runs here while translating.
fn emulator_steps(
    input: &PlanInput<'_>,
    pin: &EmulatorPin,
    steps: &mut Vec<Step>,
) -> Result<Cross> {
    let (target, cache) = (input.target, &input.fetch.cache_dir);
    let builder = crate::targets::get(&pin.build_machine)?;
    let emulator = crate::emulator::located(target, pin, cache)?;
    let table = crate::deps::table()?;
    let sysroot: Vec<String> = pin
        .sysroot_packages
        .iter()
        .map(|p| format!("{p}:{}", pin.debian_arch))
        .collect();
    let zig = crate::toolchain::locate(&builder, target, cache)?;
    let host_zig = crate::toolchain::locate(&builder, &builder, cache)?;
    steps.push(Step {
        title: format!(
            "emulator: {} runs {} programs here",
            pin.program, target.triple
        ),
        lines: vec![
            format!(
                "apt-get download {} and {} from Debian {} ({}), with the {} package lists, \
                 checked along Debian's signed chain",
                pin.package,
                sysroot.join(" "),
                table.debian.suite,
                table.debian.mirror,
                pin.debian_arch
            ),
            format!(
                "dpkg-deb -x each into {}",
                show(
                    emulator
                        .program
                        .ancestors()
                        .nth(4)
                        .unwrap_or(&emulator.program)
                )
            ),
            format!(
                "a target program runs as `{}`",
                emulator
                    .runner()
                    .iter()
                    .map(|w| show(Path::new(w)))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            format!(
                "what runs here while translating is compiled by {} (zig for {})",
                show(&host_zig.cc()),
                host_zig.target
            ),
            "registered with binfmt_misc for the whole build (as root, else through \
             `sudo -n`), since RPython's last task and package.py start the translated \
             interpreter, which starts itself again:"
                .into(),
            format!(
                "  {}",
                crate::emulator::binfmt_line(
                    &format!("pypy-embed-{}", pin.debian_arch),
                    pin.elf_machine,
                    &emulator.program
                )
            ),
        ],
    });
    Ok(Cross {
        zig,
        host_zig,
        emulator,
    })
}

/// How the translation finds its C compiler on `target`.
fn compiler_line(target: &Target) -> String {
    match target.os {
        Os::Windows => "compiler: MSVC (cl.exe, link.exe, nmake.exe) with the environment of \
                        Visual Studio's vcvars, found by RPython in the Visual Studio \
                        installation (doctor finds it the same way, through the cc crate)"
            .into(),
        Os::Macos => "compiler: clang of the Xcode command line tools ($CC if set)".into(),
        Os::Linux => "compiler: cc ($CC if set; `ccache cc` when ccache is installed)".into(),
    }
}

/// The relocation rules of `target`'s table entry, as the `binary` module applies them.
fn relocation_lines(target: &Target, py: &str) -> Vec<String> {
    let lib = target.libpypy_path(py);
    let launcher = target.launcher_path(py);
    let mut lines = match target.search_path {
        SearchPath::Origin => vec![
            format!("$ patchelf --set-rpath '$ORIGIN/' {launcher} (and every ELF file needing a library of the tree, relative to it)"),
            "$ patchelf --remove-rpath on binaries that need nothing from the tree".into(),
        ],
        SearchPath::Rpath => vec![
            format!("$ install_name_tool -id @rpath/{} {lib}", target.libpypy_name(py)),
            format!(
                "$ install_name_tool -change <old> @rpath/{} on every Mach-O file needing it",
                target.libpypy_name(py)
            ),
            "LC_RPATH @loader_path/<relative folder> on every binary; absolute rpaths removed".into(),
        ],
        SearchPath::DllDir => vec![
            format!("{lib} and its DLLs (libffi-8.dll, …) beside {launcher}: Windows looks beside the executable"),
        ],
    };
    if let Some(soname) = target.soname(py) {
        lines.push(format!("$ patchelf --set-soname {soname} {lib}"));
    }
    for alias in target.link_alias_paths(py) {
        lines.push(format!("link {alias} -> {}", target.libpypy_name(py)));
    }
    if let Some(import) = target.import_library_path(py) {
        lines.push(format!(
            "import library {import} (from {})",
            target.import_library_name(py).unwrap_or_default()
        ));
    }
    lines.push(format!("pkg-config file {}", target.pkgconfig_path(py)));
    lines
}
