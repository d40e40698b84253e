/* AES-256-GCM: with the CPU's AES-NI and PCLMULQDQ (_gcm_ni.c) where it has them, else through
 * the system's OpenSSL (libcrypto.so.3), found at import with dlopen.
 *
 * Why this exists: the vault's only use of the `cryptography` package was AES-256-GCM, and
 * importing it costs each process 8.5 MiB of memory (its 14 MiB Rust extension, with OpenSSL
 * linked in statically, and its Python modules) and 15 ms of CPU.  A files backup or restore
 * of a big tree is two processes, so a third of the memory it needed beyond restic's was that
 * import.  libcrypto itself still cost 5.5 MiB a process (its pages and the providers it
 * sets up when the first cipher is fetched), which _gcm_ni.c saves where the CPU allows:
 * the same bytes at 4.0 GB/s against OpenSSL's 4.5 for 1 MiB, faster than it below 16 KiB
 * (no context to set up).  STRONGROOM_GCM=libcrypto in the environment picks libcrypto
 * anyway (the tests compare the two).  No OpenSSL headers are needed to build this: the few
 * EVP functions are declared below and resolved at import; where neither engine can be had
 * the import fails and strongroom.vault.aead falls back to `cryptography` (the same bytes,
 * tests/vault/test_aead.py).
 *
 * The cipher is looked up once (EVP_CIPHER_fetch; OpenSSL 3 otherwise fetches it again on
 * every init).  Each call gets its own context, so one key object may be used by many threads,
 * and the GIL is released while the cipher runs.  GCM's standard 12-byte nonce and 16-byte
 * tag.  EVP takes lengths as int, so data goes through in steps: any size under 2 GiB would
 * do; 16 MiB (more than any chunk) lets a test cross a step cheaply.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "_gcm_ni.h"

#define KEY_SIZE 32
#define NONCE_SIZE 12
#define TAG_SIZE 16
#define STEP (16 << 20)
#define CTRL_GCM_GET_TAG 0x10
#define CTRL_GCM_SET_TAG 0x11

typedef struct ctx_st CTX;
typedef struct cipher_st CIPHER;
typedef CTX *(*ctx_new_fn)(void);
typedef void (*ctx_free_fn)(CTX *);
typedef const CIPHER *(*cipher_fn)(void);
typedef CIPHER *(*fetch_fn)(void *, const char *, const char *);
typedef int (*init_fn)(CTX *, const CIPHER *, void *, const unsigned char *, const unsigned char *);
typedef int (*update_fn)(CTX *, unsigned char *, int *, const unsigned char *, int);
typedef int (*final_fn)(CTX *, unsigned char *, int *);
typedef int (*ctrl_fn)(CTX *, int, int, void *);

static struct {
    ctx_new_fn ctx_new;
    ctx_free_fn ctx_free;
    init_fn enc_init, dec_init;
    update_fn enc_update, dec_update;
    final_fn enc_final, dec_final;
    ctrl_fn ctrl;
    const CIPHER *cipher;
} ssl;

static int use_ni; /* the engine: _gcm_ni.c, else libcrypto */

static const char *const LIBS[] = {"libcrypto.so.3", "libcrypto.so.1.1", NULL};

