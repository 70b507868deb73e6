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

/* stamp_columns(stamps, counts=None) -> (prefix, counters, ts_us, request_ids | request_id) | None
 *
 * One row per stamp, or counts[i] rows for stamps[i] (ids start, start + step, ...; the call's
 * time and request id on each of its rows). None when the stamps do not share one prefix, carry
 * a user id, or hold values that are not plain ints: the Python path formats those. */
static PyObject *
stamp_columns(PyObject *self, PyObject *args)
{
    PyObject *stamps, *count_arg = Py_None;
    if (!PyArg_ParseTuple(args, "O|O:stamp_columns", &stamps, &count_arg))
        return NULL;
    PyObject *seq, *counts = NULL, *prefix = NULL, *shared, *counters = NULL, *times = NULL, *requests = NULL;
    PyObject *result = NULL;
    seq = PySequence_Fast(stamps, "stamps must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), total = n;
    if (count_arg != Py_None) {
        counts = PySequence_Fast(count_arg, "counts must be a sequence");
        if (counts == NULL)
            goto done;
        if (PySequence_Fast_GET_SIZE(counts) != n) {
            PyErr_SetString(PyExc_ValueError, "one count per stamp");
            goto done;
        }
        total = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t rows = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(counts, i));
            if (rows == -1 && PyErr_Occurred())
                goto done;
            if (rows < 0 || rows > PY_SSIZE_T_MAX / 8 - total) {
                PyErr_SetString(PyExc_ValueError, "counts must be rows, not negative");
                goto done;
            }
            total += rows;
        }
    }
    /* No stamps: no prefix, and Python's path makes an empty array of the right type. */
    if (n == 0 || total == 0 || total > PY_SSIZE_T_MAX / 8)
        goto fallback;
    /* Allocate before borrowing items: a list allocation may run the garbage collector, and a
     * finalizer could change the list of stamps (it did if the length moved). */
    counters = PyBytes_FromStringAndSize(NULL, total * 8);
    times = PyBytes_FromStringAndSize(NULL, total * 8);
    requests = PyList_New(total);
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
    Py_ssize_t row = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *stamp = items[i];
        if (!PyTuple_Check(stamp) || PyTuple_GET_SIZE(stamp) != S_LEN)
            goto fallback;
        PyObject *p = PyTuple_GET_ITEM(stamp, S_PREFIX), *user = PyTuple_GET_ITEM(stamp, S_USER);
        PyObject *start = PyTuple_GET_ITEM(stamp, S_START), *ts = PyTuple_GET_ITEM(stamp, S_TS);
        PyObject *step_obj = PyTuple_GET_ITEM(stamp, S_STEP);
        /* Both exact str, so the comparison cannot fail. */
        if (p != prefix && !(PyUnicode_CheckExact(p) && PyUnicode_Compare(p, prefix) == 0))
            goto fallback;
        if (!PyUnicode_Check(user) || PyUnicode_GET_LENGTH(user) != 0)
            goto fallback; /* a user correlation id: each id is formatted on its own */
        if (!PyLong_CheckExact(start) || !PyLong_CheckExact(ts) || !PyLong_CheckExact(step_obj))
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
        long long step = PyLong_AsLongLongAndOverflow(step_obj, &overflow);
        if (overflow || step < 0)
            goto fallback;
        Py_ssize_t rows = counts == NULL ? 1 : PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(counts, i));
        PyObject *request = PyTuple_GET_ITEM(stamp, S_REQUEST);
        if (shared != NULL && request != shared) {
            /* the first other request id: the rows so far all had the shared one */
            for (Py_ssize_t r = 0; r < row; r++)
                PyList_SET_ITEM(requests, r, Py_NewRef(shared));
            shared = NULL;
        }
        for (Py_ssize_t k = 0; k < rows; k++, row++) {
            uint64_t id = (c + (uint64_t)k * (uint64_t)step) & ID_MASK;
            memcpy(PyBytes_AS_STRING(counters) + row * 8, &id, 8);
            memcpy(PyBytes_AS_STRING(times) + row * 8, &t, 8);
            if (shared == NULL)
                PyList_SET_ITEM(requests, row, Py_NewRef(request));
        }
    }
    /* with one shared request id the list was left unfilled (its NULLs are freed as such) */
    result = PyTuple_Pack(4, prefix, counters, times, shared ? shared : requests);
    goto done;
