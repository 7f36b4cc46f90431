//! The archive format, shared by the xtask that writes archives and
//! `embed-runtime` that reads them: the manifest, archive names, how a file
//! is hashed, a tree's archive order, the one safe archive reader, the lock
//! that guards a cache entry, and where the cache is.
//! Each concern is one small module, so that neither side carries a copy.

pub mod cache;
pub mod entry;
pub mod extract;
pub mod fs;
pub mod hash;
pub mod head;
pub mod lock;
pub mod manifest;
pub mod name;
pub mod tree;
pub mod version;
