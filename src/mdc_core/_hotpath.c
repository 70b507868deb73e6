/* collect()'s compiled fast path: one plain row, queued and stamped in one C call.
 *
 * Why C: a 1-row collect() in Python is ~4 µs of bytecode under the GIL (take, stamp, pair,
 * queue, and the dict Azure ML's API returns, with its id and ISO timestamp formatted), and
 * every thread of a server shares that GIL. Here it is a few hundred nanoseconds, and, because
 * no Python code runs in between, the checks, the id, the inbox append and the correlation
 * bookkeeping happen atomically: no other thread runs until the call returns.
 *
 * It does exactly what the Python path does for its common case (collector.py's collect(),
 * shapes.take(), Pipeline.accept(), correlation.take_correlation()/open_correlation()) and
 * returns None for everything else, before any side effect, so that the Python path handles
 * it (and raises what must be raised). tests/test_hotpath.py checks both paths side by side.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* -- OpenCorrelation: the inputs of the current request, waiting for their predictions ---- */

typedef struct {
    PyObject_HEAD
    PyObject *stamp;
    PyObject *model;
    PyObject *taken; /* designations that paired already (outside a request scope) */
    Py_ssize_t count;
    double opened;   /* time.monotonic() when the inputs were collected */
} OpenCorrelation;

static PyObject *monotonic_fn; /* time.monotonic: the clock correlation.py compares with */

static PyObject *empty_tuple;

/* time.monotonic(), which pairing compares with: on Linux CPython reads CLOCK_MONOTONIC, so
 * read it directly; elsewhere (macOS uses another clock) ask the time module. */
static int
monotonic_now(double *out)
{
#ifdef __linux__
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) == 0) {
        *out = (double)now.tv_sec + now.tv_nsec * 1e-9;
        return 0;
    }
#endif
    PyObject *now_obj = PyObject_CallNoArgs(monotonic_fn);
    if (now_obj == NULL)
        return -1;
    *out = PyFloat_AsDouble(now_obj);
    Py_DECREF(now_obj);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static OpenCorrelation *
open_correlation_make(PyTypeObject *type, PyObject *stamp, Py_ssize_t count, PyObject *model)
{
    double opened;
    if (monotonic_now(&opened) < 0)
        return NULL;
    OpenCorrelation *self = (OpenCorrelation *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(stamp);
    self->stamp = stamp;
    Py_INCREF(model);
    self->model = model;
    Py_INCREF(empty_tuple);
    self->taken = empty_tuple;
    self->count = count;
    self->opened = opened;
    return self;
}

static PyObject *
open_correlation_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"stamp", "count", "model", NULL};
    PyObject *stamp, *model;
    Py_ssize_t count;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OnO:OpenCorrelation", names, &stamp, &count, &model))
        return NULL;
    return (PyObject *)open_correlation_make(type, stamp, count, model);
}

static void
open_correlation_dealloc(OpenCorrelation *self)
{
    Py_XDECREF(self->stamp);
    Py_XDECREF(self->model);
    Py_XDECREF(self->taken);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef open_correlation_members[] = {
    {"stamp", T_OBJECT_EX, offsetof(OpenCorrelation, stamp), 0, "ids, scoring time and request id"},
    {"count", T_PYSSIZET, offsetof(OpenCorrelation, count), 0, "rows of the inputs"},
    {"model", T_OBJECT_EX, offsetof(OpenCorrelation, model), 0, "model name"},
    {"opened", T_DOUBLE, offsetof(OpenCorrelation, opened), 0, "time.monotonic() at the inputs' collect"},
    {"taken", T_OBJECT_EX, offsetof(OpenCorrelation, taken), 0, "designations paired already"},
    {NULL},
};

static PyTypeObject OpenCorrelationType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mdc_core._hotpath.OpenCorrelation",
    .tp_doc = "The inputs of the current request, waiting for their predictions.",
    .tp_basicsize = sizeof(OpenCorrelation),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = open_correlation_new,
    .tp_dealloc = (destructor)open_correlation_dealloc,
    .tp_members = open_correlation_members,
};

/* -- FastPath: one collector's view of the pipeline -------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *pipeline;   /* the Pipeline: _start() and _absorb_soon() */
    PyObject *state;      /* its __dict__: counters read without attribute lookups */
    PyObject *key;        /* the route key queued with each chunk */
    PyObject *size_obj;
    PyObject *model;
    PyObject *designation;
    PyObject *constants;  /* the five $aml_ values that never change, and the three keys */
    PyObject *scalars;    /* types a plain row may start with */
    PyObject *id_space;   /* class whose .prefix is the process's id prefix (renewed on fork) */
    PyObject *scope_var;  /* contextvar: the RequestScope, or None */
    PyObject *open_var;   /* contextvar: the OpenCorrelation outside a scope */
    PyObject *corr_module; /* for PAIRING_WINDOW, read each time (it may be changed) */
    PyObject *no_request;
    PyObject *ndarray;    /* numpy.ndarray if numpy is imported, else NULL */
    Py_ssize_t width;
    Py_ssize_t size;
    Py_ssize_t absorb_every;
    Py_ssize_t inbox_max;
    int opens;
    int paired;
    long long iso_second; /* the last second formatted, and its text */
    char iso_text[40];
    Py_ssize_t iso_length;
} FastPath;

