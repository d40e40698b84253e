/* One small file read for a backup in one call (strongroom/files/reading.py).
 *
 * Why this exists: a tree of small files costs a backup its CPU per file, and reading one
 * took eight calls from Python (open, two fstats, preadv, listxattr, the flags ioctl, close,
 * the clock), each with its argument parsing and result objects: 9-11 us a file where the
 * system calls themselves take about 4.  Here they are made in C, without the interpreter
 * lock, and only what the backup needs comes back.
 *
 * read_small(path, buffer, size, ino, mtime_ns, ctime_ns, noatime) opens ``path`` without
 * following a symlink or blocking on a FIFO (and with O_NOATIME when ``noatime``, without
 * it where the kernel refuses: EPERM), reads it into ``buffer`` up to ``size`` bytes (the
 * walker's lstat), and fstats it.  It returns None when the file is not what the walker saw
 * (not regular, or another inode, size, mtime or ctime: changed while it was read) or filled
 * the whole buffer (it grew past the small size): the caller then reads it the general way.
 * Otherwise (filled, flags, flags_errno, xattrs, xattrs_errno): the bytes read, the inode
 * flags (FS_IOC_GETFLAGS) or the errno that refused them, and the list of (name, value)
 * xattrs in the order the file system lists them or the errno that failed them.  An error
 * opening, reading or stat-ing the file raises OSError (the caller reads it the general way,
 * which reports it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define OPEN_FLAGS (O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)

typedef struct {
    const char *path;
    unsigned char *buf;
    Py_ssize_t cap, size;
    unsigned long long ino;
    long long mtime_ns, ctime_ns;
    int noatime;
    /* results */
    int fd, err;
    Py_ssize_t filled;
    int same;
    int flags, flags_err;
    ssize_t names_len;
    int names_err;
} job_t;

static long long ns(struct timespec t) { return (long long)t.tv_sec * 1000000000LL + t.tv_nsec; }

static int open_file(job_t *j)
{
    int fd = -1;
#ifdef O_NOATIME
    if (j->noatime) {
        fd = open(j->path, OPEN_FLAGS | O_NOATIME);
        if (fd >= 0 || errno != EPERM) /* EPERM: not the owner, so no O_NOATIME */
            return fd;
    }
#endif
    fd = open(j->path, OPEN_FLAGS);
    return fd;
}

/* The part without the interpreter lock: every system call but the xattrs' values. */
static void run(job_t *j)
{
    struct stat st;
    j->fd = open_file(j);
    if (j->fd < 0) {
        j->err = errno;
        return;
    }
    while (j->filled < j->cap) {
        ssize_t n = pread(j->fd, j->buf + j->filled, (size_t)(j->cap - j->filled), j->filled);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            j->err = errno;
            return;
        }
        if (n == 0)
            break;
        j->filled += n;
        if (j->filled == j->size)
            break; /* all that lstat promised; a file growing now fails the fstat below */
    }
    if (fstat(j->fd, &st) < 0) {
        j->err = errno;
        return;
    }
    j->same = S_ISREG(st.st_mode) && (unsigned long long)st.st_ino == j->ino &&
              st.st_size == j->size && ns(st.st_mtim) == j->mtime_ns &&
              ns(st.st_ctim) == j->ctime_ns && j->filled < j->cap;
    if (!j->same)
        return;
    int raw = 0;
    if (ioctl(j->fd, FS_IOC_GETFLAGS, &raw) < 0)
        j->flags_err = errno;
    j->flags = raw;
    j->names_len = flistxattr(j->fd, NULL, 0);
    if (j->names_len < 0)
        j->names_err = errno;
}

/* One value; 0, or the errno (ENODATA: removed since it was listed). */
static int xattr_value(int fd, const char *name, PyObject **out)
{
    for (;;) {
        ssize_t n = fgetxattr(fd, name, NULL, 0);
        if (n < 0)
            return errno;
        PyObject *value = PyBytes_FromStringAndSize(NULL, n);
        if (value == NULL)
            return -1;
        ssize_t got = n ? fgetxattr(fd, name, PyBytes_AS_STRING(value), (size_t)n) : 0;
        if (got >= 0 && got <= n) {
            if (got < n && _PyBytes_Resize(&value, got) < 0)
                return -1;
            *out = value;
            return 0;
        }
        Py_DECREF(value);
        if (errno != ERANGE) /* ERANGE: it grew between the calls, ask again */
            return errno;
    }
}

