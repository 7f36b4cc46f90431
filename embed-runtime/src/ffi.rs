//! Every `unsafe` line of the crate: loading libpypy, its six C functions,
//! the `#[repr(C)]` bridge the bootstrap fills in, and the `extern "C"`
//! callbacks PyPy calls. The rest of the crate only sees safe wrappers.
//!
//! The invariants this module keeps:
//! - libpypy is never unloaded (there is no way to finalise PyPy), so the
//!   function pointers taken from it stay valid for the whole process;
//! - a thread calls into PyPy only after `pypy_thread_attach` ran on it once
//!   (or it is the thread that started PyPy), serialised by [`ATTACH_LOCK`];
//! - no Rust panic crosses into PyPy: every `extern "C"` function here runs
//!   its body under `catch_unwind`.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::error::{Error, PythonError};
use crate::registry::{CallMode, ReplyStatus};

/// The bootstrap, run once through `pypy_execute_source_ptr`.
pub(crate) const BOOTSTRAP: &str = include_str!("bootstrap.py");

/// A few lines that load the bootstrap from `dir/name.py` through the
/// import system's own source loader, which keeps its bytecode in
/// `__pycache__` (without the cost of a `sys.path` search), then run it.
/// The path goes in as hex, so that no path can break the quoting. The
/// code runs in a module's namespace, not a plain dict: PyPy's JIT folds a
/// module's globals into constants, where a dict costs a lookup per use on
/// every call.
fn loader_source(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.py"));
    #[cfg(unix)]
    let path_hex = {
        use std::os::unix::ffi::OsStrExt;
        hex::encode(path.as_os_str().as_bytes())
    };
    #[cfg(not(unix))]
    let path_hex = hex::encode(path.to_string_lossy().as_bytes());
    format!(
        "def _embed_runtime_load():\n\
         \x20   import sys\n\
         \x20   path = bytes.fromhex('{path_hex}').decode('utf-8', 'surrogateescape')\n\
         \x20   external = sys.modules.get('_frozen_importlib_external') \\\n\
         \x20       or sys.modules['importlib._bootstrap_external']\n\
         \x20   code = external.SourceFileLoader('{name}', path).get_code('{name}')\n\
         \x20   module = type(sys)('{name}')\n\
         \x20   module.__file__ = path\n\
         \x20   exec(code, module.__dict__)\n\
         \x20   module._main(c_argument)\n\
         _embed_runtime_load()\n"
    )
}

type StartupFn = unsafe extern "C" fn() -> c_int;
type SetupHomeFn = unsafe extern "C" fn(*const c_char, c_int) -> c_int;
type VoidFn = unsafe extern "C" fn();
type ExecuteFn = unsafe extern "C" fn(*const c_char) -> c_int;
type ExecutePtrFn = unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int;

/// libpypy's embedding functions. Copyable because the library is never
/// unloaded; see the module comment.
#[derive(Clone, Copy)]
pub(crate) struct LibPyPy {
    startup: StartupFn,
    setup_home: SetupHomeFn,
    init_threads: VoidFn,
    execute_source: ExecuteFn,
    execute_source_ptr: ExecutePtrFn,
    thread_attach: VoidFn,
}

impl LibPyPy {
    /// Loads libpypy and resolves the embedding functions.
    pub(crate) fn load(path: &Path) -> Result<LibPyPy, Error> {
        let load_error = |reason: String| Error::Load {
            path: path.to_path_buf(),
            reason,
        };
        let absolute = std::path::absolute(path).map_err(|e| load_error(e.to_string()))?;
        // SAFETY: loading runs libpypy's initialisers, which only set up
        // RPython's static data; nothing else in the process depends on them.
        let library = unsafe { open_library(&absolute) }.map_err(|e| load_error(e.to_string()))?;
        // SAFETY: each type matches the C declaration in the archive's
        // `pypy_embed.h` (xtask/assets/pypy_embed.h: `int rpython_startup_code(void)`,
        // `int pypy_setup_home(char *, int)`, …).
        let lib = unsafe {
            LibPyPy {
                startup: symbol(&library, "rpython_startup_code").map_err(load_error)?,
                setup_home: symbol(&library, "pypy_setup_home").map_err(load_error)?,
                init_threads: symbol(&library, "pypy_init_threads").map_err(load_error)?,
                execute_source: symbol(&library, "pypy_execute_source").map_err(load_error)?,
                execute_source_ptr: symbol(&library, "pypy_execute_source_ptr")
                    .map_err(load_error)?,
                thread_attach: symbol(&library, "pypy_thread_attach").map_err(load_error)?,
            }
        };
        // PyPy has no finalisation: unloading it would leave its threads and
        // callbacks pointing into unmapped code, so it stays loaded for good.
        std::mem::forget(library);
        Ok(lib)
    }