static PyObject *s_model, *s_taken, *s_opened, *s_count, *s_stamp, *s_rows;
static PyObject *s_inbox, *s_row_ids, *s_inbox_bytes, *s_buffered, *s_fast_limit, *s_small_chunk, *s_thread;
static PyObject *s_append, *s_prefix, *s_request_id, *s_correlation, *s_pairing_window;
static PyObject *s_start, *s_absorb_soon, *s_id_column, *s_ts_column, *s_request_column;
static PyObject *one, *empty_str;

static int
fast_path_traverse(FastPath *self, visitproc visit, void *arg)
{
    Py_VISIT(self->pipeline);
    Py_VISIT(self->state);
    Py_VISIT(self->constants);
    return 0;
}

static int
fast_path_clear(FastPath *self)
{
    Py_CLEAR(self->pipeline);
    Py_CLEAR(self->state);
    Py_CLEAR(self->key);
    Py_CLEAR(self->size_obj);
    Py_CLEAR(self->model);
    Py_CLEAR(self->designation);
    Py_CLEAR(self->constants);
    Py_CLEAR(self->scalars);
    Py_CLEAR(self->id_space);
    Py_CLEAR(self->scope_var);
    Py_CLEAR(self->open_var);
    Py_CLEAR(self->corr_module);
    Py_CLEAR(self->no_request);
    Py_CLEAR(self->ndarray);
    return 0;
}

static void
fast_path_dealloc(FastPath *self)
{
    PyObject_GC_UnTrack(self);
    fast_path_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
fast_path_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"pipeline", "key", "width", "size", "model", "designation", "opens", "paired",
                            "constants", "scalars", "id_space", "scope_var", "open_var", "correlation_module",
                            "no_request", "absorb_every", "inbox_max", "ndarray", NULL};
    PyObject *pipeline, *key, *model, *designation, *constants, *scalars, *id_space, *scope_var, *open_var;
    PyObject *corr_module, *no_request, *ndarray = Py_None;
    Py_ssize_t width, size, absorb_every, inbox_max;
    int opens, paired;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOnnUUppO!O!OO!O!OUnn|O:FastPath", names, &pipeline, &key,
                                     &width, &size, &model, &designation, &opens, &paired, &PyDict_Type,
                                     &constants, &PyFrozenSet_Type, &scalars, &id_space,
                                     &PyContextVar_Type, &scope_var, &PyContextVar_Type, &open_var,
                                     &corr_module, &no_request, &absorb_every, &inbox_max, &ndarray))
        return NULL;
    PyObject *state = PyObject_GenericGetDict(pipeline, NULL);
    if (state == NULL)
        return NULL;
    FastPath *self = (FastPath *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(state);
        return NULL;
    }
    self->state = state;
#define KEEP(field) Py_INCREF(field); self->field = field
    KEEP(pipeline);
    KEEP(key);
    KEEP(model);
    KEEP(designation);
    KEEP(constants);
    KEEP(scalars);
    KEEP(id_space);
    KEEP(scope_var);
    KEEP(open_var);
    KEEP(corr_module);
    KEEP(no_request);
#undef KEEP
    if (ndarray != Py_None) {
        if (!PyType_Check(ndarray)) {
            Py_DECREF(self);
            return PyErr_Format(PyExc_TypeError, "ndarray must be numpy.ndarray or None");
        }
        self->ndarray = Py_NewRef(ndarray);
    }
    self->size_obj = PyLong_FromSsize_t(size);
    if (self->size_obj == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->width = width;
    self->size = size;
    self->opens = opens;
    self->paired = paired;
    self->absorb_every = absorb_every;
    self->inbox_max = inbox_max;
    self->iso_second = -1;
    return (PyObject *)self;
}

/* An int attribute of the pipeline, from its __dict__; -1 with an error set if missing. */
static int
state_int(FastPath *self, PyObject *name, long long *out)
{
    PyObject *value = PyDict_GetItemWithError(self->state, name);
    if (value == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_AttributeError, "Pipeline has no %U", name);
        return -1;
    }
    *out = PyLong_AsLongLong(value);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* Whether corr is for this collector's model: 1, 0, or -1 with an error set. */
static int
same_model(FastPath *self, PyObject *corr)
{
    PyObject *model = PyObject_GetAttr(corr, s_model);
    if (model == NULL)
        return -1;
    int same = PyObject_RichCompareBool(model, self->model, Py_EQ);
    Py_DECREF(model);
    return same;
}

/* Outside a request scope: whether this designation may still take corr (it has not, and
 * the pairing window has not passed); if so, record that it did. 1, 0, or -1 with an error. */
static int
claim(FastPath *self, PyObject *corr)
{
    int result = -1;
    PyObject *taken = NULL, *window = NULL, *opened = NULL, *mine = NULL, *grown = NULL;
    taken = PyObject_GetAttr(corr, s_taken);
    if (taken == NULL)
        goto done;
    int seen = PySequence_Contains(taken, self->designation);
    if (seen != 0) {
        result = seen > 0 ? 0 : -1;
        goto done;
    }
    window = PyObject_GetAttr(self->corr_module, s_pairing_window);
    opened = window == NULL ? NULL : PyObject_GetAttr(corr, s_opened);
    double current;
    if (opened == NULL || monotonic_now(&current) < 0)
        goto done;
    double age = current - PyFloat_AsDouble(opened);
    double limit = PyFloat_AsDouble(window);
    if (PyErr_Occurred())
        goto done;
    if (age > limit) {
        result = 0;
        goto done;
    }
    mine = PyTuple_Pack(1, self->designation);
    grown = mine == NULL ? NULL : PySequence_Concat(taken, mine);
    if (grown == NULL || PyObject_SetAttr(corr, s_taken, grown) < 0)
        goto done;
    result = 1;
done:
    Py_XDECREF(taken);
    Py_XDECREF(window);
    Py_XDECREF(opened);
    Py_XDECREF(mine);
    Py_XDECREF(grown);
    return result;
}

