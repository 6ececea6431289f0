/* Loss curves (DESIGN §3 "Curves"): rank a head's mid tokens, then read the
 * utility left behind at each grid point. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "stats_internal.h"

int lukv_keep_count(int g, int grid, int T_ctx, int sink, int window) {
  if (grid < 1 || g < 0 || g > grid || T_ctx < 1 || sink < 0 || window < 0) return 0;
  /* round(g·T/G), halves up, in unsigned 64-bit: 2·g·T + G < 2^64 for int
   * inputs, and integers avoid a g/G·T landing just below a half in double. */
  uint64_t num = 2u * (uint64_t)g * (uint64_t)T_ctx + (uint64_t)grid;
  int64_t kept = (int64_t)(num / (2u * (uint64_t)grid));
  int64_t m = kept - (int64_t)sink - (int64_t)window;
  int64_t n_mid = (int64_t)T_ctx - sink - window;
  if (m < 0) m = 0;
  if (m > n_mid) m = n_mid > 0 ? n_mid : 0;
  return (int)m;
}

typedef struct {
  float key;
  int idx;
} rank_item;

/* Score descending, then index ascending: a total order (indices are
 * unique), so the ranking does not depend on the qsort implementation. */
static int rank_cmp(const void *pa, const void *pb) {
  const rank_item *a = pa, *b = pb;
  if (a->key > b->key) return -1;
  if (a->key < b->key) return 1;
  return (a->idx > b->idx) - (a->idx < b->idx);
}

int lukv_stats_curve(const float *utility, const float *score, int T_ctx, int sink, int window,
                     int grid, float *curve, double *total, lukv_error *err) {
  const char *who = "lukv_stats_curve";
  if (!utility || !curve)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: utility or curve is NULL", who);
  if (grid < 1 || sink < 0 || window < 0)
    return lukv_error_set(err, LUKV_ERR_INVALID, "%s: grid %d, sink %d, window %d out of range",
                          who, grid, sink, window);
  if (T_ctx < 1 || (int64_t)T_ctx <= (int64_t)sink + window)
    return lukv_error_set(err, LUKV_ERR_INVALID,
                          "%s: context of %d tokens leaves no mid tokens after sink %d + window %d",
                          who, T_ctx, sink, window);
  const int n_mid = T_ctx - sink - window;
  for (int j = sink; j < sink + n_mid; j++) {
    /* A negative utility would make loss(m) rise with m; NaN would poison every sum. */
    if (!isfinite(utility[j]) || utility[j] < 0.0f)
      return lukv_error_set(err, LUKV_ERR_RANGE, "%s: utility %g at token %d; must be finite and >= 0",
                            who, (double)utility[j], j);
    if (score && isnan(score[j]))
      return lukv_error_set(err, LUKV_ERR_RANGE, "%s: score is NaN at token %d", who, j);
  }

  rank_item *items = malloc(sizeof *items * (size_t)n_mid);
  double *suffix = malloc(sizeof *suffix * ((size_t)n_mid + 1));
  if (!items || !suffix) {
    free(items), free(suffix);
    return lukv_error_set(err, LUKV_ERR_NOMEM, "%s: %d mid tokens", who, n_mid);
  }
  for (int r = 0; r < n_mid; r++) {
    int j = sink + r;
    items[r].key = score ? score[j] : utility[j];
    items[r].idx = j;
  }
  qsort(items, (size_t)n_mid, sizeof *items, rank_cmp);

  /* suffix[m] = utility of ranks m.. (what keeping the top m leaves behind).
   * Built from the end: suffix[n_mid] = 0 exactly, and adding a value >= 0
   * never decreases a double, so the curve is non-increasing by
   * construction, not only up to rounding. For the oracle this sums the
   * smallest utilities first, the accurate order. */
  suffix[n_mid] = 0.0;
  for (int r = n_mid - 1; r >= 0; r--) suffix[r] = suffix[r + 1] + (double)utility[items[r].idx];
  for (int g = 0; g <= grid; g++)
    curve[g] = (float)suffix[lukv_keep_count(g, grid, T_ctx, sink, window)];
  if (total) *total = suffix[0];
  free(items), free(suffix);
  return LUKV_OK;
}
