# The bootstrap of embed-runtime (included by src/ffi.rs).
#
# Rust runs this once per process through pypy_execute_source_ptr, with
# `c_argument` holding the address of the `Bridge` struct of src/ffi.rs.
# It fills in the function pointers Rust calls (lookup, call, run) and
# installs the `embed_runtime` module through which Python calls the Rust
# functions the program registered.
#
# Start-up cost matters (it is paid before the first statement runs), so
# this uses PyPy's built-in `_cffi_backend` directly: `import cffi` would
# pull in pycparser and cost ~200 ms, where the backend's own FFI object
# parses C types itself in microseconds. For the same reason `traceback`
# is only imported when an exception has to be reported.
#
# Every callback catches every exception: an exception escaping a cffi
# callback would only be printed, and Rust would see a bare error code.
# The exception travels to Rust as (type, message, traceback) instead.

# The Bridge is a row of pointer-sized words; the order is that of the
# `Bridge` struct in src/ffi.rs.
SIZE, SINK_WRITE, SINK_ERROR, RUST_CALL, BOOTSTRAP_SINK, EXECUTABLE, LOOKUP, CALL, RUN, OBJECT = range(10)
BRIDGE_WORDS = 10

SINK_WRITE_T = "void(*)(void *, const char *, size_t)"
SINK_ERROR_T = "void(*)(void *, const char *, size_t, const char *, size_t, const char *, size_t)"
RUST_CALL_T = "int(*)(const char *, size_t, const char *, size_t, int, uintptr_t *)"
LOOKUP_T = "int(*)(const char *, size_t, const char *, size_t, uint64_t *, void *)"
# Signed integers on purpose: PyPy's cffi turns an unsigned 64-bit argument
# into a Python int through its big-integer path, which cost ~40 ns per
# argument on every call.
CALL_T = "int(*)(int64_t, const char *, intptr_t, int, void *)"
RUN_T = "int(*)(const char *, size_t, void *)"
OBJECT_T = "int(*)(int, int64_t, const char *, intptr_t, const char *, intptr_t, void *)"

# Status codes of rust_call, mirrored in src/ffi.rs.
REPLY_OK = 0
REPLY_ERROR = 1
REPLY_PANIC = 2
REPLY_NOT_FOUND = 3
REPLY_OK_MARSHAL = 4
REPLY_WRONG_ARGUMENTS = 5

# How a call's data is encoded (CallMode in src/ffi.rs).
MODE_BYTES = 0
MODE_STR = 1
MODE_MARSHAL = 2

# Operations on objects held by handle (ObjectOp in src/ffi.rs).
(
    OP_IMPORT,
    OP_GETATTR,
    OP_CALL,
    OP_CALL_METHOD,
    OP_EXTRACT,
    OP_REPR,
    OP_STR,
    OP_DROP,
    OP_FROM_FUNCTION,
) = range(9)

# What Python's marshal carries and Rust reads back.
PLAIN_TYPES = (type(None), bool, int, float, str, bytes, tuple, list, dict, set, frozenset)

# The Rust function that checks a file of a cached tree before it is
# imported (WATCH_FUNCTION in src/runtime.rs).
CHECK_CACHED_FILE = "embed_runtime.check_cached_file"

# What a callback returns when even its own error handling failed; Rust
# turns it into a bridge error.
CALLBACK_BROKEN = -2


def _connect(address):
    """The bridge's words, and how to report an exception through it."""
    import sys

    import _cffi_backend

    ffi = _cffi_backend.FFI()
    words = ffi.cast("uintptr_t *", address)
    sink_error = ffi.cast(SINK_ERROR_T, words[SINK_ERROR])
    # Sources given to `run`, registered with linecache only when a
    # traceback is formatted, so that it shows their lines.
    sources = {}

    def encode(text):
        return text.encode("utf-8", "replace")

    def report(sink, exc, skip):
        # `skip` drops the bridge's own frames from the traceback, so that
        # it starts at the caller's code.
        import linecache
        import traceback

        for filename, text in sources.items():
            linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        sources.clear()
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

    if words[SIZE] != BRIDGE_WORDS * ffi.sizeof("uintptr_t"):
        raise RuntimeError(
            "embed-runtime's Bridge is %d bytes in Rust but %d words in bootstrap.py; "
            "both sides must list the same fields" % (words[SIZE], BRIDGE_WORDS)
        )
    return sys, ffi, words, report, sources


