//! Builds small C programs (the embedding checks) with the platform's own C compiler.
//!
//! The `cc` crate finds the compiler the way Cargo build scripts do: `$CC`,
//! else `cc` on Unix, else MSVC through the Visual Studio installer's records
//! (with the `INCLUDE`/`LIB` environment it needs), so the same code builds
//! with gcc, clang and `cl.exe`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::targets::{Os, Target};

/// A one-file C program to build.
#[derive(Debug, Clone)]
pub struct Program {
    pub source: PathBuf,
    /// Where the executable goes, without `.exe` (added on Windows).
    pub exe: PathBuf,
    pub include_dirs: Vec<PathBuf>,
    pub link: Link,
}

/// What the program links against.
#[derive(Debug, Clone)]
pub enum Link {
    /// The C library only, plus `dlopen` where it lives in libdl (old glibc).
    Dl,
    /// A shared library: on Windows its import library (`.lib`); elsewhere the
    /// `.so`/`.dylib` itself, found at run time through an rpath to its folder.
    Library(PathBuf),
    /// These arguments, given to the compiler as they are (what `pkg-config
    /// --libs` printed, say); the compiler's own syntax.
    Flags(Vec<String>),
}

/// The executable's real path: `exe` plus `.exe` for Windows targets.
pub fn exe_path(exe: &Path, target: &Target) -> PathBuf {
    if target.os == Os::Windows {
        exe.with_extension("exe")
    } else {
        exe.to_path_buf()
    }
}

/// Compiles `program` for `target` (the machine's own) and returns the executable's path.
pub fn compile(sh: &Shell, target: &Target, program: &Program) -> Result<PathBuf> {
    let triple = &target.triple;
    let tool = cc::Build::new()
        .target(triple)
        .host(triple)
        .opt_level(0)
        .debug(false)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .try_get_compiler()
        .context(
            "finding a C compiler (set $CC, or install gcc/clang or Visual Studio's C++ tools)",
        )?;
    let exe = exe_path(&program.exe, target);
    let compiler = tool.path();
    let base: Vec<&std::ffi::OsStr> = tool.args().iter().map(|a| a.as_os_str()).collect();
    let args = if tool.is_like_msvc() {
        msvc_args(program, &exe)
    } else {
        unix_args(program, &exe, target)
    };
    let mut command = cmd!(sh, "{compiler} {base...} {args...}").quiet();
    for (key, value) in tool.get_envs() {
        command = command.env(key, value);
    }
    command.run().with_context(|| {
        format!(
            "compiling {} with {}",
            program.source.display(),
            compiler.display()
        )
    })?;
    Ok(exe)
}

/// Compiles `program` for a target this machine cross-builds, with that
/// target's zig (`-target` comes from the wrapper), and returns the executable.
pub fn compile_cross(
    sh: &Shell,
    target: &Target,
    program: &Program,
    zig: &crate::toolchain::Zig,
) -> Result<PathBuf> {
    let exe = exe_path(&program.exe, target);
    let cc = zig.cc();
    let args = unix_args(program, &exe, target);
    cmd!(sh, "{cc} {args...}").quiet().run().with_context(|| {
        format!(
            "compiling {} for {} with {}",
            program.source.display(),
            target.triple,
            cc.display()
        )
    })?;
    Ok(exe)
}

fn unix_args(program: &Program, exe: &Path, target: &Target) -> Vec<String> {
    let mut args = vec![
        "-o".to_string(),
        exe.display().to_string(),
        program.source.display().to_string(),
    ];
    args.extend(
        program
            .include_dirs
            .iter()
            .map(|d| format!("-I{}", d.display())),
    );
    match &program.link {
        Link::Dl => {
            if target.os == Os::Linux {
                args.push("-ldl".into());
            }
        }
        Link::Library(lib) => {
            let dir = lib.parent().unwrap_or(Path::new("."));
            let name = lib
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            args.push(format!("-L{}", dir.display()));
            if target.os == Os::Macos {
                args.push(lib.display().to_string());
            } else {
                // `-l:NAME` links by file name, so DT_NEEDED is the bare name
                // even for a library without SONAME (a full path would be recorded as is).
                args.push(format!("-l:{name}"));
            }
            args.push(format!("-Wl,-rpath,{}", dir.display()));
        }
        Link::Flags(flags) => args.extend(flags.iter().cloned()),
    }
    args
}