/* Resolve the functions; 0 on success, else -1 with an ImportError set. */
static int load(void) {
    void *lib = NULL;
    for (const char *const *name = LIBS; *name != NULL && lib == NULL; name++)
        lib = dlopen(*name, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        PyErr_SetString(PyExc_ImportError, "libcrypto (OpenSSL) was not found");
        return -1;
    }
#define SYM(field, type, name)                                                       \
    if ((ssl.field = (type)dlsym(lib, name)) == NULL) {                              \
        PyErr_SetString(PyExc_ImportError, "libcrypto lacks " name);                  \
        return -1;                                                                   \
    }
    SYM(ctx_new, ctx_new_fn, "EVP_CIPHER_CTX_new")
    SYM(ctx_free, ctx_free_fn, "EVP_CIPHER_CTX_free")
    SYM(enc_init, init_fn, "EVP_EncryptInit_ex")
    SYM(dec_init, init_fn, "EVP_DecryptInit_ex")
    SYM(enc_update, update_fn, "EVP_EncryptUpdate")
    SYM(dec_update, update_fn, "EVP_DecryptUpdate")
    SYM(enc_final, final_fn, "EVP_EncryptFinal_ex")
    SYM(dec_final, final_fn, "EVP_DecryptFinal_ex")
    SYM(ctrl, ctrl_fn, "EVP_CIPHER_CTX_ctrl")
#undef SYM
    fetch_fn fetch = (fetch_fn)dlsym(lib, "EVP_CIPHER_fetch");
    if (fetch != NULL) {
        ssl.cipher = fetch(NULL, "AES-256-GCM", NULL);
    } else {
        cipher_fn legacy = (cipher_fn)dlsym(lib, "EVP_aes_256_gcm");
        ssl.cipher = legacy != NULL ? legacy() : NULL;
    }
    if (ssl.cipher == NULL) {
        PyErr_SetString(PyExc_ImportError, "libcrypto offers no AES-256-GCM");
        return -1;
    }
    return 0;
}

/* Feed len bytes through update in int-sized steps; out may be NULL (additional data). */
static int feed(update_fn update, CTX *ctx, unsigned char *out, const unsigned char *in,
                Py_ssize_t len) {
    while (len > 0) {
        int n = len > STEP ? STEP : (int)len, got = 0;
        if (update(ctx, out, &got, in, n) != 1 || (out != NULL && got != n)) return -1;
        in += n;
        len -= n;
        if (out != NULL) out += n;
    }
    return 0;
}

/* ciphertext || tag of data into out (len(data) + 16 bytes); 0, or -1 if OpenSSL failed. */
static int seal(const unsigned char *key, const unsigned char *nonce, const Py_buffer *data,
                const Py_buffer *aad, unsigned char *out) {
    if (use_ni) {
        gcm_ni_seal(key, nonce, data->buf, (size_t)data->len, aad->buf, (size_t)aad->len, out);
        return 0;
    }
    CTX *ctx = ssl.ctx_new();
    if (ctx == NULL) return -1;
    int fin = 0;
    int ok = ssl.enc_init(ctx, ssl.cipher, NULL, key, nonce) == 1 &&
             feed(ssl.enc_update, ctx, NULL, aad->buf, aad->len) == 0 &&
             feed(ssl.enc_update, ctx, out, data->buf, data->len) == 0 &&
             ssl.enc_final(ctx, out + data->len, &fin) == 1 && fin == 0 &&
             ssl.ctrl(ctx, CTRL_GCM_GET_TAG, TAG_SIZE, out + data->len) == 1;
    ssl.ctx_free(ctx);
    return ok ? 0 : -1;
}

/* Plaintext of sealed (ciphertext || tag) into out; 1 authentic, 0 not, -1 OpenSSL failed. */
static int open_sealed(const unsigned char *key, const unsigned char *nonce,
                       const Py_buffer *sealed, const Py_buffer *aad, unsigned char *out) {
    Py_ssize_t n = sealed->len - TAG_SIZE;
    const unsigned char *in = sealed->buf;
    if (use_ni)
        return gcm_ni_open(key, nonce, in, (size_t)n, aad->buf, (size_t)aad->len, out);
    unsigned char tag[TAG_SIZE];
    memcpy(tag, in + n, TAG_SIZE);
    CTX *ctx = ssl.ctx_new();
    if (ctx == NULL) return -1;
    int fin = 0, result = -1;
    if (ssl.dec_init(ctx, ssl.cipher, NULL, key, nonce) == 1 &&
        feed(ssl.dec_update, ctx, NULL, aad->buf, aad->len) == 0 &&
        feed(ssl.dec_update, ctx, out, in, n) == 0 &&
        ssl.ctrl(ctx, CTRL_GCM_SET_TAG, TAG_SIZE, tag) == 1)
        result = ssl.dec_final(ctx, out + n, &fin) > 0 && fin == 0 ? 1 : 0;
    ssl.ctx_free(ctx);
    return result;
}

