/* A folder's files-cache records decoded in C (strongroom/files/cacherows.py).
 *
 * Why this exists: an incremental backup decodes the row of every folder it lists again,
 * and cacherows._decode_body took 2 us a record: 0.1 s of a 50,000-file folder's 1 %
 * change, about a tenth of it (docs/benchmarks.md, "Session 30").  This reads the same
 * layout (see cacherows.py's docstring) into the same CacheEntry objects and raises the same
 * ValueError on a body whose records do not add up; xattrs, rare, go to decode_xattrs
 * itself.  tests/files/test_rowread.py compares the two decoders on random bodies.
 *
 * decode_body(body, entry_type, decode_xattrs) -> {name: entry_type(ino, size, mtime_ns,
 * ctime_ns, chunks, extents, flags, xattrs, record)}
 *
 * An entry's fields are its __slots__: they are filled in place, as the slots' descriptors
 * would (CacheEntry's __init__, in Python, was half of the time left).  A type whose fields
 * are not all plain object slots is called instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

#define HEAD 54 /* struct "<HIiiQqqqq" */
#define ID 32
#define EXTENT 16 /* struct "<qq" */

#define FIELDS 9
static const char *const field_names[FIELDS] = {
    "ino", "size", "mtime_ns", "ctime_ns", "chunks", "extents", "flags", "xattrs", "record",
};
static PyObject *slotted; /* the type whose slot offsets are below (a strong reference) */
static Py_ssize_t offsets[FIELDS];

/* Whether ``type``'s fields are writable object slots (their offsets then in ``offsets``). */
static int learn_slots(PyObject *type)
{
    if (type == slotted)
        return 1;
    if (!PyType_CheckExact(type) || ((PyTypeObject *)type)->tp_alloc == NULL)
        return 0;
    Py_ssize_t found[FIELDS];
    for (int i = 0; i < FIELDS; i++) {
        PyObject *descr = PyObject_GetAttrString(type, field_names[i]);
        if (descr == NULL) {
            PyErr_Clear();
            return 0;
        }
        int plain = Py_IS_TYPE(descr, &PyMemberDescr_Type);
        if (plain) {
            PyMemberDef *m = ((PyMemberDescrObject *)descr)->d_member;
            plain = m->type == T_OBJECT_EX && !(m->flags & READONLY);
            found[i] = m->offset;
        }
        Py_DECREF(descr);
        if (!plain)
            return 0;
    }
    memcpy(offsets, found, sizeof offsets);
    Py_XSETREF(slotted, Py_NewRef(type));
    return 1;
}

/* An entry of ``type`` from ``values`` (new references, taken over), or NULL. */
static PyObject *make_entry(PyObject *type, PyObject **values)
{
    if (learn_slots(type)) {
        PyObject *obj = ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, 0);
        if (obj == NULL)
            return NULL;
        for (int i = 0; i < FIELDS; i++) {
            *(PyObject **)((char *)obj + offsets[i]) = values[i];
            values[i] = NULL;
        }
        return obj;
    }
    return PyObject_Vectorcall(type, values, FIELDS, NULL);
}