    /// `rpython_startup_code()`, then `pypy_setup_home(home, verbose)`, then
    /// `pypy_init_threads()`. The caller makes sure this runs once per process
    /// (its guard in C is not thread-safe); the calling thread counts as attached.
    ///
    /// `gc_env` are `PYPY_GC_*` variables (none already set) that the GC reads
    /// while `rpython_startup_code` sets it up; they are removed right after,
    /// before `pypy_setup_home` builds Python's `os.environ`, so they affect
    /// this GC only and are not inherited by child processes.
    pub(crate) fn start(
        &self,
        home: &Path,
        verbose: bool,
        gc_env: &[(&str, String)],
    ) -> Result<(), Error> {
        let home_c = path_cstring(home)?;
        if STARTED.swap(true, Ordering::SeqCst) {
            return Err(Error::Startup(
                "libpypy's start-up already ran in this process".into(),
            ));
        }
        // The environment is process-wide: another thread reading it at this
        // moment would race, which is why this happens once, at start.
        for (name, value) in gc_env {
            std::env::set_var(name, value);
        }
        // SAFETY: the STARTED flag makes this the first and only call in the
        // process, before any other libpypy function.
        let code = unsafe { (self.startup)() };
        for (name, _) in gc_env {
            std::env::remove_var(name);
        }
        if code != 0 {
            return Err(Error::Startup(format!(
                "rpython_startup_code returned {code} (67 means it already ran in this process)"
            )));
        }
        // SAFETY: `home_c` is a valid NUL-terminated string that outlives the call;
        // rpython_startup_code ran just before.
        let code = unsafe { (self.setup_home)(home_c.as_ptr(), c_int::from(verbose)) };
        match code {
            0 => {}
            1 => {
                return Err(Error::StdlibNotFound {
                    home: home.to_path_buf(),
                    code,
                })
            }
            _ => {
                return Err(Error::Startup(format!(
                    "pypy_setup_home({}) returned {code}: `import site` raised \
                     (PyPy printed the exception to stderr)",
                    home.display()
                )))
            }
        }
        // SAFETY: pypy_setup_home succeeded, which is what pypy_init_threads needs.
        unsafe { (self.init_threads)() };
        ATTACHED.with(|a| a.set(true));
        READY.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Every call into PyPy after start-up goes through here first.
    fn ready(&self) -> Result<(), Error> {
        if READY.load(Ordering::Acquire) {
            self.attach_current_thread();
            Ok(())
        } else {
            Err(Error::Bridge("PyPy has not been started".into()))
        }
    }

    /// `pypy_execute_source(source)`: leaks a globals dict per call and gives
    /// no traceback; kept for the benchmark's contrast and for callers who
    /// really want the raw call.
    pub(crate) fn execute_source(&self, source: &str) -> Result<(), Error> {
        let source = CString::new(source)
            .map_err(|_| Error::Bridge("source code contains a NUL byte".into()))?;
        self.ready()?;
        // SAFETY: PyPy is started (READY), this thread is attached, and `source` is NUL-terminated and outlives the call.
        let code = unsafe { (self.execute_source)(source.as_ptr()) };
        if code == 0 {
            Ok(())
        } else {
            Err(Error::ExecuteSource(code))
        }
    }

    /// Runs the bootstrap, which fills in the bridge; returns the callbacks.
    /// With `module` (a folder and a module name holding [`BOOTSTRAP`]) it is
    /// imported, so that PyPy caches its bytecode; if that fails the source
    /// itself runs.
    pub(crate) fn bootstrap(
        &self,
        executable: Option<&Path>,
        module: Option<(&Path, &str)>,
    ) -> Result<Callbacks, Error> {
        if let Some((dir, name)) = module {
            match self.run_bootstrap(&loader_source(dir, name), executable) {
                // Nothing was reported: the import itself failed; run the source.
                Err(Error::Bridge(_)) => {}
                other => return other,
            }
        }
        self.run_bootstrap(BOOTSTRAP, executable)
    }

    fn run_bootstrap(&self, source: &str, executable: Option<&Path>) -> Result<Callbacks, Error> {
        let executable = executable.map(path_cstring).transpose()?;
        let mut sink_out = Vec::new();
        let mut sink = Sink::new(&mut sink_out);
        let mut bridge = Box::new(Bridge {
            size: std::mem::size_of::<Bridge>(),
            sink_write,
            sink_error,
            rust_call,
            bootstrap_sink: (&mut sink as *mut Sink).cast(),
            executable: executable.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            lookup: None,
            call: None,
            run: None,
            object: None,
        });
        let source = CString::new(source)
            .map_err(|_| Error::Bridge("the bootstrap contains a NUL byte".into()))?;
        self.ready()?;
        // SAFETY: PyPy is started (READY), this thread is attached; the bootstrap reads and writes `bridge` only
        // during this call (it copies the Rust function pointers into cffi
        // objects, and writes the three Python ones); `bridge`, `sink` and
        // `executable` outlive the call.
        let code = unsafe {
            (self.execute_source_ptr)(source.as_ptr(), (&mut *bridge as *mut Bridge).cast())
        };
        if let Some(error) = sink.error.take() {
            return Err(Error::Python(error));
        }
        if code != 0 {
            return Err(Error::Bridge(format!(
                "the bootstrap failed before it could report (pypy_execute_source_ptr \
                 returned {code}; PyPy printed the exception to stderr); does this PyPy \
                 lack _cffi_backend?"
            )));
        }
        match (bridge.lookup, bridge.call, bridge.run, bridge.object) {
            (Some(lookup), Some(call), Some(run), Some(object)) => Ok(Callbacks {
                lib: *self,
                lookup,
                call,
                run,
                object,
            }),
            _ => Err(Error::Bridge(
                "the bootstrap returned without filling in its callbacks".into(),
            )),
        }
    }

    /// Attaches the calling thread to PyPy once; later calls cost a thread-local read.
    fn attach_current_thread(&self) {
        if ATTACHED.with(|a| a.get()) {
            return;
        }
        let _guard = ATTACH_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: PyPy is started (callers either checked READY or hold
        // `Callbacks`, which exist only after it), this thread was
        // never attached (thread-local flag), and the global lock makes the
        // non-thread-safe attach run alone.
        unsafe { (self.thread_attach)() };
        ATTACHED.with(|a| a.set(true));
    }
}

thread_local! {
    /// Whether this thread may call into PyPy.
    static ATTACHED: Cell<bool> = const { Cell::new(false) };
    /// The reply of the last Rust function Python called on this thread; Python
    /// copies it before doing anything else, so one buffer per thread suffices.
    static REPLY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `pypy_thread_attach` is not thread-safe.
static ATTACH_LOCK: Mutex<()> = Mutex::new(());
/// Set when start-up begins: `rpython_startup_code` may run only once.
static STARTED: AtomicBool = AtomicBool::new(false);
/// Set when start-up succeeded: only then may anything call into PyPy.
static READY: AtomicBool = AtomicBool::new(false);

/// # Safety
/// Loading a library runs its initialisers.
#[cfg(unix)]
unsafe fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // RTLD_GLOBAL: PyPy's C extension modules (cpyext) find the C-API
    // symbols in libpypy through the global namespace, as with the launcher.
    // SAFETY: forwarded to the caller.
    unsafe { Library::open(Some(path.as_os_str()), RTLD_NOW | RTLD_GLOBAL) }.map(Into::into)
}

/// # Safety
/// Loading a library runs its initialisers.
#[cfg(windows)]
unsafe fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
    use libloading::os::windows::{
        Library, LOAD_LIBRARY_SEARCH_DEFAULT_DIRS, LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR,
    };
    // A plain LoadLibrary looks for libpypy's own dependencies (libffi-8.dll
    // beside it) next to the executable and on PATH, not beside libpypy.
    let flags = LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR | LOAD_LIBRARY_SEARCH_DEFAULT_DIRS;
    // SAFETY: forwarded to the caller; `path` is absolute, as these flags require.
    unsafe { Library::load_with_flags(path.as_os_str(), flags) }.map(Into::into)
}

/// # Safety
/// Loading a library runs its initialisers.
#[cfg(not(any(unix, windows)))]
unsafe fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
    // SAFETY: forwarded to the caller.
    unsafe { libloading::Library::new(path.as_os_str()) }
}

