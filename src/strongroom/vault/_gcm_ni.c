/* AES-256-GCM with the CPU's AES and carry-less multiply instructions (_gcm.c uses it when the
 * CPU has them, else the system's libcrypto).
 *
 * Why this exists: libcrypto cost every process 5.5 MiB of memory (3.3 MiB of its pages mapped
 * and 2.2 MiB its providers allocate when the first cipher is fetched) for one cipher, and a
 * files backup of a big tree is two processes (docs/benchmarks.md, "Session 25").  This is
 * a few kilobytes of code and allocates nothing.
 *
 * The standard construction (NIST SP 800-38D) with a 12-byte nonce and a 16-byte tag:
 * counter blocks nonce || BE32(i) with i = 1 for the tag's mask and 2, 3, ... for the data;
 * GHASH over the additional data and the ciphertext, each zero-padded to 16 bytes, then
 * their lengths in bits (two BE64).  GHASH works on byte-reversed blocks, in which a block
 * of GF(2^128) is an integer with the coefficient of x^k at bit 127 - k.  The carry-less
 * product of two such integers is the product's polynomial bit-reversed over 255 bits, so it
 * is shifted left by one bit; its high half is then the product's low 128 coefficients and
 * its low half the high ones, which are folded in by x^128 = x^7 + x^2 + x + 1 (right
 * shifts in this order), twice, since the first fold overflows by at most 7 coefficients.
 * Eight blocks are multiplied by H^8 ... H and summed before one reduction; eight counter
 * blocks go through the AES rounds together.  Every step takes the same time whatever the
 * data and the key (no tables, no branches on secrets); the tag is compared in constant time
 * and a plaintext that fails it is wiped.
 *
 * Checked against the `cryptography` package (OpenSSL) on random keys, nonces, data and
 * additional data of every length up to a few blocks past 128 bytes and on large ones
 * (tests/vault/test_aead.py), and against libcrypto through this module's other engine.
 */
#define _DEFAULT_SOURCE /* explicit_bzero */
#include "_gcm_ni.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define NI __attribute__((target("aes,pclmul,ssse3,sse4.1")))
#define WIDE 8 /* blocks at once */

typedef struct {
    __m128i rk[15];    /* round keys */
    __m128i h[WIDE];   /* H, H^2, ... H^8, byte-reversed */
    __m128i hk[WIDE];  /* each power's two halves XORed (Karatsuba's middle product) */
    __m128i swap;      /* the byte-reversal shuffle */
    __m128i base;      /* nonce || 0 */
} Key;

int gcm_ni_usable(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") &&
           __builtin_cpu_supports("ssse3") && __builtin_cpu_supports("sse4.1");
}

/* a ^ a<<32 ^ a<<64 ^ a<<96 ^ b: one half of the AES-256 key schedule's step */
static NI __m128i schedule(__m128i a, __m128i b)
{
    a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
    a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
    a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
    return _mm_xor_si128(a, b);
}

#define EXPAND(i, rcon)                                                                    \
    rk[2 * (i)] = schedule(rk[2 * (i) - 2],                                                \
                           _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[2 * (i) - 1], rcon), \
                                             0xff));                                       \
    if ((i) < 7)                                                                           \
        rk[2 * (i) + 1] = schedule(                                                        \
            rk[2 * (i) - 1],                                                               \
            _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[2 * (i)], 0), 0xaa));

static NI void expand_key(const unsigned char *key, __m128i *rk)
{
    rk[0] = _mm_loadu_si128((const __m128i *)key);
    rk[1] = _mm_loadu_si128((const __m128i *)(key + 16));
    EXPAND(1, 0x01) EXPAND(2, 0x02) EXPAND(3, 0x04) EXPAND(4, 0x08) EXPAND(5, 0x10)
    EXPAND(6, 0x20) EXPAND(7, 0x40)
}

static NI __m128i aes(const Key *k, __m128i x)
{
    x = _mm_xor_si128(x, k->rk[0]);
    for (int r = 1; r < 14; r++)
        x = _mm_aesenc_si128(x, k->rk[r]);
    return _mm_aesenclast_si128(x, k->rk[14]);
}

/* 128-bit shifts of a byte-reversed block (by 1..63 bits) */
static NI __m128i shr(__m128i x, int s)
{
    return _mm_or_si128(_mm_srli_epi64(x, s), _mm_srli_si128(_mm_slli_epi64(x, 64 - s), 8));
}

static NI __m128i fold(__m128i u)
{
    return _mm_xor_si128(_mm_xor_si128(u, shr(u, 1)), _mm_xor_si128(shr(u, 2), shr(u, 7)));
}

