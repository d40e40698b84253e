/* A folder's nodes from the JSON objects of its tree chunk (strongroom/files/nodes.py).
 *
 * Why this exists: a restore decodes every node it plans, and nodes.py's _decode_node took
 * about 5 us a node on top of json.loads' 4: half a second, serial, before the first file of
 * a folder of 50,000 could be written (docs/benchmarks.md, "Session 29").  This builds the
 * common node (only the keys n, t, m, u, g, un, gn, mt, at, s, c and st, with ints and
 * strings of exactly those types and chunk references inside the table) as _decode_node
 * would; any other object is handed to _decode_node itself, so the nodes, and the errors of a
 * malformed tree, are always the ones nodes.py defines (tests/files/test_treeread.py compares
 * them on random objects).
 *
 * decode_items(objects, refs, same, node_type, kinds, slow) -> list of nodes.  ``same`` is
 * _decode_node's table of shared values, ``kinds`` the node types it accepts, ``slow(obj,
 * refs, same)`` _decode_node.
 */
#include "_treeread.h"
#include <string.h>
static const char *const field_names[NFIELDS] = {
    "name", "kind", "mode", "uid", "gid", "user", "group", "mtime_ns", "atime_ns", "size",
    "chunks", "subtree", "extents", "target", "rdev", "link", "xattrs", "inconsistent", "error",
    "flags",
};
/* the JSON key of each field this decodes (the others are always their defaults here) */
static const char *const keys[F_SUBTREE + 1] = {"n", "t", "m", "u", "g", "un", "gn", "mt",
                                                "at", "s", "c", "st"};
static PyObject *interned[NFIELDS];
PyObject *tr_zero, *tr_empty_str, *tr_empty_tuple;

/* The field ``key`` stands for, or -1: a key this does not decode. */
static int field_of(PyObject *key)
{
    if (!PyUnicode_CheckExact(key) || !PyUnicode_IS_ASCII(key))
        return -1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(key);
    const char *s = (const char *)PyUnicode_DATA(key);
    for (int f = 0; f <= F_SUBTREE; f++)
        if ((Py_ssize_t)strlen(keys[f]) == n && memcmp(keys[f], s, (size_t)n) == 0)
            return f;
    return -1;
}

/* The reference table's entry ``i`` (borrowed), or NULL: not an int inside the table. */
static PyObject *ref_at(PyObject *refs, PyObject *i)
{
    if (!PyLong_CheckExact(i))
        return NULL;
    Py_ssize_t k = PyLong_AsSsize_t(i);
    if (k == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    if (k < 0 || k >= PyList_GET_SIZE(refs))
        return NULL;
    return PyList_GET_ITEM(refs, k);
}

/* The chunk ids of ``c`` (a new list), or NULL without an error: not a list of references
 * inside the table. */
static PyObject *chunks_of(PyObject *c, PyObject *refs)
{
    if (!PyList_CheckExact(c))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(c);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *id = ref_at(refs, PyList_GET_ITEM(c, k));
        if (id == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        Py_INCREF(id);
        PyList_SET_ITEM(out, k, id);
    }
    return out;
}

/* Each decoded field's value (borrowed from the object, or NULL: its default); 0 when the
 * object is not a common node. */
static int common_fields(PyObject *d, PyObject *kinds, PyObject **v)
{
    if (!PyDict_CheckExact(d))
        return 0;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(d, &pos, &key, &value)) {
        int f = field_of(key);
        if (f < 0)
            return 0;
        v[f] = value;
    }
    if (v[F_NAME] == NULL || v[F_KIND] == NULL || v[F_MODE] == NULL)
        return 0;
    if (!PyUnicode_CheckExact(v[F_NAME]) || !PyUnicode_CheckExact(v[F_KIND]))
        return 0;
    int known = PySequence_Contains(kinds, v[F_KIND]);
    if (known <= 0) {
        PyErr_Clear();
        return 0;
    }
    static const int ints[] = {F_MODE, F_UID, F_GID, F_MT, F_AT, F_SIZE};
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
        if (v[ints[k]] != NULL && !PyLong_CheckExact(v[ints[k]]))
            return 0;
    if ((v[F_USER] != NULL && !PyUnicode_CheckExact(v[F_USER])) ||
        (v[F_GROUP] != NULL && !PyUnicode_CheckExact(v[F_GROUP])))
        return 0;
    return 1;
}