/// # Safety
/// `T` must be the function pointer type of the symbol's C declaration.
unsafe fn symbol<T: Copy>(library: &libloading::Library, name: &str) -> Result<T, String> {
    // SAFETY: forwarded to the caller.
    unsafe { library.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| format!("it does not export `{name}` ({e}); is this a `--shared` PyPy build?"))
}

/// A number from `sysctlbyname` (macOS), such as `hw.l2cachesize`.
#[cfg(target_os = "macos")]
pub(crate) fn sysctl_u64(name: &str) -> Option<u64> {
    let name = CString::new(name).ok()?;
    let mut value: u64 = 0;
    let mut size = std::mem::size_of::<u64>();
    // SAFETY: `name` is NUL-terminated, `value` and `size` are valid for
    // writes and `size` holds `value`'s size; no new value is passed in.
    let code = unsafe {
        libc::sysctlbyname(
            name.as_ptr(),
            (&mut value as *mut u64).cast(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    // Some keys are 32-bit; the kernel then writes 4 bytes (little-endian).
    (code == 0 && (size == 8 || size == 4)).then_some(value)
}

fn path_cstring(path: &Path) -> Result<CString, Error> {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = path
        .to_str()
        .ok_or_else(|| Error::Bridge(format!("{} is not valid Unicode", path.display())))?
        .as_bytes()
        .to_vec();
    CString::new(bytes)
        .map_err(|_| Error::Bridge(format!("{} contains a NUL byte", path.display())))
}

/// Operations on Python objects held by handle; mirrored in bootstrap.py.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectOp {
    Import = 0,
    GetAttr = 1,
    Call = 2,
    CallMethod = 3,
    Extract = 4,
    Repr = 5,
    Str = 6,
    Drop = 7,
    FromFunction = 8,
}

type SinkWriteFn = extern "C" fn(*mut c_void, *const u8, usize);
type SinkErrorFn = extern "C" fn(*mut c_void, *const u8, usize, *const u8, usize, *const u8, usize);
type RustCallFn = extern "C" fn(*const u8, usize, *const u8, usize, c_int, *mut usize) -> c_int;
type LookupFn =
    unsafe extern "C" fn(*const u8, usize, *const u8, usize, *mut u64, *mut c_void) -> c_int;
// Handles and lengths cross as signed integers: see CALL_T in bootstrap.py.
type CallFn = unsafe extern "C" fn(i64, *const u8, isize, c_int, *mut c_void) -> c_int;
type RunFn = unsafe extern "C" fn(*const u8, usize, *mut c_void) -> c_int;
type ObjectFn =
    unsafe extern "C" fn(c_int, i64, *const u8, isize, *const u8, isize, *mut c_void) -> c_int;

/// A handle as the callbacks take it: handles count up from 0 in Python, so
/// they stay far below `i64::MAX`.
fn signed_handle(handle: u64) -> i64 {
    handle as i64
}

/// A length as the callbacks take it: Rust slices never exceed `isize::MAX`.
fn signed_len(len: usize) -> isize {
    len as isize
}

/// The Bridge's words by bootstrap.py's names, in the struct's order.
pub(crate) fn bridge_words() -> [(&'static str, usize); 10] {
    use std::mem::offset_of;
    [
        ("SIZE", offset_of!(Bridge, size)),
        ("SINK_WRITE", offset_of!(Bridge, sink_write)),
        ("SINK_ERROR", offset_of!(Bridge, sink_error)),
        ("RUST_CALL", offset_of!(Bridge, rust_call)),
        ("BOOTSTRAP_SINK", offset_of!(Bridge, bootstrap_sink)),
        ("EXECUTABLE", offset_of!(Bridge, executable)),
        ("LOOKUP", offset_of!(Bridge, lookup)),
        ("CALL", offset_of!(Bridge, call)),
        ("RUN", offset_of!(Bridge, run)),
        ("OBJECT", offset_of!(Bridge, object)),
    ]
}

/// The index of the Bridge's word `name` (bootstrap.py's name), from the
/// struct's layout.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn bridge_word(name: &str) -> usize {
    bridge_words()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map_or(usize::MAX, |(_, offset)| {
            offset / std::mem::size_of::<usize>()
        })
}

/// `embed_bridge` in bootstrap.py; the bootstrap checks that `size` matches.
#[repr(C)]
struct Bridge {
    size: usize,
    sink_write: SinkWriteFn,
    sink_error: SinkErrorFn,
    rust_call: RustCallFn,
    bootstrap_sink: *mut c_void,
    executable: *const c_char,
    lookup: Option<LookupFn>,
    call: Option<CallFn>,
    run: Option<RunFn>,
    object: Option<ObjectFn>,
}

/// The callback a Python function's result or exception goes to; lives on
/// the Rust caller's stack for the duration of one call.
struct Sink<'a> {
    out: &'a mut Vec<u8>,
    error: Option<PythonError>,
}

impl<'a> Sink<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Sink { out, error: None }
    }
}

