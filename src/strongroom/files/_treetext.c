/* JSON text as the json module reads it, for _treebody.c: strings (escapes, surrogate pairs)
 * and integers of at most 19 digits, at a cursor into a tree chunk's body.  Each function
 * answers OK (the value read, the cursor past it), ODD (not the form read here: the caller
 * lets the json module decide) or FAIL (an error is set). */
#include "_treeread.h"
#include <string.h>

static int hexdigit(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* The four hex digits at ``p`` (the caller checked they are there), or -1. */
static long hex4(const unsigned char *p)
{
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int d = hexdigit(p[k]);
        if (d < 0)
            return -1;
        v = (v << 4) | d;
    }
    return v;
}

/* One escape at t->s[*i] (its backslash) into *ch, as the json module decodes it: a high
 * surrogate followed by a low one's escape is one code point. */
static int escape(const TrText *t, Py_ssize_t *i, Py_UCS4 *ch)
{
    const unsigned char *s = t->s;
    Py_ssize_t at = *i;
    if (at + 1 >= t->n)
        return ODD;
    static const char plain[] = "\"\\/bfnrt", means[] = "\"\\/\b\f\n\r\t";
    const char *hit = s[at + 1] != 'u' ? strchr(plain, s[at + 1]) : NULL;
    if (hit != NULL && *hit != '\0') {
        *ch = (Py_UCS4)means[hit - plain];
        *i = at + 2;
        return OK;
    }
    if (s[at + 1] != 'u' || at + 6 > t->n)
        return ODD;
    long c = hex4(s + at + 2);
    if (c < 0)
        return ODD;
    at += 6;
    if (c >= 0xD800 && c <= 0xDBFF && at + 6 < t->n && s[at] == '\\' && s[at + 1] == 'u') {
        long c2 = hex4(s + at + 2);
        if (c2 < 0)
            return ODD; /* the json module's "Invalid \uXXXX escape" */
        if (c2 >= 0xDC00 && c2 <= 0xDFFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (c2 - 0xDC00);
            at += 6;
        }
    }
    *ch = (Py_UCS4)c;
    *i = at;
    return OK;
}

/* The string at t->i (past its opening quote: ``start``) with escapes in it. */
static int escaped_string(TrText *t, Py_ssize_t start, PyObject **out)
{
    const unsigned char *s = t->s;
    Py_ssize_t end = start;
    while (end < t->n && s[end] != '"')
        end += s[end] == '\\' ? 2 : 1;
    if (end >= t->n)
        return ODD;
    Py_UCS4 *buf = PyMem_Malloc(sizeof(Py_UCS4) * (size_t)(end - start));
    if (buf == NULL) {
        PyErr_NoMemory();
        return FAIL;
    }
    Py_ssize_t k = 0, i = start;
    int r = OK;
    while (r == OK && i < end) {
        if (s[i] < 0x20 || s[i] >= 0x80) /* a control character (json rejects it), not ASCII */
            r = ODD;
        else if (s[i] != '\\')
            buf[k++] = s[i++];
        else
            r = escape(t, &i, &buf[k++]);
    }
    if (r == OK && i != end) /* an escape ran over the closing quote */
        r = ODD;
    if (r == OK) {
        *out = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, buf, k);
        if (*out == NULL)
            r = FAIL;
        else
            t->i = end + 1;
    }
    PyMem_Free(buf);
    return r;
}

/* The string at t->i (its opening quote) as a str, or with ``name`` as the bytes os.fsencode
 * makes of it (a new reference in *out). */
int tr_string(TrText *t, PyObject **out, int name)
{
    const unsigned char *s = t->s;
    Py_ssize_t i = t->i;
    if (i >= t->n || s[i] != '"')
        return ODD;
    Py_ssize_t start = ++i;
    while (i < t->n && s[i] != '"' && s[i] != '\\' && s[i] >= 0x20 && s[i] < 0x80)
        i++;
    if (i >= t->n)
        return ODD;
    if (s[i] != '"') {
        PyObject *text = NULL;
        int r = escaped_string(t, start, &text);
        if (r != OK || !name) {
            *out = text;
            return r;
        }
        *out = PyUnicode_EncodeFSDefault(text);
        Py_DECREF(text);
        return *out != NULL ? OK : FAIL;
    }
    /* plain ASCII: the same characters as a str, the same bytes as its file system encoding */
    if (name)
        *out = PyBytes_FromStringAndSize((const char *)s + start, i - start);
    else
        *out = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, s + start, i - start);
    if (*out == NULL)
        return FAIL;
    t->i = i + 1;
    return OK;
}

/* The JSON integer at t->i, at most 19 digits: its magnitude and sign.  ODD for anything
 * else (a fraction or an exponent: a float; a leading zero: an error). */
int tr_digits(TrText *t, unsigned long long *v, int *neg)
{
    const unsigned char *s = t->s;
    Py_ssize_t i = t->i;
    *neg = i < t->n && s[i] == '-';
    i += *neg;
    Py_ssize_t start = i;
    *v = 0;
    while (i < t->n && s[i] >= '0' && s[i] <= '9' && i - start < 20)
        *v = *v * 10 + (unsigned long long)(s[i++] - '0');
    Py_ssize_t len = i - start;
    if (len == 0 || len > 19 || (len > 1 && s[start] == '0'))
        return ODD;
    if (i < t->n && (s[i] == '.' || s[i] == 'e' || s[i] == 'E'))
        return ODD;
    t->i = i;
    return OK;
}

/* The integer at t->i as an int (a new reference in *out). */
int tr_integer(TrText *t, PyObject **out)
{
    unsigned long long v;
    int neg;
    int r = tr_digits(t, &v, &neg);
    if (r != OK)
        return r;
    if (!neg)
        *out = PyLong_FromUnsignedLongLong(v);
    else if (v <= (unsigned long long)LLONG_MAX)
        *out = PyLong_FromLongLong(-(long long)v);
    else if (v == (unsigned long long)LLONG_MAX + 1)
        *out = PyLong_FromLongLong(LLONG_MIN);
    else
        return ODD;
    return *out != NULL ? OK : FAIL;
}
