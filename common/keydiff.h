/* The keydiff scorer for one KV head (DESIGN §3 "Scorers"), shared by the
 * profiler's reference and the runtime's CPU backend so that the runtime
 * ranks tokens exactly as the table was calibrated. Host only. */
#ifndef LUKV_KEYDIFF_H
#define LUKV_KEYDIFF_H

#include <stddef.h>

/* score[j] = -cos(k_j, m) for j < T, where m = mean_j k_j / ||k_j|| (a zero
 * key has no direction: it adds 0 to m and scores 0; so does every key when
 * m = 0). Highest = farthest from the mean direction = keep first.
 *   k      row j (d floats) at k + j * row_stride, row_stride >= d; read only
 *   mean   [d] caller's scratch, overwritten (on return: m before its norm)
 *   score  [T] written
 * All sums in double, in index order (c ascending, then j ascending). */
void lukv_keydiff_head(const float *k, int T, size_t row_stride, int d, double *mean,
                       float *score);

#endif
