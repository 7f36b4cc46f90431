//! Embed PyPy in a Rust program from a relocatable archive built by this
//! project's `cargo xtask build-pypy` or `cargo xtask repackage`.
//!
//! ```no_run
//! use std::collections::HashMap;
//!
//! let rt = embed_runtime::start()?;
//! rt.run("def score(n, tag): return {tag: n * 1.5, 'base': float(n)}")?;
//!
//! // Rust values in, Rust values out: look the function up once, call it fast.
//! let score = rt.function("__main__", "score")?;
//! let s: HashMap<String, f64> = score.call((42, "x"))?;
//! assert_eq!(s["x"], 63.0);
//!
//! // Python objects as handles.
//! let json = rt.import("json")?;
//! let text: String = json.call_method("dumps", (vec![1, 2],))?.extract()?;
//! assert_eq!(text, "[1, 2]");
//!
//! // Rust functions with typed signatures, called from Python.
//! embed_runtime::register_typed("add", |a: i64, b: i64| Ok::<_, embed_runtime::BoxError>(a + b));
//! rt.run("import embed_runtime; assert embed_runtime.call('add', 1, 2) == 3")?;
//! # Ok::<(), embed_runtime::Error>(())
//! ```
//!
//! # Values and objects
//!
//! [`Function::call`] takes any `serde::Serialize` (a tuple is the argument
//! list, `()` none, any other value the one argument), [`Function::call_kw`]
//! adds keyword arguments (a map or a struct), and the result is read as any
//! `serde::de::DeserializeOwned`. None, bool, int (of any size; an error
//! when it does not fit the Rust type), float, str, bytes (use
//! `serde_bytes::ByteBuf`), list, tuple, dict and set map both ways; structs
//! are dicts, enums are their variant's name or `{name: value}`. Values
//! cross in Python's own `marshal` format, which PyPy reads and writes at
//! interpreter level (`cargo xtask bench` compares it with JSON). A
//! conversion that fails is [`Error::Convert`], naming the Python type, the
//! Rust type and where (`argument 2`, `scores[1]`); a Python exception is
//! [`Error::Python`] with its type, message and traceback.
//!
//! [`PyObject`] holds any Python object: [`Runtime::import`],
//! [`PyObject::getattr`], [`PyObject::call`], [`PyObject::call_method`],
//! [`PyObject::extract`], [`PyObject::repr`] and [`PyObject::str`]; dropping
//! it releases the object. Handles are `Send + Sync` and borrow the runtime
//! for `'static`, so none can outlive the PyPy it belongs to.
//!
//! For those coming from PyO3:
//!
//! | PyO3 | embed-runtime |
//! |---|---|
//! | `Python::with_gil(\|py\| ...)` | nothing: every method attaches the thread itself |
//! | `py.import("json")?` | `rt.import("json")?` |
//! | `obj.getattr("dumps")?` | `obj.getattr("dumps")?` |
//! | `f.call1((1, "x"))?` | `obj.call((1, "x"))?` (a handle) or `function.call((1, "x"))?` (converted) |
//! | `f.call((1,), Some(&kwargs))?` | `function.call_kw((1,), Some(&kwargs))?` |
//! | `obj.call_method1("m", (1,))?` | `obj.call_method("m", (1,))?` |
//! | `obj.extract::<T>()?` | `obj.extract::<T>()?` (any serde type) |
//! | `Py<PyAny>` | `PyObject` |
//! | `#[pyfunction]` + `wrap_pyfunction!` | `register_typed("name", \|a: i64, s: String\| ...)` |
//! | `py.run(code, None, None)?` | `rt.run(code)?` |

