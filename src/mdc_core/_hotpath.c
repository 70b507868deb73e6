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
#ifndef _WIN32
#include <pthread.h>
#endif

#include "_handoff.h"

/* -- OpenCorrelation: the inputs of the current request, waiting for their predictions ---- */

typedef struct {
    PyObject_HEAD
    PyObject *stamp;   /* the Stamp tuple; NULL until asked for when made by collect() */
    PyObject *model;
    PyObject *taken;   /* designations that paired already (outside a request scope) */
    Py_ssize_t count;
    double opened;     /* time.monotonic() when the inputs were collected */
    PyObject *prefix;  /* with stamp NULL: the one row's id prefix, counter, time, request id */
    int64_t counter;
    int64_t ts_us;
    PyObject *request;
} OpenCorrelation;

static PyObject *monotonic_fn; /* time.monotonic: the clock correlation.py compares with */

static PyObject *empty_tuple, *one, *zero, *empty_str;

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

/* stamp, or (prefix, counter, ts_us, request) of one row with no user id, from which the stamp
 * is made only if Python asks for it (collect()'s path reads the fields). */
static OpenCorrelation *
open_correlation_make(PyTypeObject *type, PyObject *stamp, Py_ssize_t count, PyObject *model,
                      PyObject *prefix, int64_t counter, int64_t ts_us, PyObject *request)
{
    double opened;
    if (monotonic_now(&opened) < 0)
        return NULL;
    OpenCorrelation *self = (OpenCorrelation *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->stamp = Py_XNewRef(stamp);
    self->prefix = Py_XNewRef(prefix);
    self->request = Py_XNewRef(request);
    self->counter = counter;
    self->ts_us = ts_us;
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
    return (PyObject *)open_correlation_make(type, stamp, count, model, NULL, 0, 0, NULL);
}

static void
open_correlation_dealloc(OpenCorrelation *self)
{
    Py_XDECREF(self->stamp);
    Py_XDECREF(self->model);
    Py_XDECREF(self->taken);
    Py_XDECREF(self->prefix);
    Py_XDECREF(self->request);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The Stamp (prefix, start, step, user, ts_us, request_id), made once when first asked for. */
static PyObject *
open_correlation_stamp(OpenCorrelation *self, void *closure)
{
    if (self->stamp == NULL) {
        PyObject *start = PyLong_FromLongLong(self->counter), *ts = PyLong_FromLongLong(self->ts_us);
        if (start != NULL && ts != NULL)
            self->stamp = PyTuple_Pack(6, self->prefix, start, one, empty_str, ts, self->request);
        Py_XDECREF(start);
        Py_XDECREF(ts);
        if (self->stamp == NULL)
            return NULL;
    }
    return Py_NewRef(self->stamp);
}

static PyGetSetDef open_correlation_getset[] = {
    {"stamp", (getter)open_correlation_stamp, NULL, "ids, scoring time and request id", NULL},
    {NULL},
};

static PyMemberDef open_correlation_members[] = {
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
    .tp_getset = open_correlation_getset,
};

/* -- Counter: the ids of single rows ---------------------------------------------------------- */

/* itertools.count() that collect()'s compiled path reads without making an int: next(counter)
 * in Python, counter->next++ in C (both under the GIL). */
typedef struct {
    PyObject_HEAD
    long long next;
} Counter;

static PyObject *
counter_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    long long start = 0;
    static char *names[] = {"start", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|L:Counter", names, &start))
        return NULL;
    Counter *self = (Counter *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->next = start;
    return (PyObject *)self;
}

static PyObject *
counter_iternext(Counter *self)
{
    return PyLong_FromLongLong(self->next++);
}

static PyTypeObject CounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mdc_core._hotpath.Counter",
    .tp_doc = "Counter(start=0): itertools.count() for the ids of single rows.",
    .tp_basicsize = sizeof(Counter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = counter_new,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)counter_iternext,
};

/* -- Block: a run of one collector's float rows, stored as columns ------------------------- */

/* Why: a queued row as Python objects (a tuple of floats, a stamp tuple, a chunk tuple, their
 * ints) costs a collecting thread allocations and its share of the garbage collector, and the
 * flusher a pass over each object under the GIL. A Block keeps many rows as plain C arrays,
 * column by column, as the Arrow arrays they become: one float64 array per feature, the id
 * counters and scoring times as int64, and the request ids as references. collect() appends to
 * its collector's open block without allocating anything; the block sits in the inbox as one
 * chunk, and absorb() seals it (no row is added after its rows were counted). */

#define BLOCK_MAX_WIDTH 64 /* wider rows take the tuple path: their values are read on the stack */

typedef struct {
    PyObject_HEAD
    Py_ssize_t width;
    Py_ssize_t capacity;
    Py_ssize_t rows;
    long long unpaired; /* rows that found no inputs to pair with */
    int sealed;         /* absorbed: its rows are counted, no row may be added */
    PyObject *prefix;   /* the id prefix of every row */
    double *values;     /* values[j * capacity + i]: feature j of row i */
    int64_t *counters;
    int64_t *times;     /* µs since the epoch, UTC */
    PyObject **requests;
} Block;

static PyTypeObject BlockType;

/* The memory of blocks the flusher has written, kept for the next blocks of the same size (a
 * collector's blocks all have one size): a fresh allocation faults on each page it touches
 * (~1-2 us a page, 8 pages a block), and that made the call that made a block 10-30 us.
 * A batch frees a few dozen blocks at once. Guarded by the GIL. */
#define SPARE_BLOCKS 64
static struct {
    char *memory;
    size_t bytes;
} spare[SPARE_BLOCKS];
static int spares;

static size_t
block_memory_size(Py_ssize_t width, Py_ssize_t capacity)
{
    return (sizeof(double) * width + 2 * sizeof(int64_t) + sizeof(PyObject *)) * capacity;
}

static char *
block_memory(size_t bytes)
{
    for (int i = spares - 1; i >= 0; i--) {
        if (spare[i].bytes == bytes) {
            char *memory = spare[i].memory;
            spare[i] = spare[--spares];
            return memory;
        }
    }
    char *memory = PyMem_Malloc(bytes);
    if (memory != NULL)
        memset(memory, 0, bytes); /* touch every page now, not in the calls that fill it */
    return memory;
}

static void
block_memory_free(char *memory, size_t bytes)
{
    if (memory == NULL)
        return;
    if (spares == SPARE_BLOCKS) { /* full: the oldest goes */
        PyMem_Free(spare[0].memory);
        spare[0] = spare[--spares];
    }
    spare[spares].memory = memory;
    spare[spares].bytes = bytes;
    spares++;
}

static Block *
block_make(Py_ssize_t width, Py_ssize_t capacity, PyObject *prefix)
{
    Block *self = PyObject_New(Block, &BlockType);
    if (self == NULL)
        return NULL;
    self->width = width;
    self->capacity = capacity;
    self->rows = 0;
    self->unpaired = 0;
    self->sealed = 0;
    self->prefix = Py_NewRef(prefix);
    /* One allocation whose pages are touched before the block is used (when rows were written
     * to fresh pages, one call in a hundred paid for a page fault). */
    char *memory = block_memory(block_memory_size(width, capacity));
    if (memory == NULL) {
        self->values = NULL;
        self->requests = NULL;
        Py_DECREF(self);
        return (Block *)PyErr_NoMemory();
    }
    self->values = (double *)memory;
    self->counters = (int64_t *)(memory + sizeof(double) * width * capacity);
    self->times = self->counters + capacity;
    self->requests = (PyObject **)(self->times + capacity);
    return self;
}

/* The bytes a block of this shape holds: what the memory bound counts for it. */
static Py_ssize_t
block_bytes(Py_ssize_t width, Py_ssize_t capacity)
{
    return (Py_ssize_t)(sizeof(Block) + block_memory_size(width, capacity));
}

/* Append one row (the caller checked that the block is open and has room). */
static void
block_put(Block *self, const double *values, int64_t counter, int64_t ts_us, PyObject *request, int lone)
{
    Py_ssize_t i = self->rows;
    for (Py_ssize_t j = 0; j < self->width; j++)
        self->values[j * self->capacity + i] = values[j];
    self->counters[i] = counter;
    self->times[i] = ts_us;
    self->requests[i] = Py_NewRef(request);
    self->unpaired += lone;
    self->rows = i + 1;
}

static void
block_dealloc(Block *self)
{
    if (self->requests != NULL)
        for (Py_ssize_t i = 0; i < self->rows; i++)
            Py_DECREF(self->requests[i]);
    block_memory_free((char *)self->values, block_memory_size(self->width, self->capacity)); /* arrays included */
    Py_XDECREF(self->prefix);
    PyObject_Free(self);
}

/* expand() -> (rows, stamps): the block as the tuples collect() would have queued without it,
 * for a batch that mixes blocks with other rows (converted the way such batches always were). */
static PyObject *
block_expand(Block *self, PyObject *unused)
{
    PyObject *rows = PyList_New(self->rows), *stamps = PyList_New(self->rows);
    if (rows == NULL || stamps == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < self->rows; i++) {
        PyObject *row = PyTuple_New(self->width);
        if (row == NULL)
            goto fail;
        PyList_SET_ITEM(rows, i, row);
        for (Py_ssize_t j = 0; j < self->width; j++) {
            PyObject *value = PyFloat_FromDouble(self->values[j * self->capacity + i]);
            if (value == NULL)
                goto fail;
            PyTuple_SET_ITEM(row, j, value);
        }
        PyObject *stamp = Py_BuildValue("(OLiOLO)", self->prefix, (long long)self->counters[i], 1, empty_str,
                                        (long long)self->times[i], self->requests[i]);
        if (stamp == NULL)
            goto fail;
        PyList_SET_ITEM(stamps, i, stamp);
    }
    return Py_BuildValue("(NN)", rows, stamps);
fail:
    Py_XDECREF(rows);
    Py_XDECREF(stamps);
    return NULL;
}

static PyMethodDef block_methods[] = {
    {"expand", (PyCFunction)block_expand, METH_NOARGS, "expand() -> (rows, stamps): the rows as tuples."},
    {NULL},
};

static PyMemberDef block_members[] = {
    {"rows", T_PYSSIZET, offsetof(Block, rows), READONLY, "rows in the block"},
    {"width", T_PYSSIZET, offsetof(Block, width), READONLY, "features per row"},
    {"sealed", T_INT, offsetof(Block, sealed), READONLY, "whether absorb() counted it (no row may be added)"},
    {"prefix", T_OBJECT_EX, offsetof(Block, prefix), READONLY, "the id prefix of every row"},
    {NULL},
};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mdc_core._hotpath.Block",
    .tp_doc = "A run of one collector's float rows, queued as columns (made by collect() only).",
    .tp_basicsize = sizeof(Block),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)block_dealloc,
    .tp_methods = block_methods,
    .tp_members = block_members,
};