/* The correlation this designation pairs with (a new reference), Py_None for none, NULL on
 * error: correlation.take_correlation(). */
static PyObject *
take_pairing(FastPath *self, PyObject *scope)
{
    PyObject *corr;
    if (scope != Py_None)
        corr = PyObject_GetAttr(scope, s_correlation);
    else if (PyContextVar_Get(self->open_var, Py_None, &corr) < 0)
        return NULL;
    if (corr == NULL || corr == Py_None)
        return corr;
    int ok = same_model(self, corr);
    if (ok == 1 && scope == Py_None)
        ok = claim(self, corr);
    if (ok == 1)
        return corr;
    Py_DECREF(corr);
    return ok == 0 ? Py_NewRef(Py_None) : NULL;
}

static const char hex_digits[] = "0123456789abcdef";

/* correlation.format_id(prefix, start, user): the prefix and 12 hex digits of the counter,
 * written straight into an ASCII string (printf-style formatting was a fifth of the call). */
static PyObject *
format_id(PyObject *prefix, PyObject *start, PyObject *user)
{
    unsigned long long counter = PyLong_AsUnsignedLongLongMask(start);
    if (counter == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (!PyUnicode_IS_ASCII(prefix) || PyUnicode_GET_LENGTH(user) != 0) {
        char digits[16];
        snprintf(digits, sizeof digits, "%012llx", counter & 0xFFFFFFFFFFFFULL);
        if (PyUnicode_GET_LENGTH(user) == 0)
            return PyUnicode_FromFormat("%U%s", prefix, digits);
        return PyUnicode_FromFormat("%U-%U%s", user, prefix, digits);
    }
    Py_ssize_t head = PyUnicode_GET_LENGTH(prefix);
    PyObject *text = PyUnicode_New(head + 12, 127);
    if (text == NULL)
        return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    memcpy(out, PyUnicode_1BYTE_DATA(prefix), head);
    for (int i = 11; i >= 0; i--, counter >>= 4)
        out[head + i] = hex_digits[counter & 15];
    return text;
}

/* IsoClock.format(ts_us): "2026-11-25T01:02:03.123456", UTC, the seconds' text cached. */
static PyObject *
format_iso(FastPath *self, long long ts_us)
{
    long long seconds = ts_us / 1000000, micros = ts_us % 1000000;
    if (micros < 0) {
        micros += 1000000;
        seconds -= 1;
    }
    if (seconds != self->iso_second) {
        time_t t = (time_t)seconds;
        struct tm parts;
        if (gmtime_r(&t, &parts) == NULL ||
            strftime(self->iso_text, sizeof self->iso_text, "%Y-%m-%dT%H:%M:%S", &parts) == 0) {
            PyErr_SetString(PyExc_OverflowError, "timestamp out of range");
            return NULL;
        }
        self->iso_second = seconds;
        self->iso_length = (Py_ssize_t)strlen(self->iso_text);
    }
    Py_ssize_t head = self->iso_length;
    PyObject *text = PyUnicode_New(head + 7, 127);
    if (text == NULL)
        return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    memcpy(out, self->iso_text, head);
    out[head] = '.';
    for (int i = 6; i >= 1; i--, micros /= 10)
        out[head + i] = (Py_UCS1)('0' + micros % 10);
    return text;
}

/* Stop the garbage collector tracking a new tuple that cannot be part of a cycle: one that
 * holds no object the collector tracks. Queued chunks stay in memory for seconds; tracked,
 * each collection would walk them all (a third of a collecting thread's time, measured). */
static void
untrack_if_atomic(PyObject *tuple)
{
    if (!PyObject_GC_IsTracked(tuple))
        return;
    for (Py_ssize_t i = 0, n = PyTuple_GET_SIZE(tuple); i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(tuple, i);
        if (PyObject_IS_GC(item) && (!PyTuple_CheckExact(item) || PyObject_GC_IsTracked(item)))
            return;
    }
    PyObject_GC_UnTrack(tuple);
}

/* shapes._take_numpy() for one row of float64 or int64 at the collector's width (1-D, or 2-D
 * with one row): the values as a tuple of Python floats or ints, as rows[0].tolist() gives.
 * None for any other array (the Python path), NULL with an error set. */
static PyObject *
numpy_one_row(PyObject *array, Py_ssize_t width)
{
    Py_buffer view;
    if (PyObject_GetBuffer(array, &view, PyBUF_RECORDS_RO) < 0) {
        PyErr_Clear(); /* not exportable as plain memory: the Python path decides */
        Py_RETURN_NONE;
    }
    PyObject *row = NULL;
    const char *format = view.format == NULL ? "B" : view.format;
    int is_float = strcmp(format, "d") == 0;
    int is_int = (strcmp(format, "l") == 0 || strcmp(format, "q") == 0) && view.itemsize == 8;
    Py_ssize_t along = view.ndim == 1 ? 0 : 1; /* the axis of the values */
    if ((!is_float && !is_int) || view.itemsize != 8 || view.ndim < 1 || view.ndim > 2 ||
        (view.ndim == 2 && view.shape[0] != 1) || view.shape[along] != width || width == 0) {
        row = Py_NewRef(Py_None);
        goto done;
    }
    row = PyTuple_New(width);
    if (row == NULL)
        goto done;
    for (Py_ssize_t j = 0; j < width; j++) {
        const char *at = (const char *)view.buf + j * view.strides[along];
        PyObject *value;
        if (is_float) {
            double x;
            memcpy(&x, at, sizeof x);
            value = PyFloat_FromDouble(x);
        }
        else {
            int64_t x;
            memcpy(&x, at, sizeof x);
            value = PyLong_FromLongLong(x);
        }
        if (value == NULL) {
            Py_CLEAR(row);
            goto done;
        }
        PyTuple_SET_ITEM(row, j, value);
    }
done:
    PyBuffer_Release(&view);
    return row;
}

/* The dict collect() returns for data, or None when data is not the common case (the Python
 * method takes it, nothing having changed). */
static PyObject *
fast_path_take_row(FastPath *self, PyObject *data)
{
    PyObject *numpy_row = NULL; /* a one-row array's values, as the Python path turns them */
    if (PyList_CheckExact(data) || PyTuple_CheckExact(data)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(data);
        if (n == 0 || n != self->width)
            Py_RETURN_NONE;
        PyObject *first = PySequence_Fast_GET_ITEM(data, 0);
        int scalar = PySet_Contains(self->scalars, (PyObject *)Py_TYPE(first));
        if (scalar <= 0)
            return scalar < 0 ? NULL : Py_NewRef(Py_None);
    }
    else if (self->ndarray != NULL && Py_TYPE(data) == (PyTypeObject *)self->ndarray) {
        numpy_row = numpy_one_row(data, self->width);
        if (numpy_row == NULL || numpy_row == Py_None)
            return numpy_row;
    }
    else {
        Py_RETURN_NONE;
    }

    /* Pipeline.accept()'s lock-free condition; otherwise the Python path takes the lock. */
    PyObject *scope = NULL, *request_id = NULL, *pairing = NULL, *stamp = NULL, *row = numpy_row;
    PyObject *chunk = NULL, *result = NULL, *unpaired = NULL;
    long long small, buffered, inbox_bytes, fast_limit;
    if (state_int(self, s_small_chunk, &small) || state_int(self, s_buffered, &buffered) ||
        state_int(self, s_inbox_bytes, &inbox_bytes) || state_int(self, s_fast_limit, &fast_limit))
        goto done;
    PyObject *inbox = PyDict_GetItemWithError(self->state, s_inbox);
    if (inbox == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_AttributeError, "Pipeline has no _inbox");
        goto done;
    }
    Py_ssize_t waiting = PyObject_Length(inbox);
    if (waiting < 0)
        goto done;
    if (self->size > small || waiting >= self->inbox_max || buffered + inbox_bytes + self->size > fast_limit) {
        result = Py_NewRef(Py_None);
        goto done;
    }

    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    long long ts_us = (long long)now.tv_sec * 1000000 + now.tv_nsec / 1000;

    if (PyContextVar_Get(self->scope_var, Py_None, &scope) < 0)
        goto done;
    request_id = scope == Py_None ? Py_NewRef(self->no_request) : PyObject_GetAttr(scope, s_request_id);
    if (request_id == NULL)
        goto done;
    if (self->paired) {
        pairing = take_pairing(self, scope);
        if (pairing == NULL)
            goto done;
    }
    unpaired = PyLong_FromLong(0);
    if (unpaired == NULL)
        goto done;
    if (pairing != NULL && pairing != Py_None) {
        PyObject *count_obj = PyObject_GetAttr(pairing, s_count);
        Py_ssize_t count = count_obj == NULL ? -1 : PyLong_AsSsize_t(count_obj);
        Py_XDECREF(count_obj);
        if (count == -1 && PyErr_Occurred())
            goto done;
        if (count == 1) /* Pipeline.accept(): count == n or count == 1, and n is 1 */
            stamp = PyObject_GetAttr(pairing, s_stamp);
        else
            Py_SETREF(unpaired, PyLong_FromLong(1));
        if (unpaired == NULL)
            goto done;
    }
    if (stamp == NULL) {
        if (PyErr_Occurred())
            goto done;
        PyObject *ids = PyDict_GetItemWithError(self->state, s_row_ids);
        if (ids == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_AttributeError, "Pipeline has no _row_ids");
            goto done;
        }
        PyObject *start = PyIter_Next(ids);
        PyObject *prefix = start == NULL ? NULL : PyObject_GetAttr(self->id_space, s_prefix);
        PyObject *ts = prefix == NULL ? NULL : PyLong_FromLongLong(ts_us);
        if (ts != NULL)
            stamp = PyTuple_Pack(6, prefix, start, one, empty_str, ts, request_id);
        Py_XDECREF(start);
        Py_XDECREF(prefix);
        Py_XDECREF(ts);
        if (stamp == NULL)
            goto done;
        untrack_if_atomic(stamp);
    }
    if (row == NULL) {
        row = PyList_CheckExact(data) ? PyList_AsTuple(data) : Py_NewRef(data);
        if (row == NULL)
            goto done;
    }
    untrack_if_atomic(row);
    chunk = PyTuple_Pack(5, self->key, row, stamp, self->size_obj, unpaired);
    if (chunk == NULL)
        goto done;
    untrack_if_atomic(chunk);
    PyObject *appended = PyObject_CallMethodOneArg(inbox, s_append, chunk);
    if (appended == NULL)
        goto done;
    Py_DECREF(appended);
    PyObject *total = PyLong_FromLongLong(inbox_bytes + self->size);
    if (total == NULL || PyDict_SetItem(self->state, s_inbox_bytes, total) < 0) {
        Py_XDECREF(total);
        goto done;
    }
    Py_DECREF(total);

    if (self->opens) {
        OpenCorrelation *corr = open_correlation_make(&OpenCorrelationType, stamp, 1, self->model);
        if (corr == NULL)
            goto done;
        int failed;
        if (scope != Py_None) {
            failed = PyObject_SetAttr(scope, s_correlation, (PyObject *)corr);
        }
        else {
            PyObject *token = PyContextVar_Set(self->open_var, (PyObject *)corr);
            failed = token == NULL;
            Py_XDECREF(token);
        }
        Py_DECREF(corr);
        if (failed)
            goto done;
    }

    /* The dict Azure ML's collect() returns: the constants plus id, timestamp and request id. */
    PyObject *prefix = PyTuple_GET_ITEM(stamp, 0), *start = PyTuple_GET_ITEM(stamp, 1);
    PyObject *user = PyTuple_GET_ITEM(stamp, 3), *stamp_ts = PyTuple_GET_ITEM(stamp, 4);
    long long when = PyLong_AsLongLong(stamp_ts);
    if (when == -1 && PyErr_Occurred())
        goto done;
    result = PyDict_Copy(self->constants);
    if (result == NULL)
        goto done;
    PyObject *ident = format_id(prefix, start, user);
    PyObject *iso = ident == NULL ? NULL : format_iso(self, when);
    int failed = iso == NULL || PyDict_SetItem(result, s_id_column, ident) < 0 ||
                 PyDict_SetItem(result, s_ts_column, iso) < 0 ||
                 PyDict_SetItem(result, s_request_column, PyTuple_GET_ITEM(stamp, 5)) < 0;
    Py_XDECREF(ident);
    Py_XDECREF(iso);
    if (failed)
        Py_CLEAR(result);

    /* Now and then the caller numbers the inbox (never waiting for the lock); the first call
     * starts the flusher. Both may run Python code: after everything above is done. */
    if (result != NULL && waiting + 1 >= self->absorb_every) {
        PyObject *r = PyObject_CallMethodNoArgs(self->pipeline, s_absorb_soon);
        if (r == NULL)
            Py_CLEAR(result);
        Py_XDECREF(r);
    }
    if (result != NULL) {
        PyObject *thread = PyDict_GetItemWithError(self->state, s_thread);
        if (thread == Py_None) {
            PyObject *r = PyObject_CallMethodNoArgs(self->pipeline, s_start);
            if (r == NULL)
                Py_CLEAR(result);
            Py_XDECREF(r);
        }
        else if (thread == NULL && PyErr_Occurred()) {
            Py_CLEAR(result);
        }
    }