//! # Where PyPy comes from
//!
//! [`start`] (or [`Builder::start`]) looks, in this order, and uses the first
//! place that exists:
//!
//! 1. the path given to [`Builder::home`]: an archive or an extracted tree
//!    (nothing else is searched then);
//! 2. `$PYPY_EMBED_HOME`: an extracted tree (the `pypy/` folder holding
//!    `PYPY.json`, the folder above it, or a tree without manifest such as
//!    Debian's `/usr`);
//! 3. `$PYPY_EMBED_ARCHIVE`: an archive;
//! 4. beside the running executable: a `pypy/` tree, else the newest
//!    `pypy<py>-v<pypy>-<target>.tar.gz` for this target, so an application
//!    can ship its PyPy next to it;
//! 5. the archive the build script found: `$PYPY_EMBED_BUILD_ARCHIVE` at
//!    build time, else the newest archive for the build target in the
//!    workspace's `dist/` (cargo rebuilds when `dist/` changes);
//! 6. with the cargo feature `embedded-archive`, that same archive built into
//!    the binary with `include_bytes!` (single-file deployment).
//!
//! A place that is set but unusable (a variable naming a missing folder, a
//! damaged archive) is an error rather than a reason to try the next: running
//! another PyPy than the one configured would be worse. When nothing is
//! found, [`Error::NotFound`] lists every place searched.
//!
//! Archives are extracted once into `<cache>/<sha256 of the archive>/pypy/`,
//! where `<cache>` is `$PYPY_EMBED_CACHE/runtime`, else the user's cache
//! folder (`~/.cache/pypy-embed/runtime` on Linux), or [`Builder::cache_dir`].
//! Extraction checks every file's sha256 against `PYPY.json`, refuses unsafe
//! entries (absolute paths, `..`, links leaving the tree), and happens in a
//! temporary folder renamed into place under a file lock: any number of
//! processes may start at once. Each start checks the files PyPy reads while
//! starting (sizes, modes and mtimes against what extraction recorded) and
//! every folder's mtime, and extracts again if a file changed or vanished;
//! any other file of the tree is checked when Python imports it, and a
//! changed one fails to import with an `ImportError` that says so and makes
//! the next start extract again (the `stamp` module says why not more).
//!
//! [`Builder::find`] does all of this without starting PyPy, to fill the
//! cache ahead of time (an installer step, a container build).
//!
//! # Start-up and calls
//!
//! Starting costs what any embedder pays (`dlopen`, `rpython_startup_code`,
//! `pypy_setup_home`, `pypy_init_threads`) plus one bootstrap that connects
//! the two sides with PyPy's built-in `_cffi_backend`; the bootstrap is kept
//! as a module in `<cache>/bootstrap/` so that PyPy caches its bytecode.
//! After that, [`Runtime::function`] looks a Python function up once and
//! each [`Function`] call is one cffi callback (a few hundred nanoseconds
//! for short bytes), with no memory growth. `pypy_execute_source`, by
//! contrast, costs tens of microseconds and leaks a dict per call, so
//! [`Runtime::run`] goes through the bridge too.
//!
//! # Memory
//!
//! PyPy's GC is configured once, before PyPy starts, through the
//! [`Builder`]. Capping PyPy's heap takes one line:
//!
//! ```no_run
//! let rt = embed_runtime::Builder::new().max_heap("512MB").start()?;
//! # Ok::<(), embed_runtime::Error>(())
//! ```
//!
//! Near the cap PyPy collects more often, then raises `MemoryError` in
//! Python, which comes back as [`Error::Python`] if the code does not catch it.
//! The settings are [`Builder::nursery`], [`Builder::max_heap`],
//! [`Builder::min_heap`], [`Builder::major_collect`], [`Builder::growth`],
//! [`Builder::max_delta`] and [`Builder::increment_step`]. Each is one of the
//! `PYPY_GC_*` variables PyPy's GC reads (see their docs); sizes are bytes or
//! text as PyPy reads it (`"4MB"`, `"512K"`, `"1.5GB"`). A value PyPy could
//! not use (a nursery of 0, a maximum heap below the nursery, a unit such as
//! `MiB`, a factor not above 1.0) is [`Error::GcSetting`] and nothing starts.
//!
//! **The environment wins.** A `PYPY_GC_*` variable already set when PyPy
//! starts overrides the builder, so an operator can tune a program without
//! rebuilding it; it is checked the same way. The variables the builder
//! sets are set just before `rpython_startup_code` and removed right after,
//! so they reach this process's GC only: not Python's `os.environ`, not
//! child processes.
//!
//! **The nursery.** Every new Python object starts in the nursery, a block
//! the GC empties with a minor collection whenever it fills. PyPy sizes it at
//! about half the CPU's L2 cache, but on Linux it reads the size from the
//! `cache size` line of `/proc/cpuinfo`, which names the *last-level* cache:
//! on a server reporting a 300 MB L3 the nursery is 150 MB, and a host
//! process grows by that much as soon as Python code allocates. embed-runtime
//! follows PyPy's intent with the real L2 size instead (sysfs on Linux,
//! `hw.l2cachesize` on macOS): half of it, at least 512 KB and at most 4 MB
//! (4 MB is also PyPy's own choice when it cannot read the cache, and on
//! Windows); see [`default_nursery_size`]. On a machine with a 2 MB L2 that
//! is a 1 MB nursery. To get PyPy's own behaviour back, use
//! [`Builder::pypy_nursery`] (or set `PYPY_GC_NURSERY`).
//!
//! [`Runtime::memory`] reports the GC's own figures (heap used and its peak,
//! the nursery, minor and major collections) for a host to log.
//!
//! # Threads
//!
//! Every method may be called from any thread. A thread that PyPy did not
//! start is attached (`pypy_thread_attach`) the first time it calls in, under
//! a process-wide mutex; PyPy keeps a small record for it until the process
//! ends (there is no detach), so prefer a pool of threads to a thread per call. PyPy's
//! GIL serialises the Python code itself, so calls from several threads are
//! correct but do not run Python in parallel. A Rust function called from
//! Python runs on the calling thread and may call Python again.
//!
//! # Errors
//!
//! An exception in Python comes back as [`Error::Python`] with the exception's
//! type, message and full traceback (`SystemExit` too: `sys.exit()` in
//! Python does not end the host process). An `Err` from a Rust function registered
//! with [`register`] raises `embed_runtime.RustError` in Python; a panic is
//! caught at the boundary and raises `embed_runtime.RustPanic`: no Rust panic
//! ever unwinds into PyPy.
//!
//! # Not supported
//!
//! - Finalisation: PyPy has no finalize function, so it cannot be shut down,
//!   and cannot be started twice in one process. The first successful start
//!   decides the home for the life of the process; starting again with the
//!   same home returns the same [`Runtime`], with another home is
//!   [`Error::OtherHome`]. A start that fails after libpypy was initialised
//!   leaves the process unable to start PyPy ([`Error::Poisoned`]).
//! - Two different PyPy versions in one process.
//! - `fork()` after PyPy started (upstream does not support it for
//!   embedders either).
//! - Python objects inside values: a value that crosses is converted; to
//!   keep an object, hold it as a [`PyObject`]. Keyword arguments reach
//!   Python functions, not Rust ones (`register_typed` takes positional
//!   arguments).

// The compiler keeps every `unsafe` block in `ffi`, each with its SAFETY line.
#![deny(unsafe_code)]

mod cache;
mod discover;
#[cfg(feature = "embedded-archive")]
mod embedded;
mod env;
mod error;
#[allow(unsafe_code)]
mod ffi;
pub use pypy_archive::manifest;
pub mod marshal;
mod memory;
#[cfg(test)]
mod protocol;
mod registry;
mod runtime;
mod stamp;
mod typed;

pub use discover::{
    build_time_archive, ArchiveOrigin, Home, Source, ARCHIVE_ENV, CACHE_ENV, HOME_ENV,
};
pub use error::{Error, PythonError, Searched};
pub use memory::{
    default_nursery_size, l2_cache_size, parse_size, GcSize, MemoryStats, Nursery,
    DEFAULT_NURSERY_CAP, DEFAULT_NURSERY_FLOOR, GC_VARIABLES,
};
pub use registry::{register, register_str, BoxError};
pub use runtime::{running, start, Builder, Function, Runtime};
pub use typed::{register_typed, PyObject, TypedFn};
