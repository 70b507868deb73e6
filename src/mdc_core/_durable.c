/* Durable local writes in one release of the GIL each (mdc_backends.local, mdc_core.spool).
 *
 * A local append is a dozen system calls (open, flock, the commit marker's read, fstat, pwrite,
 * fsync, the marker's write, fsync and rename, close), and Python releases and retakes the GIL
 * around each. Beside scoring threads that collect in a closed loop, each retake waits for the
 * holder to let go: up to the 5 ms switch interval, so a batch that takes 20 ms alone took 120 ms
 * and more, and the flusher fell behind (benchmarks/flusher_gil.py). Here the same steps run in
 * C with the GIL released once, and the handoff of _handoff.h asks the scoring threads to let the
 * writer back in. The Python functions they replace stay, for platforms without this module,
 * for MDC_PURE_PYTHON=1, and as the reference the tests compare with. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "_handoff.h"

static mdc_handoff *handoff; /* _hotpath's, or NULL when it is not built */

/* Where a step failed: the errno and the path to name in the OSError (NULL for none). */
typedef struct {
    int err;
    const char *path;
} failure;

static int
fail(failure *f, const char *path)
{
    f->err = errno ? errno : EIO;
    f->path = path;
    return -1;
}

/* Take the GIL back, raising the handoff flag while waiting so that collect() lets go of it. */
static void
retake_gil(PyThreadState *state)
{
    if (handoff != NULL)
        atomic_fetch_add_explicit(&handoff->waiting, 1, memory_order_release);
    PyEval_RestoreThread(state);
    if (handoff != NULL)
        atomic_fetch_sub_explicit(&handoff->waiting, 1, memory_order_release);
}

