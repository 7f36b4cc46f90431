/* A minimal C extension module, built against the archive's headers with
   the archive's launcher. Used by `cargo xtask verify` and docs/embedding-c.md. */
#include <Python.h>

static PyObject *add(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b))
        return NULL;
    return PyLong_FromLong(a + b);
}

static PyMethodDef methods[] = {
    {"add", add, METH_VARARGS, "Adds two integers."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pypy_embed_ext", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit_pypy_embed_ext(void) { return PyModule_Create(&module); }