fallback:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(prefix);
    Py_XDECREF(counters);
    Py_XDECREF(times);
    Py_XDECREF(requests);
    Py_XDECREF(counts);
    Py_DECREF(seq);
    return result;
}

/* The buffers of an Arrow string array of n values of width bytes each: the offsets filled,
 * the data to be written by the caller. -1 with an error set. */
static int
fixed_width_strings(Py_ssize_t n, Py_ssize_t width, PyObject **offsets, PyObject **data)
{
    *offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * 4);
    *data = PyBytes_FromStringAndSize(NULL, n * width);
    if (*offsets == NULL || *data == NULL)
        return -1;
    char *off = PyBytes_AS_STRING(*offsets);
    for (Py_ssize_t i = 0; i <= n; i++) {
        int32_t o = (int32_t)(i * width);
        memcpy(off + i * 4, &o, 4);
    }
    return 0;
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
    if (fixed_width_strings(n, width, &offsets, &data) < 0)
        goto done;
    char *out = PyBytes_AS_STRING(data);
    /* The GIL is kept: ~7 ns a row, and a flusher that releases it waits for it up to the switch
     * interval (5 ms) while scoring threads run (benchmarks/flusher_gil.py). */
    for (Py_ssize_t i = 0; i < n; i++, out += width) {
        uint64_t c;
        memcpy(&c, (const char *)counters.buf + i * 8, 8);
        memcpy(out, head, plen);
        for (int k = 0; k < HEX_DIGITS; k++)
            out[plen + k] = hex[(c >> (4 * (HEX_DIGITS - 1 - k))) & 15];
    }
    result = PyTuple_Pack(2, offsets, data);
done:
    Py_XDECREF(offsets);
    Py_XDECREF(data);
    PyBuffer_Release(&counters);
    return result;
}

/* Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's civil_from_days,
 * the algorithm of the date library Arrow formats timestamps with). */
static void
civil_from_days(int64_t z, int64_t *year, unsigned *month, unsigned *day)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *day = doy - (153 * mp + 2) / 5 + 1;
    *month = mp < 10 ? mp + 3 : mp - 9;
    *year = (int64_t)yoe + era * 400 + (*month <= 2);
}

#define ISO_WIDTH 26 /* 2026-11-25T01:02:03.123456 */
#define ISO_LOW (-30610224000LL)   /* 1000-01-01T00:00:00, in seconds */
#define ISO_HIGH (253402300800LL)  /* 10000-01-01T00:00:00 */

static void
put_digits(char *out, int64_t value, int width)
{
    for (int i = width - 1; i >= 0; i--, value /= 10)
        out[i] = (char)('0' + value % 10);
}

/* The (values, offset, length) arguments of a loop over length 8-byte values from element offset
 * of a buffer (what chunk.buffers()[1], chunk.offset and len(chunk) give): -1 with an exception,
 * and nothing held, when they do not lie within the buffer. */
static int
element_range(PyObject *args, const char *format, const char *type, Py_buffer *values, Py_ssize_t *offset,
              Py_ssize_t *length)
{
    if (!PyArg_ParseTuple(args, format, values, offset, length))
        return -1;
    if (*offset < 0 || *length < 0 || *offset + *length > values->len / 8) {
        PyBuffer_Release(values);
        PyErr_Format(PyExc_ValueError, "offset and length must lie within the %s values", type);
        return -1;
    }
    return 0;
}

/* iso_text(values, offset, length) -> (offsets, data) | None
 *
 * The buffers of an Arrow string array of int64 microseconds since the epoch (an Arrow timestamp
 * array's data buffer, from element offset, length of them) as "2026-11-25T01:02:03.123456", UTC:
 * what strftime("%Y-%m-%dT%H:%M:%S") and six digits of microseconds give. None when a value is
 * outside the years 1000-9999, which the Python path formats. The GIL is kept: ~20 ns a row, where
 * Arrow's kernels release it several times per batch and a flusher waits for it each time. */
