//! The process-wide PyPy: starting it once, running source, calling Python
//! functions through the bootstrap's callbacks, and the Rust functions
//! Python can call back.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::cache;
use crate::discover::{self, Home, SearchOptions, Source};
use crate::error::Error;
use crate::ffi::{self, Callbacks, LibPyPy};
use crate::memory::{self, GcSettings, GcSize, MemoryStats, Nursery};
use crate::registry::{self, CallMode, RustFn};
use crate::stamp::Watch;

/// Chooses where PyPy comes from, then starts it.
///
/// ```no_run
/// let rt = embed_runtime::Builder::new().start()?;
/// rt.run("print('hello from PyPy')")?;
/// # Ok::<(), embed_runtime::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    pub(crate) search: SearchOptions,
    pub(crate) verbose: bool,
    pub(crate) gc: GcSettings,
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Use this PyPy and search nowhere else: an archive (`pypy*.tar.gz`), an
    /// extracted tree (the `pypy/` folder holding `PYPY.json`, or the folder
    /// above it), or a tree without a manifest such as Debian's `/usr`.
    pub fn home(mut self, path: impl Into<PathBuf>) -> Self {
        self.search.home = Some(path.into());
        self
    }

    /// Where archives are extracted; default `$PYPY_EMBED_CACHE/runtime`, else
    /// `<user cache dir>/pypy-embed/runtime`.
    pub fn cache_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.search.cache_dir = Some(path.into());
        self
    }

    /// Leave one step out of the search (for instance
    /// [`Source::BuildTime`], so that only run-time configuration counts).
    pub fn skip(mut self, source: Source) -> Self {
        self.search.skip.push(source);
        self
    }

    /// Let `pypy_setup_home` print why it failed, if it does.
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// The nursery, where every new object starts: a size (`"2MB"`, or bytes),
    /// instead of the default of half the L2 cache, at most 4 MB (see the
    /// crate docs, "Memory"). `PYPY_GC_NURSERY` in the environment wins.
    pub fn nursery(mut self, size: impl Into<GcSize>) -> Self {
        self.gc.nursery = Nursery::Size(size.into());
        self
    }

    /// Let PyPy size the nursery itself, as the `pypy` launcher does: on
    /// Linux half of the `cache size` line of `/proc/cpuinfo`, which on some
    /// servers is a last-level cache of hundreds of megabytes.
    pub fn pypy_nursery(mut self) -> Self {
        self.gc.nursery = Nursery::PyPy;
        self
    }

    /// The most memory PyPy's GC may use (`PYPY_GC_MAX`): near it PyPy
    /// collects more often, then raises `MemoryError`. `"512MB"`, `"1.5GB"`
    /// or bytes; at least the nursery.
    pub fn max_heap(mut self, size: impl Into<GcSize>) -> Self {
        self.gc.max_heap = Some(size.into());
        self
    }

    /// No major collection while the heap is smaller than this
    /// (`PYPY_GC_MIN`; PyPy's default is 8 nurseries).
    pub fn min_heap(mut self, size: impl Into<GcSize>) -> Self {
        self.gc.min_heap = Some(size.into());
        self
    }

    /// The next major collection starts when the heap reaches this factor
    /// times what the last one left alive (`PYPY_GC_MAJOR_COLLECT`, PyPy's
    /// default 1.82; greater than 1.0). Lower trades time for memory.
    pub fn major_collect(mut self, factor: f64) -> Self {
        self.gc.major_collect = Some(factor);
        self
    }

    /// The most that threshold may grow from one major collection to the
    /// next (`PYPY_GC_GROWTH`, PyPy's default 1.4; greater than 1.0).
    pub fn growth(mut self, factor: f64) -> Self {
        self.gc.growth = Some(factor);
        self
    }

    /// The threshold is never more than this above what the last major
    /// collection left alive (`PYPY_GC_MAX_DELTA`; PyPy's default is an
    /// eighth of the machine's memory).
    pub fn max_delta(mut self, size: impl Into<GcSize>) -> Self {
        self.gc.max_delta = Some(size.into());
        self
    }

    /// How much an incremental major-collection step marks
    /// (`PYPY_GC_INCREMENT_STEP`; PyPy's default is 4 nurseries).
    pub fn increment_step(mut self, size: impl Into<GcSize>) -> Self {
        self.gc.increment_step = Some(size.into());
        self
    }

    /// Finds PyPy and extracts it if it is an archive, without starting it:
    /// what [`Builder::start`] would use. Useful to fill the cache ahead of
    /// time (an installer, a container build).
    pub fn find(&self) -> Result<Home, Error> {
        discover::find(&self.search)
    }

    /// Finds PyPy (see the crate docs for the order), extracts it if it is an
    /// archive, and starts it, once per process. Starting again returns the
    /// same runtime when the home is the same, and [`Error::OtherHome`] when not.
    pub fn start(self) -> Result<&'static Runtime, Error> {
        let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
        match &*state {
            State::Poisoned(message) => return Err(Error::Poisoned(message.clone())),
            State::Running => {
                let running = RUNTIME.get().expect("Running implies a runtime");
                return self.same_home(running);
            }
            State::Idle => {}
        }
        // Bad settings are refused before anything is found, loaded or started.
        let gc = self.gc.plan(&crate::env::var, memory::l2_cache_size())?;
        let home = discover::find(&self.search)?;
        // A library that does not load leaves PyPy untouched, so a later
        // attempt with another home may still succeed.
        let lib = LibPyPy::load(&home.libpypy)?;
        let started = lib.start(&home.root, self.verbose, &gc.set).and_then(|()| {
            let module = discover::cache_dir(&self.search)
                .ok()
                .and_then(|cache| cache::bootstrap_module(&cache, ffi::BOOTSTRAP));
            lib.bootstrap(
                home.launcher.as_deref(),
                module
                    .as_ref()
                    .map(|(dir, name)| (dir.as_path(), name.as_str())),
            )
        });
        let started = started.and_then(|callbacks| {
            if home.archive.is_some() {
                watch_cached_tree(&callbacks, &home.root)?;
            }
            Ok(callbacks)
        });
        match started {
            Ok(callbacks) => {
                let runtime = RUNTIME.get_or_init(|| Runtime {
                    home,
                    callbacks,
                    memory_stats: OnceLock::new(),
                });
                *state = State::Running;
                Ok(runtime)
            }
            Err(error) => {
                *state = State::Poisoned(error.to_string());
                Err(error)
            }
        }
    }

    fn same_home(&self, running: &'static Runtime) -> Result<&'static Runtime, Error> {
        let Some(_) = &self.search.home else {
            // Without an explicit home, whatever runs is what discovery chose.
            return Ok(running);
        };
        let requested = discover::find(&self.search)?;
        if same_path(&requested.root, &running.home.root) {
            Ok(running)
        } else {
            Err(Error::OtherHome {
                running: running.home.root.clone(),
                requested: requested.root,
            })
        }
    }
}