static int check_sizes(const Py_buffer *key, const Py_buffer *nonce) {
    if (key->len != KEY_SIZE) {
        PyErr_SetString(PyExc_ValueError, "an AES-256-GCM key is 32 bytes");
        return -1;
    }
    if (nonce->len != NONCE_SIZE) {
        PyErr_SetString(PyExc_ValueError, "the nonce is 12 bytes");
        return -1;
    }
    return 0;
}

static void release(Py_buffer *views, int count) {
    for (int i = 0; i < count; i++) PyBuffer_Release(&views[i]);
}

/* encrypt_into(key, nonce, data, aad, out[, offset]): out (writable, exactly len(data) + 16
 * bytes) gets ciphertext || tag; with an offset, out[offset:offset + len(data) + 16] (a pack
 * builder's buffer: no view to make per blob). */
static PyObject *encrypt_into(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer v[5]; /* key, nonce, data, aad, out */
    Py_ssize_t offset = -1;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*|n", &v[0], &v[1], &v[2], &v[3], &v[4], &offset))
        return NULL;
    int rc = check_sizes(&v[0], &v[1]);
    if (rc == 0 && offset < 0 && PyTuple_GET_SIZE(args) == 5 && v[4].len != v[2].len + TAG_SIZE) {
        PyErr_SetString(PyExc_ValueError, "the output buffer must be len(data) + 16 bytes");
        rc = -1;
    }
    if (rc == 0 && PyTuple_GET_SIZE(args) == 6 &&
        (offset < 0 || offset > v[4].len || v[4].len - offset < v[2].len + TAG_SIZE)) {
        PyErr_SetString(PyExc_ValueError, "the output buffer has no room at that offset");
        rc = -1;
    }
    if (rc == 0) {
        unsigned char *out = (unsigned char *)v[4].buf + (offset < 0 ? 0 : offset);
        Py_BEGIN_ALLOW_THREADS
        rc = seal(v[0].buf, v[1].buf, &v[2], &v[3], out);
        Py_END_ALLOW_THREADS
        if (rc != 0) PyErr_SetString(PyExc_RuntimeError, "OpenSSL failed to encrypt");
    }
    release(v, 5);
    if (rc != 0) return NULL;
    Py_RETURN_NONE;
}

/* encrypt(key, nonce, data, aad) -> ciphertext || tag */
static PyObject *encrypt(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer v[4];
    if (!PyArg_ParseTuple(args, "y*y*y*y*", &v[0], &v[1], &v[2], &v[3])) return NULL;
    PyObject *out = NULL;
    if (check_sizes(&v[0], &v[1]) == 0) {
        if (v[2].len > PY_SSIZE_T_MAX - TAG_SIZE)
            PyErr_SetString(PyExc_OverflowError, "too much data");
        else
            out = PyBytes_FromStringAndSize(NULL, v[2].len + TAG_SIZE);
    }
    if (out != NULL) {
        int rc;
        unsigned char *buf = (unsigned char *)PyBytes_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        rc = seal(v[0].buf, v[1].buf, &v[2], &v[3], buf);
        Py_END_ALLOW_THREADS
        if (rc != 0) {
            Py_CLEAR(out);
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL failed to encrypt");
        }
    }
    release(v, 4);
    return out;
}

