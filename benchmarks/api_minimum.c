/* What any collector with Azure ML's collect() contract must do per call, and nothing else: keep a
 * copy of the row, open the correlation for the predictions (a context variable) and return the
 * eight-key dict with a fresh id and timestamp. No checks, no queue, no flusher: a lower bound. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *constants, *var, *sink, *kid, *kts, *kreq, *req;
static unsigned long long counter;
static PyObject *minimal(PyObject *m, PyObject *row) {
    PyObject *copy = PyList_AsTuple(row);
    if (!copy) return NULL;
    if (PyList_Append(sink, copy) < 0) { Py_DECREF(copy); return NULL; }
    PyObject *tok = PyContextVar_Set(var, copy);
    Py_DECREF(copy);
    if (!tok) return NULL;
    Py_DECREF(tok);
    PyObject *d = PyDict_Copy(constants);
    PyObject *id = PyUnicode_New(36, 127), *ts = PyUnicode_New(26, 127);
    memset(PyUnicode_1BYTE_DATA(id), 'a' + (counter++ % 16), 36);
    memset(PyUnicode_1BYTE_DATA(ts), '1', 26);
    PyDict_SetItem(d, kid, id); PyDict_SetItem(d, kts, ts); PyDict_SetItem(d, kreq, req);
    Py_DECREF(id); Py_DECREF(ts);
    return d;
}
static PyObject *setup(PyObject *m, PyObject *args) {
    if (!PyArg_ParseTuple(args, "OOO", &constants, &var, &sink)) return NULL;
    Py_INCREF(constants); Py_INCREF(var); Py_INCREF(sink);
    kid = PyUnicode_FromString("$aml_dc_correlation_id"); kts = PyUnicode_FromString("$aml_dc_scoring_timestamp");
    kreq = PyUnicode_FromString("$aml_request_id"); req = PyUnicode_FromString("00000000-0000-0000-0000-000000000000");
    Py_RETURN_NONE;
}
static PyMethodDef methods[] = {{"minimal", minimal, METH_O, ""}, {"setup", setup, METH_VARARGS, ""}, {NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "api_minimum", NULL, -1, methods};
PyMODINIT_FUNC PyInit_api_minimum(void) { return PyModule_Create(&mod); }
