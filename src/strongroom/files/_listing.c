/* A folder's entries and their lstat results in one call (strongroom/files/longpath.py).
 *
 * Why this exists: a backup lists every folder it walks, and listing one from Python took
 * os.scandir on its descriptor (a dup, an fdopendir with its fstat and two fcntl calls, a
 * rewind at the end), a DirEntry object and a str name to encode back to bytes per entry, a
 * sort of (name, entry) pairs, and an lstat per entry through DirEntry.stat: 40-45 us a
 * folder of three entries in a backup of 12,500 such folders, a tenth of its CPU.  Here the
 * descriptor is read with getdents64 directly and each entry is stat-ed relative to it, in C.
 *
 * list_folder(fd, skip, symlinks_apart) -> [(name, st), ...] in name order (bytes order, as
 * sorted() puts bytes), "." and ".." and names starting with ``skip`` left out.  ``st`` is the
 * entry's lstat as an os.stat_result, the same fields os.lstat gives; or the errno (int) of
 * an lstat that failed (the entry went away meanwhile); or None for a symlink when
 * ``symlinks_apart`` (the caller reads its target before its lstat: the atime it records is
 * the one the read leaves).  A directory whose type getdents does not give is lstat-ed and,
 * if a symlink, returned with its lstat.  The descriptor is read from where it stands (the
 * caller opens it fresh) and stays open.  A failed read of the directory raises OSError.
 * The GIL is held throughout: the folders are small, and the walk has nothing else to run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BUF_SIZE 32768

/* os.stat_result, looked up at import; its layout on Linux is checked there */
static PyTypeObject *stat_result;

struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

typedef struct {
    const char *name; /* set once every name is stored (the store moves as it grows) */
    size_t at, len;   /* the name's place in the store, its length */
    unsigned char type;
} entry_t;

static int compare_entries(const void *a, const void *b) {
    const entry_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    if (c != 0) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* seconds, float seconds and nanoseconds of a timestamp, as posixmodule's fill_time */
static int fill_time(PyObject *v, int index, struct timespec t) {
    PyObject *s = PyLong_FromLongLong((long long)t.tv_sec);
    PyObject *f = PyFloat_FromDouble((double)t.tv_sec + (double)t.tv_nsec * 1e-9);
    PyObject *ns = NULL;
    if (t.tv_sec < LLONG_MAX / 1000000000LL - 1 && t.tv_sec > LLONG_MIN / 1000000000LL + 1) {
        ns = PyLong_FromLongLong((long long)t.tv_sec * 1000000000LL + t.tv_nsec);
    } else if (s != NULL) { /* beyond int64 nanoseconds: the interpreter's arithmetic */
        PyObject *billion = PyLong_FromLong(1000000000L), *frac = PyLong_FromLong(t.tv_nsec);
        PyObject *scaled = billion ? PyNumber_Multiply(s, billion) : NULL;
        ns = scaled && frac ? PyNumber_Add(scaled, frac) : NULL;
        Py_XDECREF(billion);
        Py_XDECREF(frac);
        Py_XDECREF(scaled);
    }
    if (s == NULL || f == NULL || ns == NULL) {
        Py_XDECREF(s);
        Py_XDECREF(f);
        Py_XDECREF(ns);
        return -1;
    }
    PyStructSequence_SET_ITEM(v, index, s);
    PyStructSequence_SET_ITEM(v, index + 3, f);
    PyStructSequence_SET_ITEM(v, index + 6, ns);
    return 0;
}

static PyObject *from_id(unsigned long v) {
    return v == (unsigned long)-1 ? PyLong_FromLong(-1) : PyLong_FromUnsignedLong(v);
}

/* an os.stat_result of st, field for field as os.lstat makes it (Linux) */
static PyObject *make_stat(const struct stat *st) {
    PyObject *v = PyStructSequence_New(stat_result);
    if (v == NULL) return NULL;
    PyObject *items[] = {
        PyLong_FromLong((long)st->st_mode),
        PyLong_FromUnsignedLongLong((unsigned long long)st->st_ino),
        PyLong_FromUnsignedLongLong((unsigned long long)st->st_dev),
        PyLong_FromLong((long)st->st_nlink),
        from_id((unsigned long)st->st_uid),
        from_id((unsigned long)st->st_gid),
        PyLong_FromLongLong((long long)st->st_size),
    };
    int failed = 0;
    for (int i = 0; i < 7; i++) {
        if (items[i] == NULL) failed = 1;
        PyStructSequence_SET_ITEM(v, i, items[i]);
    }
    if (failed || fill_time(v, 7, st->st_atim) || fill_time(v, 8, st->st_mtim) ||
        fill_time(v, 9, st->st_ctim)) {
        Py_DECREF(v);
        return NULL;
    }
    PyObject *tail[] = {
        PyLong_FromLong((long)st->st_blksize),
        PyLong_FromLong((long)st->st_blocks),
        PyLong_FromUnsignedLongLong((unsigned long long)st->st_rdev),
    };
    for (int i = 0; i < 3; i++) {
        if (tail[i] == NULL) failed = 1;
        PyStructSequence_SET_ITEM(v, 16 + i, tail[i]);
    }
    if (failed) {
        Py_DECREF(v);
        return NULL;
    }
    return v;
}

/* every entry of fd but "." and ".." and those starting with skip; -1 with errno set */
static Py_ssize_t read_entries(int fd, const char *skip, size_t skip_len, entry_t **out,
                               char **names) {
    char *buf = malloc(BUF_SIZE);
    size_t cap = 64, count = 0, used = 0, room = 4096;
    entry_t *entries = malloc(cap * sizeof(entry_t));
    char *store = malloc(room);
    if (buf == NULL || entries == NULL || store == NULL) goto nomem;
    for (;;) {
        long got = syscall(SYS_getdents64, fd, buf, BUF_SIZE);
        if (got < 0) goto fail;
        if (got == 0) break;
        for (long at = 0; at < got;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + at);
            at += d->d_reclen;
            const char *name = d->d_name;
            size_t len = strlen(name);
            if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
                continue;
            if (skip_len && len >= skip_len && memcmp(name, skip, skip_len) == 0) continue;
            if (count == cap) {
                entry_t *more = realloc(entries, 2 * cap * sizeof(entry_t));
                if (more == NULL) goto nomem;
                entries = more;
                cap *= 2;
            }
            if (used + len + 1 > room) {
                while (used + len + 1 > room) room *= 2;
                char *bigger = realloc(store, room);
                if (bigger == NULL) goto nomem;
                store = bigger;
            }
            memcpy(store + used, name, len + 1);
            entries[count].at = used;
            entries[count].len = len;
            entries[count].type = d->d_type;
            count++;
            used += len + 1;
        }
    }
    for (size_t i = 0; i < count; i++) entries[i].name = store + entries[i].at;
    free(buf);
    *out = entries;
    *names = store;
    return (Py_ssize_t)count;
nomem:
    errno = ENOMEM;
fail:;
    int saved = errno;
    free(buf);
    free(entries);
    free(store);
    errno = saved;
    return -1;
}

