/* Which new chunks a files backup's processes have taken on storing (strongroom/vault/claims.py).
 *
 * Why this exists: a files backup of a big tree is several processes, each with its own chunk
 * writer, and each writer deduplicated only against the vault's index and its own new chunks.
 * Two identical files read by two processes were stored twice: 1,910 of a node_modules
 * folder's 15,234 chunks, 8 % of its vault (docs/benchmarks.md, "Session 25").  Before a
 * writer stores a chunk no index holds, it claims the chunk's id here; whoever claims it
 * first stores it, the others only refer to it.
 *
 * The table is shared memory (a memfd every process maps) of 64-bit tags, the chunk id's
 * first 8 bytes; 0 is "empty", so a tag of 0 is stored as 1.  Slots are set once by
 * compare-and-swap and never change, so a lookup needs no lock.  Segments of 65,536 slots
 * are used one after the other: a tag's place is the same bucket run in every segment,
 * looked up in all segments in use and inserted into the newest; when its run there is full,
 * the next segment is taken (the header counts them).  Pages are only touched as segments
 * fill, so the table costs about 9 bytes per new chunk.  Two processes that race past a
 * segment change may both claim a chunk: a duplicate, as before, never a loss.
 *
 * A tag is not the whole id: two chunks whose ids share their first 64 bits would make the
 * second one's writer skip it.  That cannot pass silently: each writer keeps the ids it did
 * not store because of a claim, and the backup checks them against the index before it
 * saves its point (strongroom/files/backup.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define HEADER_BYTES 4096 /* the count of segments in use, alone on its page */
#define SEGMENT_SLOTS 65536
#define SEGMENT_BYTES (SEGMENT_SLOTS * 8)
#define SEGMENTS 256 /* 16.7 million slots; when all are full, every writer stores alone */
#define BUCKET 8     /* slots, one cache line */
#define BUCKETS (SEGMENT_SLOTS / BUCKET)
#define RUN 32 /* buckets a tag may use in a segment: with 4, segments moved on at half full */
#define TABLE_BYTES ((Py_ssize_t)HEADER_BYTES + (Py_ssize_t)SEGMENTS * SEGMENT_BYTES)
/* A smaller buffer is a table of fewer segments (the tests fill one). */
#define MIN_BYTES ((Py_ssize_t)HEADER_BYTES + SEGMENT_BYTES)

enum { OTHER = 0, MINE = 1, FULL = -1 };

static uint64_t *segment(unsigned char *table, uint64_t k)
{
    return (uint64_t *)(table + HEADER_BYTES + k * (uint64_t)SEGMENT_BYTES);
}

/* Whether the tag is in segment k (a run stops at its first empty slot: inserts fill runs in order). */
static int holds(const uint64_t *seg, uint64_t first, uint64_t tag)
{
    for (uint64_t b = 0; b < RUN; b++) {
        const uint64_t *bucket = seg + ((first + b) % BUCKETS) * BUCKET;
        for (int s = 0; s < BUCKET; s++) {
            uint64_t v = __atomic_load_n(&bucket[s], __ATOMIC_ACQUIRE);
            if (v == tag)
                return 1;
            if (v == 0)
                return 0;
        }
    }
    return 0;
}

/* MINE when this call set the tag into segment k, OTHER when it was there, FULL: no room. */
static int insert(uint64_t *seg, uint64_t first, uint64_t tag)
{
    for (uint64_t b = 0; b < RUN; b++) {
        uint64_t *bucket = seg + ((first + b) % BUCKETS) * BUCKET;
        for (int s = 0; s < BUCKET; s++) {
            uint64_t v = __atomic_load_n(&bucket[s], __ATOMIC_ACQUIRE);
            if (v == 0) {
                if (__atomic_compare_exchange_n(&bucket[s], &v, tag, 0, __ATOMIC_ACQ_REL,
                                                __ATOMIC_ACQUIRE))
                    return MINE;
            }
            if (v == tag)
                return OTHER;
        }
    }
    return FULL;
}

static int claim_tag(unsigned char *table, uint64_t segments, uint64_t tag)
{
    uint64_t *used = (uint64_t *)table;
    uint64_t first = (tag >> 16) % BUCKETS;
    uint64_t n = __atomic_load_n(used, __ATOMIC_ACQUIRE) + 1;
    if (n > segments)
        n = segments;
    for (uint64_t k = 0; k + 1 < n; k++)
        if (holds(segment(table, k), first, tag))
            return OTHER;
    for (;;) {
        int got = insert(segment(table, n - 1), first, tag);
        if (got != FULL)
            return got;
        if (n == segments)
            return FULL;
        uint64_t expected = n - 1; /* another process may have moved on already: either way */
        __atomic_compare_exchange_n(used, &expected, n, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
        n = __atomic_load_n(used, __ATOMIC_ACQUIRE) + 1;
        if (n > segments)
            n = segments;
    }
}

/* The table's segments, or 0 (an exception set) for a buffer that cannot be one. */
static uint64_t segments_of(const Py_buffer *table)
{
    if (table->len < MIN_BYTES || ((uintptr_t)table->buf & 7) != 0) {
        PyErr_SetString(PyExc_ValueError, "claims table too small or misaligned");
        return 0;
    }
    uint64_t n = (uint64_t)(table->len - HEADER_BYTES) / SEGMENT_BYTES;
    return n < SEGMENTS ? n : SEGMENTS;
}

static PyObject *claim(PyObject *module, PyObject *args)
{
    Py_buffer table, cid;
    (void)module;
    if (!PyArg_ParseTuple(args, "w*y*:claim", &table, &cid))
        return NULL;
    PyObject *result = NULL;
    uint64_t segments = segments_of(&table);
    if (segments == 0) {
        /* the exception is set */
    } else if (cid.len < 8) {
        PyErr_SetString(PyExc_ValueError, "chunk id shorter than 8 bytes");
    } else {
        uint64_t tag;
        memcpy(&tag, cid.buf, 8);
        result = PyLong_FromLong(claim_tag((unsigned char *)table.buf, segments, tag ? tag : 1));
    }
    PyBuffer_Release(&cid);
    PyBuffer_Release(&table);
    return result;
}

static PyObject *segments_used(PyObject *module, PyObject *args)
{
    Py_buffer table;
    (void)module;
    if (!PyArg_ParseTuple(args, "w*:segments_used", &table))
        return NULL;
    PyObject *result = NULL;
    uint64_t segments = segments_of(&table);
    if (segments != 0) {
        uint64_t n = __atomic_load_n((uint64_t *)table.buf, __ATOMIC_ACQUIRE) + 1;
        result = PyLong_FromUnsignedLongLong(n < segments ? n : segments);
    }
    PyBuffer_Release(&table);
    return result;
}

static PyMethodDef methods[] = {
    {"claim", claim, METH_VARARGS,
     "claim(table, chunk_id) -> 1 (store it: claimed now), 0 (claimed before), -1 (table full)"},
    {"segments_used", segments_used, METH_VARARGS, "segments_used(table) -> segments in use"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_claims", "Chunk claims shared by a backup's processes.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__claims(void)
{
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObject(m, "TABLE_BYTES", PyLong_FromSsize_t(TABLE_BYTES)) < 0 ||
        PyModule_AddIntConstant(m, "SEGMENT_SLOTS", SEGMENT_SLOTS) < 0 ||
        PyModule_AddObject(m, "MIN_BYTES", PyLong_FromSsize_t(MIN_BYTES)) < 0 ||
        PyModule_AddIntConstant(m, "SEGMENTS", SEGMENTS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
