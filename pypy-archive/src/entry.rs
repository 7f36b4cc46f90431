//! The checks every archive entry passes before it is written anywhere:
//! its path stays under the top folder, and a link stays inside it. The
//! runtime's extraction and the xtask's verification both use them.

use std::path::{Component, Path};

/// Why an entry's path or link target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("the path is not valid UTF-8")]
    NotUtf8,
    #[error("the path contains `..`")]
    ParentDir,
    #[error("the path is absolute")]
    Absolute,
    #[error("everything must lie under {0}/")]
    OutsideTop(String),
    #[error("the path contains a backslash")]
    Backslash,
    #[error("absolute link target")]
    AbsoluteLink,
    #[error("the link points outside the archive's top folder")]
    LinkOutside,
}

#[cfg(doc)]
use crate::manifest::TOP_DIR;

/// An entry's path as a relative `/`-separated string under `top/`
/// ([`TOP_DIR`] in our archives); absolute paths, `..` and anything outside
/// the top folder are refused.
pub fn safe_relative_path(path: &Path, top: &str) -> Result<String, EntryError> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                parts.push(part.to_str().ok_or(EntryError::NotUtf8)?.to_string())
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(EntryError::ParentDir),
            Component::RootDir | Component::Prefix(_) => return Err(EntryError::Absolute),
        }
    }
    match parts.first() {
        Some(first) if first == top => {}
        _ => return Err(EntryError::OutsideTop(top.to_string())),
    }
    if parts.len() == 1 {
        // The top folder itself, only acceptable as a directory entry.
        return Ok(top.to_string());
    }
    if parts.iter().any(|p| p.contains('\\')) {
        return Err(EntryError::Backslash);
    }
    Ok(parts.join("/"))
}

/// A link must be relative and resolve, without leaving the top folder.
pub fn check_link(rel: &str, target: &str) -> Result<(), EntryError> {
    let target_path = Path::new(target);
    if target_path.is_absolute() || target.starts_with('/') {
        return Err(EntryError::AbsoluteLink);
    }
    // Depth below the top folder of the link's own folder.
    let mut depth = rel.split('/').count() as i64 - 2;
    for component in target_path.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err(EntryError::LinkOutside);
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(EntryError::AbsoluteLink),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::TOP_DIR;

    #[test]
    fn unsafe_paths_are_refused() {
        assert_eq!(
            safe_relative_path(Path::new("pypy/bin/x"), TOP_DIR).unwrap(),
            "pypy/bin/x"
        );
        assert_eq!(
            safe_relative_path(Path::new("./pypy/./lib"), TOP_DIR).unwrap(),
            "pypy/lib"
        );
        let refused = |path: &str| safe_relative_path(Path::new(path), TOP_DIR).unwrap_err();
        assert_eq!(refused("/etc/passwd"), EntryError::Absolute);
        assert_eq!(refused("pypy/../../x"), EntryError::ParentDir);
        assert_eq!(refused("other/x"), EntryError::OutsideTop("pypy".into()));
        assert_eq!(
            refused("other/x").to_string(),
            "everything must lie under pypy/"
        );
    }

    #[test]
    fn links_must_stay_inside_the_top_folder() {
        assert!(check_link("pypy/bin/pypy3", "pypy3.11").is_ok());
        assert!(check_link("pypy/lib/a/b", "../../bin/x").is_ok());
        assert_eq!(
            check_link("pypy/bin/x", "../../etc/passwd"),
            Err(EntryError::LinkOutside)
        );
        assert_eq!(
            check_link("pypy/bin/x", "/etc/passwd"),
            Err(EntryError::AbsoluteLink)
        );
        assert!(check_link("pypy/x", "..").is_err());
    }
}
