//! Our release archive: the pipeline shared by `package` and `repackage`
//! that turns any PyPy tree into a relocatable archive, one file per step,
//! each using only the steps before it: [`locate`] the parts, [`stage`]
//! them as a release tree, [`relocate`] the binaries, describe the tree in
//! [`manifest`], pack it with the reproducible [`writer`], and [`publish`]
//! it into `dist/`, verified first.
//!
//! The format itself is described in `docs/archive-format.md`; the manifest
//! types are [`crate::manifest`].

pub mod locate;
pub mod manifest;
pub mod publish;
pub mod relocate;
pub mod stage;
pub mod writer;

pub use locate::{locate, Found, Versions};
pub use manifest::build_manifest;
pub use publish::{publish, PublishOptions, Published};
pub use relocate::relocate;
pub use stage::{stage, Staged};
pub use writer::{write_tar_gz, write_tar_gz_file, WriteOptions, WriteStats};
