/* A folder's nodes straight from its tree chunk's body (strongroom/files/nodes.py).
 *
 * Why this exists: json.loads builds a dict per node and _treeread.c's decode_items a node
 * from it, about 4 us a node, serial in the process that plans the folder: a restore's
 * parent decoded a folder of 50,000 for 0.2-0.4 s while its worker waited for the first files
 * (docs/benchmarks.md, "Session 33").  This reads the body as the encoder writes it
 * (nodes.encode_dir, _treejson.c): ``head`` (``{"v":1,"nodes":[``), objects separated by
 * commas, ``]}``, no white space, ASCII.  A common object (only the keys n, t, m, u, g, un,
 * gn, mt, at, s, r, h, fl, c, st and lt, each once, with strings, integers and references
 * inside the table) becomes a node here, with the values nodes.py's _decode_node gives it; any other
 * object is cut out, up to its closing brace, and handed to ``slow(raw, refs, same)``
 * (nodes.py: json.loads and _decode_node).  Anything else in the body gives None, and the
 * caller decodes the body with json.loads: the nodes, and the errors of a malformed body, are
 * always nodes.py's (tests/files/test_treebody.py compares them on random and damaged bodies).
 *
 * decode_body(body, head, refs, same, node_type, kinds, slow) -> list of nodes, or None.
 */
#include "_treeread.h"
#include <string.h>

#define MAX_KINDS 16

typedef struct {
    TrText t; /* the body and the read position */
    PyObject *refs, *same, *slow;
    PyTypeObject *type;
    PyObject *descrs[NFIELDS];
    PyObject *kinds[MAX_KINDS]; /* borrowed from the kinds tuple */
    const char *kind_text[MAX_KINDS];
    Py_ssize_t kind_len[MAX_KINDS], nkinds;
    /* the last shared value of each field, by its text: most nodes of a folder repeat them */
    const unsigned char *memo_text[NFIELDS];
    Py_ssize_t memo_len[NFIELDS];
    PyObject *memo[NFIELDS]; /* borrowed from ``same``, which keeps every value it was given */
} Body;

/* The reference at b->t.i: the table's entry (borrowed); ODD outside the table. */
static int reference(Body *b, PyObject **out)
{
    unsigned long long v;
    int neg;
    int r = tr_digits(&b->t, &v, &neg);
    if (r != OK)
        return r;
    if (neg || v >= (unsigned long long)PyList_GET_SIZE(b->refs))
        return ODD; /* (a negative one counts from the end in nodes.py: left to it) */
    *out = PyList_GET_ITEM(b->refs, (Py_ssize_t)v);
    return OK;
}

/* A JSON list's items (b->t.i past its opening bracket), each read by ``read`` (a new
 * reference), appended to ``out``. */
static int list_items(Body *b, int (*read)(Body *, PyObject **), PyObject *out)
{
    if (b->t.i < b->t.n && b->t.s[b->t.i] == ']') {
        b->t.i++;
        return OK;
    }
    for (;;) {
        PyObject *item = NULL;
        int r = read(b, &item);
        if (r == OK && PyList_Append(out, item) < 0)
            r = FAIL;
        Py_XDECREF(item);
        if (r != OK)
            return r;
        if (b->t.i < b->t.n && b->t.s[b->t.i] == ',') {
            b->t.i++;
            continue;
        }
        if (b->t.i < b->t.n && b->t.s[b->t.i] == ']') {
            b->t.i++;
            return OK;
        }
        return ODD;
    }
}

static int chunk_id(Body *b, PyObject **out)
{
    int r = reference(b, out);
    Py_XINCREF(r == OK ? *out : NULL);
    return r;
}

/* The list of references at b->t.i as a new list of chunk ids. */
static int references(Body *b, PyObject **out)
{
    if (b->t.i >= b->t.n || b->t.s[b->t.i] != '[')
        return ODD;
    b->t.i++;
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return FAIL;
    int r = list_items(b, chunk_id, list);
    if (r == OK)
        *out = list;
    else
        Py_DECREF(list);
    return r;
}