static PyObject *
raise_failure(const failure *f)
{
    errno = f->err;
    if (f->path == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyErr_SetFromErrnoWithFilename(PyExc_OSError, f->path);
}

/* -- steps, run without the GIL ------------------------------------------------------------------ */

/* All of data at offset (a short write is retried; one that writes nothing is EIO, as local.py's
 * _write_all says); path names the file in the error, or NULL. */
static int
write_at(int fd, const char *data, Py_ssize_t length, off_t offset, const char *path, failure *f)
{
    while (length > 0) {
        ssize_t n = pwrite(fd, data, (size_t)length, offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            errno = EIO;
        if (n <= 0)
            return fail(f, path);
        data += n;
        length -= n;
        offset += n;
    }
    return 0;
}

static int
fsync_dir(const char *folder, failure *f)
{
    int fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fail(f, folder);
    if (fsync(fd) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return fail(f, NULL);
    }
    close(fd);
    return 0;
}

/* fsync of the folder that holds path (local.py's and spool.py's paths are absolute). */
static int
fsync_folder_of(const char *path, failure *f)
{
    char folder[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : (size_t)(slash - path);
    if (slash != NULL && n == 0)
        n = 1; /* "/name" is in "/" */
    if (n >= sizeof folder) {
        errno = ENAMETOOLONG;
        return fail(f, path);
    }
    memcpy(folder, slash == NULL ? "." : path, slash == NULL ? 1 : n);
    folder[slash == NULL ? 1 : n] = '\0';
    return fsync_dir(folder, f);
}

/* The committed length in a marker: 1 and *length when it holds one, 0 when it is missing or
 * does not hold a number (local.py's _read_marker answers None for both), -1 on other errors. */
static int
read_marker(const char *marker, long long *length, failure *f)
{
    int fd = open(marker, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : fail(f, marker);
    char text[64];
    ssize_t n;
    do
        n = read(fd, text, sizeof text - 1);
    while (n < 0 && errno == EINTR);
    int err = errno;
    close(fd);
    if (n < 0) {
        errno = err;
        return fail(f, marker);
    }
    text[n] = '\0';
    char *p = text, *end;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p == '\0') {
        *length = 0; /* an empty marker is 0, as int(b"" or b"0") */
        return 1;
    }
    if (*p < '0' || *p > '9')
        return 0;
    errno = 0;
    long long value = strtoll(p, &end, 10);
    while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')
        end++;
    if (errno != 0 || *end != '\0')
        return 0;
    *length = value;
    return 1;
}

/* The marker rewritten whole: a temporary file of this process, fsynced, renamed over it. */
static int
write_marker(const char *marker, long long length, failure *f, char *tmp, size_t tmp_size)
{
    if ((size_t)snprintf(tmp, tmp_size, "%s.%ld.tmp", marker, (long)getpid()) >= tmp_size) {
        errno = ENAMETOOLONG;
        return fail(f, marker);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return fail(f, tmp);
    char text[32];
    int n = snprintf(text, sizeof text, "%lld", length);
    if (write_at(fd, text, n, 0, tmp, f) < 0) {
        close(fd);
        return -1;
    }
    if (fsync(fd) < 0) {
        fail(f, tmp);
        close(fd);
        return -1;
    }
    if (close(fd) < 0)
        return fail(f, tmp);
    if (rename(tmp, marker) < 0)
        return fail(f, marker);
    return 0;
}

/* -- append_log ---------------------------------------------------------------------------------- */

/* local.py's LocalBackend._append, after its folder exists: outcome 1 appended, 0 the file's
 * header differs (nothing written), -1 failed. *cut: bytes of an interrupted write cut off. */
static int
append_steps(const char *path, const char *marker, const char *header, Py_ssize_t header_len,
             const char *body, Py_ssize_t body_len, long long *cut, failure *f)
{
    char tmp[PATH_MAX + 32];
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail(f, path);
    int outcome = -1;
    char *existing = NULL;
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            fail(f, NULL);
            goto done;
        }
    }
    long long committed;
    int known = read_marker(marker, &committed, f);
    if (known < 0)
        goto done;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        fail(f, NULL);
        goto done;
    }
    long long size = (long long)st.st_size;
    if (!known) {
        committed = size; /* a file mdc did not start: trust it as it is */
        if (size == 0 && write_marker(marker, 0, f, tmp, sizeof tmp) < 0)
            goto done; /* written so that a crash in this first append is cut off too */
    }
    if (size > committed) {
        if (ftruncate(fd, (off_t)committed) < 0) {
            fail(f, NULL);
            goto done;
        }
        *cut = size - committed;
    }
    else if (size < committed) {
        committed = size; /* the marker is ahead of the data (a crash between the two fsyncs) */
    }
    long long end;
    if (committed == 0) {
        if (write_at(fd, header, header_len, 0, NULL, f) < 0 || write_at(fd, body, body_len, header_len, NULL, f) < 0)
            goto done;
        end = header_len + body_len;
    }
    else {
        if (header_len > 0) {
            existing = malloc((size_t)header_len);
            if (existing == NULL) {
                errno = ENOMEM;
                fail(f, NULL);
                goto done;
            }
            ssize_t n;
            do
                n = pread(fd, existing, (size_t)header_len, 0);
            while (n < 0 && errno == EINTR);
            if (n < 0) {
                fail(f, NULL);
                goto done;
            }
            if (n != header_len || memcmp(existing, header, (size_t)header_len) != 0) {
                outcome = 0;
                goto done;
            }
        }
        if (write_at(fd, body, body_len, (off_t)committed, NULL, f) < 0)
            goto done;
        end = committed + body_len;
    }
    if (fsync(fd) < 0) {
        fail(f, NULL);
        goto done;
    }
    if (write_marker(marker, end, f, tmp, sizeof tmp) < 0)
        goto done;
    if (committed == 0 && fsync_folder_of(path, f) < 0)
        goto done;
    outcome = 1;
done:
    free(existing);
    close(fd); /* closing releases the lock */
    return outcome;
}

static PyObject *
append_log(PyObject *module, PyObject *args)
{
    PyObject *path = NULL, *marker = NULL, *result = NULL;
    Py_buffer header = {0}, body = {0};
    if (!PyArg_ParseTuple(args, "O&O&y*y*:append_log", PyUnicode_FSConverter, &path, PyUnicode_FSConverter,
                          &marker, &header, &body))
        goto out;
    long long cut = 0;
    failure f = {0, NULL};
    PyThreadState *state = PyEval_SaveThread();
    int outcome = append_steps(PyBytes_AS_STRING(path), PyBytes_AS_STRING(marker), header.buf, header.len,
                               body.buf, body.len, &cut, &f);
    retake_gil(state);
    if (outcome < 0)
        raise_failure(&f);
    else
        result = Py_BuildValue("(OL)", outcome ? Py_True : Py_False, cut);
out:
    Py_XDECREF(path);
    Py_XDECREF(marker);
    if (header.obj != NULL)
        PyBuffer_Release(&header);
    if (body.obj != NULL)
        PyBuffer_Release(&body);
    return result;
}

/* -- write_new ----------------------------------------------------------------------------------- */

/* A new file at final with the chunks' bytes: written to temp (created exclusively), fsynced,
 * then linked (create-only: 0 when final exists) or renamed into place, and the folder fsynced.
 * temp is gone afterwards, whatever happened. */
static int
write_new_steps(const char *temp, const char *final, Py_buffer *chunks, Py_ssize_t count, int mode, int sync,
                int link_it, failure *f)
{
    int fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return fail(f, temp);
    int placed = 1;
    off_t at = 0;
    for (Py_ssize_t i = 0; i < count; at += chunks[i].len, i++) {
        if (write_at(fd, chunks[i].buf, chunks[i].len, at, temp, f) < 0)
            goto failed;
    }
    if (sync && fsync(fd) < 0) {
        fail(f, temp);
        goto failed;
    }
    if (close(fd) < 0) {
        fd = -1;
        fail(f, temp);
        goto failed;
    }
    fd = -1;
    if (link_it) {
        if (link(temp, final) < 0) {
            if (errno != EEXIST) {
                fail(f, final);
                goto failed;
            }
            placed = 0;
        }
        unlink(temp);
    }
    else if (rename(temp, final) < 0) {
        fail(f, final);
        goto failed;
    }
    if (placed && sync && fsync_folder_of(final, f) < 0)
        return -1; /* placed but not known durable: the caller decides (local.py raises, the spool unlinks) */
    return placed;
failed:
    if (fd >= 0)
        close(fd);
    unlink(temp);
    return -1;
}

static PyObject *
write_new(PyObject *module, PyObject *args)
{
    PyObject *temp = NULL, *final = NULL, *chunks, *seq = NULL, *result = NULL;
    int mode, sync, link_it;
    Py_buffer *views = NULL;
    Py_ssize_t count = 0;
    if (!PyArg_ParseTuple(args, "O&O&Oipp:write_new", PyUnicode_FSConverter, &temp, PyUnicode_FSConverter, &final,
                          &chunks, &mode, &sync, &link_it))
        goto out;
    seq = PySequence_Fast(chunks, "chunks must be a sequence of bytes-like objects");
    if (seq == NULL)
        goto out;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    views = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Py_buffer));
    if (views == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    for (; count < n; count++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, count), &views[count], PyBUF_SIMPLE) < 0)
            goto out;
    }
    failure f = {0, NULL};
    PyThreadState *state = PyEval_SaveThread();
    int outcome = write_new_steps(PyBytes_AS_STRING(temp), PyBytes_AS_STRING(final), views, count, mode, sync,
                                  link_it, &f);
    retake_gil(state);
    if (outcome < 0)
        raise_failure(&f);
    else
        result = PyBool_FromLong(outcome);
out:
    for (Py_ssize_t i = 0; i < count; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    Py_XDECREF(seq);
    Py_XDECREF(temp);
    Py_XDECREF(final);
    return result;
}

static PyMethodDef methods[] = {
    {"append_log", append_log, METH_VARARGS,
     "append_log(path, marker, header, body) -> (appended, cut): local.py's committed append; appended is False "
     "when the file's header differs (nothing written), cut the bytes of an interrupted write cut off."},
    {"write_new", write_new, METH_VARARGS,
     "write_new(temp, final, chunks, mode, fsync, link) -> placed: a new file at final written through temp; "
     "with link, create-only (False when final exists)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef mod = {
    PyModuleDef_HEAD_INIT, .m_name = "_durable", .m_size = -1, .m_methods = methods,
    .m_doc = "Durable local writes in one release of the GIL each (optional: local.py and spool.py do the same).",
};

PyMODINIT_FUNC
PyInit__durable(void)
{
    PyObject *m = PyModule_Create(&mod);
    if (m == NULL)
        return NULL;
    handoff = PyCapsule_Import(HANDOFF_CAPSULE, 0);
    if (handoff == NULL)
        PyErr_Clear(); /* _hotpath not built: writes still take one GIL release, without the handoff */
    return m;
}