/* block_columns(blocks) -> (prefix, [feature bytes], counters, times, requests) | None
 *
 * The rows of sealed blocks of one width, in order, as buffers Arrow wraps without copying:
 * float64 per feature, uint64 id counters, int64 µs times; requests the one request id every row
 * has (a str) or a list of them. None when the blocks' id prefixes differ (one each, then). */
static PyObject *
block_columns(PyObject *module, PyObject *blocks)
{
    if (!PyList_Check(blocks) || PyList_GET_SIZE(blocks) == 0) {
        PyErr_SetString(PyExc_TypeError, "block_columns(blocks: a non-empty list of Block)");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(blocks), total = 0, width = -1;
    PyObject *prefix = NULL, *shared = NULL;
    int same_request = 1;
    for (Py_ssize_t b = 0; b < count; b++) {
        PyObject *item = PyList_GET_ITEM(blocks, b);
        if (Py_TYPE(item) != &BlockType) {
            PyErr_SetString(PyExc_TypeError, "block_columns() takes Blocks only");
            return NULL;
        }
        Block *block = (Block *)item;
        if (!block->sealed) {
            PyErr_SetString(PyExc_ValueError, "a block is read only once absorb() sealed it");
            return NULL;
        }
        if (width == -1) {
            width = block->width;
            prefix = block->prefix;
        }
        if (block->width != width) {
            PyErr_SetString(PyExc_ValueError, "blocks of one collector have one width");
            return NULL;
        }
        if (PyUnicode_Compare(block->prefix, prefix) != 0) {
            if (PyErr_Occurred())
                return NULL;
            Py_RETURN_NONE;
        }
        for (Py_ssize_t i = 0; i < block->rows; i++) {
            if (shared == NULL)
                shared = block->requests[i];
            else if (block->requests[i] != shared)
                same_request = 0;
        }
        total += block->rows;
    }
    PyObject *features = PyList_New(width), *counters = NULL, *times = NULL, *requests = NULL;
    /* our own references while copying (memcpy of sealed blocks: ~4 ns a row a column). The GIL
     * is kept: a flusher that releases it waits for it up to the switch interval (5 ms) while
     * scoring threads run, many times the copy (benchmarks/flusher_gil.py). */
    Block **held = PyMem_Malloc(sizeof(Block *) * count);
    char **outs = PyMem_Malloc(sizeof(char *) * (width + 2));
    if (features == NULL || held == NULL || outs == NULL) {
        Py_XDECREF(features);
        PyMem_Free(held);
        PyMem_Free(outs);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t j = 0; j < width; j++) {
        PyObject *column = PyBytes_FromStringAndSize(NULL, total * (Py_ssize_t)sizeof(double));
        if (column == NULL)
            goto fail;
        PyList_SET_ITEM(features, j, column);
        outs[j] = PyBytes_AS_STRING(column);
    }
    counters = PyBytes_FromStringAndSize(NULL, total * (Py_ssize_t)sizeof(int64_t));
    times = PyBytes_FromStringAndSize(NULL, total * (Py_ssize_t)sizeof(int64_t));
    requests = same_request ? Py_NewRef(shared == NULL ? empty_str : shared) : PyList_New(total);
    if (counters == NULL || times == NULL || requests == NULL)
        goto fail;
    outs[width] = PyBytes_AS_STRING(counters);
    outs[width + 1] = PyBytes_AS_STRING(times);
    Py_ssize_t at = 0;
    for (Py_ssize_t b = 0; b < count; b++) {
        held[b] = (Block *)Py_NewRef(PyList_GET_ITEM(blocks, b));
        if (!same_request)
            for (Py_ssize_t i = 0; i < held[b]->rows; i++, at++)
                PyList_SET_ITEM(requests, at, Py_NewRef(held[b]->requests[i]));
    }
    for (Py_ssize_t b = 0; b < count; b++) {
        Block *block = held[b];
        size_t values = sizeof(double) * (size_t)block->rows, ints = sizeof(int64_t) * (size_t)block->rows;
        for (Py_ssize_t j = 0; j < width; j++) {
            memcpy(outs[j], block->values + j * block->capacity, values);
            outs[j] += values;
        }
        memcpy(outs[width], block->counters, ints);
        memcpy(outs[width + 1], block->times, ints);
        outs[width] += ints;
        outs[width + 1] += ints;
    }
    for (Py_ssize_t b = 0; b < count; b++)
        Py_DECREF(held[b]);
    PyMem_Free(held);
    PyMem_Free(outs);
    return Py_BuildValue("(ONNNN)", prefix, features, counters, times, requests);
fail:
    PyMem_Free(held);
    PyMem_Free(outs);
    Py_DECREF(features);
    Py_XDECREF(counters);
    Py_XDECREF(times);
    Py_XDECREF(requests);
    return NULL;
}

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
    Py_ssize_t block_rows; /* most rows per Block (0: rows go as tuples) */
    Block *block;          /* the open block, or NULL */
    PyObject *prefix_cache; /* the id prefix, while id_space's version tag is prefix_tag */
    unsigned int prefix_tag;
    PyObject *block_inbox; /* the inbox it was queued in */
    Py_ssize_t absorb_every;
    Py_ssize_t inbox_max;
    int opens;
    int paired;
    long long iso_second; /* the last second formatted, and its text */
    char iso_text[40];
    Py_ssize_t iso_length;
} FastPath;

