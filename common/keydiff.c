#include "keydiff.h"

#include <math.h>

void lukv_keydiff_head(const float *k, int T, size_t row_stride, int d, double *mean,
                       float *score) {
  for (int c = 0; c < d; c++) mean[c] = 0.0;
  for (int j = 0; j < T; j++) {
    const float *kj = k + (size_t)j * row_stride;
    double n2 = 0.0;
    for (int c = 0; c < d; c++) n2 += (double)kj[c] * kj[c];
    /* Normalising first makes the anchor a mean direction: a few large keys
     * cannot drag it. */
    double inv = n2 > 0.0 ? 1.0 / sqrt(n2) : 0.0;
    for (int c = 0; c < d; c++) mean[c] += (double)kj[c] * inv;
  }
  double mn2 = 0.0;
  for (int c = 0; c < d; c++) {
    mean[c] /= T;
    mn2 += mean[c] * mean[c];
  }
  double inv_m = mn2 > 0.0 ? 1.0 / sqrt(mn2) : 0.0;
  for (int j = 0; j < T; j++) {
    const float *kj = k + (size_t)j * row_stride;
    /* The norm again rather than a [T] buffer: the same sum in the same
     * order, so the same value. */
    double n2 = 0.0, dot = 0.0;
    for (int c = 0; c < d; c++) n2 += (double)kj[c] * kj[c], dot += (double)kj[c] * mean[c];
    double inv = n2 > 0.0 ? 1.0 / sqrt(n2) : 0.0;
    score[j] = (float)(-dot * inv * inv_m);
  }
}