static PyObject *
iso_text(PyObject *self, PyObject *args)
{
    Py_buffer values;
    Py_ssize_t offset, length;
    if (element_range(args, "y*nn:iso_text", "int64", &values, &offset, &length) < 0)
        return NULL;
    PyObject *offsets = NULL, *data = NULL, *result = NULL;
    if (length > INT32_MAX / ISO_WIDTH - 1) {
        PyErr_SetString(PyExc_ValueError, "too many values for one Arrow string array");
        goto done;
    }
    if (fixed_width_strings(length, ISO_WIDTH, &offsets, &data) < 0)
        goto done;
    char *out = PyBytes_AS_STRING(data);
    const char *in = (const char *)values.buf + offset * (Py_ssize_t)sizeof(int64_t);
    int64_t cached = INT64_MIN; /* the second last formatted: rows of a batch share most seconds */
    char head[20];
    for (Py_ssize_t i = 0; i < length; i++, out += ISO_WIDTH) {
        int64_t us;
        memcpy(&us, in + i * 8, 8);
        int64_t seconds = us / 1000000, micros = us % 1000000;
        if (micros < 0) {
            micros += 1000000;
            seconds -= 1;
        }
        if (seconds < ISO_LOW || seconds >= ISO_HIGH) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        if (seconds != cached) {
            int64_t days = seconds / 86400, rest = seconds % 86400;
            if (rest < 0) {
                rest += 86400;
                days -= 1;
            }
            int64_t year;
            unsigned month, day;
            civil_from_days(days, &year, &month, &day);
            put_digits(head, year, 4);
            head[4] = '-';
            put_digits(head + 5, month, 2);
            head[7] = '-';
            put_digits(head + 8, day, 2);
            head[10] = 'T';
            put_digits(head + 11, rest / 3600, 2);
            head[13] = ':';
            put_digits(head + 14, rest / 60 % 60, 2);
            head[16] = ':';
            put_digits(head + 17, rest % 60, 2);
            head[19] = '.';
            cached = seconds;
        }
        memcpy(out, head, 20);
        put_digits(out + 20, micros, 6);
    }
    result = PyTuple_Pack(2, offsets, data);
done:
    Py_XDECREF(offsets);
    Py_XDECREF(data);
    PyBuffer_Release(&values);
    return result;
}

/* has_nan(values, offset, length) -> bool: whether any of length float64 values from element
 * offset is a NaN (null slots count too: the caller then takes Arrow's path, as it would). */
static PyObject *
has_nan(PyObject *self, PyObject *args)
{
    Py_buffer values;
    Py_ssize_t offset, length;
    if (element_range(args, "y*nn:has_nan", "float64", &values, &offset, &length) < 0)
        return NULL;
    const char *in = (const char *)values.buf + offset * (Py_ssize_t)sizeof(double);
    int found = 0;
    for (Py_ssize_t i = 0; i < length && !found; i++) {
        double x;
        memcpy(&x, in + i * 8, 8);
        found = x != x;
    }
    PyBuffer_Release(&values);
    return PyBool_FromLong(found);
}

static PyMethodDef methods[] = {
    {"iso_text", iso_text, METH_VARARGS,
     "iso_text(values, offset, length): (offsets, data) of ISO-8601 UTC text of int64 microseconds, or None."},
    {"has_nan", has_nan, METH_VARARGS, "has_nan(values, offset, length): whether a float64 value is NaN."},
    {"all_tuples", all_tuples, METH_O, "all_tuples(items): whether every item is exactly a tuple."},
    {"float_columns", float_columns, METH_VARARGS,
     "float_columns(rows, width): per column, float64 bytes if every value is a float, else None."},
    {"stamp_columns", stamp_columns, METH_VARARGS,
     "stamp_columns(stamps, counts=None): (prefix, counters, ts_us, request_ids or the one shared id) or None."},
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