static PyObject *s_rows;
static PyObject *s_inbox, *s_row_ids, *s_inbox_bytes, *s_buffered, *s_fast_limit, *s_small_chunk, *s_thread;
static PyObject *s_append, *s_prefix, *s_request_id, *s_correlation, *s_pairing_window;
static PyObject *s_start, *s_absorb_soon, *s_id_column, *s_ts_column, *s_request_column;

static int
fast_path_traverse(FastPath *self, visitproc visit, void *arg)
{
    Py_VISIT(self->pipeline);
    Py_VISIT(self->state);
    Py_VISIT(self->constants);
    Py_VISIT(self->block_inbox);
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
    Py_CLEAR(self->block);
    Py_CLEAR(self->block_inbox);
    Py_CLEAR(self->prefix_cache);
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
                            "no_request", "absorb_every", "inbox_max", "ndarray", "block_rows", NULL};
    PyObject *pipeline, *key, *model, *designation, *constants, *scalars, *id_space, *scope_var, *open_var;
    PyObject *corr_module, *no_request, *ndarray = Py_None;
    Py_ssize_t width, size, absorb_every, inbox_max, block_rows = 0;
    int opens, paired;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOnnUUppO!O!OO!O!OUnn|On:FastPath", names, &pipeline, &key,
                                     &width, &size, &model, &designation, &opens, &paired, &PyDict_Type,
                                     &constants, &PyFrozenSet_Type, &scalars, &id_space,
                                     &PyContextVar_Type, &scope_var, &PyContextVar_Type, &open_var,
                                     &corr_module, &no_request, &absorb_every, &inbox_max, &ndarray, &block_rows))
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
    if (block_rows < 0 || width > BLOCK_MAX_WIDTH)
        block_rows = 0;
    self->block_rows = block_rows;
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