/* decrypt(key, nonce, sealed, aad) -> plaintext, or None when it is not authentic */
static PyObject *decrypt(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer v[4];
    if (!PyArg_ParseTuple(args, "y*y*y*y*", &v[0], &v[1], &v[2], &v[3])) return NULL;
    PyObject *out = NULL;
    int rc = -1;
    if (check_sizes(&v[0], &v[1]) == 0) {
        if (v[2].len < TAG_SIZE) {
            rc = 0; /* too short to hold a tag: not authentic */
        } else {
            out = PyBytes_FromStringAndSize(NULL, v[2].len - TAG_SIZE);
            if (out != NULL) {
                unsigned char *buf = (unsigned char *)PyBytes_AS_STRING(out);
                Py_BEGIN_ALLOW_THREADS
                rc = open_sealed(v[0].buf, v[1].buf, &v[2], &v[3], buf);
                Py_END_ALLOW_THREADS
                if (rc < 0) PyErr_SetString(PyExc_RuntimeError, "OpenSSL failed to decrypt");
            }
        }
    }
    release(v, 4);
    if (rc == 1) return out;
    Py_XDECREF(out);
    if (rc == 0) Py_RETURN_NONE;
    return NULL;
}

/* A pack blob (pack.py, docs/format.md): its number, AAD and entry layouts. */
#define BLOB_AAD_SIZE 42   /* "SRB1" | id (32) | type u8 | flags u8 | raw u32 */
#define ENTRY_SIZE 48      /* id (32) | type u8 | flags u8 | 0 u16 | offset u32 | length u32 | raw u32 */
#define ID_SIZE 32
#define SEAL_UNLOCKED (64 << 10) /* a bigger payload is sealed with the GIL released */

