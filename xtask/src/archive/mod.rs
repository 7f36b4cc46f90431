//! Our release archive: the reproducible .tar.gz writer ([`writer`]), the
//! pipeline that turns any PyPy tree into a relocatable archive
//! ([`release`], shared by `package` and `repackage`).
//!
//! The format itself is described in `docs/archive-format.md`; the manifest
//! types are [`crate::manifest`].

pub mod release;
pub mod writer;

pub use release::{
    build_manifest, locate, publish, relocate, stage, Found, PublishOptions, Published, Staged,
    Versions,
};
pub use writer::{extract_tar_gz, write_tar_gz, write_tar_gz_file, WriteOptions, WriteStats};