/* Outside a request scope: whether this designation may still take corr (it has not, and
 * the pairing window has not passed); if so, record that it did. 1, 0, or -1 with an error. */
static int
claim(FastPath *self, OpenCorrelation *corr)
{
    PyObject *taken = corr->taken;
    int seen = PySequence_Contains(taken, self->designation);
    if (seen != 0)
        return seen > 0 ? 0 : -1;
    PyObject *window = PyObject_GetAttr(self->corr_module, s_pairing_window); /* it may be changed */
    if (window == NULL)
        return -1;
    double limit = PyFloat_AsDouble(window), current;
    Py_DECREF(window);
    if ((limit == -1.0 && PyErr_Occurred()) || monotonic_now(&current) < 0)
        return -1;
    if (current - corr->opened > limit)
        return 0;
    PyObject *grown;
    if (PyTuple_CheckExact(taken)) {
        Py_ssize_t n = PyTuple_GET_SIZE(taken);
        grown = PyTuple_New(n + 1);
        if (grown == NULL)
            return -1;
        for (Py_ssize_t i = 0; i < n; i++)
            PyTuple_SET_ITEM(grown, i, Py_NewRef(PyTuple_GET_ITEM(taken, i)));
        PyTuple_SET_ITEM(grown, n, Py_NewRef(self->designation));
    }
    else { /* set from Python to another sequence: concatenate as Python would */
        PyObject *mine = PyTuple_Pack(1, self->designation);
        grown = mine == NULL ? NULL : PySequence_Concat(taken, mine);
        Py_XDECREF(mine);
        if (grown == NULL)
            return -1;
    }
    Py_SETREF(corr->taken, grown);
    return 1;
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
    if (Py_TYPE(corr) != &OpenCorrelationType) {
        Py_DECREF(corr);
        PyErr_SetString(PyExc_TypeError, "a request's correlation is an OpenCorrelation");
        return NULL;
    }
    int ok = PyObject_RichCompareBool(((OpenCorrelation *)corr)->model, self->model, Py_EQ);
    if (ok == 1 && scope == Py_None)
        ok = claim(self, (OpenCorrelation *)corr);
    if (ok == 1)
        return corr;
    Py_DECREF(corr);
    return ok == 0 ? Py_NewRef(Py_None) : NULL;
}

static const char hex_digits[] = "0123456789abcdef";

static void untrack_if_atomic(PyObject *tuple);

/* A Stamp tuple (prefix, counter, 1, user, ts_us, request), untracked by the GC. */
static PyObject *
make_stamp(PyObject *prefix, long long counter, PyObject *user, long long ts_us, PyObject *request)
{
    PyObject *start = PyLong_FromLongLong(counter), *ts = PyLong_FromLongLong(ts_us), *stamp = NULL;
    if (start != NULL && ts != NULL)
        stamp = PyTuple_Pack(6, prefix, start, one, user, ts, request);
    Py_XDECREF(start);
    Py_XDECREF(ts);
    if (stamp != NULL)
        untrack_if_atomic(stamp);
    return stamp;
}

/* The process's id prefix (_IdSpace.prefix, a new reference), looked up again only when the
 * class changed: assigning a class attribute (the renewal in a forked child) gives the type a
 * new version tag. */
