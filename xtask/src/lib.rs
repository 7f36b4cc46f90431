//! The build tool behind `cargo xtask`: one module per subcommand, plus the
//! shared pieces (recipes, the target table, archives) they are built from.

pub mod apt;
pub mod archive;
pub mod bench;
pub mod binary;
pub mod build_cache;
pub mod build_dir;
pub mod build_pypy;
pub mod c_compiler;
pub mod check_portable;
pub mod ci_matrix;
pub mod consumers;
pub mod cross_lint;
pub mod deps;
pub mod doctor;
pub mod emulator;
pub mod env;
pub mod externals;
pub mod fetch;
pub mod fetch_cmd;
pub mod fixtures;
pub mod git;
pub mod hash;
pub mod host;
pub mod known_failures;
pub mod lock;
pub mod package;
pub mod patch;
pub mod paths;
pub mod plan;
pub mod portability;
pub mod rebuild_check;
pub mod recipe;
pub mod recipes_cmd;
pub mod repackage;
pub mod source_date;
pub mod stage;
pub mod targets;
pub mod test_cmd;
#[cfg(test)]
mod tidy;
pub mod toolchain;
pub mod translate;
pub mod verify;

pub use pypy_archive::manifest;
