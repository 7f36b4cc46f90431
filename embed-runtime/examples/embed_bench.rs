//! The measuring end of `cargo xtask bench --only embed` (xtask/src/embed_bench.rs),
//! built in release mode; each subcommand does one thing the xtask times or
//! reads back from stdout as `key=value` lines.
//!
//! - `first-statement HOME`: start PyPy and run `pass` (the xtask times the process);
//! - `first-statement-found`: the same with PyPy found as an application
//!   finds it, skipping the build script's archive: with the
//!   `embedded-archive` feature, the archive inside this binary;
//! - `find HOME N`: nanoseconds per `Builder::find` of HOME (warm cache);
//! - `calls HOME N`: nanoseconds per fast-path call and per `pypy_execute_source`;
//! - `extract ARCHIVE CACHE`: extract an archive into an empty cache;
//! - `memory HOME N default|pypy`: RSS added by N fast-path calls and
//!   nanoseconds per call, with embed-runtime's default nursery or PyPy's own;
//! - `typed HOME CALLS HOT_CALLS HANDLES`: typed calls (marshal, and JSON
//!   for comparison), a hot Python function, handle churn; the PyO3 side of
//!   the same cases is `xtask/bench-pyo3`.

use std::path::PathBuf;
use std::time::Instant;

use embed_runtime::Builder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: embed_bench first-statement HOME | first-statement-found | find HOME N \
                 | calls HOME N | extract ARCHIVE CACHE \
                 | memory HOME N default|pypy | typed HOME CALLS HOT_CALLS HANDLES";
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
        ["first-statement-found"] => {
            let rt = Builder::new()
                .skip(embed_runtime::Source::BuildTime)
                .start()?;
            rt.run("pass")?;
        }
        ["find", home, n] => {
            let n: u32 = n.parse()?;
            let builder = Builder::new().home(home);
            builder.find()?;
            let started = Instant::now();
            for _ in 0..n {
                builder.find()?;
            }
            let ns = started.elapsed().as_nanos() as f64 / f64::from(n.max(1));
            println!("find_ns={ns:.0}");
        }
        ["calls", home, n] => calls(home, n.parse()?)?,
        ["memory", home, n, nursery] => memory(home, n.parse()?, nursery)?,
        ["typed", home, calls, hot, handles] => {
            typed(home, calls.parse()?, hot.parse()?, handles.parse()?)?
        }
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

/// The Python side of the typed cases, shared with the PyO3 bench.
const TYPED_SOURCE: &str = include_str!("../../xtask/assets/typed_bench.py");

fn typed(
    home: &str,
    calls: u32,
    hot_calls: u32,
    handles: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    use std::collections::HashMap;

    let rt = Builder::new().home(home).start()?;
    rt.run(TYPED_SOURCE)?;

    // (a) f(i, s) -> a dict of three entries, as a Rust map; marshal.
    let f = rt.function("__main__", "overhead")?;
    for i in 0..calls / 10 {
        let _: HashMap<String, f64> = f.call((i64::from(i), "x"))?;
    }
    let start = Instant::now();
    for i in 0..calls {
        let m: HashMap<String, f64> = f.call((i64::from(i), "x"))?;
        assert_eq!(m.len(), 3);
    }
    println!(
        "call_ns={:.1}",
        start.elapsed().as_nanos() as f64 / f64::from(calls)
    );

    // The fixed cost of a typed call: no arguments, None back.
    rt.run("def nothing():\n    return None")?;
    let nothing = rt.function("__main__", "nothing")?;
    for _ in 0..calls / 10 {
        let () = nothing.call(())?;
    }
    let start = Instant::now();
    for _ in 0..calls {
        let () = nothing.call(())?;
    }
    println!(
        "empty_call_ns={:.1}",
        start.elapsed().as_nanos() as f64 / f64::from(calls)
    );

    // The same through JSON on both sides, the alternative wire format.
    let fj = rt.function("__main__", "overhead_json")?;
    for i in 0..calls / 10 {
        let out = fj.call_str(&serde_json::to_string(&(i, "x"))?)?;
        let _: HashMap<String, f64> = serde_json::from_str(&out)?;
    }
    let start = Instant::now();
    for i in 0..calls {
        let out = fj.call_str(&serde_json::to_string(&(i, "x"))?)?;
        let m: HashMap<String, f64> = serde_json::from_str(&out)?;
        assert_eq!(m.len(), 3);
    }
    println!(
        "json_call_ns={:.1}",
        start.elapsed().as_nanos() as f64 / f64::from(calls)
    );

    // (b) a pure-Python loop of 100,000 steps; the JIT warms up first.
    let hot = rt.function("__main__", "hot")?;
    for _ in 0..20 {
        let _: i64 = hot.call((100_000,))?;
    }
    let start = Instant::now();
    for _ in 0..hot_calls {
        let _: i64 = hot.call((100_000,))?;
    }
    println!(
        "hot_ms={:.3}",
        start.elapsed().as_secs_f64() * 1e3 / f64::from(hot_calls)
    );

    // (c) a handle: import (cached by sys.modules), getattr, drop.
    let churn = |n: u32| -> Result<(), embed_runtime::Error> {
        for _ in 0..n {
            let json = rt.import("json")?;
            drop(json.getattr("dumps")?);
        }
        Ok(())
    };
    churn(handles / 10)?;
    let start = Instant::now();
    churn(handles)?;
    println!(
        "handle_ns={:.1}",
        start.elapsed().as_nanos() as f64 / f64::from(handles)
    );
    // RSS over 1,000,000 more handles created and dropped, in steady state.
    let before = rss_kb()?;
    churn(1_000_000)?;
    println!("churn_rss_growth_kb={}", rss_kb()? as i64 - before as i64);
    Ok(())
}
