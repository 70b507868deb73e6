/* The flusher's row-to-column transposition (mdc_core.batches), in C.
 *
 * Turning ten thousand queued single-row calls into Arrow columns is a loop over Python objects,
 * and in Python it holds the GIL most of a microsecond per row, time taken from the threads
 * serving requests.
 * These functions do the same loops in C and return plain native-endian buffers, which
 * batches.py wraps with pa.Array.from_buffers without copying. Whenever a value is not the plain
 * type the fast path expects they answer None, and batches.py converts as it does without this
 * module, so both ways build identical tables and raise identical errors. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define ID_MASK 0xFFFFFFFFFFFFULL /* the 48-bit row counter of a correlation id */
#define HEX_DIGITS 12

/* all_tuples(items) -> bool: whether build_table's queued calls are all bare rows. */
static PyObject *
all_tuples(PyObject *self, PyObject *items)
{
    PyObject *seq = PySequence_Fast(items, "items must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), i = 0;
    PyObject **item = PySequence_Fast_ITEMS(seq);
    while (i < n && PyTuple_CheckExact(item[i])) /* a Taken is a tuple subclass: not a bare row */
        i++;
    Py_DECREF(seq);
    return PyBool_FromLong(i == n);
}

/* float_columns(rows, width) -> list of width bytes|None. */
static PyObject *
float_columns(PyObject *self, PyObject *args)
{
    PyObject *rows, *seq, *out = NULL;
    Py_ssize_t width;
    char **dst = NULL; /* column j's buffer; NULL once a value that is not a float was seen */
    if (!PyArg_ParseTuple(args, "On:float_columns", &rows, &width))
        return NULL;
    if (width < 0)
        return PyErr_Format(PyExc_ValueError, "width must be >= 0, not %zd", width);
    /* The list first: allocating one may run the garbage collector, whose finalizers could
     * change a list of rows under the item pointers borrowed below (bytes are not GC objects). */
    if ((out = PyList_New(width)) == NULL)
        return NULL;
    if ((seq = PySequence_Fast(rows, "rows must be a sequence")) == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    if (n > PY_SSIZE_T_MAX / 8 || (dst = PyMem_Calloc(width + 1, sizeof(char *))) == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t j = 0; j < width; j++) {
        PyObject *buffer = PyBytes_FromStringAndSize(NULL, n * 8);
        if (buffer == NULL)
            goto fail;
        PyList_SET_ITEM(out, j, buffer);
        dst[j] = PyBytes_AS_STRING(buffer);
    }
    /* Row-major, like the input: each row is read once. Nothing here runs Python code, so the
     * borrowed items cannot change under us. Every row is checked even once no float column is
     * left, so a bad row is reported whatever the values before it. */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = items[i];
        /* Exactly a tuple: a subclass may index differently from what operator.itemgetter sees. */
        if (!PyTuple_CheckExact(row)) {
            PyErr_Format(PyExc_TypeError, "row %zd is %.100s, not a tuple", i,
                         Py_TYPE(row)->tp_name);
            goto fail;
        }
        if (PyTuple_GET_SIZE(row) < width) {
            PyErr_Format(PyExc_ValueError, "row %zd has %zd values, fewer than %zd", i,
                         PyTuple_GET_SIZE(row), width);
            goto fail;
        }
        for (Py_ssize_t j = 0; j < width; j++) {
            /* Exactly a float: a subclass, or a bool (an int), is for Arrow's inference. */
            PyObject *value = PyTuple_GET_ITEM(row, j);
            if (dst[j] != NULL && PyFloat_CheckExact(value)) {
                double v = PyFloat_AS_DOUBLE(value);
                memcpy(dst[j] + i * 8, &v, 8);
            }
            else {
                dst[j] = NULL;
            }
        }
    }
    for (Py_ssize_t j = 0; j < width; j++) {
        if (dst[j] == NULL) { /* drop the unused buffer */
            PyObject *unused = PyList_GET_ITEM(out, j);
            PyList_SET_ITEM(out, j, Py_NewRef(Py_None));
            Py_DECREF(unused);
        }
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    PyMem_Free(dst);
    Py_DECREF(seq);
    return out;
}

/* A stamp as collect() queues it: (prefix, start, step, user, ts_us, request_id). */
enum { S_PREFIX, S_START, S_STEP, S_USER, S_TS, S_REQUEST, S_LEN };

/* stamp_columns(stamps) -> (prefix, counters, ts_us, request_ids | request_id) | None. */
static PyObject *
stamp_columns(PyObject *self, PyObject *stamps)
{
    PyObject *seq, *prefix = NULL, *shared, *counters = NULL, *times = NULL, *requests = NULL;
    PyObject *result = NULL;
    seq = PySequence_Fast(stamps, "stamps must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    /* No stamps: no prefix, and Python's path makes an empty array of the right type. */
    if (n == 0 || n > PY_SSIZE_T_MAX / 8)
        goto fallback;
    /* Allocate before borrowing items: a list allocation may run the garbage collector, and a
     * finalizer could change the list of stamps (it did if the length moved). */
    counters = PyBytes_FromStringAndSize(NULL, n * 8);
    times = PyBytes_FromStringAndSize(NULL, n * 8);
    requests = PyList_New(n);
    if (counters == NULL || times == NULL || requests == NULL)
        goto done;
    PyObject **items = PySequence_Fast_ITEMS(seq);
    if (PySequence_Fast_GET_SIZE(seq) != n)
        goto fallback;
    if (!PyTuple_Check(items[0]) || PyTuple_GET_SIZE(items[0]) != S_LEN)
        goto fallback;
    prefix = Py_NewRef(PyTuple_GET_ITEM(items[0], S_PREFIX)); /* PyTuple_Pack allocates */
    if (!PyUnicode_CheckExact(prefix))
        goto fallback;
    /* Rows outside a request all share one request id object: Arrow can repeat it. (Kept
     * alive by the list of request ids.) */
    shared = PyTuple_GET_ITEM(items[0], S_REQUEST);
    if (!PyUnicode_CheckExact(shared))
        shared = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *stamp = items[i];
        if (!PyTuple_Check(stamp) || PyTuple_GET_SIZE(stamp) != S_LEN)
            goto fallback;
        PyObject *p = PyTuple_GET_ITEM(stamp, S_PREFIX), *user = PyTuple_GET_ITEM(stamp, S_USER);
        PyObject *start = PyTuple_GET_ITEM(stamp, S_START), *ts = PyTuple_GET_ITEM(stamp, S_TS);
        /* Both exact str, so the comparison cannot fail. */
        if (p != prefix && !(PyUnicode_CheckExact(p) && PyUnicode_Compare(p, prefix) == 0))
            goto fallback;
        if (!PyUnicode_Check(user) || PyUnicode_GET_LENGTH(user) != 0)
            goto fallback; /* a user correlation id: each id is formatted on its own */
        if (!PyLong_CheckExact(start) || !PyLong_CheckExact(ts))
            goto fallback;
        /* Exact ints fail only by overflow (a negative counter too): out of range values are for
         * the Python path to refuse, or not, its own way. */
        uint64_t c = PyLong_AsUnsignedLongLong(start);
        if (c == (uint64_t)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto fallback;
        }
        int overflow;
        int64_t t = PyLong_AsLongLongAndOverflow(ts, &overflow);
        if (overflow)
            goto fallback;
        c &= ID_MASK;
        memcpy(PyBytes_AS_STRING(counters) + i * 8, &c, 8);
        memcpy(PyBytes_AS_STRING(times) + i * 8, &t, 8);
        PyObject *request = PyTuple_GET_ITEM(stamp, S_REQUEST);
        if (request != shared)
            shared = NULL;
        PyList_SET_ITEM(requests, i, Py_NewRef(request));
    }
    result = PyTuple_Pack(4, prefix, counters, times, shared ? shared : requests);
    goto done;
fallback:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(prefix);
    Py_XDECREF(counters);
    Py_XDECREF(times);
    Py_XDECREF(requests);
    Py_DECREF(seq);
    return result;
}

/* format_ids(prefix, counters) -> (offsets, data): the buffers of an Arrow string array. */
static PyObject *
format_ids(PyObject *self, PyObject *args)
{
    static const char hex[] = "0123456789abcdef";
    PyObject *prefix, *offsets = NULL, *data = NULL, *result = NULL;
    Py_buffer counters;
    if (!PyArg_ParseTuple(args, "Uy*:format_ids", &prefix, &counters))
        return NULL;
    Py_ssize_t plen;
    const char *head = PyUnicode_AsUTF8AndSize(prefix, &plen);
    if (head == NULL)
        goto done;
    if (counters.len % 8) {
        PyErr_SetString(PyExc_ValueError, "counters must be whole uint64 values");
        goto done;
    }
    Py_ssize_t n = counters.len / 8, width = plen + HEX_DIGITS;
    if (n > INT32_MAX / width) { /* Arrow's string offsets are int32 */
        PyErr_SetString(PyExc_OverflowError, "over 2 GiB of ids: too many for one string array");
        goto done;
    }
    offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * 4);
    data = PyBytes_FromStringAndSize(NULL, n * width);
    if (offsets == NULL || data == NULL)
        goto done;
    char *out = PyBytes_AS_STRING(data), *off = PyBytes_AS_STRING(offsets);
    /* The new buffers are ours and the counters' export keeps them in place: other threads
     * (collect() on the scoring path) may run meanwhile. */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i <= n; i++) {
        int32_t o = (int32_t)(i * width);
        memcpy(off + i * 4, &o, 4);
    }
    for (Py_ssize_t i = 0; i < n; i++, out += width) {
        uint64_t c;
        memcpy(&c, (const char *)counters.buf + i * 8, 8);
        memcpy(out, head, plen);
        for (int k = 0; k < HEX_DIGITS; k++)
            out[plen + k] = hex[(c >> (4 * (HEX_DIGITS - 1 - k))) & 15];
    }
    Py_END_ALLOW_THREADS
    result = PyTuple_Pack(2, offsets, data);
done:
    Py_XDECREF(offsets);
    Py_XDECREF(data);
    PyBuffer_Release(&counters);
    return result;
}

static PyMethodDef methods[] = {
    {"all_tuples", all_tuples, METH_O, "all_tuples(items): whether every item is exactly a tuple."},
    {"float_columns", float_columns, METH_VARARGS,
     "float_columns(rows, width): per column, float64 bytes if every value is a float, else None."},
    {"stamp_columns", stamp_columns, METH_O,
     "stamp_columns(stamps): (prefix, counters, ts_us, request_ids or the one shared id) or None."},
    {"format_ids", format_ids, METH_VARARGS,
     "format_ids(prefix, counters): (offsets, data) of prefix + 12 hex digits per uint64 counter."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef mod = {
    PyModuleDef_HEAD_INIT, .m_name = "_transpose", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__transpose(void)
{
    return PyModule_Create(&mod);
}
