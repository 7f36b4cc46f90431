//! Embed PyPy in a Rust program from a relocatable archive built by this
//! project's `cargo xtask build-pypy` or `cargo xtask repackage`.
//!
//! The archive format is described in [`manifest`]; the runtime API arrives
//! with the embed-runtime issue.

pub mod manifest;