def _install(sys, ffi, words, report, sources):
    """Fills in the Bridge and installs the `embed_runtime` module."""
    import _thread
    import builtins
    import itertools

    module_type = type(sys)
    sink_write = ffi.cast(SINK_WRITE_T, words[SINK_WRITE])
    rust_call = ffi.cast(RUST_CALL_T, words[RUST_CALL])
    unpack = ffi.unpack
    new = ffi.new
    char_p = ffi.typeof("char *")
    cast = ffi.cast
    modules = sys.modules
    import marshal

    loads = marshal.loads
    dumps = marshal.dumps

    def unplain(value, place):
        """The first value inside `value` that has no Rust counterpart, and where."""
        if type(value) in (tuple, list, set, frozenset):
            for i, item in enumerate(value):
                found = unplain(item, "%s[%d]" % (place, i))
                if found:
                    return found
            return None
        if type(value) is dict:
            for key, item in value.items():
                found = unplain(key, "%s (a key)" % place) or unplain(item, "%s[%r]" % (place, key))
                if found:
                    return found
            return None
        if type(value) in PLAIN_TYPES:
            return None
        return place, type(value)

    # marshal is little-endian; the readers and writers below store native
    # numbers, so they step aside on a big-endian machine.
    LITTLE_ENDIAN = sys.byteorder == "little"
    uchar_p = ffi.typeof("unsigned char *")
    int32_p = ffi.typeof("int32_t *")
    double_p = ffi.typeof("double *")
    memmove = ffi.memmove

    def take_one(raw, pos, size):
        """The int, float or str at `pos` of marshal bytes, and the position
        after it; pos -1 for anything else."""
        if pos + 5 > size:
            return None, -1
        tag = raw[pos]
        if tag == 0x69:  # 'i'
            return cast(int32_p, raw + pos + 1)[0], pos + 5
        if tag == 0x75:  # 'u'
            n = cast(int32_p, raw + pos + 1)[0]
            if n < 0 or pos + 5 + n > size:
                return None, -1
            return unpack(cast(char_p, raw + pos + 5), n).decode("utf-8", "surrogatepass"), pos + 5 + n
        if tag == 0x67 and pos + 9 <= size:  # 'g'
            return cast(double_p, raw + pos + 1)[0], pos + 9
        return None, -1

    def take_args(data, size):
        """The arguments of a typed call, when they are all ints, floats or
        strs and there are no keyword arguments, read in place from Rust's
        marshal bytes; None for any other call, which `loads` reads. Up to
        three arguments are read without a loop: each loop is a trace of
        its own for PyPy's JIT, entered and left on every call."""
        if not LITTLE_ENDIAN:
            return None
        raw = cast(uchar_p, data)
        # '(' 2 then '(' n: the (args, kwargs) pair, then the argument tuple.
        if size < 11 or raw[0] != 0x28 or raw[5] != 0x28:
            return None
        count = cast(int32_p, raw + 6)[0]
        pos = 10
        if count == 0:
            args = ()
        elif count == 1:
            a, pos = take_one(raw, pos, size)
            args = (a,)
        elif count == 2:
            a, pos = take_one(raw, pos, size)
            if pos < 0:
                return None
            b, pos = take_one(raw, pos, size)
            args = (a, b)
        elif count == 3:
            a, pos = take_one(raw, pos, size)
            if pos < 0:
                return None
            b, pos = take_one(raw, pos, size)
            if pos < 0:
                return None
            c, pos = take_one(raw, pos, size)
            args = (a, b, c)
        else:
            items = []
            for _ in range(count):
                a, pos = take_one(raw, pos, size)
                if pos < 0:
                    return None
                items.append(a)
            args = tuple(items)
        if pos < 0 or pos + 1 != size or raw[pos] != 0x4E:  # kwargs None, then the end
            return None
        return args

    get_ident = _thread.get_ident
    # One reply buffer per thread, reused from call to call: a fresh
    # `new("char[]")` per call costs ~300 instructions. Threads only ever
    # touch their own entry, and the dict is emptied when it holds many
    # threads that may have ended. Results that do not fit go to `dumps`.
    rooms = {}
    ROOM_SIZE = 4096

    def put_plain(raw, pos, end, v):
        """Writes `v` at `pos` as marshal version 2 does when it is None,
        bool, 32-bit int, float or str and fits before `end`; returns the
        position after it, or -1."""
        t = type(v)
        if t is str:
            b = v.encode("utf-8", "surrogatepass")
            n = len(b)
            if pos + 5 + n > end:
                return -1
            raw[pos] = 0x75  # 'u'
            cast(int32_p, raw + pos + 1)[0] = n
            memmove(raw + pos + 5, b, n)
            return pos + 5 + n
        if pos + 9 > end:
            return -1
        if t is float:
            raw[pos] = 0x67  # 'g'
            cast(double_p, raw + pos + 1)[0] = v
            return pos + 9
        if t is int:
            if not -0x80000000 <= v <= 0x7FFFFFFF:
                return -1
            raw[pos] = 0x69  # 'i'
            cast(int32_p, raw + pos + 1)[0] = v
            return pos + 5
        if v is None:
            raw[pos] = 0x4E  # 'N'
            return pos + 1
        if t is bool:
            raw[pos] = 0x54 if v else 0x46  # 'T' or 'F'
            return pos + 1
        return -1

    def write_plain(value):
        """`value` written as marshal version 2 does, into this thread's
        buffer, when it is a dict with str keys, a list or a tuple whose
        items are all None, bool, 32-bit int, float or str (or one such
        value) and fits in the buffer: returns the buffer and the length, or
        (None, 0) for `dumps` to write. One pass, with no list or bytes
        built in between: measured under callgrind, `f(i, s) -> {str: float}`
        costs ~20% fewer instructions than through `dumps`, whose float
        packing and string checks PyPy's JIT traces step by step."""
        if not LITTLE_ENDIAN:
            return None, 0
        ident = get_ident()
        room = rooms.get(ident)
        if room is None:
            if len(rooms) > 64:
                rooms.clear()
            room = new("char[]", ROOM_SIZE)
            rooms[ident] = room
        raw = cast(uchar_p, room)
        end = ROOM_SIZE - 1
        tv = type(value)
        if tv is dict:
            raw[0] = 0x7B  # '{', then key and value until '0'
            pos = 1
            for k, v in value.items():
                if type(k) is not str:
                    return None, 0
                pos = put_plain(raw, pos, end, k)
                if pos < 0:
                    return None, 0
                pos = put_plain(raw, pos, end, v)
                if pos < 0:
                    return None, 0
            raw[pos] = 0x30
            return room, pos + 1
        if tv is list or tv is tuple:
            raw[0] = 0x5B if tv is list else 0x28  # '[' or '(', then the count
            cast(int32_p, raw + 1)[0] = len(value)
            pos = 5
            for v in value:
                pos = put_plain(raw, pos, end, v)
                if pos < 0:
                    return None, 0
            return room, pos
        pos = put_plain(raw, 0, end, value)
        if pos < 0:
            return None, 0
        return room, pos

    def plain_marshal(value):
        """What `write_plain` writes for `value`, as bytes; None where it
        leaves `value` to `dumps` (for the tests, through the module)."""
        room, n = write_plain(value)
        if room is None:
            return None
        return unpack(room, n)

    def to_marshal(value, place):
        # The common case costs one interpreter-level call; the walk that
        # names the culprit only runs when marshal refuses.
        try:
            return dumps(value, 2)
        except ValueError:
            pass
        found = unplain(value, place)
        where, cls = found if found else (place, type(value))
        raise TypeError(
            "%s is a %s.%s, which has no Rust counterpart; return None, bool, int, "
            "float, str, bytes, tuple, list, dict or set (or hold it as an object handle)"
            % (where, cls.__module__, cls.__qualname__)
        )

    if words[EXECUTABLE]:
        # pypy_setup_home sets sys.executable to `<home>/x`; the real launcher
        # lets subprocess and multiprocessing start the same interpreter.
        sys.executable = ffi.string(ffi.cast("char *", words[EXECUTABLE])).decode(
            "utf-8", "surrogateescape"
        )

    # Handles are indices into this list; it only grows, so a handle stays valid.
    functions = []
    functions_lock = _thread.allocate_lock()

    def lookup(module, module_len, name, name_len, handle, sink):
        try:
            module_name = unpack(module, module_len).decode("utf-8")
            attr_path = unpack(name, name_len).decode("utf-8")
            __import__(module_name)
            obj = modules[module_name]
            for part in attr_path.split("."):
                obj = getattr(obj, part)
            if not callable(obj):
                raise TypeError(
                    "%s.%s is a %s, not a function"
                    % (module_name, attr_path, type(obj).__name__)
                )
            # Another thread may append between the two steps (the GIL can
            # switch threads between bytecodes), hence the lock.
            with functions_lock:
                functions.append(obj)
                handle[0] = len(functions) - 1
            return 0
        except BaseException as exc:
            report(sink, exc, 1)
            return -1

    def call(handle, data, size, mode, sink):
        try:
            if mode == MODE_MARSHAL:
                args = take_args(data, size)
                if args is None:
                    args, kwargs = loads(unpack(data, size))
                else:
                    kwargs = None
                if kwargs:
                    result = functions[handle](*args, **kwargs)
                else:
                    result = functions[handle](*args)
                room, n = write_plain(result)
                if room is not None:
                    sink_write(sink, room, n)
                    return 0
                out = to_marshal(result, "the result")
                sink_write(sink, out, len(out))
                return 0
            arg = unpack(data, size) if size else b""
            if mode == MODE_STR:
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
                        "bytes, str or None"
                        % (
                            getattr(functions[handle], "__qualname__", "the function"),
                            type(result).__name__,
                        )
                    )
            sink_write(sink, result, len(result))
            return 0
        except BaseException as exc:
            report(sink, exc, 1)
            return -1

    main = modules.get("__main__")
    if main is None:
        # The embedded interpreter has no __main__; `run` needs one so that
        # successive runs share their globals, as in a script.
        main = module_type("__main__")
        main.__builtins__ = builtins
        modules["__main__"] = main
    runs = itertools.count(1)

    def run(source, size, sink):
        try:
            text = unpack(source, size).decode("utf-8") if size else ""
            filename = "<embed-run-%d>" % next(runs)
            sources[filename] = text
            exec(compile(text, filename, "exec"), main.__dict__)
            return 0
        except BaseException as exc:
            report(sink, exc, 1)
            return -1

    # The `embed_runtime` module: how Python code calls Rust.
    module = module_type("embed_runtime")
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

    def rust(name, *args, **kwargs):
        """Calls the Rust function registered as `name`: with one bytes or
        str argument for a function of bytes (the reply has the same type);
        with any arguments for a function registered with typed arguments."""
        if len(args) == 1 and not kwargs and type(args[0]) in (bytes, str, bytearray, memoryview):
            data = args[0]
            mode = MODE_STR if type(data) is str else MODE_BYTES
            raw = data.encode("utf-8") if mode == MODE_STR else bytes(data)
        elif not args and not kwargs:
            mode, raw = MODE_BYTES, b""
        else:
            if kwargs:
                raise TypeError(
                    "embed_runtime.call passes positional arguments only to Rust functions"
                )
            mode, raw = MODE_MARSHAL, to_marshal(args, "argument")
        name_raw = name.encode("utf-8")
        out = new("uintptr_t[2]")
        status = rust_call(name_raw, len(name_raw), raw, len(raw), mode, out)
        # The reply lives in a per-thread Rust buffer until this thread's
        # next call into Rust, so it is copied at once.
        payload = unpack(cast(char_p, out[0]), out[1]) if out[1] else b""
        if status == REPLY_OK:
            return payload.decode("utf-8") if mode == MODE_STR else payload
        if status == REPLY_OK_MARSHAL:
            return loads(payload)
        message = payload.decode("utf-8", "replace")
        if status == REPLY_PANIC:
            raise RustPanic(message)
        if status == REPLY_NOT_FOUND:
            raise RustFunctionNotFound(message)
        if status == REPLY_WRONG_ARGUMENTS:
            raise TypeError(message)
        raise RustError(message)

    rust.__name__ = rust.__qualname__ = "call"
    module.call = rust
    module._watch_cached_tree = _watch_cached_tree(modules, rust, RustError)
    module.memory_stats = _memory_stats()
    module._plain_marshal = plain_marshal
    module.RustError = RustError
    module.RustPanic = RustPanic
    module.RustFunctionNotFound = RustFunctionNotFound

    # Objects Rust holds by handle; an entry lives until Rust drops its handle.
    objects = {}
    # `next` on a count is one step for the GIL, so two threads never get the
    # same handle; a read-then-increment in Python could.
    handle_numbers = itertools.count(1)

    def keep(obj, sink):
        handle = next(handle_numbers)
        objects[handle] = obj
        raw = handle.to_bytes(8, "little")
        sink_write(sink, raw, 8)

    def obj_op(op, handle, name, name_len, data, size, sink):
        try:
            if op == OP_DROP:
                objects.pop(handle, None)
                return 0
            text = unpack(name, name_len).decode("utf-8") if name_len else ""
            if op == OP_IMPORT:
                __import__(text)
                keep(modules[text], sink)
            elif op == OP_FROM_FUNCTION:
                keep(functions[handle], sink)
            else:
                obj = objects[handle]
                if op == OP_GETATTR:
                    keep(getattr(obj, text), sink)
                elif op in (OP_CALL, OP_CALL_METHOD):
                    args, kwargs = loads(unpack(data, size)) if size else ((), None)
                    target = getattr(obj, text) if op == OP_CALL_METHOD else obj
                    keep(target(*args, **(kwargs or {})), sink)
                elif op == OP_EXTRACT:
                    out = to_marshal(obj, "the object")
                    sink_write(sink, out, len(out))
                else:
                    out = (repr(obj) if op == OP_REPR else str(obj)).encode("utf-8", "surrogateescape")
                    sink_write(sink, out, len(out))
            return 0
        except BaseException as exc:
            report(sink, exc, 1)
            return -1

    callbacks = (
        ffi.callback(LOOKUP_T, lookup, error=CALLBACK_BROKEN),
        ffi.callback(CALL_T, call, error=CALLBACK_BROKEN),
        ffi.callback(RUN_T, run, error=CALLBACK_BROKEN),
        ffi.callback(OBJECT_T, obj_op, error=CALLBACK_BROKEN),
    )
    # The callbacks must outlive every call; the module keeps them alive.
    module._callbacks = callbacks
    modules["embed_runtime"] = module
    # Filled last: Rust takes a non-null `run` as the sign that all is ready.
    words[LOOKUP] = ffi.cast("uintptr_t", callbacks[0])
    words[CALL] = ffi.cast("uintptr_t", callbacks[1])
    words[OBJECT] = ffi.cast("uintptr_t", callbacks[3])
    words[RUN] = ffi.cast("uintptr_t", callbacks[2])