PyObject *tr_shared(PyObject *same, PyObject *value)
{
    PyObject *got = PyDict_SetDefault(same, value, value);
    Py_XINCREF(got);
    return got;
}

/* The fields a common node always leaves at their defaults, from F_EXTENTS on (new refs). */
static void defaults(PyObject **val)
{
    static const int none[] = {F_EXTENTS, F_TARGET, F_LINK, F_ERROR};
    for (size_t k = 0; k < sizeof none / sizeof none[0]; k++)
        if (val[none[k]] == NULL)
            val[none[k]] = Py_NewRef(Py_None);
    if (val[F_RDEV] == NULL)
        val[F_RDEV] = Py_NewRef(tr_zero);
    if (val[F_FLAGS] == NULL)
        val[F_FLAGS] = Py_NewRef(tr_zero);
    if (val[F_XATTRS] == NULL)
        val[F_XATTRS] = Py_NewRef(tr_empty_tuple);
    if (val[F_INCONS] == NULL)
        val[F_INCONS] = Py_NewRef(Py_False);
}

/* A node of ``type`` with the fields ``val`` (all set; the references stay the caller's), or
 * NULL with an error. */
static PyObject *new_node(PyObject **val, PyTypeObject *type, PyObject **descrs)
{
    PyObject *node = type->tp_new(type, tr_empty_tuple, NULL);
    if (node == NULL)
        return NULL;
    for (int f = 0; f < NFIELDS; f++)
        if (Py_TYPE(descrs[f])->tp_descr_set(descrs[f], node, val[f]) < 0) {
            Py_DECREF(node);
            return NULL;
        }
    return node;
}

PyObject *tr_complete(PyObject *same, PyObject **val, PyTypeObject *type, PyObject **descrs)
{
    if (val[F_UID] == NULL)
        val[F_UID] = tr_shared(same, tr_zero);
    if (val[F_GID] == NULL)
        val[F_GID] = tr_shared(same, tr_zero);
    if (val[F_USER] == NULL)
        val[F_USER] = tr_shared(same, tr_empty_str);
    if (val[F_GROUP] == NULL)
        val[F_GROUP] = tr_shared(same, tr_empty_str);
    for (int f = F_MT; f <= F_SIZE; f++)
        if (val[f] == NULL)
            val[f] = Py_NewRef(tr_zero);
    if (val[F_CHUNKS] == NULL)
        val[F_CHUNKS] = PyList_New(0);
    if (val[F_SUBTREE] == NULL)
        val[F_SUBTREE] = Py_NewRef(Py_None);
    defaults(val);
    for (int f = 0; f < NFIELDS; f++)
        if (val[f] == NULL)
            return NULL;
    return new_node(val, type, descrs);
}

/* The node of a common object (a new reference); NULL with an error set, or NULL without
 * one: not a common node after all (a reference outside the table). */