/// The name under which the runtime registers the check of a cached tree's
/// files at import (bootstrap.py's `CHECK_CACHED_FILE`).
pub(crate) const WATCH_FUNCTION: &str = "embed_runtime.check_cached_file";

/// Makes Python check each file of the cached tree `root` as it imports it
/// (see `stamp`): the start checked only the files PyPy reads while starting.
fn watch_cached_tree(callbacks: &Callbacks, root: &Path) -> Result<(), Error> {
    let (Some(entry), Some(root_text)) = (root.parent(), root.to_str()) else {
        // Python could not match a path it cannot spell; nothing to watch.
        return Ok(());
    };
    let watch = Arc::new(Watch::new(entry.to_path_buf()));
    registry::register_fn(
        WATCH_FUNCTION.into(),
        RustFn::Bytes(Arc::new(move |rel: &[u8]| {
            let rel = std::str::from_utf8(rel)?;
            watch.check(rel)?;
            Ok(Vec::new())
        })),
    );
    let handle = callbacks.lookup("embed_runtime", "_watch_cached_tree")?;
    callbacks.call(handle, root_text.as_bytes(), CallMode::Str, &mut Vec::new())
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

enum State {
    Idle,
    Running,
    /// libpypy was initialised and then something failed: it cannot be retried.
    Poisoned(String),
}

static STATE: Mutex<State> = Mutex::new(State::Idle);
static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Starts PyPy from the first home discovery finds; see [`Builder::start`].
pub fn start() -> Result<&'static Runtime, Error> {
    Builder::new().start()
}

