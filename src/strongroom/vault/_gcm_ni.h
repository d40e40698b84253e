/* AES-256-GCM with AES-NI and PCLMULQDQ (_gcm_ni.c), for _gcm.c. */
#ifndef STRONGROOM_GCM_NI_H
#define STRONGROOM_GCM_NI_H

#include <stddef.h>
#include <stdint.h>

/* Whether this CPU has the instructions (x86-64 with AES, PCLMULQDQ, SSSE3, SSE4.1). */
int gcm_ni_usable(void);

/* ciphertext || tag (n + 16 bytes) of data into out. */
void gcm_ni_seal(const unsigned char *key, const unsigned char *nonce, const unsigned char *data,
                 size_t n, const unsigned char *aad, size_t aad_len, unsigned char *out);

/* The plaintext of sealed (n bytes of ciphertext, then the tag) into out: 1 when authentic,
 * else 0 and out zeroed. */
int gcm_ni_open(const unsigned char *key, const unsigned char *nonce, const unsigned char *sealed,
                size_t n, const unsigned char *aad, size_t aad_len, unsigned char *out);

#endif
