# The bootstrap of embed-runtime (included by src/ffi.rs).
#
# Rust runs this once per process through pypy_execute_source_ptr, with
# `c_argument` holding the address of the `Bridge` struct of src/ffi.rs.
# It fills in the function pointers Rust calls (lookup, call, run), built
# with PyPy's own cffi, and installs the `embed_runtime` module through
# which Python calls the Rust functions the program registered.
#
# Every callback catches every exception: an exception escaping a cffi
# callback would only be printed, and Rust would see a bare error code.
# The exception travels to Rust as (type, message, traceback) instead.

CDEF = """
typedef struct {
    int32_t status;
    const char *ptr;
    size_t len;
} embed_reply;

typedef struct {
    size_t size;
    void (*sink_write)(void *sink, const char *data, size_t len);
    void (*sink_error)(void *sink, const char *type_name, size_t type_len,
                       const char *message, size_t message_len,
                       const char *traceback, size_t traceback_len);
    embed_reply (*rust_call)(const char *name, size_t name_len,
                             const char *data, size_t data_len);
    void *bootstrap_sink;
    const char *executable;
    int (*lookup)(const char *module, size_t module_len,
                  const char *name, size_t name_len,
                  uint64_t *handle, void *sink);
    int (*call)(uint64_t handle, const char *data, size_t len,
                int as_str, void *sink);
    int (*run)(const char *source, size_t len, void *sink);
} embed_bridge;
"""

# Status codes of embed_reply, mirrored in src/ffi.rs.
REPLY_OK = 0
REPLY_ERROR = 1
REPLY_PANIC = 2
REPLY_NOT_FOUND = 3

# What a callback returns when even its own error handling failed; Rust
# turns it into a bridge error.
CALLBACK_BROKEN = -2


def _connect(address):
    """The cffi view of the Bridge, and how to report an exception through it."""
    import traceback

    import cffi

    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    bridge = ffi.cast("embed_bridge *", address)
    sink_error = bridge.sink_error

    def encode(text):
        return text.encode("utf-8", "replace")

    def report(sink, exc, skip):
        # `skip` drops the bridge's own frames from the traceback, so that
        # it starts at the caller's code.
        tb = exc.__traceback__
        for _ in range(skip):
            if tb is not None:
                tb = tb.tb_next
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        cls = type(exc)
        if cls.__module__ == "builtins":
            name = cls.__qualname__
        else:
            name = cls.__module__ + "." + cls.__qualname__
        try:
            message = str(exc)
        except BaseException:
            message = "<str() of the exception failed>"
        n, m, t = encode(name), encode(message), encode(text)
        sink_error(sink, n, len(n), m, len(m), t, len(t))

    return ffi, bridge, report