static PyObject *
id_prefix(FastPath *self)
{
    int is_type = PyType_Check(self->id_space);
    unsigned int tag = is_type ? ((PyTypeObject *)self->id_space)->tp_version_tag : 0;
    if (self->prefix_cache != NULL && tag != 0 && tag == self->prefix_tag)
        return Py_NewRef(self->prefix_cache);
    PyObject *prefix = PyObject_GetAttr(self->id_space, s_prefix);
    if (prefix == NULL)
        return NULL;
    Py_XSETREF(self->prefix_cache, Py_NewRef(prefix));
    self->prefix_tag = is_type ? ((PyTypeObject *)self->id_space)->tp_version_tag : 0; /* set by the lookup */
    return prefix;
}

/* correlation.format_id(prefix, counter, user): the prefix and 12 hex digits of the counter,
 * written straight into an ASCII string (printf-style formatting was a fifth of the call). */
static PyObject *
format_id(PyObject *prefix, unsigned long long counter, PyObject *user)
{
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

/* Read one float64 or int64 row of an array at the collector's width (1-D, or 2-D with one
 * row, any strides) into floats or ints: 1 for floats, 2 for ints, 0 for any other array (the
 * Python path decides), -1 with an error set. */
static int
numpy_read_row(PyObject *array, Py_ssize_t width, double *floats, int64_t *ints)
{
    Py_buffer view;
    if (PyObject_GetBuffer(array, &view, PyBUF_RECORDS_RO) < 0) {
        PyErr_Clear(); /* not exportable as plain memory */
        return 0;
    }
    const char *format = view.format == NULL ? "B" : view.format;
    int is_float = strcmp(format, "d") == 0;
    int is_int = (strcmp(format, "l") == 0 || strcmp(format, "q") == 0) && view.itemsize == 8;
    Py_ssize_t along = view.ndim == 1 ? 0 : 1; /* the axis of the values */
    int kind = 0;
    if ((is_float || is_int) && view.itemsize == 8 && view.ndim >= 1 && view.ndim <= 2 &&
        (view.ndim == 1 || view.shape[0] == 1) && view.shape[along] == width && width > 0) {
        for (Py_ssize_t j = 0; j < width; j++) {
            const char *at = (const char *)view.buf + j * view.strides[along];
            if (is_float)
                memcpy(&floats[j], at, sizeof(double));
            else
                memcpy(&ints[j], at, sizeof(int64_t));
        }
        kind = is_float ? 1 : 2;
    }
    PyBuffer_Release(&view);
    return kind;
}

/* The row as the tuple the Python path queues: floats or ints read from an array, or the list's
 * or tuple's own items. */
static PyObject *
row_tuple(PyObject *data, const double *floats, const int64_t *ints, Py_ssize_t width)
{
    if (floats == NULL && ints == NULL)
        return PyList_CheckExact(data) ? PyList_AsTuple(data) : Py_NewRef(data);
    PyObject *row = PyTuple_New(width);
    for (Py_ssize_t j = 0; row != NULL && j < width; j++) {
        PyObject *value = ints != NULL ? PyLong_FromLongLong(ints[j]) : PyFloat_FromDouble(floats[j]);
        if (value == NULL)
            Py_CLEAR(row);
        else
            PyTuple_SET_ITEM(row, j, value);
    }
    return row;
}

/* Whether the collector's open block takes another row from this inbox (a fork gives the
 * pipeline a new inbox; absorb() seals the blocks it counts). */
static int
block_open(FastPath *self, PyObject *inbox)
{
    Block *block = self->block;
    return block != NULL && !block->sealed && block->rows < block->capacity && self->block_inbox == inbox;
}

/* The rows a new block may have: as many as fit in the pipeline's largest lock-free chunk
 * (small), up to block_rows; 0 when fewer than 16 fit (rows then go as tuples). */
static Py_ssize_t
block_capacity(FastPath *self, long long small)
{
    long long rows = (small - block_bytes(self->width, 0)) / (long long)block_memory_size(self->width, 1);
    if (rows > self->block_rows)
        rows = self->block_rows;
    return rows >= 16 ? (Py_ssize_t)rows : 0;
}

/* inbox_bytes += grow, in the pipeline's __dict__ (an estimate: absorb() resets it). */
static int
add_inbox_bytes(FastPath *self, Py_ssize_t grow)
{
    long long inbox_bytes;
    if (state_int(self, s_inbox_bytes, &inbox_bytes) < 0)
        return -1;
    PyObject *total = PyLong_FromLongLong(inbox_bytes + grow);
    if (total == NULL)
        return -1;
    int failed = PyDict_SetItem(self->state, s_inbox_bytes, total);
    Py_DECREF(total);
    return failed;
}

/* The dict collect() returns for data, or None when data is not the common case (the Python
 * method takes it, nothing having changed but the open block being closed, which keeps the
 * collector's rows in order). */
static PyObject *
fast_path_take_row(FastPath *self, PyObject *data)
{
    double floats[BLOCK_MAX_WIDTH];
    int64_t ints[BLOCK_MAX_WIDTH];
    int kind = 0; /* 1: the row's values are in floats, 2: in ints, 0: the data's own items */
    PyObject *numpy_row = NULL;
    int blocks = self->block_rows > 0 && self->width <= BLOCK_MAX_WIDTH;
    if (PyList_CheckExact(data) || PyTuple_CheckExact(data)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(data);
        if (n == 0 || n != self->width)
            goto python;
        PyObject *first = PySequence_Fast_GET_ITEM(data, 0);
        int scalar = PySet_Contains(self->scalars, (PyObject *)Py_TYPE(first));
        if (scalar < 0)
            return NULL;
        if (scalar == 0)
            goto python;
        if (blocks) {
            kind = 1;
            for (Py_ssize_t j = 0; j < n; j++) {
                PyObject *item = PySequence_Fast_GET_ITEM(data, j);
                if (!PyFloat_CheckExact(item)) {
                    kind = 0;
                    break;
                }
                floats[j] = PyFloat_AS_DOUBLE(item);
            }
        }
    }
    else if (self->ndarray != NULL && Py_TYPE(data) == (PyTypeObject *)self->ndarray) {
        if (blocks) {
            kind = numpy_read_row(data, self->width, floats, ints);
            if (kind < 0)
                return NULL;
            if (kind == 0)
                goto python;
        }
        else {
            numpy_row = numpy_one_row(data, self->width);
            if (numpy_row == NULL || numpy_row == Py_None)
                return numpy_row;
        }
    }
    else {
        goto python;
    }

    /* Pipeline.accept()'s lock-free condition; otherwise the Python path takes the lock. An open
     * block took its bytes when it was made. */
    PyObject *scope = NULL, *request_id = NULL, *pairing = NULL, *stamp = NULL, *row = numpy_row;
    PyObject *prefix = NULL, *chunk = NULL, *result = NULL;
    long long lone = 0, small = -1;
    int absorb_due = 0, appended_chunk = 0;
    PyObject *inbox = PyDict_GetItemWithError(self->state, s_inbox);
    if (inbox == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_AttributeError, "Pipeline has no _inbox");
        goto done;
    }
    Py_INCREF(inbox); /* held: Python code may run before the append */
    if (!(kind == 1 && block_open(self, inbox))) {
        long long buffered, inbox_bytes, fast_limit;
        if (state_int(self, s_small_chunk, &small) || state_int(self, s_buffered, &buffered) ||
            state_int(self, s_inbox_bytes, &inbox_bytes) || state_int(self, s_fast_limit, &fast_limit))
            goto done;
        Py_ssize_t waiting = PyObject_Length(inbox);
        if (waiting < 0)
            goto done;
        long long room = fast_limit - buffered - inbox_bytes;
        Py_ssize_t capacity = kind == 1 ? block_capacity(self, small) : 0;
        int block_fits = capacity > 0 && waiting < self->inbox_max && block_bytes(self->width, capacity) <= room;
        if (!block_fits && (self->size > small || waiting >= self->inbox_max || self->size > room)) {
            Py_CLEAR(self->block);
            result = Py_NewRef(Py_None);
            goto done;
        }
        if (!block_fits && kind == 1)
            kind = -1; /* float values, queued as a tuple */
        absorb_due = waiting + 1 >= self->absorb_every;
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
    /* The row's id, time and request id: its inputs' (paired), else its own. */
    PyObject *user = empty_str, *request = request_id; /* borrowed */
    long long when = ts_us, counter = -1;
    if (pairing != NULL && pairing != Py_None) {
        OpenCorrelation *corr = (OpenCorrelation *)pairing;
        if (Py_TYPE(pairing) != &OpenCorrelationType) {
            PyErr_SetString(PyExc_TypeError, "a request's correlation is an OpenCorrelation");
            goto done;
        }
        if (corr->count != 1) /* Pipeline.accept(): count == n or count == 1, and n is 1 */
            lone = 1;
        else if (corr->stamp == NULL) { /* made by this path: one row, no user id */
            prefix = Py_NewRef(corr->prefix);
            counter = corr->counter;
            when = corr->ts_us;
            request = corr->request;
        }
        else {
            stamp = Py_NewRef(corr->stamp);
            if (!PyTuple_CheckExact(stamp) || PyTuple_GET_SIZE(stamp) != 6) {
                PyErr_SetString(PyExc_TypeError, "a stamp is (prefix, start, step, user, ts_us, request_id)");
                goto done;
            }
            prefix = Py_NewRef(PyTuple_GET_ITEM(stamp, 0));
            user = PyTuple_GET_ITEM(stamp, 3);
            request = PyTuple_GET_ITEM(stamp, 5);
            counter = PyLong_AsLongLong(PyTuple_GET_ITEM(stamp, 1));
            when = PyLong_AsLongLong(PyTuple_GET_ITEM(stamp, 4));
            if ((counter == -1 || when == -1) && PyErr_Occurred())
                goto done;
        }
    }
    if (prefix == NULL) {
        PyObject *ids = PyDict_GetItemWithError(self->state, s_row_ids);
        if (ids == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_AttributeError, "Pipeline has no _row_ids");
            goto done;
        }
        if (Py_TYPE(ids) == &CounterType) {
            counter = ((Counter *)ids)->next++;
        }
        else {
            PyObject *next = PyIter_Next(ids);
            counter = next == NULL ? -1 : PyLong_AsLongLong(next);
            Py_XDECREF(next);
            if (counter == -1 && PyErr_Occurred())
                goto done;
        }
        prefix = id_prefix(self);
        if (prefix == NULL)
            goto done;
    }
    if (!PyUnicode_Check(user) || !PyUnicode_Check(prefix)) {
        PyErr_SetString(PyExc_TypeError, "ids have a str prefix and user");
        goto done;
    }

    Py_ssize_t capacity = 0; /* a new block's, when one is needed */
    if (kind == 1 && PyUnicode_GET_LENGTH(user) == 0 && !(block_open(self, inbox) && self->block->prefix == prefix)) {
        if (small < 0 && state_int(self, s_small_chunk, &small) < 0)
            goto done;
        capacity = block_capacity(self, small);
        if (capacity == 0)
            kind = -1; /* the bound shrank meanwhile: as a tuple */
    }
    if (kind == 1 && PyUnicode_GET_LENGTH(user) == 0) {
        /* From the check to the append nothing runs Python code: no other thread runs, so the
         * block cannot be sealed in between. */
        if (capacity == 0) { /* the open block, checked just above */
            block_put(self->block, floats, counter, when, request, (int)lone);
        }
        else {
            /* a new block (also when the one seen above was sealed or left meanwhile) */
            Block *block = block_make(self->width, capacity, prefix);
            if (block == NULL)
                goto done;
            block_put(block, floats, counter, when, request, (int)lone);
            if (stamp == NULL)
                stamp = make_stamp(prefix, counter, user, when, request);
            PyObject *size = stamp == NULL ? NULL : PyLong_FromSsize_t(block_bytes(self->width, capacity));
            chunk = size == NULL ? NULL : PyTuple_Pack(5, self->key, (PyObject *)block, stamp, size, zero);
            Py_XDECREF(size);
            if (chunk == NULL) {
                Py_DECREF(block);
                goto done;
            }
            untrack_if_atomic(chunk);
            PyObject *appended = PyObject_CallMethodOneArg(inbox, s_append, chunk);
            if (appended == NULL) {
                Py_DECREF(block);
                goto done;
            }
            Py_DECREF(appended);
            Py_XSETREF(self->block, block);
            Py_XSETREF(self->block_inbox, Py_NewRef(inbox));
            appended_chunk = 1;
            if (add_inbox_bytes(self, block_bytes(self->width, capacity)) < 0)
                goto done;
        }
        if (self->block->rows == self->block->capacity) {
            Py_CLEAR(self->block); /* full: number it now */
            absorb_due = 1;
        }
    }
    else {
        /* The tuple path: the row as a tuple, in a chunk of its own, after the open block's rows. */
        Py_CLEAR(self->block);
        if (stamp == NULL && (stamp = make_stamp(prefix, counter, user, when, request)) == NULL)
            goto done;
        if (row == NULL) {
            row = row_tuple(data, kind == 1 || kind == -1 ? floats : NULL, kind == 2 ? ints : NULL, self->width);
            if (row == NULL)
                goto done;
        }
        untrack_if_atomic(row);
        PyObject *unpaired = PyLong_FromLongLong(lone);
        chunk = unpaired == NULL ? NULL : PyTuple_Pack(5, self->key, row, stamp, self->size_obj, unpaired);
        Py_XDECREF(unpaired);
        if (chunk == NULL)
            goto done;
        untrack_if_atomic(chunk);
        PyObject *appended = PyObject_CallMethodOneArg(inbox, s_append, chunk);
        if (appended == NULL)
            goto done;
        Py_DECREF(appended);
        appended_chunk = 1;
        if (add_inbox_bytes(self, self->size) < 0)
            goto done;
        Py_ssize_t waiting = PyObject_Length(inbox);
        if (waiting < 0)
            goto done;
        absorb_due |= waiting >= self->absorb_every;
    }

    if (self->opens) {
        /* a stamp only if there is one already: otherwise its fields, made into one on demand */
        int plain = stamp == NULL;
        OpenCorrelation *corr = open_correlation_make(&OpenCorrelationType, stamp, 1, self->model,
                                                      plain ? prefix : NULL, counter, when, plain ? request : NULL);
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
    result = PyDict_Copy(self->constants);
    if (result == NULL)
        goto done;
    PyObject *ident = format_id(prefix, (unsigned long long)counter, user);
    PyObject *iso = ident == NULL ? NULL : format_iso(self, when);
    int failed = iso == NULL || PyDict_SetItem(result, s_id_column, ident) < 0 ||
                 PyDict_SetItem(result, s_ts_column, iso) < 0 || PyDict_SetItem(result, s_request_column, request) < 0;
    Py_XDECREF(ident);
    Py_XDECREF(iso);
    if (failed)
        Py_CLEAR(result);

    /* Now and then the caller numbers the inbox (never waiting for the lock); the first chunk
     * starts the flusher. Both may run Python code: after everything above is done. */
    if (result != NULL && absorb_due) {
        PyObject *r = PyObject_CallMethodNoArgs(self->pipeline, s_absorb_soon);
        if (r == NULL)
            Py_CLEAR(result);
        Py_XDECREF(r);
    }
    if (result != NULL && appended_chunk) {
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
    Py_XDECREF(inbox);
    Py_XDECREF(scope);
    Py_XDECREF(request_id);
    Py_XDECREF(pairing);
    Py_XDECREF(stamp);
    Py_XDECREF(prefix);
    Py_XDECREF(row);
    Py_XDECREF(chunk);
    return result;
python:
    Py_CLEAR(self->block); /* the Python path queues this row after the open block's */
    Py_RETURN_NONE;
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
    if (Py_TYPE(item) == &BlockType)
        return ((Block *)item)->rows;
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
        long long lone = PyLong_AsLongLong(PyTuple_GET_ITEM(chunk, 4));
        if (Py_TYPE(item) == &BlockType) {
            /* counted now: its collector starts a new block for its next row */
            ((Block *)item)->sealed = 1;
            lone += ((Block *)item)->unpaired;
        }
        long long n = queued_rows(item);
        Py_ssize_t key = PyLong_AsSsize_t(PyTuple_GET_ITEM(chunk, 0));
        long long chunk_size = PyLong_AsLongLong(PyTuple_GET_ITEM(chunk, 3));
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
    {"block_columns", (PyCFunction)block_columns, METH_O,
     "block_columns(blocks) -> (prefix, [feature bytes], counters, times, requests) | None: sealed blocks' rows."},
    {"split_by_route", (PyCFunction)split_by_route, METH_O,
     "split_by_route(chunks) -> {key: (items, stamps)}: each route's part of a batch, in order."},
    {NULL},
};

/* seal(): close the open block, so that a row the Python path queues comes after its rows. */
static PyObject *
fast_path_seal(FastPath *self, PyObject *unused)
{
    Py_CLEAR(self->block);
    Py_RETURN_NONE;
}

static PyMethodDef fast_path_methods[] = {
    {"seal", (PyCFunction)fast_path_seal, METH_NOARGS, "Close the open block: later rows go in a new one."},
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
    .tp_methods = fast_path_methods,
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

static mdc_handoff handoff; /* exported to _durable as the capsule HANDOFF_CAPSULE */

static long long
monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* A native write is done and waits for the GIL (_handoff.h): let go of it until the writer has
 * it, or for HANDOFF_MAX_WAIT_NS at most (it may wait behind a thread that is not collecting). */
static void
step_aside(void)
{
    Py_BEGIN_ALLOW_THREADS
    long long deadline = monotonic_ns() + HANDOFF_MAX_WAIT_NS;
    struct timespec pause = {0, 20000};
    while (atomic_load_explicit(&handoff.waiting, memory_order_acquire) > 0 && monotonic_ns() < deadline)
        nanosleep(&pause, NULL);
    Py_END_ALLOW_THREADS
}

/* with Handoff(): collect() steps aside while the block runs (the flusher's CPU work: its Arrow
 * calls release the GIL, and each retake would otherwise wait for a scoring thread to let go). */
typedef struct {
    PyObject_HEAD
} Handoff;

static PyObject *
handoff_enter(PyObject *self, PyObject *unused)
{
    atomic_fetch_add_explicit(&handoff.waiting, 1, memory_order_release);
    return Py_NewRef(self);
}

static PyObject *
handoff_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    atomic_fetch_sub_explicit(&handoff.waiting, 1, memory_order_release);
    Py_RETURN_FALSE;
}

static PyObject *
handoff_waiting(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(atomic_load(&handoff.waiting));
}

static PyMethodDef handoff_methods[] = {
    {"__enter__", handoff_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))handoff_exit, METH_FASTCALL, NULL},
    {"waiting", handoff_waiting, METH_NOARGS, "How many blocks and native writes want the GIL first now."},
    {NULL},
};

