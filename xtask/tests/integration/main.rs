//! The xtask's integration tests, linked as one binary. They run the real
//! tools on real fixtures, which `cargo xtask test` prepares first and names
//! through `PYPY_EMBED_FIXTURES`: the small RPython translations, the
//! repackaged Debian PyPy, the loopback HTTP server and local mirrors.
//! Tests that need none of it are unit tests beside the code.

mod common;

mod archive_readers;
mod ci_lint;
mod ci_workflows;
mod docs_embedding_c;
mod doctor_cli;
mod fetch_cli;
mod fetch_download;
mod fetch_extract;
mod fixtures_release;
mod plan_snapshots;
mod portable_toolchain;
mod rebuild_check;
mod recipe_cli;
mod recipe_patches;
mod repackage_cli;
mod repackage_debian;
mod repackage_errors;
mod repackage_installed;
mod repackage_relocate;
mod translate_cli;
mod translate_small;
mod verify_tampered;