done:
    Py_XDECREF(scope);
    Py_XDECREF(request_id);
    Py_XDECREF(pairing);
    Py_XDECREF(stamp);
    Py_XDECREF(row);
    Py_XDECREF(chunk);
    Py_XDECREF(unpaired);
    return result;
}

/* -- absorb: Pipeline._absorb()'s loop ----------------------------------------------------- */

/* Add rows to an int attribute of a route (route.collected += rows). */
static int
add_to(PyObject *route, const char *name, long long rows)
{
    PyObject *old = PyObject_GetAttrString(route, name);
    if (old == NULL)
        return -1;
    PyObject *delta = PyLong_FromLongLong(rows);
    PyObject *sum = delta == NULL ? NULL : PyNumber_Add(old, delta);
    Py_DECREF(old);
    Py_XDECREF(delta);
    if (sum == NULL)
        return -1;
    int failed = PyObject_SetAttrString(route, name, sum);
    Py_DECREF(sum);
    return failed;
}

/* shapes.queued_rows(): a bare tuple is one row, a Taken has .rows; -1 with an error set. */
static long long
queued_rows(PyObject *item)
{
    if (PyTuple_CheckExact(item))
        return 1;
    PyObject *count = PyObject_GetAttr(item, s_rows);
    long long n = count == NULL ? -1 : PyLong_AsLongLong(count);
    Py_XDECREF(count);
    return n;
}

