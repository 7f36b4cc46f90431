//! The test-suite's fixtures, made: `xtask::fixtures` says where each
//! prepared fixture lives, this crate downloads and builds them (the tests
//! use it as a dev-dependency), and its binary is what `cargo xtask test`
//! runs before the tests.

pub mod emulated;
pub mod prepare;

pub use prepare::*;
