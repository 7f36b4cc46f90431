//! House rules checked by `cargo test`, in the spirit of rust-analyzer's
//! tidy test: every module says what it is for, `unsafe` lives only in
//! embed-runtime's `ffi`, every environment variable the code reads is in
//! the README, each crate reads the environment in one module, no two
//! modules of a crate use each other, directly or through others, and the
//! xtask branches on the OS only where the list here allows.

use std::path::{Path, PathBuf};

use crate::paths::workspace_root;

/// The one file allowed to hold `unsafe` code.
const UNSAFE_HOME: &str = "embed-runtime/src/ffi.rs";

/// Every `.rs` file of the repository, outside build output.
fn rust_files() -> Vec<PathBuf> {
    let root = workspace_root();
    walkdir::WalkDir::new(&root)
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            !(name == "target" || name == "dist" || name.starts_with('.'))
        })
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "rs"))
        .map(|e| e.into_path())
        .collect()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The code of a line without its `//` comment (strings are not parsed:
/// no line here puts `//` inside a string before the word checked).
fn code_of(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

#[test]
fn every_module_says_what_it_is_for() {
    let missing: Vec<String> = rust_files()
        .into_iter()
        .filter(|path| {
            let text = fs_err::read_to_string(path).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| relative(&path))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` line at the top: {missing:?}"
    );
}

#[test]
fn unsafe_code_lives_only_in_ffi() {
    let mut found = Vec::new();
    for path in rust_files() {
        let name = relative(&path);
        if name == UNSAFE_HOME || name == "xtask/src/tidy.rs" {
            continue;
        }
        let text = fs_err::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = code_of(line);
            if [
                "unsafe {",
                "unsafe fn",
                "unsafe impl",
                "unsafe extern",
                "unsafe trait",
            ]
            .iter()
            .any(|word| code.contains(word))
            {
                found.push(format!("{name}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "unsafe code outside {UNSAFE_HOME}: {found:#?}"
    );
    let lib = fs_err::read_to_string(workspace_root().join("embed-runtime/src/lib.rs")).unwrap();
    assert!(
        lib.contains("#![deny(unsafe_code)]"),
        "embed-runtime's lib.rs no longer denies unsafe code"
    );
}

/// The names of our environment variables (`PYPY_...` in double quotes).
fn variables_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for piece in text.split('"').skip(1).step_by(2) {
        let is_name = piece.starts_with("PYPY_")
            && piece.len() > 5
            && piece
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if is_name {
            found.push(piece.to_string());
        }
    }
    found
}

#[test]
fn every_environment_variable_is_in_the_readme() {
    let readme = fs_err::read_to_string(workspace_root().join("README.md")).unwrap();
    let mut missing = Vec::new();
    for path in rust_files() {
        let text = fs_err::read_to_string(&path).unwrap();
        for name in variables_in(&text) {
            if !readme.contains(&format!("`{name}`")) {
                missing.push(format!("{name} ({})", relative(&path)));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "environment variables the README's table does not list: {missing:?}"
    );
}

/// The one module per crate that reads the environment (build scripts,
/// tests and examples read what cargo and the tests set, their own way).
const ENV_READERS: &[&str] = &[
    "xtask/src/env.rs",
    "embed-runtime/src/env.rs",
    "pypy-archive/src/cache.rs",
];

#[test]
fn each_crate_reads_the_environment_in_one_module() {
    let mut found = Vec::new();
    for path in rust_files() {
        let name = relative(&path);
        let library_code = name.contains("/src/") && !name.starts_with("xtask/bench-pyo3/");
        if !library_code || ENV_READERS.contains(&name.as_str()) || name == "xtask/src/tidy.rs" {
            continue;
        }
        let text = fs_err::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = code_of(line);
            if code.contains("std::env::var") || code.contains("use std::env;") {
                found.push(format!("{name}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "environment reads outside {ENV_READERS:?}; go through the crate's env module: {found:#?}"
    );
}

#[test]
fn variable_names_are_found_in_string_literals_only() {
    let text = r#"var("PYPY_EMBED_CACHE"); let x = "PYPY_"; "not PYPY_X" "PYPY_GC_MAX""#;
    assert_eq!(variables_in(text), ["PYPY_EMBED_CACHE", "PYPY_GC_MAX"]);
}

/// The top-level modules of the crate in `src` and the ones each names
/// through `crate::` (outside its tests).
fn module_uses(
    src: &Path,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut uses: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for file in walkdir::WalkDir::new(src)
        .into_iter()
        .filter_map(Result::ok)
    {
        let path = file.path();
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let rel = path.strip_prefix(src).unwrap().with_extension("");
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        if matches!(first.as_ref(), "lib" | "main") {
            continue;
        }
        let text = fs_err::read_to_string(path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut named = std::collections::BTreeSet::new();
        for line in code.lines().map(code_of) {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    // `use crate::{a, b::c}`: the first name of each part.
                    let group = group.split('}').next().unwrap_or_default();
                    named.extend(
                        group.split(',').filter_map(|p| {
                            p.trim().split("::").next().map(|n| n.trim().to_string())
                        }),
                    );
                } else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    named.insert(name);
                }
            }
        }
        named.retain(|n| !n.is_empty() && *n != first);
        uses.entry(first.into_owned()).or_default().extend(named);
    }
    uses
}

#[test]
fn modules_do_not_use_each_other_in_a_circle() {
    let root = workspace_root();
    let mut circles = Vec::new();
    for krate in ["xtask", "embed-runtime", "pypy-archive"] {
        let uses = module_uses(&root.join(krate).join("src"));
        // A circle exists when a module can reach itself.
        for start in uses.keys() {
            let mut seen = std::collections::BTreeSet::new();
            let mut todo: Vec<&String> = uses[start].iter().collect();
            while let Some(next) = todo.pop() {
                if next == start {
                    circles.push(format!("{krate}: {start} reaches itself"));
                    break;
                }
                if seen.insert(next) {
                    todo.extend(uses.get(next).into_iter().flatten());
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "modules use each other in a circle (a stage must only use earlier ones):\n  {}",
        circles.join("\n  ")
    );
}

/// Where the xtask still branches on the OS outside the target table, and
/// how often. Platform facts belong in `recipes/targets.toml` (read by
/// `targets.rs`), so a new branch anywhere else fails the test below: move
/// the fact into the table, or, where the compiler needs it (`cfg` on an
/// OS's own API), add it here with the reason. The counts may only fall.
const OS_BRANCHES: [(&str, usize); 12] = [
    // The plan renders Windows' and macOS's steps from here.
    ("xtask/src/plan.rs", 4),
    // File modes and symlinks: cfg(unix) on std's Unix-only API.
    ("xtask/src/archive/writer.rs", 4),
    ("xtask/src/verify.rs", 3),
    ("xtask/src/translate.rs", 3),
    ("xtask/src/toolchain.rs", 3),
    ("xtask/src/host.rs", 3),
    ("xtask/src/fixtures.rs", 3),
    ("xtask/src/c_compiler.rs", 3),
    ("xtask/src/consumers.rs", 2),
    ("xtask/src/portability.rs", 1),
    ("xtask/src/fetch/extract.rs", 1),
    ("xtask/src/cross_lint.rs", 1),
];

/// Lines of `text` that branch on the OS: a match on the table's `Os`, or a
/// `cfg` on the OS the xtask runs on.
fn os_branches(text: &str) -> usize {
    const MARKS: [&str; 6] = [
        "Os::Linux",
        "Os::Macos",
        "Os::Windows",
        "windows)",
        "unix)",
        "target_os",
    ];
    text.lines()
        .map(code_of)
        .filter(|code| code.contains("Os::") || code.contains("cfg"))
        .filter(|code| MARKS.iter().any(|m| code.contains(m)))
        .count()
}

#[test]
fn os_branches_stay_in_the_target_table() {
    let mut over = Vec::new();
    for path in rust_files() {
        let rel = relative(&path);
        if !rel.starts_with("xtask/src/")
            || rel == "xtask/src/targets.rs"
            || rel == "xtask/src/tidy.rs"
        {
            continue;
        }
        let found = os_branches(&fs_err::read_to_string(&path).unwrap());
        let allowed = OS_BRANCHES
            .iter()
            .find(|(file, _)| *file == rel)
            .map_or(0, |(_, n)| *n);
        if found > allowed {
            over.push(format!("{rel}: {found} OS branches, {allowed} allowed"));
        } else if found < allowed {
            over.push(format!(
                "{rel}: {found} OS branches, fewer than the {allowed} listed: lower the count"
            ));
        }
    }
    assert!(
        over.is_empty(),
        "OS branches outside the target table (move the fact into recipes/targets.toml, \
         or list a compiler-required cfg in tidy.rs's OS_BRANCHES): {over:#?}"
    );
}

#[test]
fn a_new_os_branch_is_counted() {
    let before = "fn f(t: &Target) -> &str { \"x\" }\n";
    let after = "fn f(t: &Target) -> &str {\n    if t.os == Os::Windows { \"x.exe\" } else { \"x\" }\n}\n#[cfg(unix)]\nfn g() {}\n";
    assert_eq!(os_branches(before), 0);
    assert_eq!(os_branches(after), 2);
}
