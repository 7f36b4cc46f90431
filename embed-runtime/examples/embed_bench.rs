//! The measuring end of `cargo xtask bench --only embed` (xtask/src/embed_bench.rs),
//! built in release mode; each subcommand does one thing the xtask times or
//! reads back from stdout as `key=value` lines.
//!
//! - `first-statement HOME`: start PyPy and run `pass` (the xtask times the process);
//! - `calls HOME N`: nanoseconds per fast-path call and per `pypy_execute_source`;
//! - `extract ARCHIVE CACHE`: extract an archive into an empty cache;
//! - `memory HOME N default|pypy`: RSS added by N fast-path calls and
//!   nanoseconds per call, with embed-runtime's default nursery or PyPy's own.

use std::path::PathBuf;
use std::time::Instant;

use embed_runtime::Builder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: embed_bench first-statement HOME | calls HOME N | extract ARCHIVE CACHE \
                 | memory HOME N default|pypy";
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["first-statement", home] => {
            let rt = Builder::new().home(home).start()?;
            rt.run("pass")?;
        }
        ["calls", home, n] => calls(home, n.parse()?)?,
        ["memory", home, n, nursery] => memory(home, n.parse()?, nursery)?,
        ["extract", archive, cache] => {
            let home = Builder::new()
                .home(archive)
                .cache_dir(PathBuf::from(cache))
                .find()?;
            let extracted = home.archive.as_ref().is_some_and(|a| a.extracted_now);
            println!("extracted_now={extracted}");
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}

fn calls(home: &str, n: u32) -> Result<(), Box<dyn std::error::Error>> {
    let rt = Builder::new().home(home).start()?;
    rt.run("def echo(data):\n    return data")?;
    let echo = rt.function("__main__", "echo")?;
    let arg = b"0123456789abcdef";
    let mut out = Vec::new();
    // Warm-up lets the JIT compile the call path, as in a long-running host.
    for _ in 0..n / 10 {
        echo.call_bytes_into(arg, &mut out)?;
    }
    let start = Instant::now();
    for _ in 0..n {
        echo.call_bytes_into(arg, &mut out)?;
    }
    let fast = start.elapsed().as_nanos() as f64 / f64::from(n);
    assert_eq!(out, arg);

    // Each raw call leaks a globals dict, so fewer of them.
    let raw_calls = (n / 100).max(100);
    let start = Instant::now();
    for _ in 0..raw_calls {
        rt.execute_source_raw("pass")?;
    }
    let raw = start.elapsed().as_nanos() as f64 / f64::from(raw_calls);
    println!("fast_call_ns={fast:.1}");
    println!("execute_source_ns={raw:.1}");
    Ok(())
}

fn memory(home: &str, n: u32, nursery: &str) -> Result<(), Box<dyn std::error::Error>> {
    let builder = match nursery {
        "default" => Builder::new(),
        "pypy" => Builder::new().pypy_nursery(),
        other => return Err(format!("unknown nursery {other:?}: default or pypy").into()),
    };
    let rt = builder.home(home).start()?;
    rt.run("def echo(data):\n    return data")?;
    let echo = rt.function("__main__", "echo")?;
    let arg = b"0123456789abcdef";
    let mut out = Vec::new();
    let before = rss_kb()?;
    for _ in 0..n / 10 {
        echo.call_bytes_into(arg, &mut out)?;
    }
    let start = Instant::now();
    for _ in 0..n {
        echo.call_bytes_into(arg, &mut out)?;
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(n);
    let after = rss_kb()?;
    assert_eq!(out, arg);
    println!("call_ns={ns:.1}");
    println!("rss_start_kb={before}");
    println!("rss_end_kb={after}");
    println!("nursery_kb={}", rt.memory()?.nursery / 1024);
    Ok(())
}

/// The resident set size of this process, from `/proc/self/status` (Linux).
fn rss_kb() -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS line in /proc/self/status".into())
}