/* The product whose unreduced halves (the carry-less product, not yet shifted) are hi:lo. */
static NI __m128i reduce(__m128i lo, __m128i hi)
{
    __m128i carry_lo = _mm_srli_epi64(lo, 63), carry_hi = _mm_srli_epi64(hi, 63);
    lo = _mm_or_si128(_mm_slli_epi64(lo, 1), _mm_slli_si128(carry_lo, 8));
    hi = _mm_or_si128(_mm_or_si128(_mm_slli_epi64(hi, 1), _mm_slli_si128(carry_hi, 8)),
                      _mm_srli_si128(carry_lo, 8));
    /* the coefficients from x^128 up (lo), folded; those the fold pushed past x^127 again */
    __m128i over = _mm_xor_si128(_mm_slli_si128(_mm_slli_epi64(lo, 63), 8),
                                 _mm_slli_si128(_mm_slli_epi64(lo, 62), 8));
    over = _mm_xor_si128(over, _mm_slli_si128(_mm_slli_epi64(lo, 57), 8));
    return _mm_xor_si128(hi, _mm_xor_si128(fold(lo), fold(over)));
}

static NI __m128i halves(__m128i x)
{
    return _mm_xor_si128(x, _mm_shuffle_epi32(x, 0x4e));
}

/* Adds a * b to the unreduced sum lo, mid, hi (Karatsuba: bk is halves(b); mid collects
 * (a0 + a1)(b0 + b1), from which settle takes lo and hi). */
static NI void mul_add(__m128i a, __m128i b, __m128i bk, __m128i *lo, __m128i *mid, __m128i *hi)
{
    *lo = _mm_xor_si128(*lo, _mm_clmulepi64_si128(a, b, 0x00));
    *hi = _mm_xor_si128(*hi, _mm_clmulepi64_si128(a, b, 0x11));
    *mid = _mm_xor_si128(*mid, _mm_clmulepi64_si128(halves(a), bk, 0x00));
}

static NI __m128i settle(__m128i lo, __m128i mid, __m128i hi)
{
    mid = _mm_xor_si128(mid, _mm_xor_si128(lo, hi));
    return reduce(_mm_xor_si128(lo, _mm_slli_si128(mid, 8)),
                  _mm_xor_si128(hi, _mm_srli_si128(mid, 8)));
}

static NI __m128i mul(__m128i a, __m128i b)
{
    __m128i lo = _mm_setzero_si128(), mid = lo, hi = lo;
    mul_add(a, b, halves(b), &lo, &mid, &hi);
    return settle(lo, mid, hi);
}

static NI void setup(Key *k, const unsigned char *key, const unsigned char *nonce)
{
    unsigned char block[16] = {0};
    k->swap = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    expand_key(key, k->rk);
    k->h[0] = _mm_shuffle_epi8(aes(k, _mm_setzero_si128()), k->swap);
    for (int i = 1; i < WIDE; i++)
        k->h[i] = mul(k->h[i - 1], k->h[0]);
    for (int i = 0; i < WIDE; i++)
        k->hk[i] = halves(k->h[i]);
    memcpy(block, nonce, 12);
    k->base = _mm_loadu_si128((const __m128i *)block);
}

static NI __m128i counter(const Key *k, uint32_t i)
{
    return _mm_insert_epi32(k->base, (int)__builtin_bswap32(i), 3);
}

/* GHASH of a whole number of blocks (n a multiple of 16) into y. */
static NI __m128i hash_blocks(const Key *k, __m128i y, const unsigned char *p, size_t n)
{
    for (; n >= 16 * WIDE; n -= 16 * WIDE, p += 16 * WIDE) {
        __m128i lo = _mm_setzero_si128(), mid = lo, hi = lo;
        for (int j = 0; j < WIDE; j++) {
            __m128i x = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * j)), k->swap);
            if (j == 0)
                x = _mm_xor_si128(x, y);
            mul_add(x, k->h[WIDE - 1 - j], k->hk[WIDE - 1 - j], &lo, &mid, &hi);
        }
        y = settle(lo, mid, hi);
    }
    for (; n >= 16; n -= 16, p += 16)
    {
        __m128i lo = _mm_setzero_si128(), mid = lo, hi = lo;
        __m128i x = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p), k->swap);
        mul_add(_mm_xor_si128(y, x), k->h[0], k->hk[0], &lo, &mid, &hi);
        y = settle(lo, mid, hi);
    }
    return y;
}

/* GHASH of n bytes, the last block zero-padded. */
static NI __m128i hash_bytes(const Key *k, __m128i y, const unsigned char *p, size_t n)
{
    size_t whole = n & ~(size_t)15;
    y = hash_blocks(k, y, p, whole);
    if (n > whole) {
        unsigned char block[16] = {0};
        memcpy(block, p + whole, n - whole);
        y = hash_blocks(k, y, block, 16);
    }
    return y;
}

/* CTR over n bytes from counter 2.  Whole groups of 8 blocks are hashed as they go (the
 * ciphertext: ``out`` when sealing, ``in`` when opening), each group's GHASH between the
 * AES rounds of the next, so that both run at once; returns how many bytes were hashed. */