def _install(ffi, bridge, report):
    """Fills in the Bridge and installs the `embed_runtime` module."""
    import builtins
    import importlib
    import linecache
    import sys
    import types

    sink_write = bridge.sink_write
    rust_call = bridge.rust_call
    unpack = ffi.unpack

    if bridge.size != ffi.sizeof("embed_bridge"):
        raise RuntimeError(
            "embed-runtime's Bridge is %d bytes in Rust but %d in bootstrap.py; "
            "both sides must declare the same struct"
            % (bridge.size, ffi.sizeof("embed_bridge"))
        )

    if bridge.executable:
        # pypy_setup_home sets sys.executable to `<home>/x`; the real launcher
        # lets subprocess and multiprocessing start the same interpreter.
        sys.executable = ffi.string(bridge.executable).decode("utf-8", "surrogateescape")

    # Handles are indices into this list; it only grows, so a handle stays valid.
    functions = []

    def lookup(module, module_len, name, name_len, handle, sink):
        try:
            module_name = unpack(module, module_len).decode("utf-8")
            attr_path = unpack(name, name_len).decode("utf-8")
            obj = importlib.import_module(module_name)
            for part in attr_path.split("."):
                obj = getattr(obj, part)
            if not callable(obj):
                raise TypeError(
                    "%s.%s is a %s, not a function"
                    % (module_name, attr_path, type(obj).__name__)
                )
            functions.append(obj)
            handle[0] = len(functions) - 1
            return 0
        except BaseException as exc:
            report(sink, exc, 1)
            return -1

    def call(handle, data, size, as_str, sink):
        try:
            arg = unpack(data, size) if size else b""
            if as_str:
                arg = arg.decode("utf-8")
            result = functions[handle](arg)
            if type(result) is not bytes:
                if isinstance(result, str):
                    result = result.encode("utf-8")
                elif result is None:
                    result = b""
                elif isinstance(result, (bytes, bytearray, memoryview)):
                    result = bytes(result)
                else:
                    raise TypeError(
                        "%s returned %s; functions called from Rust return "
                        "bytes, str or None" % (getattr(functions[handle], "__qualname__", "the function"),
                                                type(result).__name__)
                    )
            sink_write(sink, result, len(result))
            return 0
        except BaseException as exc:
            report(sink, exc, 1)
            return -1

    main = sys.modules.get("__main__")
    if main is None:
        # The embedded interpreter has no __main__; `run` needs one so that
        # successive runs share their globals, as in a script.
        main = types.ModuleType("__main__")
        main.__builtins__ = builtins
        sys.modules["__main__"] = main
    runs = [0]

    def run(source, size, sink):
        try:
            text = unpack(source, size).decode("utf-8") if size else ""
            runs[0] += 1
            filename = "<embed-run-%d>" % runs[0]
            # linecache shows the lines in tracebacks; an mtime of None keeps
            # the entry from being dropped as stale.
            linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
            exec(compile(text, filename, "exec"), main.__dict__)
            return 0
        except BaseException as exc:
            report(sink, exc, 1)
            return -1

    # The `embed_runtime` module: how Python code calls Rust.
    module = types.ModuleType("embed_runtime")
    module.__doc__ = (
        "Calls into the Rust program that embeds this PyPy. "
        "call(name, data) runs the Rust function registered under `name`."
    )

    class RustError(Exception):
        """A Rust function registered with embed-runtime returned an error."""

    class RustPanic(RustError):
        """A Rust function panicked; the panic was stopped at the boundary."""

    class RustFunctionNotFound(RustError, LookupError):
        """No Rust function is registered under this name."""

    for cls in (RustError, RustPanic, RustFunctionNotFound):
        cls.__module__ = "embed_runtime"
        cls.__qualname__ = cls.__name__

    def rust(name, data=b""):
        """Calls the Rust function registered as `name` with bytes or str;
        returns bytes for bytes and str for str."""
        as_str = isinstance(data, str)
        if as_str:
            raw = data.encode("utf-8")
        elif type(data) is bytes:
            raw = data
        elif isinstance(data, (bytearray, memoryview)):
            raw = bytes(data)
        else:
            raise TypeError(
                "embed_runtime.call takes bytes or str, not %s" % type(data).__name__
            )
        name_raw = name.encode("utf-8")
        reply = rust_call(name_raw, len(name_raw), raw, len(raw))
        payload = unpack(reply.ptr, reply.len) if reply.len else b""
        status = reply.status
        if status == REPLY_OK:
            return payload.decode("utf-8") if as_str else payload
        message = payload.decode("utf-8", "replace")
        if status == REPLY_PANIC:
            raise RustPanic(message)
        if status == REPLY_NOT_FOUND:
            raise RustFunctionNotFound(message)
        raise RustError(message)

    rust.__name__ = rust.__qualname__ = "call"
    module.call = rust
    module.RustError = RustError
    module.RustPanic = RustPanic
    module.RustFunctionNotFound = RustFunctionNotFound
    # The cffi objects must outlive every call; the module keeps them alive.
    module._bridge = (ffi, bridge)
    sys.modules["embed_runtime"] = module

    callbacks = (
        ffi.callback(
            "int(const char *, size_t, const char *, size_t, uint64_t *, void *)",
            lookup,
            error=CALLBACK_BROKEN,
        ),
        ffi.callback(
            "int(uint64_t, const char *, size_t, int, void *)",
            call,
            error=CALLBACK_BROKEN,
        ),
        ffi.callback("int(const char *, size_t, void *)", run, error=CALLBACK_BROKEN),
    )
    module._callbacks = callbacks
    # Filled last: Rust takes a non-null `run` as the sign that all is ready.
    bridge.lookup, bridge.call, bridge.run = callbacks


def _main(address):
    # If cffi itself cannot be loaded there is no way back to Rust but the
    # return code: the exception propagates and PyPy prints it to stderr.
    ffi, bridge, report = _connect(address)
    try:
        _install(ffi, bridge, report)
    except BaseException as exc:
        report(bridge.bootstrap_sink, exc, 0)


_main(c_argument)  # noqa: F821 (c_argument is set by pypy_execute_source_ptr)