/// # Safety
/// `ptr` must point to `len` readable bytes, or `len` must be 0.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: forwarded to the caller.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

extern "C" fn sink_write(sink: *mut c_void, data: *const u8, len: usize) {
    // A panic here could only be an allocation failure; it must still not unwind into PyPy.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `sink` is the `Sink` that Rust passed to the Python callback
        // now running on this thread; cffi passes `data` as a buffer of `len`
        // bytes alive for this call.
        let (sink, data) = unsafe { (&mut *sink.cast::<Sink>(), bytes(data, len)) };
        sink.out.extend_from_slice(data);
    }));
}

extern "C" fn sink_error(
    sink: *mut c_void,
    type_name: *const u8,
    type_len: usize,
    message: *const u8,
    message_len: usize,
    traceback: *const u8,
    traceback_len: usize,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in `sink_write`: the sink of the running call, and three
        // buffers cffi keeps alive for this call.
        let (sink, type_name, message, traceback) = unsafe {
            (
                &mut *sink.cast::<Sink>(),
                bytes(type_name, type_len),
                bytes(message, message_len),
                bytes(traceback, traceback_len),
            )
        };
        sink.error = Some(PythonError {
            type_name: String::from_utf8_lossy(type_name).into_owned(),
            message: String::from_utf8_lossy(message).into_owned(),
            traceback: String::from_utf8_lossy(traceback).into_owned(),
        });
    }));
}

