/* The PyramidKV linear-by-layer schedule (DESIGN §3 "baseline allocations"),
 * shared by the solver (grid units per head) and the runtime (tokens per
 * head), and the largest-remainder rounding it ends with. Host only. */
#ifndef LUKV_PYRAMID_H
#define LUKV_PYRAMID_H

#include <stdint.h>

#include "status.h"

/* Largest-remainder rounding of x [n] (all in [0, hi]):
 *   keep[i] = floor(x[i]), then one more for each of the `extra` entries with
 *   the largest fractional parts (ties to the lower index, so the result does
 *   not depend on qsort's order), only entries with a fractional part > 0,
 *   never above hi.
 * fill_rest != 0: anything still left then goes one each to the lowest
 * indices below hi (only rounding noise can leave any); fill_rest == 0: it is
 * dropped. extra <= 0: the floors only.
 * Returns LUKV_OK, LUKV_ERR_NOMEM or LUKV_ERR_INVALID (NULL pointer, n < 1). */
int lukv_round_largest_remainder(const double *x, int n, int64_t extra, int64_t hi, int fill_rest,
                                 int32_t *keep);

/* PyramidKV (Cai et al. 2024) for L layers x H heads sharing `total` units:
 *   t_l = avg (2 - 1/beta) - avg (2 - 2/beta) l / (L - 1),   avg = total / (L H)
 * (t_0 = 2 avg - avg/beta, t_{L-1} = avg/beta; t_0 = avg when L = 1). Clamping
 * to [lo, hi] breaks the mean, so the whole line is shifted by the largest
 * delta (bisection) with sum_l H clamp(t_l + delta, lo, hi) <= total (delta = 0
 * whenever nothing clamps); every head of layer l gets that value, rounded by
 * lukv_round_largest_remainder with extra = total - sum of the floors.
 * total <= L H lo: every head at lo; total >= L H hi: every head at hi.
 * out: [L * H], layer-major (out[l * H + h]).
 * Returns LUKV_OK, LUKV_ERR_NOMEM or LUKV_ERR_INVALID (NULL out, L or H < 1,
 * lo < 0, lo > hi, hi > INT32_MAX, beta not finite and > 0). */
int lukv_pyramid_schedule(int L, int H, int64_t lo, int64_t hi, int64_t total, double beta,
                          int fill_rest, int32_t *out);

#endif
