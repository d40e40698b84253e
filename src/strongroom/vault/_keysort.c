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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

#define ENTRY_SIZE 48 /* an entry record: the chunk id's 32 bytes first */
#define MAX_ROWS 0xFFFFFFFFLL /* a row number is the key's low 32 bits */

static int compare_keys(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void key_new_rows(const unsigned char *rows, Py_ssize_t start, Py_ssize_t n, uint64_t *out)
{
    for (Py_ssize_t row = start; row < n; row++) {
        const unsigned char *id = rows + row * ENTRY_SIZE;
        uint64_t top = (uint64_t)id[0] << 24 | (uint64_t)id[1] << 16 | (uint64_t)id[2] << 8 | id[3];
        out[row - start] = top << 32 | (uint64_t)row;
    }
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

static PyMethodDef methods[] = {
    {"sort_keys", sort_keys, METH_VARARGS,
     "sort_keys(rows, keys, start, n): key rows [start, n) of the entry records in rows into\n"
     "keys (native uint64), then sort keys[0:n], of which [0, start) are sorted already."},
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