/// The running PyPy, if this process started one.
pub fn running() -> Option<&'static Runtime> {
    RUNTIME.get()
}

/// The one PyPy of this process. Every method may be called from any thread.
pub struct Runtime {
    home: Home,
    pub(crate) callbacks: Callbacks,
    /// The handle of the bootstrap's `memory_stats`, looked up on first use.
    memory_stats: OnceLock<u64>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").field("home", &self.home).finish()
    }
}

impl Runtime {
    /// Where this PyPy was found and how.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// Runs `source` in `__main__` (successive runs share its globals). An
    /// exception comes back as [`Error::Python`] with its traceback.
    ///
    /// Each run keeps its source for tracebacks, so repeated work belongs in
    /// a function called through [`Runtime::function`].
    pub fn run(&self, source: &str) -> Result<(), Error> {
        self.callbacks.run(source)
    }

    /// Looks up `module.name` once (importing the module; `name` may be
    /// dotted, like `Class.method`) and returns a handle that calls it fast.
    /// Use module `__main__` for functions defined by [`Runtime::run`].
    pub fn function(&'static self, module: &str, name: &str) -> Result<Function, Error> {
        let handle = self.callbacks.lookup(module, name)?;
        Ok(Function {
            runtime: self,
            handle,
            name: format!("{module}.{name}").into(),
        })
    }

    /// The GC's own figures now: heap used and its peak, the nursery, minor
    /// and major collections so far, read through PyPy's `gc` module. Costs
    /// one call into Python, so it suits logging, not a hot loop.
    ///
    /// The collection counts come from `gc.hooks`; Python code that sets its
    /// own `gc.hooks.on_gc_minor` or `on_gc_collect` stops them.
    pub fn memory(&self) -> Result<MemoryStats, Error> {
        let handle = match self.memory_stats.get() {
            Some(handle) => *handle,
            None => {
                let handle = self.callbacks.lookup("embed_runtime", "memory_stats")?;
                *self.memory_stats.get_or_init(|| handle)
            }
        };
        let mut out = Vec::new();
        self.callbacks
            .call(handle, b"", CallMode::Bytes, &mut out)?;
        MemoryStats::parse(&String::from_utf8(out)?)
    }

    /// The raw `pypy_execute_source`: each call leaks a globals dict and an
    /// exception comes back only as [`Error::ExecuteSource`]. Prefer
    /// [`Runtime::run`]; this exists to compare against and for debugging.
    pub fn execute_source_raw(&self, source: &str) -> Result<(), Error> {
        self.callbacks.lib().execute_source(source)
    }
}

/// A Python function looked up once; calling it costs one cffi callback.
#[derive(Clone)]
pub struct Function {
    pub(crate) runtime: &'static Runtime,
    pub(crate) handle: u64,
    pub(crate) name: Arc<str>,
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.name)
            .finish()
    }
}

impl Function {
    /// `module.name` as looked up.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Calls the function with a `bytes` argument; it returns `bytes`, `str`
    /// (sent as UTF-8) or `None` (empty).
    pub fn call_bytes(&self, arg: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.call_bytes_into(arg, &mut out)?;
        Ok(out)
    }

    /// Like [`Function::call_bytes`], writing the result into `out` (cleared
    /// first), so that a loop can reuse one buffer.
    pub fn call_bytes_into(&self, arg: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        out.clear();
        self.runtime
            .callbacks
            .call(self.handle, arg, CallMode::Bytes, out)
    }

    /// Calls the function with a `str` argument; its result must be UTF-8.
    pub fn call_str(&self, arg: &str) -> Result<String, Error> {
        let mut out = Vec::new();
        self.runtime
            .callbacks
            .call(self.handle, arg.as_bytes(), CallMode::Str, &mut out)?;
        Ok(String::from_utf8(out)?)
    }
}