/* Every xattr of the open file as a list of (name, value); NULL with *err set to the errno
 * that failed them (or an exception set, *err -1). */
static PyObject *xattrs_of(int fd, ssize_t hint, int *err)
{
    char *names = NULL;
    ssize_t len = hint;
    for (;;) {
        char *grown = realloc(names, (size_t)len + 1);
        if (grown == NULL) {
            free(names);
            PyErr_NoMemory();
            *err = -1;
            return NULL;
        }
        names = grown;
        len = flistxattr(fd, names, (size_t)len + 1);
        if (len >= 0)
            break;
        if (errno != ERANGE || (len = flistxattr(fd, NULL, 0)) < 0) {
            *err = errno;
            free(names);
            return NULL;
        }
    }
    PyObject *found = PyList_New(0);
    for (ssize_t at = 0; found != NULL && at < len;) {
        const char *name = names + at;
        size_t nlen = strnlen(name, (size_t)(len - at));
        at += (ssize_t)nlen + 1;
        if (nlen == 0)
            continue;
        PyObject *value = NULL;
        int e = xattr_value(fd, name, &value);
        if (e == ENODATA)
            continue;
        PyObject *pair = e == 0 ? Py_BuildValue("(y#N)", name, (Py_ssize_t)nlen, value) : NULL;
        if (pair == NULL || PyList_Append(found, pair) < 0) {
            *err = pair == NULL && e > 0 ? e : -1;
            Py_XDECREF(pair);
            Py_CLEAR(found);
            break;
        }
        Py_DECREF(pair);
    }
    free(names);
    return found;
}

static PyObject *read_small(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer path, buffer;
    job_t j;
    memset(&j, 0, sizeof j);
    j.fd = -1;
    if (!PyArg_ParseTuple(args, "y*w*nKLLp:read_small", &path, &buffer, &j.size, &j.ino,
                          &j.mtime_ns, &j.ctime_ns, &j.noatime))
        return NULL;
    PyObject *result = NULL;
    char *cpath = NULL;
    if (memchr(path.buf, 0, (size_t)path.len) != NULL || j.size < 0) {
        PyErr_SetString(PyExc_ValueError, "read_small: bad path or size");
        goto out;
    }
    /* y* gives no terminating NUL: copy the path */
    cpath = PyMem_Malloc((size_t)path.len + 1);
    if (cpath == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    memcpy(cpath, path.buf, (size_t)path.len);
    cpath[path.len] = 0;
    j.path = cpath;
    j.buf = buffer.buf;
    j.cap = buffer.len;
    Py_BEGIN_ALLOW_THREADS
    run(&j);
    Py_END_ALLOW_THREADS
    PyMem_Free(cpath);
    if (j.err) {
        errno = j.err;
        PyErr_SetFromErrno(PyExc_OSError);
    } else if (!j.same) {
        result = Py_NewRef(Py_None);
    } else {
        PyObject *xattrs;
        int xerr = j.names_err;
        if (xerr || j.names_len == 0) {
            xattrs = PyList_New(0);
        } else {
            xattrs = xattrs_of(j.fd, j.names_len, &xerr);
            if (xattrs == NULL && xerr > 0)
                xattrs = PyList_New(0);
        }
        if (xattrs != NULL)
            result = Py_BuildValue("(niiNi)", j.filled, j.flags, j.flags_err, xattrs, xerr);
    }
    if (j.fd >= 0)
        close(j.fd);
out:
    PyBuffer_Release(&buffer);
    PyBuffer_Release(&path);
    return result;
}

static PyMethodDef methods[] = {
    {"read_small", read_small, METH_VARARGS,
     "read_small(path, buffer, size, ino, mtime_ns, ctime_ns, noatime) -> None or "
     "(filled, flags, flags_errno, xattrs, xattrs_errno)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_smallread", "A small file read for a backup in one call.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__smallread(void) { return PyModule_Create(&module_def); }
