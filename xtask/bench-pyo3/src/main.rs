//! The PyO3 side of `cargo xtask bench --only typed`: the call overhead, a
//! hot Python function and handle churn on CPython 3, printed as
//! `key=value` lines for the xtask to compare with embed-runtime's.

use std::collections::HashMap;
use std::ffi::CString;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::PyModule;

/// The Python side of every case, the same text embed-runtime's bench runs.
const SOURCE: &str = include_str!("../../assets/typed_bench.py");

fn main() -> PyResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let calls: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let hot_calls: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let handles: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    Python::attach(|py| {
        let code = CString::new(SOURCE).expect("no NUL in the source");
        let module = PyModule::from_code(py, &code, c"typed_bench.py", c"typed_bench")?;

        // (a) f(i, s) -> a dict of three entries, converted to a Rust map.
        let f = module.getattr("overhead")?;
        for i in 0..calls / 10 {
            let _: HashMap<String, f64> = f.call1((i as i64, "x"))?.extract()?;
        }
        let start = Instant::now();
        for i in 0..calls {
            let m: HashMap<String, f64> = f.call1((i as i64, "x"))?.extract()?;
            assert_eq!(m.len(), 3);
        }
        println!("call_ns={:.1}", start.elapsed().as_nanos() as f64 / f64::from(calls));

        // (b) a pure-Python loop of 100,000 steps, called many times.
        let hot = module.getattr("hot")?;
        let _: i64 = hot.call1((100_000,))?.extract()?;
        let start = Instant::now();
        for _ in 0..hot_calls {
            let _: i64 = hot.call1((100_000,))?.extract()?;
        }
        println!("hot_ms={:.3}", start.elapsed().as_secs_f64() * 1e3 / f64::from(hot_calls));

        // (c) a handle: import (cached by sys.modules), getattr, drop.
        let start = Instant::now();
        for _ in 0..handles {
            let json = py.import("json")?;
            let dumps = json.getattr("dumps")?;
            drop(dumps);
        }
        println!("handle_ns={:.1}", start.elapsed().as_nanos() as f64 / f64::from(handles));
        Ok(())
    })
}
