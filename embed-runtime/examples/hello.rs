//! Hello world: finds PyPy (an archive in the workspace's `dist/` is enough),
//! starts it, and runs a line of Python.
//!
//! `cargo run --example hello`

use std::process::ExitCode;

fn main() -> ExitCode {
    match hello() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn hello() -> Result<(), embed_runtime::Error> {
    let rt = embed_runtime::start()?;
    rt.run("import sys; print('Hello from PyPy', sys.version.split()[0], 'on', sys.platform)")?;
    let home = rt.home();
    println!(
        "(PyPy from {} via {})",
        home.root.display(),
        home.source.describe()
    );
    Ok(())
}
