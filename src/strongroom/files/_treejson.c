/* A folder's nodes as the JSON text of its tree chunk (strongroom/files/nodes.py).
 *
 * Why this exists: a first backup encodes every node once, and nodes.py's _node_json took
 * 2.9-3.0 us a node, a tenth of a small file's whole CPU cost (docs/benchmarks.md, "Session
 * 26").  This writes the common node (plain names and owner names, ints that fit 64 bits, no
 * xattrs, no error) straight into a byte buffer; any other node is handed to _node_json, so
 * the bytes are always the ones nodes.py defines (tests/files/test_treejson.py compares them
 * on random nodes).
 *
 * encode_items(nodes, ref, refs, slow) -> bytes: the nodes' JSON objects joined by commas.
 * ``ref`` (id -> position) and ``refs`` (ids in order) are the reference table being built,
 * shared with ``slow(node, ref, refs) -> str``.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include "structmember.h" /* T_OBJECT_EX: a __slots__ member */

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
} out_t;

static int grow(out_t *o, Py_ssize_t need)
{
    if (o->len + need <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + need)
        cap *= 2;
    char *b = PyMem_Realloc(o->buf, (size_t)cap);
    if (b == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = b;
    o->cap = cap;
    return 0;
}

static int put(out_t *o, const char *s, Py_ssize_t n)
{
    if (grow(o, n) < 0)
        return -1;
    memcpy(o->buf + o->len, s, (size_t)n);
    o->len += n;
    return 0;
}

/* Decimal digits without snprintf (a tenth of a node's time went to its parsing). */
static int put_ll(out_t *o, long long v)
{
    char tmp[24];
    char *end = tmp + sizeof tmp, *p = end;
    unsigned long long m = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    if (v < 0)
        *--p = '-';
    return put(o, p, end - p);
}

/* JSON's ensure_ascii leaves these alone: ' ' to '~' but '"' and '\\'. */
static int plain(const char *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

/* A quoted plain string; 1 written, 0 not plain (nothing written), -1 error. */
static int put_quoted(out_t *o, const char *s, Py_ssize_t n)
{
    if (!plain(s, n))
        return 0;
    if (grow(o, n + 2) < 0)
        return -1;
    o->buf[o->len++] = '"';
    memcpy(o->buf + o->len, s, (size_t)n);
    o->len += n;
    o->buf[o->len++] = '"';
    return 1;
}

static int quoted_str(out_t *o, PyObject *s)
{
    Py_ssize_t n;
    const char *p;
    if (!PyUnicode_IS_ASCII(s))
        return 0;
    p = PyUnicode_AsUTF8AndSize(s, &n);
    return p == NULL ? -1 : put_quoted(o, p, n);
}

static int quoted_bytes(out_t *o, PyObject *b)
{
    return put_quoted(o, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
}

/* The reference of an id in the table (added at its end the first time); -1 on error. */
static Py_ssize_t ref_of(PyObject *cid, PyObject *ref, PyObject *refs)
{
    PyObject *i = PyDict_GetItemWithError(ref, cid);
    if (i != NULL)
        return PyLong_AsSsize_t(i);
    if (PyErr_Occurred())
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(refs);
    PyObject *num = PyLong_FromSsize_t(n);
    if (num == NULL)
        return -1;
    int rc = PyDict_SetItem(ref, cid, num);
    Py_DECREF(num);
    if (rc < 0 || PyList_Append(refs, cid) < 0)
        return -1;
    return n;
}

enum { F_NAME, F_KIND, F_MODE, F_UID, F_GID, F_USER, F_GROUP, F_MT, F_AT, F_SIZE, F_RDEV,
       F_LINK, F_FLAGS, F_INCONS, F_ERROR, F_CHUNKS, F_EXTENTS, F_SUBTREE, F_TARGET, F_XATTRS,
       NFIELDS };
static const char *const field_names[NFIELDS] = {
    "name", "kind", "mode", "uid", "gid", "user", "group", "mtime_ns", "atime_ns", "size",
    "rdev", "link", "flags", "inconsistent", "error", "chunks", "extents", "subtree", "target",
    "xattrs",
};
static PyObject *interned[NFIELDS];

/* Where a node type keeps each field: a slots dataclass's members are at fixed offsets in
 * the object, read there instead of by twenty attribute lookups a node (a quarter of its
 * time).  Learnt from the first type met; any other type goes by attribute. */
static PyTypeObject *slot_type;
static int slots_tried; /* learnt once: a type without them is not looked at again per node */
static Py_ssize_t slot_offset[NFIELDS];

static void learn_slots(PyTypeObject *t)
{
    Py_ssize_t offsets[NFIELDS];
    for (int k = 0; k < NFIELDS; k++) {
        PyObject *d = PyObject_GetAttr((PyObject *)t, interned[k]);
        if (d == NULL) {
            PyErr_Clear();
            return;
        }
        int member = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                     ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (member)
            offsets[k] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
        if (!member)
            return;
    }
    memcpy(slot_offset, offsets, sizeof offsets);
    Py_INCREF(t);
    slot_type = t;
}

/* The node's fields (new references); -1 with an exception set. */
static int get_fields(PyObject *node, PyObject **f)
{
    if (!slots_tried) {
        slots_tried = 1;
        learn_slots(Py_TYPE(node));
    }
    if (Py_TYPE(node) == slot_type) {
        int k;
        for (k = 0; k < NFIELDS; k++) {
            PyObject *v = *(PyObject **)((char *)node + slot_offset[k]);
            if (v == NULL) /* unset: the attribute lookup says how */
                break;
            Py_INCREF(v);
            f[k] = v;
        }
        if (k == NFIELDS)
            return 0;
        for (int j = 0; j < k; j++)
            Py_CLEAR(f[j]);
    }
    for (int k = 0; k < NFIELDS; k++)
        if ((f[k] = PyObject_GetAttr(node, interned[k])) == NULL)
            return -1;
    return 0;
}
/* the optional keys in their order, and the field each is */
static const char *const opt_keys[] = {",\"u\":", ",\"g\":", ",\"un\":", ",\"gn\":", ",\"mt\":",
                                       ",\"at\":", ",\"s\":", ",\"r\":", ",\"h\":", ",\"fl\":"};
static const int opt_fields[] = {F_UID, F_GID, F_USER, F_GROUP, F_MT, F_AT, F_SIZE, F_RDEV,
                                 F_LINK, F_FLAGS};

/* An int field: 1 written (or skipped when zero and ``optional``), 0 not an int in 64 bits. */
static int put_int(out_t *o, const char *key, PyObject *v, int optional)
{
    if (!PyLong_CheckExact(v))
        return 0;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow)
        return 0;
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (optional && x == 0)
        return 1;
    if (put(o, key, (Py_ssize_t)strlen(key)) < 0 || put_ll(o, x) < 0)
        return -1;
    return 1;
}

/* An optional field: str (quoted), int, or falsy (left out). */
static int put_optional(out_t *o, const char *key, PyObject *v)
{
    if (v == Py_None)
        return 1;
    if (PyUnicode_CheckExact(v)) {
        if (PyUnicode_GET_LENGTH(v) == 0)
            return 1;
        if (put(o, key, (Py_ssize_t)strlen(key)) < 0)
            return -1;
        return quoted_str(o, v);
    }
    return put_int(o, key, v, 1);
}

static int put_refs(out_t *o, PyObject *chunks, PyObject *ref, PyObject *refs)
{
    Py_ssize_t n = PyList_GET_SIZE(chunks);
    if (n == 0)
        return 1;
    if (put(o, ",\"c\":[", 6) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *cid = PyList_GET_ITEM(chunks, i);
        if (!PyBytes_CheckExact(cid))
            return 0;
        Py_ssize_t r = ref_of(cid, ref, refs);
        if (r < 0 || (i && put(o, ",", 1) < 0) || put_ll(o, r) < 0)
            return -1;
    }
    return put(o, "]", 1) < 0 ? -1 : 1;
}

static int put_extents(out_t *o, PyObject *extents)
{
    if (extents == Py_None)
        return 1;
    if (!PyList_CheckExact(extents))
        return 0;
    if (put(o, ",\"x\":[", 6) < 0)
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(extents);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(extents, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2)
            return 0;
        for (int j = 0; j < 2; j++) {
            int rc = put_int(o, (i || j) ? "," : "", PyTuple_GET_ITEM(pair, j), 0);
            if (rc <= 0)
                return rc;
        }
    }
    return put(o, "]", 1) < 0 ? -1 : 1;
}

/* The node's JSON object; 1 written, 0 a node for the slow path (the caller rewinds), -1. */
static int put_node(out_t *o, PyObject **f, PyObject *ref, PyObject *refs)
{
    int rc;
    if (!PyBytes_CheckExact(f[F_NAME]) || !PyUnicode_CheckExact(f[F_KIND]))
        return 0;
    if (f[F_ERROR] != Py_None || !PyTuple_CheckExact(f[F_XATTRS]) ||
        PyTuple_GET_SIZE(f[F_XATTRS]) != 0 || !PyList_CheckExact(f[F_CHUNKS]))
        return 0; /* errors and xattrs are rare: nodes.py writes them */
    if (put(o, "{\"n\":", 5) < 0)
        return -1;
    if ((rc = quoted_bytes(o, f[F_NAME])) <= 0)
        return rc;
    if (put(o, ",\"t\":", 5) < 0)
        return -1;
    if ((rc = quoted_str(o, f[F_KIND])) <= 0)
        return rc;
    if ((rc = put_int(o, ",\"m\":", f[F_MODE], 0)) <= 0)
        return rc;
    for (size_t i = 0; i < sizeof opt_fields / sizeof opt_fields[0]; i++)
        if ((rc = put_optional(o, opt_keys[i], f[opt_fields[i]])) <= 0)
            return rc;
    if ((rc = PyObject_IsTrue(f[F_INCONS])) < 0)
        return -1;
    if (rc && put(o, ",\"i\":1", 6) < 0)
        return -1;
    if ((rc = put_refs(o, f[F_CHUNKS], ref, refs)) <= 0)
        return rc;
    if ((rc = put_extents(o, f[F_EXTENTS])) <= 0)
        return rc;
    if (f[F_SUBTREE] != Py_None) {
        if (!PyBytes_CheckExact(f[F_SUBTREE]))
            return 0;
        Py_ssize_t r = ref_of(f[F_SUBTREE], ref, refs);
        if (r < 0 || put(o, ",\"st\":", 6) < 0 || put_ll(o, r) < 0)
            return -1;
    }
    if (f[F_TARGET] != Py_None) {
        if (!PyBytes_CheckExact(f[F_TARGET]))
            return 0;
        if (put(o, ",\"lt\":", 6) < 0)
            return -1;
        if ((rc = quoted_bytes(o, f[F_TARGET])) <= 0)
            return rc;
    }
    return put(o, "}", 1) < 0 ? -1 : 1;
}

/* The slow path's text for one node (refs it adds stay: they are the same the fast path
 * would have added in that order, since it rewinds only its own bytes). */
static int put_slow(out_t *o, PyObject *slow, PyObject *node, PyObject *ref, PyObject *refs)
{
    PyObject *text = PyObject_CallFunctionObjArgs(slow, node, ref, refs, NULL);
    if (text == NULL)
        return -1;
    Py_ssize_t n;
    const char *p = PyUnicode_Check(text) ? PyUnicode_AsUTF8AndSize(text, &n) : NULL;
    int rc = p == NULL ? -1 : put(o, p, n);
    if (p == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "the slow path must return str");
    Py_DECREF(text);
    return rc;
}

static PyObject *encode_items(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *nodes, *ref, *refs, *slow;
    if (!PyArg_ParseTuple(args, "O!O!O!O:encode_items", &PyList_Type, &nodes, &PyDict_Type,
                          &ref, &PyList_Type, &refs, &slow))
        return NULL;
    out_t o = {NULL, 0, 0};
    PyObject *result = NULL;
    Py_ssize_t n = PyList_GET_SIZE(nodes);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *node = PyList_GET_ITEM(nodes, i);
        PyObject *f[NFIELDS] = {NULL};
        int rc = get_fields(node, f) < 0 ? -1 : 1;
        Py_ssize_t refs_before = PyList_GET_SIZE(refs);
        if (rc > 0 && i && put(&o, ",", 1) < 0)
            rc = -1;
        if (rc > 0) {
            Py_ssize_t start = o.len;
            rc = put_node(&o, f, ref, refs);
            if (rc == 0) {
                /* undo what the fast path began (its bytes, the refs it added), then the
                 * slow path adds the same refs in the same order */
                o.len = start;
                rc = 1;
                while (rc > 0 && PyList_GET_SIZE(refs) > refs_before) {
                    Py_ssize_t last = PyList_GET_SIZE(refs) - 1;
                    if (PyDict_DelItem(ref, PyList_GET_ITEM(refs, last)) < 0 ||
                        PyList_SetSlice(refs, last, last + 1, NULL) < 0)
                        rc = -1;
                }
                if (rc > 0 && put_slow(&o, slow, node, ref, refs) < 0)
                    rc = -1;
            }
        }
        for (int k = 0; k < NFIELDS; k++)
            Py_XDECREF(f[k]);
        if (rc < 0)
            goto done;
    }
    result = PyBytes_FromStringAndSize(o.buf ? o.buf : "", o.len);
done:
    PyMem_Free(o.buf);
    return result;
}

static PyMethodDef methods[] = {
    {"encode_items", encode_items, METH_VARARGS,
     "encode_items(nodes, ref, refs, slow) -> the nodes' JSON objects, comma-separated"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_treejson", "A folder's nodes as tree chunk JSON.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__treejson(void)
{
    for (int k = 0; k < NFIELDS; k++)
        if ((interned[k] = PyUnicode_InternFromString(field_names[k])) == NULL)
            return NULL;
    return PyModule_Create(&module_def);
}
