/* What _treeread.c (nodes from the json module's objects) and _treebody.c (nodes straight from
 * a tree chunk's body) share: the Node fields, the defaults and the building of a node. */
#ifndef STRONGROOM_TREEREAD_H
#define STRONGROOM_TREEREAD_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum { F_NAME, F_KIND, F_MODE, F_UID, F_GID, F_USER, F_GROUP, F_MT, F_AT, F_SIZE, F_CHUNKS,
       F_SUBTREE, F_EXTENTS, F_TARGET, F_RDEV, F_LINK, F_XATTRS, F_INCONS, F_ERROR, F_FLAGS,
       NFIELDS };

/* 0, "" and (): a missing field's value (set up by the module's init) */
extern PyObject *tr_zero, *tr_empty_str, *tr_empty_tuple;

/* ``value`` as nodes.py's _shared gives it: one object per value (a new reference). */
PyObject *tr_shared(PyObject *same, PyObject *value);
/* A common node of ``type``: the fields ``val`` holds (new references, which stay the
 * caller's), the others as nodes.py's _decode_node defaults them (owners shared through
 * ``same``); NULL with an error. */
PyObject *tr_complete(PyObject *same, PyObject **val, PyTypeObject *type, PyObject **descrs);
/* The slots' descriptors of ``type``'s fields (new references), or -1 with an error. */
int tr_descriptors(PyTypeObject *type, PyObject **descrs);

/* A cursor into a tree chunk's body: the text, its length, the read position. */
typedef struct {
    const unsigned char *s;
    Py_ssize_t n, i;
} TrText;

/* What reading a value gives.  ODD: not the form read here (the object, or the body, goes the
 * slow way); FAIL: an error is set. */
enum { FAIL = -1, ODD = 0, OK = 1 };

/* _treetext.c: the JSON string at t->i as a str, or with ``name`` as os.fsencode's bytes of
 * it; the integer's magnitude and sign (at most 19 digits); the integer as an int. */
int tr_string(TrText *t, PyObject **out, int name);
int tr_digits(TrText *t, unsigned long long *v, int *neg);
int tr_integer(TrText *t, PyObject **out);

/* _treebody.c's function (see there). */
PyObject *tr_decode_body(PyObject *module, PyObject *args);

#endif
