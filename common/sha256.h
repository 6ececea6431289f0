/* SHA-256 (FIPS 180-4), streaming, for lukv-profile's model_hash: the same
 * digest as Python's hashlib.sha256, so profiles written by the C profiler and
 * by tools/reference_profile.py name a model identically. */
#ifndef LUKV_SHA256_H
#define LUKV_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct lukv_sha256 {
  uint32_t h[8];
  uint64_t n_bytes;      /* total bytes fed */
  unsigned char buf[64]; /* partial block */
  size_t n_buf;
} lukv_sha256;

void lukv_sha256_init(lukv_sha256 *s);
void lukv_sha256_update(lukv_sha256 *s, const void *data, size_t n);
/* Writes 64 lowercase hex digits and a NUL into hex[65]. */
void lukv_sha256_final_hex(lukv_sha256 *s, char hex[65]);

#endif