fn msvc_args(program: &Program, exe: &Path) -> Vec<String> {
    let mut args = vec!["/nologo".to_string(), program.source.display().to_string()];
    args.extend(
        program
            .include_dirs
            .iter()
            .map(|d| format!("/I{}", d.display())),
    );
    // Objects beside the executable, not in the current folder.
    let dir = exe.parent().unwrap_or(Path::new("."));
    args.push(format!("/Fo{}\\", dir.display()));
    args.push(format!("/Fe{}", exe.display()));
    match &program.link {
        Link::Library(import_lib) => args.push(import_lib.display().to_string()),
        Link::Flags(flags) => args.extend(flags.iter().cloned()),
        Link::Dl => {}
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(triple: &str) -> Target {
        crate::targets::get(triple).unwrap()
    }

    fn program(link: Link) -> Program {
        Program {
            source: PathBuf::from("/w/check.c"),
            exe: PathBuf::from("/w/check"),
            include_dirs: vec![PathBuf::from("/pypy/include")],
            link,
        }
    }

    #[test]
    fn each_compiler_family_gets_its_own_flags() {
        let lib = Link::Library(PathBuf::from("/pypy/bin/libpypy3.11-c.so"));
        let linux = unix_args(
            &program(lib.clone()),
            Path::new("/w/check"),
            &t("x86_64-unknown-linux-gnu"),
        );
        assert_eq!(
            linux,
            [
                "-o",
                "/w/check",
                "/w/check.c",
                "-I/pypy/include",
                "-L/pypy/bin",
                "-l:libpypy3.11-c.so",
                "-Wl,-rpath,/pypy/bin"
            ]
        );
        let mac = unix_args(
            &program(lib),
            Path::new("/w/check"),
            &t("aarch64-apple-darwin"),
        );
        assert!(
            mac.contains(&"/pypy/bin/libpypy3.11-c.so".to_string()),
            "{mac:?}"
        );
        assert!(!mac.iter().any(|a| a.starts_with("-l:")), "{mac:?}");

        let dl = unix_args(
            &program(Link::Dl),
            Path::new("/w/check"),
            &t("x86_64-unknown-linux-gnu"),
        );
        assert_eq!(dl.last().map(String::as_str), Some("-ldl"));
        let dl = unix_args(
            &program(Link::Dl),
            Path::new("/w/check"),
            &t("aarch64-apple-darwin"),
        );
        assert!(!dl.contains(&"-ldl".to_string()), "{dl:?}");

        let exe = exe_path(Path::new("/w/check"), &t("x86_64-pc-windows-msvc"));
        let win = msvc_args(
            &program(Link::Library(PathBuf::from("/pypy/libs/python311.lib"))),
            &exe,
        );
        assert_eq!(win[0], "/nologo");
        assert!(win.contains(&"/I/pypy/include".to_string()), "{win:?}");
        assert!(win.contains(&"/Fe/w/check.exe".to_string()), "{win:?}");
        assert_eq!(
            win.last().map(String::as_str),
            Some("/pypy/libs/python311.lib")
        );
    }

    #[test]
    fn a_real_program_builds_and_runs() {
        let sh = Shell::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("hello.c");
        fs_err::write(
            &source,
            "#include <stdio.h>\nint main(void) { puts(\"built\"); return 7; }\n",
        )
        .unwrap();
        let exe = compile(
            &sh,
            &crate::targets::get(crate::targets::host_triple()).unwrap(),
            &Program {
                source,
                exe: dir.path().join("hello"),
                include_dirs: vec![],
                link: Link::Dl,
            },
        )
        .unwrap();
        let out = std::process::Command::new(&exe).output().unwrap();
        assert_eq!(out.status.code(), Some(7));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "built");
    }
}