/* The node type at b->t.i: the kinds tuple's own str of that text. */
static int kind(Body *b, PyObject **out)
{
    const unsigned char *s = b->t.s;
    Py_ssize_t i = b->t.i;
    if (i >= b->t.n || s[i] != '"')
        return ODD;
    Py_ssize_t start = ++i;
    while (i < b->t.n && s[i] != '"' && s[i] != '\\')
        i++;
    if (i >= b->t.n || s[i] != '"')
        return ODD; /* escaped: nodes.py decides */
    size_t len = (size_t)(i - start);
    for (Py_ssize_t k = 0; k < b->nkinds; k++)
        if ((size_t)b->kind_len[k] == len && memcmp(b->kind_text[k], s + start, len) == 0) {
            *out = Py_NewRef(b->kinds[k]);
            b->t.i = i + 1;
            return OK;
        }
    return ODD; /* an unknown type: nodes.py's error */
}

/* Field ``f``'s value shared as nodes.py's _shared does (a new reference in *out); the text
 * of the last one is remembered, so a repeated value costs a comparison. */
static int shared_value(Body *b, int f, PyObject **out)
{
    const unsigned char *text = b->t.s + b->t.i;
    Py_ssize_t before = b->t.i;
    PyObject *value = NULL;
    int r = (f == F_USER || f == F_GROUP) ? tr_string(&b->t, &value, 0) : tr_integer(&b->t, &value);
    if (r != OK)
        return r;
    Py_ssize_t len = b->t.i - before;
    if (b->memo[f] != NULL && b->memo_len[f] == len &&
        memcmp(b->memo_text[f], text, (size_t)len) == 0) {
        Py_DECREF(value);
        *out = Py_NewRef(b->memo[f]);
        return OK;
    }
    *out = tr_shared(b->same, value);
    Py_DECREF(value);
    if (*out == NULL)
        return FAIL;
    b->memo[f] = *out;
    b->memo_text[f] = text;
    b->memo_len[f] = len;
    return OK;
}

/* The field of the key at b->t.i (``"key":``), or -1: a key not read here. */
static int key(Body *b)
{
    const unsigned char *s = b->t.s + b->t.i;
    Py_ssize_t left = b->t.n - b->t.i;
    if (left >= 4 && s[0] == '"' && s[2] == '"' && s[3] == ':') {
        b->t.i += 4;
        switch (s[1]) {
        case 'n': return F_NAME;
        case 't': return F_KIND;
        case 'm': return F_MODE;
        case 'u': return F_UID;
        case 'g': return F_GID;
        case 's': return F_SIZE;
        case 'c': return F_CHUNKS;
        case 'r': return F_RDEV;
        case 'h': return F_LINK; /* a hard link group: each of its names has one */
        }
    } else if (left >= 5 && s[0] == '"' && s[3] == '"' && s[4] == ':') {
        b->t.i += 5;
        if (s[2] == 'n' && s[1] == 'u')
            return F_USER;
        if (s[2] == 'n' && s[1] == 'g')
            return F_GROUP;
        if (s[2] == 't' && s[1] == 'm')
            return F_MT;
        if (s[2] == 't' && s[1] == 'a')
            return F_AT;
        if (s[2] == 't' && s[1] == 's')
            return F_SUBTREE;
        if (s[2] == 't' && s[1] == 'l')
            return F_TARGET; /* a symlink's */
        if (s[2] == 'l' && s[1] == 'f')
            return F_FLAGS;
    }
    return -1;
}

static int field(Body *b, int f, PyObject **val)
{
    switch (f) {
    case F_NAME: case F_TARGET: /* bytes: os.fsencode of the text, as nodes.py's _b */
        return tr_string(&b->t, &val[f], 1);
    case F_LINK: /* nodes.py keeps the text */
        return tr_string(&b->t, &val[f], 0);
    case F_KIND:
        return kind(b, &val[f]);
    case F_MODE: case F_UID: case F_GID: case F_USER: case F_GROUP:
        return shared_value(b, f, &val[f]);
    case F_CHUNKS:
        return references(b, &val[f]);
    case F_SUBTREE:
        return chunk_id(b, &val[f]);
    default:
        return tr_integer(&b->t, &val[f]);
    }
}

/* The node of a common object's fields (*out), what it leaves out as nodes.py's defaults. */
static int complete(Body *b, PyObject **val, PyObject **out)
{
    if (val[F_NAME] == NULL || val[F_KIND] == NULL || val[F_MODE] == NULL)
        return ODD; /* nodes.py's KeyError */
    *out = tr_complete(b->same, val, b->type, b->descrs);
    return *out != NULL ? OK : FAIL;
}