static PyObject *one_entry(int fd, const entry_t *e, int symlinks_apart) {
    PyObject *st;
    if (symlinks_apart && e->type == DT_LNK) {
        st = Py_NewRef(Py_None);
    } else {
        struct stat sb;
        if (fstatat(fd, e->name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
            st = PyLong_FromLong(errno);
        else
            st = make_stat(&sb);
    }
    if (st == NULL) return NULL;
    PyObject *name = PyBytes_FromStringAndSize(e->name, (Py_ssize_t)e->len);
    if (name == NULL) {
        Py_DECREF(st);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, name, st);
    Py_DECREF(name);
    Py_DECREF(st);
    return pair;
}

static PyObject *list_folder(PyObject *self, PyObject *args) {
    (void)self;
    int fd, symlinks_apart;
    const char *skip;
    Py_ssize_t skip_len;
    if (!PyArg_ParseTuple(args, "iy#p:list_folder", &fd, &skip, &skip_len, &symlinks_apart))
        return NULL;
    entry_t *entries = NULL;
    char *names = NULL;
    Py_ssize_t n = read_entries(fd, skip, (size_t)skip_len, &entries, &names);
    if (n < 0) return PyErr_SetFromErrno(PyExc_OSError);
    qsort(entries, (size_t)n, sizeof(entry_t), compare_entries);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *pair = one_entry(fd, &entries[i], symlinks_apart);
        if (pair == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, i, pair);
    }
    free(entries);
    free(names);
    return out;
}

static PyMethodDef methods[] = {
    {"list_folder", list_folder, METH_VARARGS,
     "list_folder(fd, skip, symlinks_apart) -> [(name, lstat | errno | None), ...]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "strongroom.files._listing",
    "A folder's entries and their lstat results in one call (see the source's comment).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__listing(void) {
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL) return NULL;
    PyObject *type = PyObject_GetAttrString(os, "stat_result");
    Py_DECREF(os);
    if (type == NULL) return NULL;
    /* the layout filled above: 10 visible fields, then float and ns times, blksize, blocks,
     * rdev (no st_flags, st_gen or st_birthtime on Linux); another layout: no module, and
     * longpath.py lists through os.scandir */
    PyObject *n = PyObject_GetAttrString(type, "n_fields");
    PyObject *seq = PyObject_GetAttrString(type, "n_sequence_fields");
    int ok = PyType_Check(type) && n && seq && PyLong_AsLong(n) == 19 && PyLong_AsLong(seq) == 10;
    Py_XDECREF(n);
    Py_XDECREF(seq);
    if (!ok) {
        Py_DECREF(type);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ImportError, "os.stat_result has another layout here");
        return NULL;
    }
    stat_result = (PyTypeObject *)type; /* kept for the module's life */
    return PyModule_Create(&module);
}