/* absorb(inbox, queue, routes, seq) -> (seq, rows, size)
 *
 * Move every chunk (key, item, stamp, size, unpaired) from the inbox deque to the queue deque
 * as (key, item, stamp, size, seq), numbering them from seq + 1, and add their rows to
 * routes[key].collected and their unpaired rows to .unpaired, once per route. The caller
 * holds the pipeline's lock; no Python code runs in here, so no thread runs meanwhile. */
static PyObject *
absorb(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "absorb(inbox, queue, routes: dict, seq: int)");
        return NULL;
    }
    PyObject *inbox = args[0], *queue = args[1], *routes = args[2];
    long long seq = PyLong_AsLongLong(args[3]);
    if (seq == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t nroutes = PyDict_GET_SIZE(routes);
    long long *collected = PyMem_Calloc(nroutes + 1, sizeof(long long));
    long long *unpaired = PyMem_Calloc(nroutes + 1, sizeof(long long));
    PyObject *popleft = PyObject_GetAttrString(inbox, "popleft");
    PyObject *append = PyObject_GetAttrString(queue, "append");
    PyObject *result = NULL;
    long long rows = 0, size = 0;
    if (collected == NULL || unpaired == NULL || popleft == NULL || append == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t waiting = PyObject_Length(inbox);
    for (Py_ssize_t i = 0; i < waiting; i++) {
        PyObject *chunk = PyObject_CallNoArgs(popleft);
        if (chunk == NULL)
            goto done;
        if (!PyTuple_CheckExact(chunk) || PyTuple_GET_SIZE(chunk) != 5) {
            Py_DECREF(chunk);
            PyErr_SetString(PyExc_TypeError, "an inbox chunk is (key, item, stamp, size, unpaired)");
            goto done;
        }
        PyObject *item = PyTuple_GET_ITEM(chunk, 1);
        long long n = queued_rows(item);
        Py_ssize_t key = PyLong_AsSsize_t(PyTuple_GET_ITEM(chunk, 0));
        long long chunk_size = PyLong_AsLongLong(PyTuple_GET_ITEM(chunk, 3));
        long long lone = PyLong_AsLongLong(PyTuple_GET_ITEM(chunk, 4));
        if (PyErr_Occurred() || key < 0 || key >= nroutes) {
            Py_DECREF(chunk);
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_KeyError, "no route has key %zd", key);
            goto done;
        }
        seq += 1;
        PyObject *number = PyLong_FromLongLong(seq);
        PyObject *queued = NULL;
        if (number != NULL && Py_REFCNT(chunk) == 1) {
            /* Nobody else can see this tuple (the deque let go of it): its last slot, the
             * unpaired rows already read, becomes the sequence number, without a new tuple. */
            PyObject *unpaired_slot = PyTuple_GET_ITEM(chunk, 4);
            PyTuple_SET_ITEM(chunk, 4, number);
            Py_DECREF(unpaired_slot);
            queued = chunk;
        }
        else {
            queued = number == NULL ? NULL : PyTuple_Pack(5, PyTuple_GET_ITEM(chunk, 0), item,
                                                          PyTuple_GET_ITEM(chunk, 2), PyTuple_GET_ITEM(chunk, 3),
                                                          number);
            Py_XDECREF(number);
            Py_DECREF(chunk);
            if (queued != NULL)
                untrack_if_atomic(queued);
        }
        PyObject *appended = queued == NULL ? NULL : PyObject_CallOneArg(append, queued);
        Py_XDECREF(queued);
        if (appended == NULL)
            goto done;
        Py_DECREF(appended);
        collected[key] += n;
        unpaired[key] += lone;
        rows += n;
        size += chunk_size;
    }
    for (Py_ssize_t key = 0; key < nroutes; key++) {
        if (collected[key] == 0 && unpaired[key] == 0)
            continue;
        PyObject *k = PyLong_FromSsize_t(key);
        PyObject *route = k == NULL ? NULL : PyDict_GetItemWithError(routes, k);
        Py_XDECREF(k);
        if (route == NULL) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_KeyError, "no route has key %zd", key);
            goto done;
        }
        if ((collected[key] && add_to(route, "collected", collected[key]) < 0) ||
            (unpaired[key] && add_to(route, "unpaired", unpaired[key]) < 0))
            goto done;
    }
    result = Py_BuildValue("(LLL)", seq, rows, size);