/* The common node of the object at b->t.i (its opening brace). */
static int common_node(Body *b, PyObject **out)
{
    PyObject *val[NFIELDS] = {NULL};
    unsigned seen = 0;
    int r = ODD;
    b->t.i++;
    for (;;) {
        int f = key(b);
        if (f < 0 || (seen & (1u << f)))
            break; /* another key, or one twice (json keeps the last): nodes.py decides */
        seen |= 1u << f;
        r = field(b, f, val);
        if (r != OK)
            break;
        r = ODD;
        if (b->t.i >= b->t.n)
            break;
        if (b->t.s[b->t.i] == ',') {
            b->t.i++;
            continue;
        }
        if (b->t.s[b->t.i] == '}') {
            b->t.i++;
            r = complete(b, val, out);
        }
        break;
    }
    for (int f = 0; f < NFIELDS; f++)
        Py_XDECREF(val[f]);
    return r;
}

/* Where the object at ``i`` ends (past its closing brace), or -1; only its strings and
 * brackets are followed: json.loads checks the rest. */
static Py_ssize_t object_end(const unsigned char *s, Py_ssize_t n, Py_ssize_t i)
{
    Py_ssize_t depth = 0;
    for (; i < n; i++) {
        if (s[i] == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                i += s[i] == '\\';
        } else if (s[i] == '{' || s[i] == '[') {
            depth++;
        } else if ((s[i] == '}' || s[i] == ']') && --depth == 0) {
            return i + 1;
        }
    }
    return -1;
}

/* The node of the object at b->t.i, whatever it holds: built here, or by ``slow``. */
static int any_node(Body *b, PyObject **out)
{
    Py_ssize_t start = b->t.i;
    if (start >= b->t.n || b->t.s[start] != '{')
        return ODD;
    int r = common_node(b, out);
    if (r != ODD)
        return r;
    Py_ssize_t end = object_end(b->t.s, b->t.n, start);
    if (end < 0)
        return ODD;
    PyObject *raw = PyBytes_FromStringAndSize((const char *)b->t.s + start, end - start);
    if (raw == NULL)
        return FAIL;
    *out = PyObject_CallFunctionObjArgs(b->slow, raw, b->refs, b->same, NULL);
    Py_DECREF(raw);
    if (*out == NULL)
        return FAIL;
    b->t.i = end;
    return OK;
}

static int setup_kinds(Body *b, PyObject *kinds)
{
    if (!PyTuple_CheckExact(kinds) || PyTuple_GET_SIZE(kinds) > MAX_KINDS)
        return ODD;
    b->nkinds = PyTuple_GET_SIZE(kinds);
    for (Py_ssize_t k = 0; k < b->nkinds; k++) {
        PyObject *text = PyTuple_GET_ITEM(kinds, k);
        if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text))
            return ODD;
        b->kinds[k] = text;
        b->kind_text[k] = (const char *)PyUnicode_DATA(text);
        b->kind_len[k] = PyUnicode_GET_LENGTH(text);
    }
    return OK;
}

PyObject *tr_decode_body(PyObject *module, PyObject *args)
{
    Py_buffer body, head;
    PyObject *refs, *same, *type, *kinds, *slow;
    if (!PyArg_ParseTuple(args, "y*y*O!O!O!OO", &body, &head, &PyList_Type, &refs,
                          &PyDict_Type, &same, &PyType_Type, &type, &kinds, &slow))
        return NULL;
    Body b;
    memset(&b, 0, sizeof b);
    b.t.s = body.buf;
    b.t.n = body.len;
    b.refs = refs;
    b.same = same;
    b.slow = slow;
    b.type = (PyTypeObject *)type;
    PyObject *out = NULL;
    int r = ODD;
    if (head.len <= body.len && memcmp(body.buf, head.buf, (size_t)head.len) == 0 &&
        setup_kinds(&b, kinds) == OK) {
        if (tr_descriptors(b.type, b.descrs) < 0) {
            r = FAIL;
        } else {
            b.t.i = head.len;
            out = PyList_New(0);
            r = out != NULL ? list_items(&b, any_node, out) : FAIL;
            if (r == OK && !(b.t.i + 1 == b.t.n && b.t.s[b.t.i] == '}'))
                r = ODD; /* anything after the list: json.loads decides */
            for (int f = 0; f < NFIELDS; f++)
                Py_DECREF(b.descrs[f]);
        }
    }
    PyBuffer_Release(&body);
    PyBuffer_Release(&head);
    if (r == OK)
        return out;
    Py_XDECREF(out);
    if (r == FAIL)
        return NULL;
    Py_RETURN_NONE;
}