static PyObject *build(PyObject **v, PyObject *refs, PyObject *same, PyTypeObject *type,
                       PyObject **descrs)
{
    PyObject *val[NFIELDS] = {NULL};
    PyObject *node = NULL;
    int ok = 0;
    if (v[F_CHUNKS] != NULL) {
        val[F_CHUNKS] = chunks_of(v[F_CHUNKS], refs);
        if (val[F_CHUNKS] == NULL)
            goto done;
    }
    if (v[F_SUBTREE] != NULL) {
        val[F_SUBTREE] = ref_at(refs, v[F_SUBTREE]);
        if (val[F_SUBTREE] == NULL)
            goto done;
        Py_INCREF(val[F_SUBTREE]);
    }
    val[F_NAME] = PyUnicode_EncodeFSDefault(v[F_NAME]);
    val[F_KIND] = Py_NewRef(v[F_KIND]);
    val[F_MODE] = tr_shared(same, v[F_MODE]);
    static const int owners[] = {F_UID, F_GID, F_USER, F_GROUP};
    for (size_t k = 0; k < sizeof owners / sizeof owners[0]; k++)
        if (v[owners[k]] != NULL)
            val[owners[k]] = tr_shared(same, v[owners[k]]);
    for (int f = F_MT; f <= F_SIZE; f++)
        if (v[f] != NULL)
            val[f] = Py_NewRef(v[f]);
    /* a failure so far has its error set; the fields still NULL are the object's missing ones */
    node = PyErr_Occurred() ? NULL : tr_complete(same, val, type, descrs);
    ok = node != NULL ? 1 : -1;
done:
    for (int f = 0; f < NFIELDS; f++)
        Py_XDECREF(val[f]);
    if (ok == 0 && PyErr_Occurred())
        return NULL;
    return node;
}

int tr_descriptors(PyTypeObject *type, PyObject **descrs)
{
    for (int f = 0; f < NFIELDS; f++) {
        descrs[f] = PyObject_GetAttr((PyObject *)type, interned[f]);
        if (descrs[f] == NULL || Py_TYPE(descrs[f])->tp_descr_set == NULL) {
            if (descrs[f] != NULL)
                PyErr_SetString(PyExc_TypeError, "node type without slots");
            for (int k = 0; k <= f; k++)
                Py_XDECREF(descrs[k]);
            return -1;
        }
    }
    return 0;
}

static PyObject *decode_items(PyObject *module, PyObject *args)
{
    PyObject *objects, *refs, *same, *type, *kinds, *slow;
    if (!PyArg_ParseTuple(args, "O!O!O!O!OO", &PyList_Type, &objects, &PyList_Type, &refs,
                          &PyDict_Type, &same, &PyType_Type, &type, &kinds, &slow))
        return NULL;
    PyObject *descrs[NFIELDS];
    if (tr_descriptors((PyTypeObject *)type, descrs) < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(objects);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t k = 0; out != NULL && k < n; k++) {
        PyObject *d = PyList_GET_ITEM(objects, k);
        PyObject *v[NFIELDS] = {NULL};
        PyObject *node = NULL;
        if (common_fields(d, kinds, v)) {
            node = build(v, refs, same, (PyTypeObject *)type, descrs);
            if (node == NULL && PyErr_Occurred()) {
                Py_CLEAR(out);
                break;
            }
        }
        if (node == NULL)
            node = PyObject_CallFunctionObjArgs(slow, d, refs, same, NULL);
        if (node == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, k, node);
    }
    for (int f = 0; f < NFIELDS; f++)
        Py_DECREF(descrs[f]);
    return out;
}

static PyMethodDef methods[] = {
    {"decode_items", decode_items, METH_VARARGS,
     "The nodes of a tree chunk's JSON objects (see the module source)."},
    {"decode_body", tr_decode_body, METH_VARARGS,
     "The nodes of a tree chunk's body, or None (see _treebody.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_treeread", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__treeread(void)
{
    for (int f = 0; f < NFIELDS; f++) {
        interned[f] = PyUnicode_InternFromString(field_names[f]);
        if (interned[f] == NULL)
            return NULL;
    }
    tr_zero = PyLong_FromLong(0);
    tr_empty_str = PyUnicode_FromString("");
    tr_empty_tuple = PyTuple_New(0);
    if (tr_zero == NULL || tr_empty_str == NULL || tr_empty_tuple == NULL)
        return NULL;
    return PyModule_Create(&module_def);
}