done:
    PyMem_Free(collected);
    PyMem_Free(unpaired);
    Py_XDECREF(popleft);
    Py_XDECREF(append);
    return result;
}

/* -- the flusher's batch: Pipeline._seal_and_write() and _by_route() loops ------------------ */

/* take_batch(queue, limits, limit_for, half) -> (chunks, rows, size)
 *
 * Pop chunks from the front of the queue into a new list while the batch is under the row
 * limit of the next chunk's route (limits[key], else limit_for(key), cached in limits) and
 * under half the memory bound (at least one chunk is taken). */
static PyObject *
take_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "take_batch(queue, limits: dict, limit_for, half: int)");
        return NULL;
    }
    PyObject *queue = args[0], *limits = args[1], *limit_for = args[2];
    long long half = PyLong_AsLongLong(args[3]);
    if (half == -1 && PyErr_Occurred())
        return NULL;
    PyObject *chunks = PyList_New(0);
    PyObject *popleft = PyObject_GetAttrString(queue, "popleft");
    PyObject *result = NULL;
    long long rows = 0, size = 0;
    if (chunks == NULL || popleft == NULL)
        goto done;
    Py_ssize_t waiting = PyObject_Length(queue);
    for (Py_ssize_t i = 0; i < waiting; i++) {
        PyObject *chunk = PySequence_GetItem(queue, 0);
        if (chunk == NULL)
            goto done;
        PyObject *key = PyTuple_GET_ITEM(chunk, 0);
        PyObject *limit = PyDict_GetItemWithError(limits, key); /* borrowed */
        if (limit == NULL && !PyErr_Occurred()) {
            /* limit_for may run Python code; the caller holds the pipeline's lock, and only
             * code holding it takes from the queue */
            PyObject *fresh = PyObject_CallOneArg(limit_for, key);
            if (fresh != NULL && PyDict_SetItem(limits, key, fresh) == 0)
                limit = fresh;
            Py_XDECREF(fresh); /* the dict keeps it */
        }
        long long cap = limit == NULL ? -1 : PyLong_AsLongLong(limit);
        if (cap == -1 && PyErr_Occurred()) {
            Py_DECREF(chunk);
            goto done;
        }
        if (rows >= cap || (PyList_GET_SIZE(chunks) > 0 && size >= half)) {
            Py_DECREF(chunk);
            break;
        }
        PyObject *item = PyTuple_GET_ITEM(chunk, 1);
        long long n = queued_rows(item);
        long long chunk_size = PyLong_AsLongLong(PyTuple_GET_ITEM(chunk, 3));
        Py_DECREF(chunk);
        if (PyErr_Occurred())
            goto done;
        PyObject *taken = PyObject_CallNoArgs(popleft);
        if (taken == NULL)
            goto done;
        int failed = PyList_Append(chunks, taken);
        Py_DECREF(taken);
        if (failed)
            goto done;
        rows += n;
        size += chunk_size;
    }
    result = Py_BuildValue("(OLL)", chunks, rows, size);
