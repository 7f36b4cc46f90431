//! A plugin host: loads a Python "plugin" (here a module written to a
//! temporary folder), looks its entry point up once, and calls it in a loop
//! with bytes, as a host would call a user's transform on each record. The
//! plugin calls back into the host through a Rust function it registered.
//!
//! `cargo run --release --example plugin_host [-- CALLS]`

use std::process::ExitCode;
use std::time::Instant;

const PLUGIN: &str = r#"
import embed_runtime

def transform(record):
    # A plugin's work: parse, change, serialise; `host_log` is the host's.
    key, _, value = record.partition(b"=")
    if not value:
        embed_runtime.call("host_log", b"skipped " + key)
        return b""
    return key.upper() + b"=" + value[::-1]
"#;

fn main() -> ExitCode {
    match host() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn host() -> Result<(), Box<dyn std::error::Error>> {
    let calls: u32 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1_000_000);

    // The plugin lives in a folder the host puts on sys.path.
    let plugins = tempfile::tempdir()?;
    std::fs::write(plugins.path().join("my_plugin.py"), PLUGIN)?;

    let skipped = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = skipped.clone();
    embed_runtime::register("host_log", move |_message: &[u8]| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Vec::new())
    });

    let rt = embed_runtime::start()?;
    let dir = plugins.path().display().to_string();
    rt.run(&format!("import sys; sys.path.insert(0, {dir:?})"))?;
    let transform = rt.function("my_plugin", "transform")?;

    let mut out = Vec::new();
    let start = Instant::now();
    for i in 0..calls {
        // One record in a hundred has no value, so the plugin calls the host.
        let record = if i % 100 == 0 {
            format!("key{i}")
        } else {
            format!("key{i}=value{i}")
        };
        transform.call_bytes_into(record.as_bytes(), &mut out)?;
    }
    let took = start.elapsed();
    println!(
        "{calls} calls in {:.3} s: {:.0} ns per call; the plugin called the host {} times; last result {:?}",
        took.as_secs_f64(),
        took.as_nanos() as f64 / f64::from(calls.max(1)),
        skipped.load(std::sync::atomic::Ordering::Relaxed),
        String::from_utf8_lossy(&out),
    );
    Ok(())
}
