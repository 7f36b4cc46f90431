//! The archive built into the binary by the `embedded-archive` feature: the
//! one the build script found, with the sha256 it computed.

pub(crate) static ARCHIVE: &[u8] = include_bytes!(env!("EMBED_RUNTIME_BUILD_ARCHIVE"));
pub(crate) const SHA256: &str = env!("EMBED_RUNTIME_EMBEDDED_SHA256");
