//! The sha256 of a file, and a reader that hashes what passes through it:
//! the one way archives, sources and patches are checked.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// The sha256 of the file at `path`, in lower-case hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut reader = HashingReader::new(File::open(path)?);
    io::copy(&mut reader, &mut io::sink())?;
    Ok(reader.hex_digest())
}

/// The sha256 of `bytes`, in lower-case hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads from `inner` and hashes every byte read.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    /// How many bytes passed so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The sha256 of everything read, in lower-case hex.
    pub fn hex_digest(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // FIPS 180-2's test vector for "abc".
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn file_reader_and_bytes_agree() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("abc");
        std::fs::write(&file, "abc").unwrap();
        assert_eq!(sha256_file(&file).unwrap(), ABC);
        assert_eq!(sha256_bytes(b"abc"), ABC);
        let mut reader = HashingReader::new(&b"abc"[..]);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!((out.as_slice(), reader.bytes_read()), (&b"abc"[..], 3));
        assert_eq!(reader.hex_digest(), ABC);
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = sha256_file(Path::new("/nonexistent/file")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
