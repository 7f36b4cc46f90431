# cffi's documented embedding workflow, run with the archive's own launcher:
# builds a shared library exporting `pypy_embed_add` that starts PyPy on
# first call. Used by `cargo xtask verify` and docs/embedding-c.md.
import cffi

ffi = cffi.FFI()
ffi.embedding_api("int pypy_embed_add(int, int);")
ffi.set_source("pypy_embed_plugin", "")
ffi.embedding_init_code(
    """
from pypy_embed_plugin import ffi

@ffi.def_extern()
def pypy_embed_add(a, b):
    return a + b
"""
)
ffi.compile(target="plugin-1.0.*", verbose=True)
