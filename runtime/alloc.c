/* Keep-count allocation (rt_alloc.h): the runtime rule for tables and the
 * uniform / PyramidKV / Ada-KV baselines. Host only, no tensors. */
#include "rt_alloc.h"

#include <math.h>
#include <stdlib.h>

#include "pyramid.h"
#include "status.h"

static int32_t clamp_i64(int64_t v, int64_t lo, int64_t hi) {
  return (int32_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* min(T, s + w) without overflowing s + w. */
static int64_t keep_floor(int T, int sink, int window) {
  int64_t sw = (int64_t)sink + window;
  return sw < T ? sw : T;
}

int lukv_rt_round_layer(const double *x, int H, int T, int sink, int window, int32_t *keep) {
  if (!x || !keep || H < 1 || T < 1 || sink < 0 || window < 0) return LUKV_ERR_INVALID;
  double total = 0.0;
  int64_t floors = 0;
  for (int h = 0; h < H; h++) {
    if (!(x[h] >= 0.0 && x[h] <= T)) return LUKV_ERR_INVALID;
    total += x[h];
    floors += (int64_t)floor(x[h]);
  }
  int64_t extra = (int64_t)lukv_rt_floor_tol(total) - floors;
  /* keep[h] = floor(x[h]) plus one for the `extra` heads with the largest
   * fractional parts (anything still left to the lowest heads below T, which
   * only rounding noise can cause). */
  int rc = lukv_round_largest_remainder(x, H, extra, T, 1, keep);
  if (rc != LUKV_OK) return rc;
  const int64_t lo = keep_floor(T, sink, window);
  for (int h = 0; h < H; h++) keep[h] = clamp_i64(keep[h], lo, T);
  return LUKV_OK;
}

int lukv_rt_keep_table(const float *frac, int H, int T, int sink, int window, int32_t *keep) {
  if (!frac || H < 1) return LUKV_ERR_INVALID;
  double *x = malloc(sizeof *x * (size_t)H);
  if (!x) return LUKV_ERR_NOMEM;
  /* float * int is exact in double for T < 2^29: the floors are the table's. */
  for (int h = 0; h < H; h++) x[h] = (double)frac[h] * T;
  int rc = lukv_rt_round_layer(x, H, T, sink, window, keep);
  free(x);
  return rc;
}

int64_t lukv_rt_layer_budget(int H, int T, double ratio) {
  double b = lukv_rt_floor_tol((1.0 - ratio) * (double)T * (double)H);
  if (!(b > 0.0)) return 0;
  double cap = (double)H * T;
  return (int64_t)(b < cap ? b : cap);
}

int lukv_rt_keep_uniform(int H, int T, double ratio, int sink, int window, int32_t *keep) {
  if (!keep || H < 1 || T < 1 || sink < 0 || window < 0) return LUKV_ERR_INVALID;
  /* Integer arithmetic: equal fractions tie, so the rule's remainder goes to
   * the lower heads. */
  const int64_t Bl = lukv_rt_layer_budget(H, T, ratio), lo = keep_floor(T, sink, window);
  for (int h = 0; h < H; h++) keep[h] = clamp_i64(Bl / H + (h < Bl % H), lo, T);
  return LUKV_OK;
}

/* The shared schedule (common/pyramid.h) in tokens per head: the layers'
 * budgets summed, clamped to [min(T, s + w), T]; a remainder the largest
 * fractions cannot take goes to the lowest heads below T (fill_rest). */
int lukv_rt_keep_pyramid(int L, int H, int T, double ratio, int sink, int window, double beta,
                         int32_t *keep) {
  if (!keep || L < 1 || H < 1 || T < 1 || sink < 0 || window < 0 || !(beta > 0.0) ||
      !isfinite(beta))
    return LUKV_ERR_INVALID;
  const int64_t total = (int64_t)L * lukv_rt_layer_budget(H, T, ratio);
  return lukv_pyramid_schedule(L, H, keep_floor(T, sink, window), T, total, beta, 1, keep);
}

typedef struct cand {
  float key;
  int head;
  int pos;
} cand;

/* Highest score first; ties to the lower head, then the lower position, the
 * same order a head's own top-k uses, so each head's share is a prefix of
 * its own ranking. */
static int cand_cmp(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if (x->key != y->key) return x->key > y->key ? -1 : 1;
  if (x->head != y->head) return x->head < y->head ? -1 : 1;
  return (x->pos > y->pos) - (x->pos < y->pos);
}

int lukv_rt_keep_adakv(int H, int T, double ratio, int sink, int window, double alpha,
                       const float *scores, int64_t stride, int32_t *keep) {
  if (!keep || H < 1 || T < 1 || sink < 0 || window < 0 || !(alpha >= 0.0 && alpha <= 1.0))
    return LUKV_ERR_INVALID;
  const int64_t sw = (int64_t)sink + window;
  if (T <= sw) {
    for (int h = 0; h < H; h++) keep[h] = T;
    return LUKV_OK;
  }
  if (!scores || stride < T) return LUKV_ERR_INVALID;
  const int n = (int)(T - sw); /* mid tokens per head */
  const int64_t M = lukv_rt_layer_budget(H, T, ratio) - (int64_t)H * sw;
  if (M <= 0 || M >= (int64_t)H * n) {
    for (int h = 0; h < H; h++) keep[h] = M <= 0 ? (int32_t)sw : T;
    return LUKV_OK;
  }
  int64_t g = (int64_t)lukv_rt_floor_tol(alpha * (double)M / H);
  if (g > n) g = n;
  const int64_t rest = M - (int64_t)H * g;
  cand *mid = malloc(sizeof *mid * (size_t)n);                  /* [n] one head */
  cand *pool = malloc(sizeof *pool * ((size_t)H * (n - g) + 1)); /* [H*(n-g)] */
  if (!mid || !pool) {
    free(mid), free(pool);
    return LUKV_ERR_NOMEM;
  }
  int64_t np = 0;
  for (int h = 0; h < H; h++) {
    for (int j = 0; j < n; j++) {
      mid[j].key = lukv_rt_score_key(scores[(int64_t)h * stride + sink + j]);
      mid[j].head = h;
      mid[j].pos = sink + j;
    }
    qsort(mid, (size_t)n, sizeof *mid, cand_cmp);
    for (int64_t r = g; r < n; r++) pool[np++] = mid[r]; /* the head's own top g are guaranteed */
    keep[h] = (int32_t)(sw + g);
  }
  qsort(pool, (size_t)np, sizeof *pool, cand_cmp);
  for (int64_t i = 0; i < rest; i++) keep[pool[i].head]++;
  free(mid), free(pool);
  return LUKV_OK;
}