static void put_u32(unsigned char *p, unsigned long v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static int arg_u32(PyObject *o, unsigned long most, const char *what, unsigned long *out) {
    unsigned long v = PyLong_AsUnsignedLong(o);
    if (v == (unsigned long)-1 && PyErr_Occurred()) return -1;
    if (v > most) {
        PyErr_Format(PyExc_OverflowError, "%s out of range", what);
        return -1;
    }
    *out = v;
    return 0;
}

/* seal_blob(key, number, chunk_id, ctype, flags, raw, payload, out, offset, entries, base)
 * -> the offset after the blob.  What PackBuilder.add did in Python, in one call: the blob
 * (nonce = its number as 12 bytes little-endian, then ciphertext || tag of payload under
 * the blob's additional data) into out[offset:], and its entry (offset: base + offset)
 * appended to the bytearray entries.  Once per small file, so the steps' interpreter
 * overhead (nonce, AAD, entry packing, the cipher's wrapper) had been half of add's cost. */
static PyObject *seal_blob(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "seal_blob takes 11 arguments");
        return NULL;
    }
    PyObject *key = args[0], *cid = args[2], *entries = args[9];
    if (!PyBytes_Check(key) || PyBytes_GET_SIZE(key) != KEY_SIZE) {
        PyErr_SetString(PyExc_ValueError, "an AES-256-GCM key is 32 bytes");
        return NULL;
    }
    if (!PyBytes_Check(cid) || PyBytes_GET_SIZE(cid) != ID_SIZE) {
        PyErr_SetString(PyExc_ValueError, "a chunk id is 32 bytes");
        return NULL;
    }
    if (!PyByteArray_Check(entries)) {
        PyErr_SetString(PyExc_TypeError, "entries must be a bytearray");
        return NULL;
    }
    unsigned long long number = PyLong_AsUnsignedLongLong(args[1]);
    if (number == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    unsigned long ctype, flags, raw, base;
    if (arg_u32(args[3], 0xff, "type", &ctype) || arg_u32(args[4], 0xff, "flags", &flags) ||
        arg_u32(args[5], 0xffffffffUL, "raw length", &raw) ||
        arg_u32(args[10], 0xffffffffUL, "base", &base))
        return NULL;
    Py_ssize_t offset = PyLong_AsSsize_t(args[8]);
    if (offset == -1 && PyErr_Occurred()) return NULL;
    Py_buffer payload, out;
    if (PyObject_GetBuffer(args[6], &payload, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[7], &out, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&payload);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t n = payload.len + NONCE_SIZE + TAG_SIZE;
    if (offset < 0 || offset > out.len || out.len - offset < n) {
        PyErr_SetString(PyExc_ValueError, "the output buffer has no room at that offset");
    } else if ((unsigned long long)n > 0xffffffffULL ||
               (unsigned long long)base + (unsigned long long)offset > 0xffffffffULL) {
        PyErr_SetString(PyExc_OverflowError, "a blob's offset and length are 32-bit");
    } else {
        unsigned char *at = (unsigned char *)out.buf + offset, aad[BLOB_AAD_SIZE];
        const unsigned char *id = (const unsigned char *)PyBytes_AS_STRING(cid);
        memset(at, 0, NONCE_SIZE);
        for (int i = 0; i < 8; i++) at[i] = (unsigned char)(number >> (8 * i));
        memcpy(aad, "SRB1", 4);
        memcpy(aad + 4, id, ID_SIZE);
        aad[36] = (unsigned char)ctype;
        aad[37] = (unsigned char)flags;
        put_u32(aad + 38, raw);
        Py_buffer aad_view = {.buf = aad, .len = BLOB_AAD_SIZE};
        const unsigned char *k = (const unsigned char *)PyBytes_AS_STRING(key);
        int rc;
        if (payload.len >= SEAL_UNLOCKED) {
            Py_BEGIN_ALLOW_THREADS
            rc = seal(k, at, &payload, &aad_view, at + NONCE_SIZE);
            Py_END_ALLOW_THREADS
        } else {
            rc = seal(k, at, &payload, &aad_view, at + NONCE_SIZE);
        }
        Py_ssize_t had = PyByteArray_GET_SIZE(entries);
        if (rc != 0) {
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL failed to encrypt");
        } else if (PyByteArray_Resize(entries, had + ENTRY_SIZE) == 0) {
            unsigned char *e = (unsigned char *)PyByteArray_AS_STRING(entries) + had;
            memcpy(e, id, ID_SIZE);
            e[32] = (unsigned char)ctype;
            e[33] = (unsigned char)flags;
            e[34] = e[35] = 0;
            put_u32(e + 36, base + (unsigned long)offset);
            put_u32(e + 40, (unsigned long)n);
            put_u32(e + 44, raw);
            result = PyLong_FromSsize_t(offset + n);
        }
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&payload);
    return result;
}

static PyMethodDef methods[] = {
    {"encrypt", encrypt, METH_VARARGS, "encrypt(key, nonce, data, aad) -> ciphertext || tag"},
    {"encrypt_into", encrypt_into, METH_VARARGS,
     "encrypt_into(key, nonce, data, aad, out[, offset]): ciphertext || tag into out"},
    {"decrypt", decrypt, METH_VARARGS,
     "decrypt(key, nonce, sealed, aad) -> plaintext, or None when not authentic"},
    {"seal_blob", (PyCFunction)(void (*)(void))seal_blob, METH_FASTCALL,
     "seal_blob(key, number, chunk_id, ctype, flags, raw, payload, out, offset, entries, base)"
     " -> end: a pack blob and its entry"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "strongroom.vault._gcm",
    "AES-256-GCM: AES-NI, else the system's libcrypto (see the source's comment).", -1, methods,
};

PyMODINIT_FUNC PyInit__gcm(void) {
    const char *wanted = getenv("STRONGROOM_GCM");
    use_ni = gcm_ni_usable() && (wanted == NULL || strcmp(wanted, "libcrypto") != 0);
    if (!use_ni && load() != 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddStringConstant(m, "ENGINE", use_ni ? "aes-ni" : "libcrypto") < 0)
        Py_CLEAR(m);
    return m;
}
