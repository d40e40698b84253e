/* The chunk index's key sort (strongroom/vault/indexrows.py) without numpy.
 *
 * Why this exists: an index of 65,536 chunks or more sorted its keys with numpy, and importing
 * numpy costs a process 13 MiB of memory and 0.05 CPU s.  A files backup of a big tree is
 * two processes, and each loaded numpy once its index passed that size: 200,000 small files'
 * 1 % change peaked 1.15x restic's memory with it and 0.91x without (docs/benchmarks.md,
 * "Session 24").  Plain Python sorts as fast as numpy's import up to
 * 65,536 keys and slower above; this keys and sorts 200,000 rows in about 20 ms and merges
 * 65,536 new ones into 134,464 sorted in 6 ms, and loads nothing.
 *
 * A key is the chunk id's first 32 bits (big-endian) above the row number, so keys are unique
 * and every way of sorting gives the same order.  Rows [0, start) are keyed and sorted
 * already; the new keys are sorted apart (qsort) and merged in from the back, so the work is
 * that of the new rows plus one pass, and the extra memory the new keys' alone.  The GIL is
 * released meanwhile: the buffers stay exported, so neither column can be resized under it.
 *
 * find_rows looks many ids up at once (ChunkIndex.missing: a backup checks every kept file's
 * chunks, 50,000 at a time on a tree of small files): a binary search on the key's top 32 bits,
 * then the ids of the rows under that key compared whole.  In plain Python each lookup cost
 * about 1.3 us (bisect, slicing, comparing); here the whole batch takes a few milliseconds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY_SIZE 48 /* an entry record: the chunk id's 32 bytes first */
#define MAX_ROWS 0xFFFFFFFFLL /* a row number is the key's low 32 bits */

static int compare_keys(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t key_top(const unsigned char *id)
{
    return (uint64_t)id[0] << 24 | (uint64_t)id[1] << 16 | (uint64_t)id[2] << 8 | id[3];
}

static void key_new_rows(const unsigned char *rows, Py_ssize_t start, Py_ssize_t n, uint64_t *out)
{
    for (Py_ssize_t row = start; row < n; row++)
        out[row - start] = key_top(rows + row * ENTRY_SIZE) << 32 | (uint64_t)row;
}

/* keys[0, start) sorted and fresh[0, n - start) sorted: all n merged into keys, largest first. */
static void merge_from_back(uint64_t *keys, Py_ssize_t start, const uint64_t *fresh, Py_ssize_t n)
{
    Py_ssize_t i = start - 1, j = n - start - 1, w = n - 1;
    while (j >= 0) {
        if (i >= 0 && keys[i] > fresh[j])
            keys[w--] = keys[i--];
        else
            keys[w--] = fresh[j--];
    }
}

static PyObject *sort_keys(PyObject *module, PyObject *args)
{
    Py_buffer rows, keys;
    Py_ssize_t start, n;
    (void)module;
    if (!PyArg_ParseTuple(args, "y*w*nn:sort_keys", &rows, &keys, &start, &n))
        return NULL;
    PyObject *result = NULL;
    uint64_t *fresh = NULL;
    if (start < 0 || n < start || n > MAX_ROWS) {
        PyErr_SetString(PyExc_ValueError, "rows out of range");
        goto done;
    }
    if (rows.len / ENTRY_SIZE < n || keys.len / (Py_ssize_t)sizeof(uint64_t) < n) {
        PyErr_SetString(PyExc_ValueError, "a column holds fewer than n rows");
        goto done;
    }
    uint64_t *out = (uint64_t *)keys.buf;
    if (start > 0 && n > start) {
        fresh = malloc((size_t)(n - start) * sizeof(uint64_t));
        if (fresh == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    uint64_t *target = fresh != NULL ? fresh : out;
    key_new_rows((const unsigned char *)rows.buf, start, n, target);
    qsort(target, (size_t)(n - start), sizeof(uint64_t), compare_keys);
    if (fresh != NULL)
        merge_from_back(out, start, fresh, n);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    free(fresh);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&keys);
    return result;
}

/* The row holding id among keys[0, n) (sorted), or -1. */
static Py_ssize_t find_one(const unsigned char *rows, const uint64_t *keys, Py_ssize_t n,
                           const unsigned char *id)
{
    uint64_t top = key_top(id);
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) { /* the first key >= top << 32 */
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (keys[mid] >> 32 < top)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < n && keys[lo] >> 32 == top; lo++) {
        Py_ssize_t row = (Py_ssize_t)(keys[lo] & 0xFFFFFFFFu);
        if (row < n && memcmp(rows + row * ENTRY_SIZE, id, 32) == 0) /* never read past n */
            return row;
    }
    return -1;
}

static PyObject *find_rows(PyObject *module, PyObject *args)
{
    Py_buffer rows, keys, ids;
    Py_ssize_t n;
    (void)module;
    if (!PyArg_ParseTuple(args, "y*y*ny*:find_rows", &rows, &keys, &n, &ids))
        return NULL;
    PyObject *result = NULL;
    if (n < 0 || rows.len / ENTRY_SIZE < n || keys.len / (Py_ssize_t)sizeof(uint64_t) < n) {
        PyErr_SetString(PyExc_ValueError, "a column holds fewer than n rows");
        goto done;
    }
    if (ids.len % 32 != 0) {
        PyErr_SetString(PyExc_ValueError, "ids must be 32 bytes each");
        goto done;
    }
    const uint64_t *k = (const uint64_t *)keys.buf;
    Py_ssize_t count = ids.len / 32;
    result = PyList_New(0);
    if (result == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        const unsigned char *id = (const unsigned char *)ids.buf + i * 32;
        if (find_one((const unsigned char *)rows.buf, k, n, id) >= 0)
            continue;
        PyObject *at = PyLong_FromSsize_t(i);
        if (at == NULL || PyList_Append(result, at) < 0) {
            Py_XDECREF(at);
            Py_CLEAR(result);
            goto done;
        }
        Py_DECREF(at);
    }
done:
    PyBuffer_Release(&rows);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&ids);
    return result;
}

static PyMethodDef methods[] = {
    {"sort_keys", sort_keys, METH_VARARGS,
     "sort_keys(rows, keys, start, n): key rows [start, n) of the entry records in rows into\n"
     "keys (native uint64), then sort keys[0:n], of which [0, start) are sorted already."},
    {"find_rows", find_rows, METH_VARARGS,
     "find_rows(rows, keys, n, ids): the positions in ids (32-byte ids one after the other)\n"
     "of those no row among the n keyed ones holds, in order."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_keysort", "The chunk index's key sort, without numpy.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__keysort(void)
{
    return PyModule_Create(&module_def);
}
