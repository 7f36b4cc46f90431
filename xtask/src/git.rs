//! Every question the xtask asks git, in one place: which commit a checkout
//! is at, whether it is clean, and when that commit was made.

use std::path::Path;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

/// The HEAD commit of the checkout at `dir`; an error when it is none.
pub fn head(sh: &Shell, dir: &Path) -> Result<String> {
    let out = cmd!(sh, "git -C {dir} rev-parse HEAD")
        .quiet()
        .ignore_stderr()
        .read()
        .with_context(|| format!("{} is not a git checkout", dir.display()))?;
    Ok(out.trim().to_string())
}

/// The HEAD commit when `dir` itself holds a `.git`; `None` otherwise or
/// when git cannot say.
pub fn head_if_checkout(sh: &Shell, dir: &Path) -> Option<String> {
    if !dir.join(".git").exists() {
        return None;
    }
    head(sh, dir).ok()
}

/// The HEAD commit when `dir` is the top of a git checkout; `None` otherwise
/// (no git, not a checkout, or a folder inside someone else's checkout,
/// whose commit would say nothing about this tree).
pub fn commit_of_top(sh: &Shell, dir: &Path) -> Option<String> {
    let top = cmd!(sh, "git -C {dir} rev-parse --show-toplevel")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()?;
    let same = match (
        std::fs::canonicalize(top.trim()),
        std::fs::canonicalize(dir),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        return None;
    }
    let head = head(sh, dir).ok()?;
    (head.len() >= 40 && head.bytes().all(|b| b.is_ascii_hexdigit())).then_some(head)
}

/// Whether the checkout's tracked files are as committed.
pub fn is_clean(sh: &Shell, dir: &Path) -> Result<bool> {
    let out = cmd!(sh, "git -C {dir} status --porcelain --untracked-files=no")
        .quiet()
        .read()
        .with_context(|| format!("asking git whether {} is clean", dir.display()))?;
    Ok(out.trim().is_empty())
}

/// The HEAD commit's date, in seconds since 1970.
pub fn commit_date(sh: &Shell, dir: &Path) -> Result<u64> {
    let out = cmd!(sh, "git -C {dir} log -1 --format=%ct")
        .quiet()
        .read()
        .with_context(|| format!("reading the commit date of {}", dir.display()))?;
    out.trim()
        .parse()
        .with_context(|| format!("`git log` gave {out:?} as the commit date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkout_answers_and_a_plain_folder_does_not() {
        let sh = Shell::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(head_if_checkout(&sh, root), None);
        assert!(head(&sh, root).is_err());
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(root)
                .args(args)
                .env("GIT_AUTHOR_DATE", "@1700000000 +0000")
                .env("GIT_COMMITTER_DATE", "@1700000000 +0000")
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
        };
        git(&["init", "-q"]);
        fs_err::write(root.join("a"), "1").unwrap();
        git(&["add", "a"]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "m",
        ]);
        let commit = head(&sh, root).unwrap();
        assert_eq!(commit.len(), 40);
        assert_eq!(
            head_if_checkout(&sh, root).as_deref(),
            Some(commit.as_str())
        );
        assert_eq!(commit_of_top(&sh, root).as_deref(), Some(commit.as_str()));
        fs_err::create_dir(root.join("sub")).unwrap();
        assert_eq!(commit_of_top(&sh, &root.join("sub")), None);
        assert!(is_clean(&sh, root).unwrap());
        fs_err::write(root.join("a"), "2").unwrap();
        assert!(!is_clean(&sh, root).unwrap());
        assert_eq!(commit_date(&sh, root).unwrap(), 1_700_000_000);
    }
}