static PyTypeObject HandoffType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mdc_core._hotpath.Handoff",
    .tp_basicsize = sizeof(Handoff),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "with Handoff(): scoring threads in collect() let go of the GIL until the block ends. For CPU "
              "work only, never around storage calls (a scoring thread waits at most 5 ms per call).",
    .tp_new = PyType_GenericNew,
    .tp_methods = handoff_methods,
};

#ifndef _WIN32
static void
handoff_after_fork_child(void)
{
    atomic_store(&handoff.waiting, 0); /* the writers that were waiting are not in the child */
}
#endif

static PyObject *s_fast_path;

static PyObject *
collect_method_call(CollectMethod *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (atomic_load_explicit(&handoff.waiting, memory_order_relaxed) > 0)
        step_aside();
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
    zero = PyLong_FromLong(0);
    empty_str = PyUnicode_FromString("");
    if (empty_tuple == NULL || one == NULL || zero == NULL || empty_str == NULL)
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
    if (intern(&s_fast_path, "_fast_path") || intern(&s_rows, "rows"))
        return NULL;
    if (PyType_Ready(&OpenCorrelationType) < 0 || PyType_Ready(&FastPathType) < 0 || PyType_Ready(&BlockType) < 0 || PyType_Ready(&CounterType) < 0 ||
        PyType_Ready(&CollectMethodType) < 0 || PyType_Ready(&HandoffType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "OpenCorrelation", (PyObject *)&OpenCorrelationType) < 0 ||
        PyModule_AddObjectRef(m, "FastPath", (PyObject *)&FastPathType) < 0 ||
        PyModule_AddObjectRef(m, "Block", (PyObject *)&BlockType) < 0 ||
        PyModule_AddObjectRef(m, "Counter", (PyObject *)&CounterType) < 0 ||
        PyModule_AddObjectRef(m, "CollectMethod", (PyObject *)&CollectMethodType) < 0 ||
        PyModule_AddObjectRef(m, "Handoff", (PyObject *)&HandoffType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyObject *capsule = PyCapsule_New(&handoff, HANDOFF_CAPSULE, NULL);
    int added = capsule == NULL ? -1 : PyModule_AddObjectRef(m, "_handoff_v1", capsule);
    Py_XDECREF(capsule);
    if (added < 0) {
        Py_DECREF(m);
        return NULL;
    }
#ifndef _WIN32
    static int registered;
    if (!registered && pthread_atfork(NULL, NULL, handoff_after_fork_child) == 0)
        registered = 1;
#endif
    return m;
}
