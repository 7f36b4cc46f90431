//! The head of a tree's `PYPY.json`: what a start needs (versions and
//! paths), read without the per-file list that follows it. PyPy 3.11's list
//! is half a megabyte; reading and parsing only what comes before it keeps
//! a start from paying for it, and the files were checked when the tree was
//! extracted.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use crate::manifest::{ManifestError, Paths, FORMAT_VERSION};

/// The fields of `PYPY.json` before its file list.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestHead {
    pub format_version: u64,
    pub pypy_version: String,
    pub python_version: String,
    pub paths: Paths,
}

/// Why a head could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Reads the head of the manifest at `path`. Writers put the file list
/// last; anything unexpected falls back to parsing the whole text.
pub fn read_head(path: &Path) -> Result<ManifestHead, HeadError> {
    let head = read_until_files(path)
        .ok()
        .flatten()
        .and_then(|text| head_before_files(&text))
        .and_then(|prefix| serde_json::from_str::<ManifestHead>(&prefix).ok());
    let head = match head {
        Some(head) => head,
        None => {
            let text = std::fs::read_to_string(path)?;
            serde_json::from_str(&text).map_err(ManifestError::Json)?
        }
    };
    if head.format_version != u64::from(FORMAT_VERSION) {
        return Err(ManifestError::UnknownVersion {
            found: head.format_version,
        }
        .into());
    }
    Ok(head)
}

/// The start of the file, read in blocks until it holds the `"files"` key;
/// `None` when the file ends first.
fn read_until_files(path: &Path) -> std::io::Result<Option<String>> {
    let mut file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    let mut block = [0u8; 16 * 1024];
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            return Ok(None);
        }
        bytes.extend_from_slice(&block[..n]);
        // The key may straddle two blocks: look again over the join.
        let from = bytes.len().saturating_sub(n + 7);
        if bytes[from..].windows(7).any(|w| w == b"\"files\"") {
            // A cut inside a UTF-8 sequence only loses the tail after the key.
            return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
}

/// The manifest's text up to its `"files"` key, closed as an object. A
/// `"files"` inside a string would be escaped, and one nested deeper would
/// leave the braces unbalanced and fail to parse, so a wrong cut never
/// yields a wrong head, only the fallback.
fn head_before_files(text: &str) -> Option<String> {
    let at = text.find("\"files\"")?;
    let before = text[..at].trim_end().strip_suffix(',')?;
    Some(format!("{before}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_is_read_without_the_file_list() {
        let text = r#"{"format_version": 1, "pypy_version": "7.3.20", "python_version": "3.11",
            "paths": {"libpypy": "bin/l.so", "launcher": null, "stdlib": "lib", "include": "inc"},
            "files": {"a": {"sha256": "00", "size": 1, "mode": 420}}}"#;
        let prefix = head_before_files(text).unwrap();
        assert!(!prefix.contains("sha256"));
        let head: ManifestHead = serde_json::from_str(&prefix).unwrap();
        assert_eq!(head.paths.libpypy, "bin/l.so");
        // A "files" key nested deeper gives a prefix that does not parse.
        let nested = r#"{"format_version": 1, "origin": {"files": 1}, "paths": {}}"#;
        assert!(head_before_files(nested)
            .and_then(|p| serde_json::from_str::<ManifestHead>(&p).ok())
            .is_none());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("PYPY.json");
        std::fs::write(
            &path,
            text.replace("\"format_version\": 1", "\"format_version\": 9"),
        )
        .unwrap();
        let err = read_head(&path).unwrap_err().to_string();
        assert!(err.contains("format version 9"), "{err}");

        // A long file list is not read, let alone parsed.
        let many: Vec<String> = (0..5000)
            .map(|i| format!(r#""f{i}": {{"sha256": "00", "size": 1, "mode": 420}}"#))
            .collect();
        let long = text.replace(
            r#""a": {"sha256": "00", "size": 1, "mode": 420}"#,
            &many.join(", "),
        );
        std::fs::write(&path, &long).unwrap();
        let read = read_until_files(&path).unwrap().unwrap();
        assert!(
            read.len() < long.len() / 4,
            "{} of {}",
            read.len(),
            long.len()
        );
        assert_eq!(read_head(&path).unwrap().paths.libpypy, "bin/l.so");
        // Without the key, the whole text is parsed.
        std::fs::write(&path, text.replace(r#""files""#, r#""other""#)).unwrap();
        assert_eq!(read_head(&path).unwrap().pypy_version, "7.3.20");
    }
}