done:
    Py_XDECREF(chunks);
    Py_XDECREF(popleft);
    return result;
}

/* split_by_route(chunks) -> {key: (items, stamps)}: each route's queued items and stamps, in
 * order, as two parallel lists (Pipeline's _by_route()). */
static PyObject *
split_by_route(PyObject *module, PyObject *chunks)
{
    if (!PyList_Check(chunks)) {
        PyErr_SetString(PyExc_TypeError, "split_by_route(chunks: list)");
        return NULL;
    }
    PyObject *result = PyDict_New();
    if (result == NULL)
        return NULL;
    PyObject *last_key = NULL, *items = NULL, *stamps = NULL; /* borrowed from result */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(chunks); i++) {
        PyObject *chunk = PyList_GET_ITEM(chunks, i);
        if (!PyTuple_Check(chunk) || PyTuple_GET_SIZE(chunk) < 3) {
            PyErr_SetString(PyExc_TypeError, "a chunk is (key, item, stamp, ...)");
            goto fail;
        }
        PyObject *key = PyTuple_GET_ITEM(chunk, 0);
        if (key != last_key) {
            PyObject *pair = PyDict_GetItemWithError(result, key);
            if (pair == NULL) {
                if (PyErr_Occurred())
                    goto fail;
                PyObject *a = PyList_New(0), *b = PyList_New(0);
                pair = (a == NULL || b == NULL) ? NULL : PyTuple_Pack(2, a, b);
                Py_XDECREF(a);
                Py_XDECREF(b);
                if (pair == NULL || PyDict_SetItem(result, key, pair) < 0) {
                    Py_XDECREF(pair);
                    goto fail;
                }
                Py_DECREF(pair); /* the dict keeps it */
            }
            items = PyTuple_GET_ITEM(pair, 0);
            stamps = PyTuple_GET_ITEM(pair, 1);
            last_key = key;
        }
        if (PyList_Append(items, PyTuple_GET_ITEM(chunk, 1)) < 0 ||
            PyList_Append(stamps, PyTuple_GET_ITEM(chunk, 2)) < 0)
            goto fail;
    }
    return result;
fail:
    Py_DECREF(result);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"absorb", (PyCFunction)(void (*)(void))absorb, METH_FASTCALL,
     "absorb(inbox, queue, routes, seq) -> (seq, rows, size): Pipeline._absorb()'s loop."},
    {"take_batch", (PyCFunction)(void (*)(void))take_batch, METH_FASTCALL,
     "take_batch(queue, limits, limit_for, half) -> (chunks, rows, size): the flusher's next batch."},
    {"split_by_route", (PyCFunction)split_by_route, METH_O,
     "split_by_route(chunks) -> {key: (items, stamps)}: each route's part of a batch, in order."},
    {NULL},
};

static PyTypeObject FastPathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mdc_core._hotpath.FastPath",
    .tp_doc = "One collector's compiled collect() for one plain row at its width.",
    .tp_basicsize = sizeof(FastPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = fast_path_new,
    .tp_dealloc = (destructor)fast_path_dealloc,
    .tp_traverse = (traverseproc)fast_path_traverse,
    .tp_clear = (inquiry)fast_path_clear,
};

/* -- CollectMethod: ModelDataCollector.collect, with the common case in C ------------------- */

/* A method descriptor wrapping the Python collect(): on the class, so subclasses that override
 * collect() and tests that patch it on the class behave as with a plain method, while a call
 * on an instance whose _fast_path is set goes to take_row() without a Python frame (an eighth
 * of a plain row's cost), and everything take_row() hands back goes to the Python method. */
typedef struct {
    PyObject_HEAD
    PyObject *python; /* the Python function collect(self, input_data, user_correlation_id="") */
    vectorcallfunc vectorcall;
} CollectMethod;

static PyObject *s_fast_path;