static uint64_t rd(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static PyObject *bytes_at(const char *base, int64_t at, int64_t n)
{
    return PyBytes_FromStringAndSize(base + at, (Py_ssize_t)n);
}

static PyObject *chunk_list(const char *base, int64_t at, int64_t clen)
{
    PyObject *chunks = PyList_New((Py_ssize_t)(clen / ID));
    if (chunks == NULL)
        return NULL;
    for (int64_t i = 0; i < clen / ID; i++) {
        PyObject *id = bytes_at(base, at + i * ID, ID);
        if (id == NULL) {
            Py_DECREF(chunks);
            return NULL;
        }
        PyList_SET_ITEM(chunks, (Py_ssize_t)i, id);
    }
    return chunks;
}

static PyObject *extent_list(const unsigned char *p, int64_t count)
{
    PyObject *extents = PyList_New((Py_ssize_t)count);
    if (extents == NULL)
        return NULL;
    for (int64_t i = 0; i < count; i++) {
        const unsigned char *e = p + i * EXTENT;
        PyObject *pair = Py_BuildValue("(LL)", (long long)(int64_t)rd(e, 8),
                                       (long long)(int64_t)rd(e + 8, 8));
        if (pair == NULL) {
            Py_DECREF(extents);
            return NULL;
        }
        PyList_SET_ITEM(extents, (Py_ssize_t)i, pair);
    }
    return extents;
}

/* The entry of the record at ``pos`` (its end in *stop), or NULL with an exception set. */
static PyObject *one_record(PyObject *body, int64_t pos, int64_t end, PyObject *entry_type,
                            PyObject *decode_xattrs, PyObject **name, int64_t *stop)
{
    const char *base = PyBytes_AS_STRING(body);
    const unsigned char *h = (const unsigned char *)base + pos;
    int64_t nlen = (int64_t)rd(h, 2), clen = (int64_t)rd(h + 2, 4);
    int64_t next = (int32_t)rd(h + 6, 4), xlen = (int32_t)rd(h + 10, 4);
    int64_t at = pos + HEAD;
    *stop = at + nlen + clen + (next > 0 ? next : 0) * EXTENT + (xlen > 0 ? xlen : 0);
    if (*stop > end || clen % ID) {
        PyErr_SetString(PyExc_ValueError, "a record runs past the body");
        return NULL;
    }
    PyObject *args[9] = {NULL};
    args[0] = PyLong_FromUnsignedLongLong(rd(h + 14, 8));
    args[1] = PyLong_FromLongLong((long long)(int64_t)rd(h + 22, 8));
    args[2] = PyLong_FromLongLong((long long)(int64_t)rd(h + 30, 8));
    args[3] = PyLong_FromLongLong((long long)(int64_t)rd(h + 38, 8));
    args[6] = PyLong_FromLongLong((long long)(int64_t)rd(h + 46, 8));
    *name = bytes_at(base, at, nlen);
    args[4] = chunk_list(base, at + nlen, clen);
    at += nlen + clen;
    if (next >= 0) {
        args[5] = extent_list((const unsigned char *)base + at, next);
        at += next * EXTENT;
    } else {
        args[5] = Py_NewRef(Py_None);
    }
    if (xlen > 0) {
        PyObject *blob = bytes_at(base, at, xlen);
        args[7] = blob == NULL ? NULL : PyObject_CallOneArg(decode_xattrs, blob);
        Py_XDECREF(blob);
    } else {
        args[7] = PyTuple_New(0);
    }
    args[8] = bytes_at(base, pos, *stop - pos);
    PyObject *entry = NULL;
    int complete = *name != NULL;
    for (int i = 0; i < 9; i++)
        complete = complete && args[i] != NULL;
    if (complete)
        entry = make_entry(entry_type, args);
    for (int i = 0; i < 9; i++)
        Py_XDECREF(args[i]);
    if (entry == NULL)
        Py_CLEAR(*name);
    return entry;
}

static PyObject *decode_body(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3 || !PyBytes_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "decode_body(body: bytes, entry_type, decode_xattrs)");
        return NULL;
    }
    PyObject *body = args[0];
    PyObject *found = PyDict_New();
    if (found == NULL)
        return NULL;
    int64_t pos = 0, end = (int64_t)PyBytes_GET_SIZE(body);
    while (pos < end) {
        if (pos + HEAD > end) {
            PyErr_SetString(PyExc_ValueError, "a truncated record");
            goto fail;
        }
        PyObject *name = NULL;
        int64_t stop = 0;
        PyObject *entry = one_record(body, pos, end, args[1], args[2], &name, &stop);
        if (entry == NULL)
            goto fail;
        int failed = PyDict_SetItem(found, name, entry);
        Py_DECREF(name);
        Py_DECREF(entry);
        if (failed)
            goto fail;
        pos = stop;
    }
    return found;
fail:
    Py_DECREF(found);
    return NULL;
}

static PyMethodDef methods[] = {
    {"decode_body", (PyCFunction)(void (*)(void))decode_body, METH_FASTCALL,
     "A folder row's records by name (see cacherows.decode_body)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rowread", "Files-cache records decoded in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rowread(void)
{
    return PyModule_Create(&module);
}
