#include "npy.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int lukv_npy_write_f32(const char *path, const float *data, const int64_t *shape, int ndim,
                       lukv_error *err) {
  if (!path || !data || !shape || ndim < 1 || ndim > 8)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: invalid npy array description",
                          path ? path : "(null)");
  /* Header dict, padded with spaces so that magic + lengths + header is a
   * multiple of 64 bytes and ends in '\n' (the .npy 1.0 rule). */
  char dict[512];
  int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
  int64_t count = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return lukv_error_set(err, LUKV_ERR_INVALID, "%s: negative dimension", path);
    count *= shape[i];
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld%s", (long long)shape[i],
                  (ndim == 1 || i < ndim - 1) ? ", " : "");
  }
  n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
  size_t total = 10 + (size_t)n + 1;
  size_t pad = (64 - total % 64) % 64;
  char header[640];
  memcpy(header, "\x93NUMPY\x01\x00", 8);
  uint16_t hlen = (uint16_t)((size_t)n + pad + 1);
  header[8] = (char)(hlen & 0xff);
  header[9] = (char)(hlen >> 8);
  memcpy(header + 10, dict, (size_t)n);
  memset(header + 10 + n, ' ', pad);
  header[10 + (size_t)n + pad] = '\n';

  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: path too long", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) return lukv_error_set(err, LUKV_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
  size_t hsize = 10 + (size_t)n + pad + 1;
  int ok = fwrite(header, 1, hsize, f) == hsize &&
           fwrite(data, sizeof(float), (size_t)count, f) == (size_t)count;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return lukv_error_set(err, LUKV_ERR_IO, "%s: write failed: %s", path, strerror(e));
  }
  return LUKV_OK;
}