def _watch_cached_tree(modules, rust, RustError):
    """Returns the function Rust calls after starting from an archive's
    cached tree: it makes the import system check each file of that tree
    with Rust before using it (src/stamp.rs says why), so that a changed
    module fails to import with an error that says so."""

    def watch(root):
        external = modules["_frozen_importlib_external"]
        prefix = root.rstrip("/" + external.path_sep) + external.path_sep

        def check(path):
            if path.startswith(prefix):
                try:
                    rust(CHECK_CACHED_FILE, path[len(prefix):])
                except RustError as exc:
                    raise ImportError(str(exc), path=path) from None

        path_stats = external.SourceFileLoader.path_stats
        create_module = external.ExtensionFileLoader.create_module

        def checked_path_stats(self, path):
            check(path)
            return path_stats(self, path)

        def checked_create_module(self, spec):
            check(self.path)
            return create_module(self, spec)

        external.SourceFileLoader.path_stats = checked_path_stats
        external.ExtensionFileLoader.create_module = checked_create_module
        return ""

    return watch


def _memory_stats():
    """Counts collections through PyPy's GC hooks and returns the function
    behind Runtime::memory, which reports `key=value` lines."""
    import gc

    counts = [0, 0]  # minor collections, major collections

    def on_minor(stats):
        counts[0] += stats.count

    def on_major(stats):
        counts[1] = stats.num_major_collects

    hooks = getattr(gc, "hooks", None)
    if hooks is not None:
        hooks.on_gc_minor = on_minor
        hooks.on_gc_collect = on_major

    def memory_stats(_):
        s = gc._get_stats()
        jit = getattr(s, "jit_backend_used", -1)
        return (
            "gc_used=%d\ngc_peak=%d\ngc_allocated=%d\nnursery=%d\njit_used=%d\n"
            "minor_collections=%d\nmajor_collections=%d\ngc_time_ms=%d\n"
            % (
                s.total_gc_memory,
                s.peak_memory,
                s.total_allocated_memory,
                s.nursery_size,
                jit,
                counts[0],
                counts[1],
                getattr(s, "total_gc_time", 0),
            )
        )

    return memory_stats


def _main(address):
    # If even the connection fails there is no way back to Rust but the
    # return code: the exception propagates and PyPy prints it to stderr.
    sys, ffi, words, report, sources = _connect(address)
    try:
        _install(sys, ffi, words, report, sources)
    except BaseException as exc:
        report(ffi.cast("void *", words[BOOTSTRAP_SINK]), exc, 0)


# Run as source, `c_argument` is set by pypy_execute_source_ptr; imported as
# a module (see `loader_source` in src/ffi.rs), the loader calls _main itself.
if "c_argument" in globals():
    _main(c_argument)  # noqa: F821
