# Run by `cargo xtask check-portable` with an archive's own interpreter,
# inside a minimal Debian chroot: one line per check, "ok NAME: detail" or
# "FAIL NAME: error". Argument 1 is a folder holding `cert.pem`/`key.pem`
# (a self-signed certificate for localhost) and `probe-*.whl` (a local wheel).
import os
import sys
import traceback

HERE = sys.argv[1]
results = []


def check(name):
    def run(fn):
        try:
            detail = fn()
            print("ok %s: %s" % (name, detail), flush=True)
        except BaseException as e:
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            print("FAIL %s: %s" % (name, last), flush=True)
        return fn
    return run


@check("ssl")
def _():
    # A real TLS handshake on loopback: a server thread with the test's
    # certificate, a client that verifies it.
    import socket, ssl, threading
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(os.path.join(HERE, "cert.pem"), os.path.join(HERE, "key.pem"))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(tls.recv(5).upper())

    t = threading.Thread(target=serve)
    t.start()
    client_ctx = ssl.create_default_context(cafile=os.path.join(HERE, "cert.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"hello")
            answer = tls.recv(5)
            version = tls.version()
    t.join(10)
    assert answer == b"HELLO", answer
    paths = ssl.get_default_verify_paths()
    return "%s handshake with %s; default CA file %s" % (
        ssl.OPENSSL_VERSION, version, paths.openssl_cafile)


@check("hashlib")
def _():
    import hashlib
    names = ["md5", "sha1", "sha256", "sha512", "blake2b", "sha3_256", "sha512_256"]
    for n in names:
        hashlib.new(n, b"abc").hexdigest()
    assert hashlib.sha256(b"abc").hexdigest().startswith("ba7816bf")
    return ", ".join(names)


@check("sqlite3")
def _():
    import sqlite3
    db = sqlite3.connect(":memory:")
    db.execute("create table t (x)")
    db.executemany("insert into t values (?)", [(i,) for i in range(100)])
    (total,) = db.execute("select sum(x) from t").fetchone()
    assert total == 4950, total
    return "SQLite %s" % sqlite3.sqlite_version


@check("lzma")
def _():
    import lzma
    data = b"portable " * 1000
    assert lzma.decompress(lzma.compress(data)) == data
    return "%d bytes round trip" % len(data)


@check("bz2")
def _():
    import bz2
    data = b"portable " * 1000
    assert bz2.decompress(bz2.compress(data)) == data
    return "%d bytes round trip" % len(data)


@check("zlib")
def _():
    import zlib
    data = b"portable " * 1000
    assert zlib.decompress(zlib.compress(data)) == data
    return "zlib %s" % zlib.ZLIB_RUNTIME_VERSION


@check("ctypes")
def _():
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    assert libc.strlen(b"portable") == 8
    return "libc.strlen through ctypes"


@check("_cffi_backend")
def _():
    import cffi
    ffi = cffi.FFI()
    ffi.cdef("size_t strlen(const char *);")
    lib = ffi.dlopen(None)
    assert lib.strlen(b"portable") == 8
    return "cffi %s" % cffi.__version__


@check("curses")
def _():
    import curses
    curses.setupterm("xterm", 1)
    colors = curses.tigetnum("colors")
    assert colors > 0, colors
    return "xterm has %d colours" % colors


@check("dbm.gnu")
def _():
    import dbm.gnu, tempfile
    path = os.path.join(tempfile.mkdtemp(), "db")
    with dbm.gnu.open(path, "c") as db:
        db[b"key"] = b"value"
    with dbm.gnu.open(path, "r") as db:
        assert db[b"key"] == b"value"
    return "write and read back"


@check("readline")
def _():
    import readline
    return readline.__name__


@check("uuid")
def _():
    import uuid
    return "%s %s" % (uuid.uuid4().version, uuid.uuid1().version)


@check("decimal")
def _():
    import decimal
    assert str(decimal.Decimal(1) / decimal.Decimal(7))[:8] == "0.142857"
    return "1/7 to 28 places"


@check("pyexpat")
def _():
    import xml.etree.ElementTree as ET
    root = ET.fromstring("<a><b x='1'/></a>")
    assert root[0].get("x") == "1"
    import pyexpat
    return pyexpat.EXPAT_VERSION


@check("venv+pip")
def _():
    import glob, subprocess, tempfile
    env_dir = os.path.join(tempfile.mkdtemp(), "venv")
    subprocess.check_call([sys.executable, "-m", "venv", env_dir])
    wheel = glob.glob(os.path.join(HERE, "probe-*.whl"))[0]
    py = os.path.join(env_dir, "bin", "python")
    subprocess.check_call([py, "-m", "pip", "install", "-q", "--no-index", wheel])
    out = subprocess.check_output([py, "-c", "import probe; print(probe.VALUE)"])
    assert out.strip() == b"42", out
    return "a venv installed %s" % os.path.basename(wheel)


@check("tkinter")
def _():
    import tkinter
    return "Tk %s" % tkinter.TkVersion
