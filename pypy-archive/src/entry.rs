//! The checks every archive entry passes before it is written anywhere:
//! its path stays under the top folder, and a link stays inside it. The
//! runtime's extraction and the xtask's verification both use them.

use std::path::{Component, Path};

#[cfg(doc)]
use crate::manifest::TOP_DIR;

/// An entry's path as a relative `/`-separated string under `top/`
/// ([`TOP_DIR`] in our archives); absolute paths, `..` and anything outside
/// the top folder are refused.
pub fn safe_relative_path(path: &Path, top: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(
                part.to_str()
                    .ok_or_else(|| "the path is not valid UTF-8".to_string())?
                    .to_string(),
            ),
            Component::CurDir => {}
            Component::ParentDir => return Err("the path contains `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("the path is absolute".into()),
        }
    }
    match parts.first() {
        Some(first) if first == top => {}
        _ => return Err(format!("everything must lie under {top}/")),
    }
    if parts.len() == 1 {
        // The top folder itself, only acceptable as a directory entry.
        return Ok(top.to_string());
    }
    if parts.iter().any(|p| p.contains('\\')) {
        return Err("the path contains a backslash".into());
    }
    Ok(parts.join("/"))
}

/// A link must be relative and resolve, without leaving the top folder.
pub fn check_link(rel: &str, target: &str) -> Result<(), String> {
    let target_path = Path::new(target);
    if target_path.is_absolute() || target.starts_with('/') {
        return Err("absolute link target".into());
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
                    return Err("the link points outside the archive's top folder".into());
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err("absolute link target".into()),
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
        assert!(safe_relative_path(Path::new("/etc/passwd"), TOP_DIR)
            .unwrap_err()
            .contains("absolute"));
        assert!(safe_relative_path(Path::new("pypy/../../x"), TOP_DIR)
            .unwrap_err()
            .contains(".."));
        assert!(safe_relative_path(Path::new("other/x"), TOP_DIR)
            .unwrap_err()
            .contains("under pypy/"));
    }

    #[test]
    fn links_must_stay_inside_the_top_folder() {
        assert!(check_link("pypy/bin/pypy3", "pypy3.11").is_ok());
        assert!(check_link("pypy/lib/a/b", "../../bin/x").is_ok());
        assert!(check_link("pypy/bin/x", "../../etc/passwd").is_err());
        assert!(check_link("pypy/bin/x", "/etc/passwd").is_err());
        assert!(check_link("pypy/x", "..").is_err());
    }
}