/// Python's `embed_runtime.call(name, data)` lands here. The reply (result
/// or error message) stays in a per-thread buffer, its address and length
/// written to `out[0]` and `out[1]`; Python copies it at once.
extern "C" fn rust_call(
    name: *const u8,
    name_len: usize,
    data: *const u8,
    data_len: usize,
    mode: c_int,
    out: *mut usize,
) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // Python runs on this thread, so PyPy knows it (a `threading` thread,
        // say); attaching it again would give it a second GC shadow stack.
        ATTACHED.with(|a| a.set(true));
        // SAFETY: cffi passes two buffers of the given lengths, alive for this call.
        let (name, data) = unsafe { (bytes(name, name_len), bytes(data, data_len)) };
        let mode = match mode {
            1 => CallMode::Str,
            2 => CallMode::Marshal,
            _ => CallMode::Bytes,
        };
        crate::registry::dispatch(name, data, mode)
    }));
    let (status, payload) = match outcome {
        Ok(Ok((status, bytes))) => (status, bytes),
        Ok(Err((status, message))) => (status, message.into_bytes()),
        Err(panic) => (
            ReplyStatus::Panic,
            panic_message(panic.as_ref()).into_bytes(),
        ),
    };
    let stored = catch_unwind(AssertUnwindSafe(|| {
        REPLY.with(|r| {
            let mut r = r.borrow_mut();
            *r = payload;
            (r.as_ptr() as usize, r.len())
        })
    }));
    let (ptr, len) = stored.unwrap_or((0, 0));
    if !out.is_null() {
        // SAFETY: bootstrap.py passes `out` as a fresh `uintptr_t[2]`.
        unsafe {
            *out = ptr;
            *out.add(1) = len;
        }
    }
    status as c_int
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("Rust panic: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("Rust panic: {s}")
    } else {
        "Rust panic with a non-text payload".to_string()
    }
}

/// The Python functions the bootstrap filled in.
#[derive(Clone, Copy)]
pub(crate) struct Callbacks {
    lib: LibPyPy,
    lookup: LookupFn,
    call: CallFn,
    run: RunFn,
    object: ObjectFn,
}

// SAFETY: the callbacks are plain function pointers into libpypy's cffi
// trampolines, valid for the whole process; any thread may call them once
// attached, which every method below ensures first.
unsafe impl Send for Callbacks {}
// SAFETY: as above; PyPy's GIL serialises what the trampolines do.
unsafe impl Sync for Callbacks {}