static PyObject *
collect_method_call(CollectMethod *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames == NULL && (nargs == 2 || nargs == 3)) {
        PyObject *user = nargs == 3 ? args[2] : NULL;
        if (user == NULL || user == Py_None || (PyUnicode_CheckExact(user) && PyUnicode_GET_LENGTH(user) == 0)) {
            PyObject **dict = _PyObject_GetDictPtr(args[0]);
            PyObject *fast = (dict == NULL || *dict == NULL) ? NULL : PyDict_GetItemWithError(*dict, s_fast_path);
            if (fast != NULL && Py_TYPE(fast) == &FastPathType) {
                Py_INCREF(fast); /* take_row may run Python code that replaces it */
                PyObject *result = fast_path_take_row((FastPath *)fast, args[1]);
                Py_DECREF(fast);
                if (result != Py_None)
                    return result; /* the dict, or NULL with an error */
                Py_DECREF(result);
            }
            else if (PyErr_Occurred()) {
                return NULL;
            }
        }
    }
    return PyObject_Vectorcall(self->python, args, nargsf, kwnames);
}

static PyObject *
collect_method_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *python;
    if (!PyArg_ParseTuple(args, "O:CollectMethod", &python))
        return NULL;
    if (!PyCallable_Check(python))
        return PyErr_Format(PyExc_TypeError, "CollectMethod wraps a function, not %.100s", Py_TYPE(python)->tp_name);
    CollectMethod *self = (CollectMethod *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->python = Py_NewRef(python);
    self->vectorcall = (vectorcallfunc)collect_method_call;
    return (PyObject *)self;
}

static int
collect_method_traverse(CollectMethod *self, visitproc visit, void *arg)
{
    Py_VISIT(self->python);
    return 0;
}

static int
collect_method_clear(CollectMethod *self)
{
    Py_CLEAR(self->python);
    return 0;
}

static void
collect_method_dealloc(CollectMethod *self)
{
    PyObject_GC_UnTrack(self);
    collect_method_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
collect_method_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None)
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

/* __doc__, __name__, __wrapped__ (which inspect.signature follows), ...: the Python function's. */
static PyObject *
collect_method_getattro(CollectMethod *self, PyObject *name)
{
    PyObject *found = PyObject_GenericGetAttr((PyObject *)self, name);
    if (found != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError))
        return found;
    PyErr_Clear();
    if (PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "__wrapped__") == 0)
        return Py_NewRef(self->python);
    return PyObject_GetAttr(self->python, name);
}

static PyObject *
collect_method_doc(CollectMethod *self, void *closure)
{
    return PyObject_GetAttrString(self->python, "__doc__");
}

static PyGetSetDef collect_method_getset[] = {
    {"__doc__", (getter)collect_method_doc, NULL, NULL, NULL},
    {NULL},
};

static PyTypeObject CollectMethodType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mdc_core._hotpath.CollectMethod",
    .tp_basicsize = sizeof(CollectMethod),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_vectorcall_offset = offsetof(CollectMethod, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = collect_method_new,
    .tp_dealloc = (destructor)collect_method_dealloc,
    .tp_traverse = (traverseproc)collect_method_traverse,
    .tp_clear = (inquiry)collect_method_clear,
    .tp_descr_get = collect_method_get,
    .tp_getattro = (getattrofunc)collect_method_getattro,
    .tp_getset = collect_method_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_hotpath",
    .m_doc = "collect()'s compiled fast path (optional: the Python path does the same).",
    .m_size = -1,
    .m_methods = module_methods,
};

static int
intern(PyObject **slot, const char *text)
{
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC
PyInit__hotpath(void)
{
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL)
        return NULL;
    monotonic_fn = PyObject_GetAttrString(time_module, "monotonic");
    Py_DECREF(time_module);
    if (monotonic_fn == NULL)
        return NULL;
    empty_tuple = PyTuple_New(0);
    one = PyLong_FromLong(1);
    empty_str = PyUnicode_FromString("");
    if (empty_tuple == NULL || one == NULL || empty_str == NULL)
        return NULL;
    if (intern(&s_inbox, "_inbox") || intern(&s_row_ids, "_row_ids") || intern(&s_inbox_bytes, "_inbox_bytes") ||
        intern(&s_buffered, "_buffered_bytes") || intern(&s_fast_limit, "_fast_limit") ||
        intern(&s_small_chunk, "_small_chunk") || intern(&s_thread, "_thread") || intern(&s_append, "append") ||
        intern(&s_prefix, "prefix") || intern(&s_request_id, "request_id") ||
        intern(&s_correlation, "correlation") || intern(&s_pairing_window, "PAIRING_WINDOW") ||
        intern(&s_start, "_start") || intern(&s_absorb_soon, "_absorb_soon") ||
        intern(&s_id_column, "$aml_dc_correlation_id") || intern(&s_ts_column, "$aml_dc_scoring_timestamp") ||
        intern(&s_request_column, "$aml_request_id"))
        return NULL;
    if (intern(&s_fast_path, "_fast_path") || intern(&s_model, "model") || intern(&s_taken, "taken") ||
        intern(&s_opened, "opened") || intern(&s_count, "count") || intern(&s_stamp, "stamp") ||
        intern(&s_rows, "rows"))
        return NULL;
    if (PyType_Ready(&OpenCorrelationType) < 0 || PyType_Ready(&FastPathType) < 0 ||
        PyType_Ready(&CollectMethodType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "OpenCorrelation", (PyObject *)&OpenCorrelationType) < 0 ||
        PyModule_AddObjectRef(m, "FastPath", (PyObject *)&FastPathType) < 0 ||
        PyModule_AddObjectRef(m, "CollectMethod", (PyObject *)&CollectMethodType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
