# Builds ext_module.c as `pypy_embed_ext` with the interpreter running this
# (setuptools when installed, else the standard library's distutils).
try:
    from setuptools import Extension, setup
except ImportError:
    from distutils.core import Extension, setup

setup(
    name="pypy_embed_ext",
    version="1.0",
    ext_modules=[Extension("pypy_embed_ext", ["ext_module.c"])],
)