fn outcome(code: c_int, sink: Sink<'_>, what: &str) -> Result<(), Error> {
    match (code, sink.error) {
        (0, _) => Ok(()),
        (_, Some(error)) => Err(Error::Python(error)),
        (code, None) => Err(Error::Bridge(format!(
            "{what} returned {code} without reporting an exception (PyPy printed it to stderr)"
        ))),
    }
}

impl Callbacks {
    /// Imports `module` and resolves the dotted `name` in it; returns a handle.
    pub(crate) fn lookup(&self, module: &str, name: &str) -> Result<u64, Error> {
        self.lib.attach_current_thread();
        let mut out = Vec::new();
        let mut sink = Sink::new(&mut out);
        let mut handle = 0u64;
        // SAFETY: the thread is attached; every pointer is valid for the call
        // and the lengths match; the callback writes only `handle` and `sink`.
        let code = unsafe {
            (self.lookup)(
                module.as_ptr(),
                module.len(),
                name.as_ptr(),
                name.len(),
                &mut handle,
                (&mut sink as *mut Sink).cast(),
            )
        };
        outcome(code, sink, "lookup").map(|()| handle)
    }

    /// Calls the function behind `handle` with `arg` encoded as `mode` says,
    /// appending its result to `out`.
    pub(crate) fn call(
        &self,
        handle: u64,
        arg: &[u8],
        mode: CallMode,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.lib.attach_current_thread();
        let mut sink = Sink::new(out);
        // SAFETY: the thread is attached; `arg` is valid for the call (and valid
        // UTF-8 for `CallMode::Str`, which the safe callers guarantee); the
        // callback only reads `arg` and reports through `sink`.
        let code = unsafe {
            (self.call)(
                signed_handle(handle),
                arg.as_ptr(),
                signed_len(arg.len()),
                mode as c_int,
                (&mut sink as *mut Sink).cast(),
            )
        };
        outcome(code, sink, "call")
    }

    /// `op` on the object behind `handle` (with an attribute or module
    /// `name`, and marshal `data` for calls); appends the reply to `out`: a
    /// new handle (8 bytes, little-endian), marshal data or UTF-8 text.
    pub(crate) fn object(
        &self,
        op: ObjectOp,
        handle: u64,
        name: &str,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.lib.attach_current_thread();
        let mut sink = Sink::new(out);
        // SAFETY: the thread is attached; `name` and `data` are valid for the
        // call; the callback only reads them and reports through `sink`.
        let code = unsafe {
            (self.object)(
                op as c_int,
                signed_handle(handle),
                name.as_ptr(),
                signed_len(name.len()),
                data.as_ptr(),
                signed_len(data.len()),
                (&mut sink as *mut Sink).cast(),
            )
        };
        outcome(code, sink, "an object operation")
    }

    /// Runs `source` in `__main__`.
    pub(crate) fn run(&self, source: &str) -> Result<(), Error> {
        self.lib.attach_current_thread();
        let mut out = Vec::new();
        let mut sink = Sink::new(&mut out);
        // SAFETY: the thread is attached; `source` is valid for the call.
        let code = unsafe {
            (self.run)(
                source.as_ptr(),
                source.len(),
                (&mut sink as *mut Sink).cast(),
            )
        };
        outcome(code, sink, "run")
    }

    pub(crate) fn lib(&self) -> &LibPyPy {
        &self.lib
    }
}

/// Used by tests to compare with the C side's view of the layout.
#[allow(dead_code)]
pub(crate) fn bridge_size() -> usize {
    std::mem::size_of::<Bridge>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_payloads_become_messages() {
        let p = catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "Rust panic: boom 1");
        let p = catch_unwind(|| std::panic::panic_any(5u8)).unwrap_err();
        assert_eq!(
            panic_message(p.as_ref()),
            "Rust panic with a non-text payload"
        );
    }

    #[test]
    fn empty_buffers_need_no_pointer() {
        // SAFETY: length 0 never dereferences.
        assert!(unsafe { bytes(std::ptr::null(), 0) }.is_empty());
    }

    #[test]
    fn the_bridge_is_a_row_of_words() {
        // bootstrap.py reads it by word index (checked in `protocol`).
        assert_eq!(
            bridge_size(),
            bridge_words().len() * std::mem::size_of::<usize>()
        );
        assert_eq!(bridge_word("OBJECT"), 9);
    }
}