static NI size_t ctr_wide(const Key *k, __m128i *y, const unsigned char *in, unsigned char *out,
                          size_t n, int sealing)
{
    size_t done = 0;
    uint32_t i = 2;
    const unsigned char *pending = NULL; /* the group before, still to hash */
    for (; n - done >= 16 * WIDE; done += 16 * WIDE, i += WIDE) {
        __m128i c[WIDE], lo = _mm_setzero_si128(), mid = lo, hi = lo;
        for (int j = 0; j < WIDE; j++)
            c[j] = _mm_xor_si128(counter(k, i + (uint32_t)j), k->rk[0]);
        for (int r = 1; r < 14; r++) {
            for (int j = 0; j < WIDE; j++)
                c[j] = _mm_aesenc_si128(c[j], k->rk[r]);
            if (pending != NULL && r <= WIDE) {
                int j = r - 1;
                __m128i x = _mm_loadu_si128((const __m128i *)(pending + 16 * j));
                x = _mm_shuffle_epi8(x, k->swap);
                if (j == 0)
                    x = _mm_xor_si128(x, *y);
                mul_add(x, k->h[WIDE - 1 - j], k->hk[WIDE - 1 - j], &lo, &mid, &hi);
            }
        }
        if (pending != NULL)
            *y = settle(lo, mid, hi);
        for (int j = 0; j < WIDE; j++) {
            __m128i x = _mm_loadu_si128((const __m128i *)(in + done + 16 * j));
            _mm_storeu_si128((__m128i *)(out + done + 16 * j),
                             _mm_xor_si128(x, _mm_aesenclast_si128(c[j], k->rk[14])));
        }
        pending = (sealing ? out : in) + done;
    }
    if (pending != NULL)
        *y = hash_blocks(k, *y, pending, 16 * WIDE);
    for (; done < n; done += 16, i++) {
        unsigned char pad[16];
        size_t m = n - done < 16 ? n - done : 16;
        _mm_storeu_si128((__m128i *)pad, aes(k, counter(k, i)));
        for (size_t b = 0; b < m; b++)
            out[done + b] = in[done + b] ^ pad[b];
        explicit_bzero(pad, sizeof pad);
    }
    return n - (n % (16 * WIDE));
}

static NI void finish(const Key *k, __m128i y, size_t aad, size_t n, unsigned char *tag)
{
    unsigned char lengths[16];
    uint64_t a = __builtin_bswap64((uint64_t)aad * 8), c = __builtin_bswap64((uint64_t)n * 8);
    memcpy(lengths, &a, 8);
    memcpy(lengths + 8, &c, 8);
    y = hash_blocks(k, y, lengths, 16);
    __m128i t = _mm_xor_si128(_mm_shuffle_epi8(y, k->swap), aes(k, counter(k, 1)));
    _mm_storeu_si128((__m128i *)tag, t);
}

NI void gcm_ni_seal(const unsigned char *key, const unsigned char *nonce,
                    const unsigned char *data, size_t n, const unsigned char *aad, size_t aad_len,
                    unsigned char *out)
{
    Key k;
    setup(&k, key, nonce);
    __m128i y = hash_bytes(&k, _mm_setzero_si128(), aad, aad_len);
    size_t hashed = ctr_wide(&k, &y, data, out, n, 1);
    y = hash_bytes(&k, y, out + hashed, n - hashed);
    finish(&k, y, aad_len, n, out + n);
    explicit_bzero(&k, sizeof k); /* the round keys and H's powers stay nowhere */
}

NI int gcm_ni_open(const unsigned char *key, const unsigned char *nonce,
                   const unsigned char *sealed, size_t n, const unsigned char *aad,
                   size_t aad_len, unsigned char *out)
{
    Key k;
    unsigned char tag[16];
    setup(&k, key, nonce);
    __m128i y = hash_bytes(&k, _mm_setzero_si128(), aad, aad_len);
    size_t hashed = ctr_wide(&k, &y, sealed, out, n, 0);
    y = hash_bytes(&k, y, sealed + hashed, n - hashed);
    finish(&k, y, aad_len, n, tag);
    explicit_bzero(&k, sizeof k);
    unsigned char diff = 0;
    for (int b = 0; b < 16; b++)
        diff |= (unsigned char)(tag[b] ^ sealed[n + b]);
    if (diff != 0) {
        memset(out, 0, n);
        return 0;
    }
    return 1;
}

#else /* not x86-64: libcrypto does it */

int gcm_ni_usable(void) { return 0; }

void gcm_ni_seal(const unsigned char *key, const unsigned char *nonce, const unsigned char *data,
                 size_t n, const unsigned char *aad, size_t aad_len, unsigned char *out)
{
    (void)key, (void)nonce, (void)data, (void)n, (void)aad, (void)aad_len, (void)out;
}

int gcm_ni_open(const unsigned char *key, const unsigned char *nonce, const unsigned char *sealed,
                size_t n, const unsigned char *aad, size_t aad_len, unsigned char *out)
{
    (void)key, (void)nonce, (void)sealed, (void)n, (void)aad, (void)aad_len, (void)out;
    return -1;
}

#endif
